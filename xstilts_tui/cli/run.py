"""``--recipe FILE``: a recipe run headless, its progress on the terminal, its tables at
the end."""

from __future__ import annotations

import sys

from xstilts_tui.recipe.parse import load_recipe
from xstilts_tui.cli.data import check_inputs
from xstilts_tui.cli.options import check_writable, with_overrides
from xstilts_tui.cli.plan import planned


class Terminated(Exception):
    """SIGTERM reached the headless run."""


def cmd_run(file: str, output: str | None, cache: str | None, launch: str | None = None,
            strict_cache: bool = False, devices: str | None = None,
            parallel: int | None = None, executor: str = "local",
            seeds: tuple[int, ...] | None = None, track: tuple[str, ...] | None = None,
            reuse: frozenset[str] = frozenset(), settings: tuple[str, ...] = ()) -> int:
    from xstilts_tui.run.progress import make_display
    from xstilts_tui.results.store import cost_table, xtreme_table
    from xstilts_tui.results.summary import summary_tables, what_the_model_is
    from xstilts_tui.run.runner import Runner

    recipe = with_overrides(load_recipe(file, settings), seeds, track)  # validated before anything is written
    plan, slots = planned(recipe, output, cache, launch, devices, parallel, reuse,
                           slurm=executor == "slurm")
    if check_inputs(file, recipe, plan, fetch=True):  # fetched: the keys take their hashes
        plan, slots = planned(recipe, output, cache, launch, devices, parallel, reuse,
                               slurm=executor == "slurm")
    check_writable(plan.cache_dir, "--cache" if cache else "the stage cache")
    check_writable(plan.output_dir, "--output" if output else "output_dir")
    from xstilts_tui.run.executors import executor_for

    jobs = executor_for(executor, plan)
    display = make_display()
    runner = Runner(plan, display, strict_cache=strict_cache, slots=slots, executor=jobs)
    display.print(f"recipe {recipe.name}: {len(plan.stages)} stages, results in {plan.output_dir}, "
                  f"stage cache in {plan.cache_dir}"
                  + (f"; stages as SLURM jobs (job files in {jobs.folder})" if executor == "slurm"
                     else f"; {len(slots)} stages at once ({', '.join(s.name for s in slots)})"
                     if len(slots) > 1 else ""))

    def terminated(signum, frame):
        raise Terminated()

    import signal

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        outcome = runner.run()
    except KeyboardInterrupt:
        print(f"\ninterrupted; what was scored is in {plan.output_dir}", file=sys.stderr)
        return 130
    except Terminated:
        print(f"\nterminated by SIGTERM (a time limit or a preemption?): the running stage saved a "
              f"resume state where it could; what was scored is in {plan.output_dir}; run the "
              "same command again to go on", file=sys.stderr)
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    languages = {t: list(recipe.tasks[t].languages) for t in recipe.targets}
    from xstilts_tui.results.report import add_significance, load_run

    significance = {}
    if len(recipe.arms) > 1:
        run = load_run(plan.output_dir)
        add_significance(run)  # the resamples report uses: one run, one interval
        significance = run.deltas
    print()
    note = what_the_model_is(recipe)
    if note:
        print(note + "\n")
    print(summary_tables(runner.store.results_frame(), [a.name for a in recipe.arms],
                         recipe.baseline.name, list(recipe.targets), languages, significance,
                         {t: list(recipe.tasks[t].train_languages or ("en",)) for t in recipe.targets}))
    xtreme = xtreme_table(runner.store.results_frame(), [a.name for a in recipe.arms],
                          list(recipe.targets), languages)
    if xtreme:
        print("\n" + xtreme)
    costs = cost_table(runner.store.stages_frame())
    if costs:
        print("\n" + costs)
    print(f"\nresults: {plan.output_dir / 'results.parquet'} (stages: "
          f"{plan.output_dir / 'stages.parquet'})")
    if not outcome.ok:
        for stage, reason in outcome.reasons.items():
            print(f"error: {stage}: {reason}", file=sys.stderr)
        return 1
    return 0
