#!/usr/bin/env python
"""The scheduler's gain: a recipe one stage at a time against two stages side by side.

In one invocation, each in a fresh stage cache: (1) one stage at a time with the
machine's cores (the baseline), (2) one stage at a time with one thread per worker, (3) two
stages side by side with one thread each. Prints the wall times, the ratios against the
baseline, and whether (2) and (3) - the same thread count per worker - gave the same result
table. Then the makespan of a large recipe (the paper's, 327 stages) simulated from the
plan's per-stage estimates on 1, 8 and 32 GPUs, against the sum of its stages.

    python scripts/bench_schedule.py [--recipe recipes/demo.toml] [--simulate recipes/xstilts-paper.toml]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xstilts_tui.plan.cost import makespan, plan_costs  # noqa: E402
from xstilts_tui.plan.stages import build_plan  # noqa: E402
from xstilts_tui.run.progress import PlainDisplay, clock  # noqa: E402
from xstilts_tui.recipe.parse import load_recipe  # noqa: E402
from xstilts_tui.run.runner import Runner  # noqa: E402
from xstilts_tui.protocol.slots import THREAD_VARIABLES, Slot, cpu_count  # noqa: E402


def run(recipe_path: Path, folder: Path, slots: list[Slot]):
    import polars as pl

    plan = build_plan(load_recipe(recipe_path), folder / "out", folder / "cache")
    started = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        outcome = Runner(plan, PlainDisplay(quiet), slots=slots).run()
    wall = time.perf_counter() - started
    if not outcome.ok:
        raise SystemExit(f"the run in {folder} failed: {outcome.reasons}")
    table = (pl.read_parquet(plan.output_dir / "results.parquet")
             .select(["arm", "seed", "task", "language", "split", "metric", "step", "value"])
             .sort(["arm", "seed", "task", "language", "split", "metric", "step"]))
    return wall, table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="recipes/demo.toml")
    parser.add_argument("--simulate", default="recipes/xstilts-paper.toml")
    parser.add_argument("--skip-runs", action="store_true", help="only the simulated makespan")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    if not args.skip_runs:
        cores = cpu_count()
        one = {name: "1" for name in THREAD_VARIABLES}
        runs = {
            f"one at a time, {cores} threads (baseline)": [Slot("cpu", {n: str(cores) for n in THREAD_VARIABLES})],
            "one at a time, 1 thread": [Slot("cpu", one)],
            "two side by side, 1 thread each": [Slot("cpu 1/2", one), Slot("cpu 2/2", one)],
        }
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            for i, (name, slots) in enumerate(runs.items()):
                results[name] = run(Path(args.recipe), Path(tmp) / str(i), slots)
                print(f"{name:40s} {results[name][0]:8.1f} s", flush=True)
        names = list(runs)
        base = results[names[0]][0]
        for name in names[1:]:
            print(f"ratio baseline / ({name}): {base / results[name][0]:.2f}")
        same = results[names[1]][1].equals(results[names[2]][1])
        print(f"result tables of the 1-thread runs agree: {'yes' if same else 'NO'} "
              f"({results[names[1]][1].height} rows)")
        # The baseline ran with another thread count: its final test scores, joined on
        # arm, seed, task, language and metric, against the side-by-side run's.
        import polars as pl

        def final(table):
            return (table.filter(pl.col("split") == "test").sort("step")
                    .group_by(["arm", "seed", "task", "language", "metric"]).last()
                    .drop("step", "split"))

        joined = final(results[names[0]][1]).join(final(results[names[2]][1]),
                                                   on=["arm", "seed", "task", "language", "metric"],
                                                   suffix="_parallel")
        gap = (joined["value"] - joined["value_parallel"]).abs()
        print(f"final test scores, baseline ({cores} threads) against side by side (1 thread): "
              f"{joined.height} scores, mean |difference| {gap.mean():.2f}, largest {gap.max():.2f}")

    plan = build_plan(load_recipe(args.simulate), Path(tempfile.gettempdir()) / "bench-sim" / "out")
    costs = plan_costs(plan)
    seconds = {c.stage: c.seconds or 0.0 for c in costs}
    unknown = [c.stage for c in costs if c.seconds is None]
    total = sum(seconds.values())
    print(f"\n{args.simulate}: {len(plan.stages)} stages, sum of the estimates {clock(total)} "
          f"({len(unknown)} stages without an estimate count 0)")
    for gpus in (1, 8, 32):
        span = makespan(plan, seconds, gpus)
        print(f"  makespan on {gpus:2d} GPU(s): {clock(span)}  (sum / makespan: {total / span:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
