"""The command line: ``xstilts-tui --recipe FILE`` runs a recipe headless;
``validate``, ``plan`` and ``score`` check, explain and score without training."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .metrics import score_qa
from .plan import build_plan, describe
from .recipe import RecipeError, load_launch, load_recipe
from .squad_format import DataFileError, gold_answers, read_squad_json
from .tasks import EXTRACTIVE_QA, TASKS


class UsageError(Exception):
    """Bad input on the command line: one line, exit status 2."""


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
    parser.add_argument("--launch", metavar="FILE", help="a TOML file whose [launch] section "
                        "replaces the recipe's (how workers start: python, torchrun, deepspeed)")
    parser.add_argument("--recipes-dir", metavar="DIR", action="append", default=[],
                        help="dashboard: also list the recipes in this folder (repeatable)")
    parser.add_argument("--results", metavar="DIR",
                        help="dashboard: open the scores of a finished or interrupted run")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("validate", help="check recipes and report the first problem of each")
    p.add_argument("files", nargs="+", metavar="FILE")

    p = sub.add_parser("plan", help="print a recipe's stages, cache keys and commands; run nothing")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--output", metavar="DIR")
    p.add_argument("--cache", metavar="DIR")
    p.add_argument("--launch", metavar="FILE")

    p = sub.add_parser("score", help="score a predictions file against a task's gold file")
    p.add_argument("--task", required=True, help=f"one of: {', '.join(_qa_tasks())}")
    p.add_argument("--gold", required=True, metavar="FILE", help="the task's native gold file")
    p.add_argument("--pred", required=True, metavar="FILE",
                   help="JSON object {question id: answer text}")
    p.add_argument("--lang", help="language of the answers (needed for mlqa)")
    return parser


def _qa_tasks() -> list[str]:
    return sorted(name for name, spec in TASKS.items() if spec.kind == EXTRACTIVE_QA)


def cmd_validate(files: list[str]) -> int:
    status = 0
    for file in files:
        try:
            recipe = load_recipe(file)
        except RecipeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
            continue
        print(f"{file}: ok ({len(recipe.arms)} arms, {len(recipe.targets)} target tasks, "
              f"{len(recipe.seeds)} seeds)")
    return status


def cmd_plan(file: str, output: str | None, cache: str | None, launch: str | None = None) -> int:
    plan = build_plan(load_recipe(file), output and Path(output), cache and Path(cache),
                      load_launch(launch) if launch else None)
    print(describe(plan))
    return 0


def cmd_score(task: str, gold_path: str, pred_path: str, lang: str | None) -> int:
    if task not in TASKS or TASKS[task].kind != EXTRACTIVE_QA:
        raise UsageError(f"score: unknown task {task!r}; expected one of: {', '.join(_qa_tasks())}")
    spec = TASKS[task]
    if lang is not None and lang not in spec.languages:
        raise UsageError(f"score: {task} has no language {lang!r}; expected one of: "
                         f"{', '.join(spec.languages)}")
    if spec.metric == "mlqa" and lang is None:
        raise UsageError(f"score: {task} normalises answers per language; give --lang, one of: "
                         f"{', '.join(spec.languages)}")
    try:
        gold = gold_answers(read_squad_json(gold_path))
    except DataFileError as exc:
        raise UsageError(f"score: --gold {exc}") from None
    try:
        predictions = json.loads(Path(pred_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"score: --pred {pred_path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"score: --pred {pred_path}: not JSON ({exc})") from None
    if not isinstance(predictions, dict) or not all(isinstance(v, str) for v in predictions.values()):
        raise UsageError(f"score: --pred {pred_path}: expected a JSON object "
                         "{question id: answer text}")
    scores = score_qa(gold, predictions, spec.metric, lang)
    print(json.dumps({"task": task, "language": lang, "exact_match": scores["exact_match"],
                      "f1": scores["f1"], "questions": scores["count"],
                      "predicted": sum(1 for q in gold if q in predictions)}))
    return 0


def cmd_run(file: str, output: str | None, cache: str | None, launch: str | None = None) -> int:
    from .progress import make_display
    from .results import cost_table, summary_tables
    from .runner import Runner

    recipe = load_recipe(file)  # validated before anything is written
    plan = build_plan(recipe, output and Path(output), cache and Path(cache),
                      load_launch(launch) if launch else None)
    display = make_display()
    runner = Runner(plan, display)
    display.print(f"recipe {recipe.name}: {len(plan.stages)} stages, results in {plan.output_dir}")
    try:
        outcome = runner.run()
    except KeyboardInterrupt:
        print(f"\ninterrupted; what was scored is in {plan.output_dir}", file=sys.stderr)
        return 130
    languages = {t: list(recipe.tasks[t].languages) for t in recipe.targets}
    print()
    print(summary_tables(runner.store.results_frame(), [a.name for a in recipe.arms],
                         recipe.baseline.name, list(recipe.targets), languages))
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
            return cmd_plan(args.file, args.output, args.cache, args.launch)
        if args.command == "score":
            return cmd_score(args.task, args.gold, args.pred, args.lang)
        if args.recipe:
            return cmd_run(args.recipe, args.output, args.cache, args.launch)
        return cmd_dashboard(args.recipes_dir, args.results, args.output)
    except (RecipeError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_dashboard(recipes_dirs: list[str], results: str | None, output: str | None) -> int:
    from .app import SHIPPED_RECIPES, run_dashboard

    folders = [SHIPPED_RECIPES]
    for folder in recipes_dirs:
        if not Path(folder).is_dir():
            raise UsageError(f"--recipes-dir {folder}: no such folder")
        folders.append(Path(folder))
    if results is not None and not (Path(results) / "run.json").is_file():
        raise UsageError(f"--results {results}: no run.json there; expected the output folder "
                         "of an xstilts-tui run")
    return run_dashboard(folders, Path(results) if results else None,
                         Path(output) if output else None)


if __name__ == "__main__":
    sys.exit(main())
