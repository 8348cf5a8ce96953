"""The command line: ``xstilts-tui --recipe FILE`` runs a recipe headless;
``validate``, ``plan`` and ``score`` check, explain and score without training."""

from __future__ import annotations

import argparse
import sys

from xstilts_tui import __version__
from xstilts_tui.cli import cache as cache_command
from xstilts_tui.cli import data as data_command
from xstilts_tui.cli import plan as plan_command
from xstilts_tui.cli import report as report_command
from xstilts_tui.cli import validate as validate_command
from xstilts_tui.cli import score as score_command
from xstilts_tui.errors import UsageError
from xstilts_tui.recipe.schema import RecipeError
from xstilts_tui.cli.dashboard import cmd_dashboard
from xstilts_tui.cli.data import cmd_data_fetch, cmd_data_status
from xstilts_tui.cli.options import REUSE_HELP, add_set, reuse_list, seed_list, tracker_list
from xstilts_tui.cli.plan import cmd_plan
from xstilts_tui.cli.report import cmd_report
from xstilts_tui.cli.run import cmd_run
from xstilts_tui.cli.validate import cmd_validate


def _parser() -> argparse.ArgumentParser:
    """The command line: the headless run's and the dashboard's options, then a
    subcommand per module."""
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
    parser.add_argument("--seeds", metavar="LIST", type=seed_list,
                        help="run these seeds instead of the recipe's, e.g. 1,2,3")
    parser.add_argument("--track", metavar="NAMES", type=tracker_list,
                        help="report to these experiment trackers, e.g. mlflow,tensorboard "
                        "(mlflow, wandb, tensorboard; replaces [tracking] use)")
    parser.add_argument("--reuse", metavar="KINDS", type=reuse_list, default=frozenset(),
                        help=REUSE_HELP)
    add_set(parser)
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
    for command in (validate_command, plan_command, data_command, cache_command, report_command,
                    score_command):
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "validate":
            return cmd_validate(args.files, tuple(args.set))
        if args.command == "plan":
            return cmd_plan(args.file, args.output, args.cache, args.launch, args.json,
                            args.devices, args.parallel, args.seeds, args.reuse, args.write_specs,
                            tuple(args.set))
        if args.command == "data":
            if args.data_command == "status":
                return cmd_data_status(args.file, args.json, tuple(args.set))
            return cmd_data_fetch(args.file, args.to, tuple(args.set))
        if args.command == "cache":
            return cache_command.run(args)
        if args.command == "score":
            return score_command.cmd_score(args.task, args.gold, args.pred, args.lang)
        if args.command == "report":
            return cmd_report(args.runs, args.format, args.out, args.plots, args.resamples)
        if args.recipe:
            return cmd_run(args.recipe, args.output, args.cache, args.launch, args.strict_cache,
                           args.devices, args.parallel, args.executor, args.seeds,
                           args.track, args.reuse, tuple(args.set))
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


if __name__ == "__main__":
    sys.exit(main())
