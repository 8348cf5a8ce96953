"""What several commands share: the parsers of --seeds, --reuse and --track, a recipe with
the command line's overrides, writable folders, and the slots stages run on."""

from __future__ import annotations

import argparse
from pathlib import Path

from xstilts_tui.errors import UsageError


def seed_list(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers separated by commas, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed is repeated in {text!r}")
    return seeds


def reuse_list(text: str) -> frozenset[str]:
    from xstilts_tui.plan.index import REUSABLE

    kinds = frozenset(k.strip() for k in text.split(",") if k.strip())
    unknown = sorted(kinds - set(REUSABLE))
    if not kinds or unknown:
        raise argparse.ArgumentTypeError(f"expected {' and/or '.join(REUSABLE)} (comma-separated), "
                                         f"got {text!r}")
    return kinds


REUSE_HELP = ("keep finished stages across these kinds of change, judged harmless: code, "
              "libraries (e.g. --reuse code); such stages are marked 'reused from <version>' in "
              "the plan, the results and the report")


def tracker_list(text: str) -> tuple[str, ...]:
    from xstilts_tui.recipe.schema import TRACKERS

    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in TRACKERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown tracker {(unknown or [text])[0]!r}; expected "
                                         f"names from: {', '.join(TRACKERS)}")
    return tuple(dict.fromkeys(names))


SET_HELP = ("replace a recipe value, e.g. --set model.path=DIR (a local copy of the model), "
            "--set tasks.xquad.eval_files=DIR/heldout.{lang}.json, --set hparams.target.epochs=2; "
            "VALUE is TOML or plain text; repeatable")


def add_set(parser) -> None:
    """``--set KEY=VALUE`` (repeatable): recipe values replaced before validation."""
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="set",
                        help=SET_HELP)


def with_overrides(recipe, seeds: tuple[int, ...] | None = None,
                    track: tuple[str, ...] | None = None):
    """The recipe with the command line's --seeds and --track in place of its own."""
    import dataclasses

    if seeds:
        recipe = dataclasses.replace(recipe, seeds=seeds)
    if track:
        recipe = dataclasses.replace(recipe, tracking=dataclasses.replace(recipe.tracking, use=track))
    return recipe


def check_writable(folder: Path, what: str) -> None:
    """A folder a run will write into, or the nearest existing one above it, is a folder
    it can write to; else one line, before anything is written."""
    import os

    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{what} {folder}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {folder}: {probe} is not writable")


def run_slots(launch, devices: str | None = None, parallel: int | None = None):
    """The slots stages run on: --devices / --parallel over the recipe's [launch]."""
    from xstilts_tui.protocol.slots import cpu_count, make_slots, visible_gpus

    here = visible_gpus()  # asked once (nvidia-smi)
    chosen = None
    if devices is not None:
        chosen = [d.strip() for d in devices.split(",") if d.strip()]
        if not chosen or not all(d.isdigit() for d in chosen) or len(set(chosen)) != len(chosen):
            raise UsageError(f"--devices {devices}: expected GPU indices, e.g. 0,1,2,3")
    elif launch.devices:
        chosen = list(launch.devices)
    absent = [d for d in chosen or () if d not in here]
    if absent:  # GPUs named by hand must exist here: else the stages would run on the CPU
        what = f"--devices {devices}" if devices is not None else "[launch] devices"
        raise UsageError(f"{what}: no GPU {', '.join(absent)} on this machine ("
                         + (f"it has {', '.join(here)})" if here else
                            "nvidia-smi and CUDA_VISIBLE_DEVICES show none)"))
    if parallel is not None and parallel < 1:
        raise UsageError(f"--parallel {parallel}: expected 1 or more")
    wanted = parallel or launch.parallel_stages
    if wanted > max(1, cpu_count()) and not chosen and not here:
        what = f"--parallel {parallel}" if parallel else f"[launch] parallel_stages = {wanted}"
        raise UsageError(f"{what}: more stages at once than this machine's {cpu_count()} cores "
                         f"share; at most {cpu_count()}")
    chosen = chosen or here
    try:
        return make_slots(chosen, launch.stage_gpus, parallel or launch.parallel_stages)
    except ValueError as exc:
        raise UsageError(f"devices: {exc}") from None
