"""The command line: ``xstilts-tui --recipe FILE`` runs a recipe headless;
``validate``, ``plan`` and ``score`` check, explain and score without training."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from xstilts_tui import __version__
from xstilts_tui.cli import cache as cache_command
from xstilts_tui.scoring import scorers as score_command
from xstilts_tui.errors import UsageError
from xstilts_tui.results.significance import RESAMPLES
from xstilts_tui.plan.show import describe, plan_data
from xstilts_tui.plan.stages import build_plan
from xstilts_tui.recipe.parse import load_recipe
from xstilts_tui.recipe.schema import RecipeError
from xstilts_tui.recipe.sections import load_launch
from xstilts_tui.tasks.registry import TASKS


class Terminated(Exception):
    """SIGTERM reached the headless run."""


def _seed_list(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers separated by commas, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed is repeated in {text!r}")
    return seeds


def _reuse_list(text: str) -> frozenset[str]:
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


def _tracker_list(text: str) -> tuple[str, ...]:
    from xstilts_tui.recipe.schema import TRACKERS

    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in TRACKERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown tracker {(unknown or [text])[0]!r}; expected "
                                         f"names from: {', '.join(TRACKERS)}")
    return tuple(dict.fromkeys(names))


def _with_overrides(recipe, seeds: tuple[int, ...] | None = None,
                    track: tuple[str, ...] | None = None):
    """The recipe with the command line's --seeds and --track in place of its own."""
    import dataclasses

    if seeds:
        recipe = dataclasses.replace(recipe, seeds=seeds)
    if track:
        recipe = dataclasses.replace(recipe, tracking=dataclasses.replace(recipe.tracking, use=track))
    return recipe


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xstilts-tui",
        description="Intermediate-task training and zero-shot cross-lingual evaluation "
                    "(X-STILTs). Run a recipe headless with --recipe, or use a command.")
    parser.add_argument("--version", action="version", version=f"xstilts-tui {__version__}")
    parser.add_argument("--recipe", metavar="FILE", help="run this recipe headless")
    parser.add_argument("--output", metavar="DIR", help="results folder (default: the recipe's "
                        "output_dir, else runs/<recipe name>)")
    parser.add_argument("--cache", metavar="DIR", help="stage cache folder (default: $XSTILTS_CACHE, "
                        "else stage-cache beside the output folder)")
    parser.add_argument("--seeds", metavar="LIST", type=_seed_list,
                        help="run these seeds instead of the recipe's, e.g. 1,2,3")
    parser.add_argument("--track", metavar="NAMES", type=_tracker_list,
                        help="report to these experiment trackers, e.g. mlflow,tensorboard "
                        "(mlflow, wandb, tensorboard; replaces [tracking] use)")
    parser.add_argument("--reuse", metavar="KINDS", type=_reuse_list, default=frozenset(),
                        help=REUSE_HELP)
    parser.add_argument("--strict-cache", action="store_true",
                        help="a cached stage whose files do not verify fails (default: it is "
                        "trained again)")
    parser.add_argument("--launch", metavar="FILE", help="a TOML file whose [launch] section "
                        "replaces the recipe's (how workers start: python, torchrun, deepspeed)")
    parser.add_argument("--devices", metavar="IDS",
                        help="GPUs to run stages side by side on, e.g. 0,1,2,3 (default: [launch] "
                        "devices, else the GPUs CUDA_VISIBLE_DEVICES or nvidia-smi shows)")
    parser.add_argument("--parallel", metavar="N", type=int,
                        help="without GPUs: run N stages at once, sharing the cores (default: "
                        "[launch] parallel_stages, else 1)")
    parser.add_argument("--executor", choices=("local", "slurm", "submitit-local"), default="local",
                        help="where stage workers run: child processes here (default), SLURM jobs "
                        "through submitit ([slurm] section; dependencies as afterok), or "
                        "submitit's local executor (the same path on this machine)")
    parser.add_argument("--recipes-dir", metavar="DIR", action="append", default=[],
                        help="dashboard: also list the recipes in this folder (repeatable)")
    parser.add_argument("--results", metavar="DIR",
                        help="dashboard: open a finished or interrupted run's folder, or list "
                             "the runs in a folder of runs")
    parser.add_argument("--edit", metavar="FILE",
                        help="dashboard: open this recipe in the form (its folder listed)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("validate", help="check recipes and report the first problem of each")
    p.add_argument("files", nargs="+", metavar="FILE")

    p = sub.add_parser("plan", help="print a recipe's stages, cache keys, commands and what "
                       "they will cost; train nothing")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--output", metavar="DIR")
    p.add_argument("--cache", metavar="DIR")
    p.add_argument("--launch", metavar="FILE")
    p.add_argument("--json", action="store_true", help="print the same as JSON")
    p.add_argument("--seeds", metavar="LIST", type=_seed_list,
                   help="plan these seeds instead of the recipe's, e.g. 1,2,3")
    p.add_argument("--devices", metavar="IDS", help="the makespan on these GPUs (e.g. 0,1,2,3)")
    p.add_argument("--parallel", metavar="N", type=int,
                   help="the makespan with N stages at once (no GPUs)")
    p.add_argument("--reuse", metavar="KINDS", type=_reuse_list, default=frozenset(), help=REUSE_HELP)
    p.add_argument("--write-specs", action="store_true", help="write each stage's stage.json into "
                   "the stage cache, so that the printed commands run by hand (else nothing is written)")

    p = sub.add_parser("data", help="the models and data a recipe reads from the hub: check, fetch")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    q = data_sub.add_parser("status", help="for every stage, each model and data split it needs, "
                            "its source, whether it is on this machine and its size (no network); "
                            "exit 0 when all are here, 1 otherwise")
    q.add_argument("file", metavar="RECIPE")
    q.add_argument("--json", action="store_true", help="print the same as JSON")
    q = data_sub.add_parser("fetch", help="download what the recipe needs (resumable, verified) "
                            "and print what to set so that an offline machine runs it")
    q.add_argument("file", metavar="RECIPE")
    q.add_argument("--to", metavar="DIR", help="put data in DIR/data and models in DIR/hub "
                   "(default: $XSTILTS_DATA_ROOT and the Hugging Face cache)")

    cache_command.add_parser(sub)

    r = sub.add_parser("report", help="tables (and plots) of finished runs: deltas with 95%% "
                       "intervals, the XTREME and cost tables")
    r.add_argument("runs", nargs="+", metavar="RUN", help="a run's output folder (several: side by side)")
    r.add_argument("--format", choices=("md", "latex", "csv", "html"), default="md")
    r.add_argument("--out", metavar="FILE", help="write the report here (default: print it)")
    r.add_argument("--plots", metavar="DIR", help="also write PNG and SVG plots into DIR")
    r.add_argument("--resamples", type=int, default=RESAMPLES, metavar="N",
                   help=f"bootstrap and permutation resamples (default {RESAMPLES}, as the run's own "
                        "table and the dashboard)")

    score_command.add_parser(sub)
    return parser


def _inputs(recipe, plan=None):
    """The plan, the recipe's hub inputs and whether each is on this machine."""
    from xstilts_tui.recipe.inputs import need_status, recipe_needs

    plan = plan or build_plan(recipe)
    needs = recipe_needs(plan)
    return plan, needs, [need_status(n) for n in needs]


def check_inputs(file: str, recipe, plan=None, fetch: bool = False) -> bool:
    """Refuse, in one line, a recipe whose hub models or data are missing while the hub
    cannot be used (HF_HUB_OFFLINE, or no answer to one short probe). With ``fetch``,
    fetch what is missing first (a stage's key holds the hashes of what it reads, so
    they are had before the stages are keyed); True when something was fetched."""
    from xstilts_tui.data.sources import data_root, hub_reachable
    from xstilts_tui.recipe.inputs import missing_line

    plan, needs, statuses = _inputs(recipe, plan)
    missing = [need for need, status in zip(needs, statuses) if not status["present"]]
    if not missing:
        return False
    if not hub_reachable():
        raise RecipeError(missing_line(file, statuses, needs))
    if not fetch:
        return False
    from xstilts_tui.data.sources import bound_hub_timeouts

    bound_hub_timeouts()
    print(f"fetching {len(missing)} input(s) of {file} that are not on this machine", file=sys.stderr)
    failed = _fetch_needs(missing, data_root(), None, out=sys.stderr)
    if failed:
        raise UsageError(f"{file}: {failed} input(s) could not be fetched (above); nothing was run")
    return True


def _fetch_needs(needs, root: Path, cache_dir: str | None, out=None) -> int:
    """Fetch each need not on this machine, a line each; how many failed."""
    from xstilts_tui.data.sources import DataSourceError, SourceUnavailable, fetch_first, fetch_model
    from xstilts_tui.recipe.inputs import need_status
    from xstilts_tui.data.download import DownloadError

    out = out or sys.stdout
    failed = 0
    for need in needs:
        status = need_status(need, root, cache_dir)
        if status["present"]:
            print(f"have    {need.label}: {status['source']} ({_size(status['bytes'])})", file=out)
            continue
        print(f"fetch   {need.label}", flush=True, file=out)
        try:
            if need.kind == "model":
                folder = fetch_model(*need.model, cache_dir=cache_dir)
                print(f"  done  {need.label}: {folder}", file=out)
            else:
                source, _ = fetch_first(need.sources, root)
                print(f"  done  {need.label}: {source.label}", file=out)
        except (DataSourceError, SourceUnavailable, DownloadError) as exc:
            failed += 1
            manual = TASKS[need.label.split()[0]].manual if need.kind == "data" else ""
            print(f"error: {need.label}: {exc}{'; ' + manual if manual else ''}", file=sys.stderr)
        except Exception as exc:  # the network, a proxy, a server's answer: one line, go on
            failed += 1
            text = (str(exc).strip().splitlines() or [""])[0][:160]
            print(f"error: {need.label}: {type(exc).__name__} {text}".rstrip(), file=sys.stderr)
    return failed


def _unset_warnings(file: str, recipe) -> list[str]:
    from dataclasses import asdict

    from xstilts_tui.recipe.sections import unset_paths

    return [f"warning: {file}: tasks.{name}.{key}: ${variable} is unset; the stages that read it "
            "stop unless it is set when they run"
            for name, settings in recipe.tasks.items() for key, variable in unset_paths(asdict(settings))]


def cmd_validate(files: list[str]) -> int:
    status = 0
    for file in files:
        try:
            recipe = load_recipe(file)
        except RecipeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
            continue
        # A recipe written here for a cluster is valid: inputs not on this machine are a
        # warning (--recipe refuses to start without them).
        from xstilts_tui.recipe.inputs import inputs_missing

        missing, line = inputs_missing(file, build_plan(recipe))
        if line:
            print(f"warning: {line}; `xstilts-tui data status {file}` lists them", file=sys.stderr)
        for line in _unset_warnings(file, recipe):
            print(line, file=sys.stderr)
        print(f"{file}: ok ({len(recipe.arms)} arms, {len(recipe.targets)} target tasks, "
              f"{len(recipe.seeds)} seeds)")
    return status


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return "-"


def cmd_data_status(file: str, as_json: bool) -> int:
    """Every input the recipe reads, from the hub and from local paths, and whether it is
    here: exit 0 means the recipe can run on this machine."""
    from xstilts_tui.data.sources import data_root
    from xstilts_tui.recipe.inputs import local_inputs

    recipe = load_recipe(file)
    _, needs, statuses = _inputs(recipe)
    statuses += local_inputs(recipe)
    missing = sum(not s["present"] for s in statuses)
    here = sum(s["bytes"] or 0 for s in statuses if s["present"])
    if as_json:
        print(json.dumps({"recipe": recipe.name, "data_root": str(data_root()),
                          "inputs": statuses, "missing": missing, "bytes_here": here}, indent=1))
        return 1 if missing else 0
    from xstilts_tui.results.store import text_table

    rows = [[s.get("state") or ("here" if s["present"] else "MISSING"), s["kind"], s["need"],
             _size(s["bytes"]), s["source"] if s["present"] or s["kind"] == "local"
             else "not fetched: " + s["source"], str(len(s["stages"])) if s["kind"] != "local" else "-"]
            for s in statuses]
    # the source column takes what 100 columns leave
    others = sum(max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in
                 enumerate(["state", "kind", "input", "size", "", "stages"]) if i != 4) + 2 * 5
    room = max(16, 100 - others)
    for row in rows:  # a path keeps its end, a hub source its start
        if len(row[4]) > room:
            row[4] = "..." + row[4][3 - room:] if row[1] == "local" else row[4][:room - 3] + "..."
    hub = len(statuses) - sum(1 for s in statuses if s["kind"] == "local")
    print(f"recipe {recipe.name}: {hub} inputs from the hub, {len(statuses) - hub} local; "
          f"{missing} missing, {_size(here)} here")
    print(f"data root: {data_root()}")
    if rows:
        print(text_table([["state", "kind", "input", "size", "source", "stages"]] + rows, left=3))
    if missing:
        print("missing: `xstilts-tui data fetch` gets the hub inputs (sizes known once listed);")
        print("set or copy the local paths named above")
    return 1 if missing else 0


def cmd_data_fetch(file: str, to: str | None) -> int:
    import os

    from xstilts_tui.data.sources import DATA_ROOT_ENV, bound_hub_timeouts, data_root, hub_offline, hub_problem
    from xstilts_tui.recipe.inputs import need_status

    recipe = load_recipe(file)
    if hub_offline():
        raise UsageError("data fetch: HF_HUB_OFFLINE is set; fetching needs the hub (unset it)")
    cache_dir = None
    if to:
        target = Path(to).resolve()
        if target.exists() and not target.is_dir():
            raise UsageError(f"data fetch: --to {to}: not a folder")
        _check_writable(target, "data fetch: --to")
        os.environ[DATA_ROOT_ENV] = str(target / "data")
        cache_dir = str(target / "hub")
    _, needs, _ = _inputs(recipe)
    root = data_root()
    if not all(need_status(n, root, cache_dir)["present"] for n in needs):  # else: no network
        problem = hub_problem()
        if problem is not None:
            print(f"error: data fetch: the hub at {problem}; check the network, a proxy or "
                  "HF_ENDPOINT, or fetch where the hub answers and copy the folder (--to)",
                  file=sys.stderr)
            return 1
        bound_hub_timeouts()
    failed = _fetch_needs(needs, root, cache_dir)
    settings = [f"{DATA_ROOT_ENV}={root}"] + ([f"HF_HUB_CACHE={cache_dir}"] if cache_dir else [])
    print("\nto run this recipe from this copy on a machine without network, set:")
    print("  export " + " ".join(settings + ["HF_HUB_OFFLINE=1"]))
    if failed:
        print(f"error: {failed} of {len(needs)} inputs could not be fetched", file=sys.stderr)
        return 1
    return 0


def _planned(recipe, output: str | None, cache: str | None, launch: str | None,
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
             write_specs: bool = False) -> int:
    plan, slots = _planned(_with_overrides(load_recipe(file), seeds), output, cache, launch, devices,
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


def _check_writable(folder: Path, what: str) -> None:
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


def cmd_run(file: str, output: str | None, cache: str | None, launch: str | None = None,
            strict_cache: bool = False, devices: str | None = None,
            parallel: int | None = None, executor: str = "local",
            seeds: tuple[int, ...] | None = None, track: tuple[str, ...] | None = None,
            reuse: frozenset[str] = frozenset()) -> int:
    from xstilts_tui.run.progress import make_display
    from xstilts_tui.results.store import cost_table, xtreme_table
    from xstilts_tui.results.summary import summary_tables, what_the_model_is
    from xstilts_tui.run.runner import Runner

    recipe = _with_overrides(load_recipe(file), seeds, track)  # validated before anything is written
    plan, slots = _planned(recipe, output, cache, launch, devices, parallel, reuse,
                           slurm=executor == "slurm")
    if check_inputs(file, recipe, plan, fetch=True):  # fetched: the keys take their hashes
        plan, slots = _planned(recipe, output, cache, launch, devices, parallel, reuse,
                               slurm=executor == "slurm")
    _check_writable(plan.cache_dir, "--cache" if cache else "the stage cache")
    _check_writable(plan.output_dir, "--output" if output else "output_dir")
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


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "validate":
            return cmd_validate(args.files)
        if args.command == "plan":
            return cmd_plan(args.file, args.output, args.cache, args.launch, args.json,
                            args.devices, args.parallel, args.seeds, args.reuse, args.write_specs)
        if args.command == "data":
            if args.data_command == "status":
                return cmd_data_status(args.file, args.json)
            return cmd_data_fetch(args.file, args.to)
        if args.command == "cache":
            return cache_command.run(args)
        if args.command == "score":
            return score_command.cmd_score(args.task, args.gold, args.pred, args.lang)
        if args.command == "report":
            return cmd_report(args.runs, args.format, args.out, args.plots, args.resamples)
        if args.recipe:
            return cmd_run(args.recipe, args.output, args.cache, args.launch, args.strict_cache,
                           args.devices, args.parallel, args.executor, args.seeds,
                           args.track, args.reuse)
        return cmd_dashboard(args.recipes_dir, args.results, args.output, args.edit, args.executor,
                             args.devices, args.parallel)
    except (RecipeError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader (head, less) went away: not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a full disk, a folder made read-only mid-run: one line, not a traceback
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}; what was finished is kept, run again to resume",
              file=sys.stderr)
        return 1


def _check_out(out: str) -> None:
    """``--out`` is a new path in a writable folder, or a regular file to replace; never a
    link, a folder, a FIFO or a device (replacing one would destroy what it is)."""
    import stat

    path = Path(out)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise UsageError(f"--out {out}: {exc.strerror or exc}") from None
    if mode is not None and not stat.S_ISREG(mode):
        kind = ("a symbolic link" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode)
                else "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "not a regular file")
        raise UsageError(f"--out {out}: {kind}; give a new file name or a regular file to replace")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"--out {out}: no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: the folder {folder} is not writable")


def cmd_report(runs: list[str], fmt: str, out: str | None, plots: str | None,
               resamples: int) -> int:
    from xstilts_tui.results.report import ReportError, add_significance, load_run, plot_deltas, plot_learning_curves, render

    if resamples < 100:
        raise UsageError(f"--resamples {resamples}: use at least 100")
    try:
        loaded = [load_run(Path(folder)) for folder in runs]
    except ReportError as exc:
        raise UsageError(f"report: {exc}") from None
    names = [r.name for r in loaded]
    if len(set(names)) != len(names):  # two runs of one recipe: told apart by their folders
        for run in loaded:
            run.name = f"{run.name} ({run.folder.name})"
    for run in loaded:
        add_significance(run, resamples)
    from xstilts_tui.results.report_provenance import completeness

    for run in loaded:
        for problem in ([completeness(run)] if completeness(run) else []) + run.problems:
            print(f"warning: {run.folder}: {problem}", file=sys.stderr)
    if out:
        _check_out(out)
    text = render(loaded, fmt)
    if out:
        path = Path(out)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        print(f"wrote {path}")
    else:
        sys.stdout.write(text)
    if plots:
        folder = Path(plots)
        folder.mkdir(parents=True, exist_ok=True)
        written = plot_deltas(loaded, folder)
        for run in loaded:
            written += plot_learning_curves(run, folder)
        print("plots: " + ", ".join(str(p) for p in written), file=sys.stderr if not out else sys.stdout)
    return 0


def cmd_dashboard(recipes_dirs: list[str], results: str | None, output: str | None,
                  edit: str | None = None, executor: str = "local", devices: str | None = None,
                  parallel: int | None = None) -> int:
    from xstilts_tui.dashboard import SHIPPED_RECIPES, run_dashboard

    folders = [SHIPPED_RECIPES]
    for folder in recipes_dirs:
        if not Path(folder).is_dir():
            raise UsageError(f"--recipes-dir {folder}: no such folder")
        folders.append(Path(folder))
    if results is not None:
        where = Path(results)
        if not (where / "run.json").is_file() and not any(where.glob("*/run.json")):
            raise UsageError(f"--results {results}: no run.json there or in its folders; expected "
                             "the output folder of an xstilts-tui run, or the folder of runs")
    edit_path = None
    if edit is not None:
        edit_path = Path(edit)
        if not edit_path.is_file():
            raise UsageError(f"--edit {edit}: no such recipe file")
        load_recipe_text_check(edit_path)
    if devices is not None or (parallel is not None and parallel < 1):
        from xstilts_tui.recipe.schema import Launch

        run_slots(Launch(), devices, parallel)  # the same checks as a headless run
    return run_dashboard(folders, Path(results) if results else None,
                         Path(output) if output else None, edit_path,
                         {"executor": executor, "devices": devices, "parallel": parallel})


def load_recipe_text_check(path: Path) -> None:
    """A file --edit can open: TOML text (a recipe with problems opens, to be fixed there)."""
    import tomllib

    try:
        tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"--edit {path}: not a TOML recipe ({exc})") from None


if __name__ == "__main__":
    sys.exit(main())
