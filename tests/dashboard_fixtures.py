"""Results folders for the dashboard tests, written through the results store."""

import json
import time
from pathlib import Path

from conftest import SMALL_DEMO
from xstilts_tui.recipe.parse import parse_recipe
from xstilts_tui.results.store import ResultsStore

async def wait_for(pilot, condition, timeout: float = 300.0, what: str = "condition"):
    """Poll ``condition`` until it holds (a slow machine makes a test slower, not red)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.1)


BASE_VALUES = {("baseline", 1): [70.0, 10.0, 12.0, 8.0, 9.0], ("baseline", 2): [72.0, 11.0, 13.0, 7.0, 9.0],
               ("jobs", 1): [74.0, 15.0, 11.0, 9.0, 12.0], ("jobs", 2): [76.0, 16.0, 10.0, 10.0, 14.0]}


def built_results(folder: Path, values=None, run_id: str = "20261129-101500-4242",
                  name: str = "small-demo", wall_s: float = 10.0) -> Path:
    """A results folder of two arms and two seeds, as a finished run leaves it."""
    values = values or BASE_VALUES
    text = SMALL_DEMO.replace("seeds = [1]", "seeds = [1, 2]").replace(
        'name = "small-demo"', f'name = "{name}"')
    recipe = parse_recipe(text, "r.toml", folder)
    store = ResultsStore(folder, run_id, recipe.name)
    stages = []
    for (arm, seed), scores in values.items():
        stage = f"target/{arm}/demo-qa/seed{seed}"
        stages.append({"id": stage, "kind": "target"})
        for lang, value in zip(["en", "es", "de", "ru", "zh"], scores):
            event = {"type": "score", "stage": stage, "task": "demo-qa",
                     "language": lang, "split": "test", "metric": "f1", "value": value, "step": 12,
                     "time": 0.0}
            store.record(event, stage_key="k", arms=(arm,), seed=seed, cached=False)
        store.stage_result(stage=stage, stage_key="k", kind="target",
                           arms=(arm,), seed=seed, task="demo-qa", status="done",
                           finished={"wall_s": wall_s + seed, "examples_per_s": 500.0,
                                     "peak_memory_bytes": 2**29, "trainable_params": 175170,
                                     "total_params": 175170, "checkpoint_bytes": 3 * 2**20,
                                     "versions": {"torch": "2.13.0"}})
    store.compact()
    store.close()
    (folder / "run.json").write_text(json.dumps({"run": run_id, "recipe": recipe.to_dict(),
                                                 "stages": stages}), encoding="utf-8")
    return folder
