"""The default command: the terminal dashboard."""

from __future__ import annotations

from pathlib import Path

from xstilts_tui.errors import UsageError
from xstilts_tui.cli.options import run_slots


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
