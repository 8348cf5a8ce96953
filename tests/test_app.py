"""The dashboard, driven with Textual's Pilot: recipes, runs, scores, compare, re-attach.

Waits are bounded polls (a slow machine makes a test slower, not red); nothing sleeps
a fixed time."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SMALL_DEMO
from xstilts_tui.app import RunContext, XstiltsApp
from xstilts_tui.recipe import RecipeError, load_recipe, parse_recipe
from xstilts_tui.results import ResultsStore

SIZE = (80, 24)


async def wait_for(pilot, condition, timeout: float = 300.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.2)


async def start_run(pilot, app):
    """Press r (the run key) once the opened recipe has validated."""
    await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
    app.query_one("#recipe-list").focus()
    await pilot.press("r")


@pytest.fixture
def recipes_dir(tmp_path):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "small-demo.toml").write_text(SMALL_DEMO, encoding="utf-8")
    return folder


def make_app(recipes_dir, tmp_path, **kw):
    return XstiltsApp([recipes_dir], output_root=tmp_path / "runs", **kw)


def cell(app, task, arm, column):
    table = app.query_one(f"#scores-{task}")
    return str(table.get_cell(arm, column))


# --- recipes ------------------------------------------------------------------------


async def test_recipe_form_validates_as_you_type_and_saves_a_round_trip(recipes_dir, tmp_path):
    app = make_app(recipes_dir, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        validation = app.query_one("#validation")
        await wait_for(pilot, lambda: "ok (2 arms" in str(validation.render()), 10, "validation")
        original = load_recipe(recipes_dir / "small-demo.toml")

        # A bad value: the same one-line message `xstilts-tui validate` prints.
        app.query_one("#f-seeds").value = "1, -2"
        await wait_for(pilot, lambda: validation.has_class("bad"), 10, "an error")
        message = str(validation.render())
        bad = tmp_path / "bad.toml"
        bad.write_text(SMALL_DEMO.replace("seeds = [1]", "seeds = [1, -2]"), encoding="utf-8")
        with pytest.raises(RecipeError) as cli_error:
            load_recipe(bad)
        # "FILE: FIELD: what is wrong": the same after the file name.
        assert message.split(": ", 1)[1] == str(cli_error.value).split(": ", 1)[1]
        assert validation.has_class("bad")

        # Fix it, edit an arm and a language, save to a new file.
        app.query_one("#f-seeds").value = "1, 2"
        app.query_one("#f-arm-name").value = "jobs-lr"
        app.query_one("#f-arm-inter").value = "demo-jobs"
        app.query_one("#arm-add").focus()
        await pilot.press("enter")
        picker = app.query(".langs").first()
        picker.deselect("zh")
        await wait_for(pilot, lambda: "ok (3 arms" in str(validation.render()), 10, "ok again")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: (recipes_dir / "small-demo-1.toml").exists(), 10, "the file")
        saved = load_recipe(recipes_dir / "small-demo-1.toml")
        assert [a.name for a in saved.arms] == ["baseline", "jobs", "jobs-lr"]
        assert saved.seeds == (1, 2)
        assert saved.tasks["demo-qa"].languages == ("en", "es", "de", "ru")
        # Everything the form does not show is kept as it was.
        assert saved.model == original.model
        assert saved.hparams_target == original.hparams_target
        assert saved.tasks["demo-jobs"] == original.tasks["demo-jobs"]
        # The original file is untouched: saving writes a new file.
        assert load_recipe(recipes_dir / "small-demo.toml") == original

    # An unchanged form saves the same recipe.
    app = make_app(recipes_dir, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        app.load_recipe(recipes_dir / "small-demo.toml")
        await pilot.pause()
        recipe = app.validate_form()
        again = parse_recipe(app.form_text(), str(recipes_dir / "small-demo.toml"), recipes_dir)
        assert again == recipe == load_recipe(recipes_dir / "small-demo.toml")


async def test_overwrite_asks_first(recipes_dir, tmp_path):
    app = make_app(recipes_dir, tmp_path)
    path = recipes_dir / "small-demo.toml"
    before = path.read_text(encoding="utf-8")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        app.query_one("#f-seeds").value = "3"
        await pilot.pause()
        await pilot.press("ctrl+o")
        await pilot.press("n")
        assert path.read_text(encoding="utf-8") == before
        await pilot.press("ctrl+o")
        await pilot.press("y")
        await wait_for(pilot, lambda: path.read_text(encoding="utf-8") != before, 10, "overwrite")
    assert load_recipe(path).seeds == (3,)


# --- runs and scores -----------------------------------------------------------------


@pytest.mark.slow
async def test_demo_from_the_dashboard_fills_every_language(recipes_dir, tmp_path):
    app = make_app(recipes_dir, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await start_run(pilot, app)
        assert app.query_one("#tabs").active == "runs"
        await wait_for(pilot, lambda: not app.running, 600, "the run to end")
        assert set(app.stage_state.values()) == {"done"}
        await pilot.press("3")
        langs = ["en", "es", "de", "ru", "zh"]
        for arm in ("baseline", "jobs"):
            for column in [*langs, "avg", "avg-en"]:
                assert cell(app, "demo-qa", arm, column) != "-", (arm, column)
        base_en = float(cell(app, "demo-qa", "baseline", "en"))
        jobs_en = float(cell(app, "demo-qa", "jobs", "en"))
        await pilot.press("d")
        assert cell(app, "demo-qa", "jobs", "en") == f"{jobs_en - base_en:+.1f}"
        assert cell(app, "demo-qa", "baseline", "en") == f"{base_en:.1f}"
        await pilot.press("a")
        assert cell(app, "demo-qa", "jobs", "en") == f"{jobs_en:.1f}"
        # The results store holds what the table shows.
        import polars as pl

        results = pl.read_parquet(tmp_path / "runs" / "small-demo" / "results.parquet")
        assert results.filter(pl.col("split") == "test")["language"].n_unique() == 5


@pytest.mark.slow
async def test_a_killed_worker_fails_its_stage_and_the_app_stays_up(recipes_dir, tmp_path):
    # A long intermediate stage, so that it is still running when it is killed.
    path = recipes_dir / "small-demo.toml"
    path.write_text(SMALL_DEMO + "\n[hparams.intermediate]\nmax_steps = 100000\n", encoding="utf-8")
    app = make_app(recipes_dir, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await start_run(pilot, app)
        stage = "intermediate/demo-jobs/torch/seed1"
        await wait_for(pilot, lambda: app.stage_state.get(stage) == "running"
                       and app.runner.worker is not None, 300, "the intermediate stage")
        killed_stage, pid = app.runner.worker
        assert killed_stage == stage
        os.kill(pid, signal.SIGKILL)
        await wait_for(pilot, lambda: app.stage_state.get(stage) == "failed", 60, "the failure")
        # The app answers, the dependent stage is skipped, the others go on.
        await pilot.press("3")
        assert app.query_one("#tabs").active == "scores"
        await wait_for(pilot, lambda: not app.running, 600, "the run to end")
        assert app.stage_state["target/jobs/demo-qa/seed1"] == "skipped"
        assert app.stage_state["target/baseline/demo-qa/seed1"] == "done"
        assert cell(app, "demo-qa", "baseline", "zh") != "-"
        status = str(app.query_one("#run-status").render())
        assert "2 stage(s) not done" in status


@pytest.mark.slow
async def test_quitting_during_a_run_asks_then_stops_the_workers(recipes_dir, tmp_path):
    app = make_app(recipes_dir, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await start_run(pilot, app)
        await wait_for(pilot, lambda: "running" in app.stage_state.values()
                       and app.runner.worker_pid is not None, 120, "a running stage")
        pid = app.runner.worker_pid
        await pilot.press("q")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "Confirm"
        await pilot.press("n")
        assert app.running
        await pilot.press("q")
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.running, 60, "the run to stop")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # no orphan worker
    events = (tmp_path / "runs" / "small-demo" / "events.jsonl").read_text(encoding="utf-8")
    assert '"type":"stage_started"' in events  # what was reported stays in the store


# --- re-attach, compare, snapshots -----------------------------------------------------


def built_results(folder: Path) -> Path:
    """A results folder written through the results store: two arms, two seeds."""
    recipe = parse_recipe(SMALL_DEMO.replace("seeds = [1]", "seeds = [1, 2]"), "r.toml", folder)
    store = ResultsStore(folder, "run-1", recipe.name)
    values = {("baseline", 1): [70.0, 10.0, 12.0, 8.0, 9.0], ("baseline", 2): [72.0, 11.0, 13.0, 7.0, 9.0],
              ("jobs", 1): [74.0, 15.0, 11.0, 9.0, 12.0], ("jobs", 2): [76.0, 16.0, 10.0, 10.0, 14.0]}
    for (arm, seed), scores in values.items():
        for lang, value in zip(["en", "es", "de", "ru", "zh"], scores):
            event = {"type": "score", "stage": f"target/{arm}/demo-qa/seed{seed}", "task": "demo-qa",
                     "language": lang, "split": "test", "metric": "f1", "value": value, "step": 12,
                     "time": 0.0}
            store.record(event, stage_key="k", arms=(arm,), seed=seed, cached=False)
        store.stage_result(stage=f"target/{arm}/demo-qa/seed{seed}", stage_key="k", kind="target",
                           arms=(arm,), seed=seed, task="demo-qa", status="done",
                           finished={"wall_s": 10.0 + seed, "examples_per_s": 500.0,
                                     "peak_memory_bytes": 2**29, "trainable_params": 175170,
                                     "total_params": 175170, "checkpoint_bytes": 3 * 2**20,
                                     "versions": {"torch": "2.13.0"}})
    store.compact()
    store.close()
    (folder / "run.json").write_text(json.dumps({"recipe": recipe.to_dict()}), encoding="utf-8")
    return folder


async def test_reattach_shows_scores_and_compare_without_running(tmp_path, recipes_dir):
    folder = built_results(tmp_path / "results")
    app = make_app(recipes_dir, tmp_path, results=folder)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.query_one("#tabs").active == "scores"
        assert not app.running
        # Mean ± std over the two seeds.
        assert cell(app, "demo-qa", "baseline", "en") == "71.0±1.4"
        assert cell(app, "demo-qa", "jobs", "es") == "15.5±0.7"
        await pilot.press("m")
        assert cell(app, "demo-qa", "jobs", "es") == "15.5"
        await pilot.press("d")
        assert cell(app, "demo-qa", "jobs", "en") == "+4.0"
        # Sorting by a column orders the arms by it (the header click does the same).
        await pilot.press("a")
        table = app.query_one("#scores-demo-qa")
        app._sort_table(table, list(table.columns).index("de"))
        await pilot.pause()
        assert [str(table.get_row_at(i)[0]).split(" ")[0] for i in range(2)] == ["baseline", "jobs"]
        app._sort_table(table, list(table.columns).index("en"))
        await pilot.pause()
        assert [str(table.get_row_at(i)[0]).split(" ")[0] for i in range(2)] == ["jobs", "baseline"]

        await pilot.press("4")
        scores = app.query_one("#cmp-scores")
        rows = {str(scores.get_row_at(i)[0]): [str(c) for c in scores.get_row_at(i)]
                for i in range(scores.row_count)}
        assert rows["en"][1:] == ["71.0±1.4", "75.0±1.4", "+4.0"]
        assert rows["de"][3] == "-2.0"
        cost = app.query_one("#cmp-cost")
        costs = {str(cost.get_row_at(i)[0]): [str(c) for c in cost.get_row_at(i)][1:]
                 for i in range(cost.row_count)}
        assert costs["target: wall time (s)"] == ["11.0", "11.0"]
        assert costs["target: peak memory"] == ["512.0 MiB", "512.0 MiB"]
        assert costs["target: checkpoint"] == ["3.0 MiB", "3.0 MiB"]
        assert costs["target: trainable params"] == ["175,170", "175,170"]

        await pilot.press("question_mark")
        assert app.screen.__class__.__name__ == "Help"
        await pilot.press("escape")
        await pilot.press("q")
    assert RunContext.of_results(folder).arms == ["baseline", "jobs"]


def test_scores_snapshot_absolute(snap_compare, tmp_path, recipes_dir):
    folder = built_results(tmp_path / "results")
    assert snap_compare(make_app(recipes_dir, tmp_path, results=folder), terminal_size=SIZE)


def test_scores_snapshot_delta(snap_compare, tmp_path, recipes_dir):
    folder = built_results(tmp_path / "results")
    assert snap_compare(make_app(recipes_dir, tmp_path, results=folder), press=["d"],
                        terminal_size=SIZE)


@pytest.mark.slow
def test_the_dashboard_process_never_imports_the_compute_stack(tmp_path, recipes_dir):
    script = f"""
import asyncio, sys, time
from pathlib import Path
from xstilts_tui.app import XstiltsApp

async def main():
    app = XstiltsApp([Path({str(recipes_dir)!r})], output_root=Path({str(tmp_path / 'runs')!r}))
    async with app.run_test(size=(80, 24)) as pilot:
        while app.recipe is None:
            await pilot.pause(0.1)
        app.query_one("#recipe-list").focus()
        await pilot.press("r")
        deadline = time.monotonic() + 300
        while app.running and time.monotonic() < deadline:
            await pilot.pause(0.2)
        for key in "1234":
            await pilot.press(key)
        print("STATES", sorted(set(app.stage_state.values())))
    print("HEAVY", [n for n in ("torch", "transformers", "datasets", "deepspeed", "peft",
                              "tokenizers") if n in sys.modules])

asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert "STATES ['done']" in out.stdout, out.stdout + out.stderr
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_progress_messages_coalesce_per_stage():
    from xstilts_tui.app import StageProgress

    def progress(stage, step):
        return StageProgress({"stage": stage, "step": step, "total_steps": 10, "loss": 1.0,
                              "lr": 1e-3, "examples_per_s": 5.0})

    # A newer message of the same stage replaces a queued older one; other stages stay.
    assert progress("a", 1).can_replace(progress("a", 2))
    assert not progress("a", 1).can_replace(progress("b", 2))
