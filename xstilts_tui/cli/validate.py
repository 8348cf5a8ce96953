"""``validate``: check recipes and report the first problem of each."""

from __future__ import annotations

import sys

from xstilts_tui.plan.stages import build_plan
from xstilts_tui.recipe.parse import load_recipe
from xstilts_tui.cli.options import add_set
from xstilts_tui.recipe.schema import RecipeError


def _unset_warnings(file: str, recipe) -> list[str]:
    from dataclasses import asdict

    from xstilts_tui.recipe.sections import unset_paths

    return [f"warning: {file}: tasks.{name}.{key}: ${variable} is unset; the stages that read it "
            "stop unless it is set when they run"
            for name, settings in recipe.tasks.items() for key, variable in unset_paths(asdict(settings))]


def cmd_validate(files: list[str], settings: tuple[str, ...] = ()) -> int:
    status = 0
    for file in files:
        try:
            recipe = load_recipe(file, settings)
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


def add_parser(sub) -> None:
    p = sub.add_parser("validate", help="check recipes and report the first problem of each")
    p.add_argument("files", nargs="+", metavar="FILE")
    add_set(p)
