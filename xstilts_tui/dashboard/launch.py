"""What the dashboard settles before a run starts: its output folder (a recipe with unsaved
edits in a folder of its own), its slots and plan (their device kind and threads are part
of every stage's key), and that its inputs are on this machine (the check ``--recipe``
makes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xstilts_tui.run.executors import executor_for
from xstilts_tui.plan.stages import Plan, build_plan
from xstilts_tui.protocol.provenance import Runtime, digest, runtime_of_slots
from xstilts_tui.recipe.schema import Recipe
from xstilts_tui.protocol.slots import Slot, make_slots


def output_folder(app, recipe: Recipe) -> Path | None:
    """Where the run writes: the recipe's folder, or, for a form with unsaved edits, a
    folder of their own (the same one for the same edits, so that a rerun resumes there),
    never over the saved recipe's results."""
    output = (app.output_root / recipe.name) if app.output_root else None
    if not app.recipes.has_unsaved_edits(recipe):
        return output
    saved = Path(output or recipe.output_dir or Path("runs") / recipe.name).resolve()
    edited = saved.with_name(f"{saved.name}.edited-{digest(recipe.to_dict())[:8]}")
    app.notify(f"the form has unsaved edits: this run writes to {edited}, not over "
               f"{saved.name}'s results (save the recipe to run it in its own folder)",
               markup=False, timeout=8)
    return edited


def prepare_run(app, recipe: Recipe) -> tuple[Plan, list[Slot], Any] | None:
    """The plan, slots and executor of a run about to start; None (and a line saying why)
    where it cannot start."""
    from xstilts_tui.recipe.inputs import inputs_missing

    options = app.run_options
    try:
        slurm = (options.get("executor") or "local") == "slurm"
        devices = options.get("devices")
        chosen = devices.split(",") if devices else (list(recipe.launch.devices) or None)
        slots = None if slurm else make_slots(chosen, recipe.launch.stage_gpus,
                                              options.get("parallel") or recipe.launch.parallel_stages)
        plan = build_plan(recipe, output_folder(app, recipe),
                          runtime=Runtime(device="cuda") if slurm else runtime_of_slots(slots),
                          online=True)
        executor = executor_for(options.get("executor") or "local", plan)
    except ValueError as exc:
        app.notify(f"launch: {exc}", severity="error", markup=False)
        return None
    missing, line = inputs_missing(str(app.recipe_path or recipe.name), plan)
    if missing:  # the same check as --recipe, before anything starts
        line = line or (f"{len(missing)} input(s) of this recipe are not on this machine "
                        f"({missing[0].label}{', ...' if len(missing) > 1 else ''}): run "
                        f"`xstilts-tui data fetch {app.recipe_path}` first (a stage's key holds "
                        "the hashes of what it reads)")
        app.recipes.show_validation(line, ok=False)
        app.notify(line, severity="error", markup=False, timeout=10)
        return None
    return plan, slots if slots is not None else [Slot("slurm")] * len(plan.stages), executor
