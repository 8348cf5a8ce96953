"""``plan``: a recipe's stages, cache keys, commands and what they will cost."""

from __future__ import annotations

import json
from pathlib import Path

from xstilts_tui.errors import UsageError
from xstilts_tui.plan.show import describe, plan_data
from xstilts_tui.plan.stages import build_plan
from xstilts_tui.recipe.parse import load_recipe
from xstilts_tui.recipe.sections import load_launch
from xstilts_tui.cli.options import REUSE_HELP, add_set, reuse_list, run_slots, seed_list, with_overrides


def planned(recipe, output: str | None, cache: str | None, launch: str | None,
             devices: str | None, parallel: int | None, reuse: frozenset[str], slurm: bool = False):
    """The plan and the slots its stages run on; the slots' runtime (device kind, threads)
    is part of every stage's key."""
    from xstilts_tui.protocol.provenance import Runtime, runtime_of_slots
    from xstilts_tui.protocol.slots import Slot

    chosen = load_launch(launch) if launch else recipe.launch
    slots = None if slurm else run_slots(chosen, devices, parallel)
    runtime = Runtime(device="cuda") if slurm else runtime_of_slots(slots)
    plan = build_plan(recipe, output and Path(output), cache and Path(cache), chosen, runtime, reuse,
                      online=True)
    return plan, slots if slots is not None else [Slot("slurm")] * len(plan.stages)  # the cluster queues them


def cmd_plan(file: str, output: str | None, cache: str | None, launch: str | None = None,
             as_json: bool = False, devices: str | None = None, parallel: int | None = None,
             seeds: tuple[int, ...] | None = None, reuse: frozenset[str] = frozenset(),
             write_specs: bool = False, settings: tuple[str, ...] = ()) -> int:
    plan, slots = planned(with_overrides(load_recipe(file, settings), seeds), output, cache, launch, devices,
                           parallel, reuse)
    if write_specs:  # each stage's worker spec, so that the printed commands run by hand
        try:
            for stage in plan.stages:
                plan.write_spec(stage)
        except OSError as exc:
            raise UsageError(f"cannot write the stage specs in {plan.cache_dir}: "
                             f"{exc.strerror or exc}") from None
    if as_json:
        print(json.dumps(plan_data(plan, len(slots)), indent=2, default=str))
    else:
        print(describe(plan, len(slots)))
        print("(each stage's stage.json is written in its folder: the commands run as printed)"
              if write_specs else "(nothing was written; --write-specs writes each stage's "
                                  "stage.json, so that the commands run by hand)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="print a recipe's stages, cache keys, commands and what "
                       "they will cost; train nothing")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--output", metavar="DIR")
    p.add_argument("--cache", metavar="DIR")
    p.add_argument("--launch", metavar="FILE")
    p.add_argument("--json", action="store_true", help="print the same as JSON")
    p.add_argument("--seeds", metavar="LIST", type=seed_list,
                   help="plan these seeds instead of the recipe's, e.g. 1,2,3")
    p.add_argument("--devices", metavar="IDS", help="the makespan on these GPUs (e.g. 0,1,2,3)")
    p.add_argument("--parallel", metavar="N", type=int,
                   help="the makespan with N stages at once (no GPUs)")
    p.add_argument("--reuse", metavar="KINDS", type=reuse_list, default=frozenset(), help=REUSE_HELP)
    p.add_argument("--write-specs", action="store_true", help="write each stage's stage.json into "
                   "the stage cache, so that the printed commands run by hand (else nothing is written)")
    add_set(p)
