"""Writing a recipe file from the form without surprises: a symlinked recipe updates its
target, a read-only file is refused, the file's mode and line endings are kept, a file
changed on disk since it was opened is never silently replaced, and a failure is a line,
not a crash."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class SaveError(Exception):
    """Why a recipe was not saved (one line for a notification)."""


def read_recipe_text(path: Path) -> tuple[str, bool]:
    """A recipe's text (line endings as LF) and whether the file used CRLF."""
    raw = path.read_bytes()
    return raw.decode("utf-8").replace("\r\n", "\n"), b"\r\n" in raw


def changed_on_disk(path: Path, loaded: str) -> bool:
    """Whether the file now differs from the text the form was loaded from."""
    try:
        return read_recipe_text(path)[0] != loaded
    except (OSError, UnicodeDecodeError):
        return True


def write_recipe(path: Path, text: str, crlf: bool = False) -> Path:
    """Write ``text`` to the recipe at ``path`` (its target, for a symbolic link) through a
    temporary file renamed into place, with the old file's mode; returns the file written.
    SaveError for a read-only file or a folder that cannot be written."""
    target = Path(os.path.realpath(path))
    mode = None
    if target.exists():
        mode = stat.S_IMODE(target.stat().st_mode)
        if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            raise SaveError(f"{path} is read-only (mode {mode:o}); not saved (Save as writes a new file)")
    if crlf:
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise SaveError(f"could not save {path}: {exc.strerror or exc}") from None
    return target


NEW_RECIPE = """# A new recipe: every setting is in the README (Recipes) and recipes/demo.toml.
name = "{name}"
seeds = [1]
targets = ["xquad"]

[model]
hub = "FacebookAI/xlm-roberta-large"

[[arms]]
name = "baseline"
"""


def recipe_name(path: Path) -> str:
    """A recipe file's ``name`` (its stem where it names none or cannot be read)."""
    import tomllib

    try:
        name = tomllib.loads(path.read_text(encoding="utf-8")).get("name")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return path.stem
    return name if isinstance(name, str) and name else path.stem


# --- the form's saving flows (the Recipes view calls these) ---------------------------------


def write_from_form(view, path: Path, document) -> bool:
    try:
        written = write_recipe(path, document.dumps(), view.crlf)
    except SaveError as exc:
        view.notify(str(exc), severity="error", markup=False)
        return False
    view.notify(f"saved {path}" + (f" (its target {written})" if written != path.resolve() else ""),
                markup=False)
    return True


def name_problem(view, name: str) -> str:
    """What is wrong with a new recipe name ("" when nothing): judged by the names the
    listed recipes give themselves (their output folders), not their files' names."""
    from xstilts_tui.recipe.schema import NAME as _NAME

    assert view.recipe_path is not None
    if not _NAME.fullmatch(name):
        return "a name: letters, digits, '.', '_' and '-', starting with a letter or digit"
    if (view.recipe_path.parent / f"{name}.toml").exists():
        return f"{name}.toml already exists in {view.recipe_path.parent}; choose another name"
    if view.recipe and name == view.recipe.name:
        return f"the open recipe is called {name!r}: both would write to one output folder"
    listed = next((p for p in view.files if recipe_name(p) == name), None)
    if listed is not None:
        return f"{listed.name} is called {name!r}: both would write to one output folder"
    return ""


def save_as(view) -> None:
    from xstilts_tui.dashboard.dialogs import AskName

    recipe = view.validate()
    if recipe is None or view.recipe_path is None:
        view.notify("fix the recipe before saving", severity="error")
        return
    folder = view.recipe_path.parent
    suggestion, n = f"{recipe.name}-2", 2
    while view.name_problem(suggestion) and n < 1000:
        n += 1
        suggestion = f"{recipe.name}-{n}"

    async def save(name: str | None) -> None:
        if not name:
            return
        document = view.form_document()
        document.set("name", name)
        path = folder / f"{name}.toml"
        if view._write(path, document):
            await view.refresh_list(path)
            view.load(path)

    view.app.push_screen(AskName(f"Save as a new recipe in {folder}; its name (also its "
                                 "file's and its output folder's):", suggestion,
                                 view.name_problem), save)


def new_recipe(view) -> None:
    """Ask a name, write a small recipe of that name beside the open one, open it."""
    from xstilts_tui.dashboard.dialogs import AskName

    folder = view.recipe_path.parent if view.recipe_path else (view.recipes_dirs or [Path(".")])[0]

    async def create(name: str | None) -> None:
        if not name:
            return
        path = folder / f"{name}.toml"
        try:
            write_recipe(path, NEW_RECIPE.format(name=name))
        except SaveError as exc:
            view.notify(str(exc), severity="error", markup=False)
            return
        view.notify(f"created {path}", markup=False)
        await view.refresh_list(path)
        view.load(path)

    problem = (lambda name: view.name_problem(name)) if view.recipe_path else (lambda name: "")
    view.app.push_screen(AskName(f"A new recipe in {folder}; its name (also its file's and its "
                                 "output folder's):", "my-study", problem), create)


def overwrite(view) -> None:
    """Overwrite the open file with the form, asking first; a file changed on disk since it
    was opened is offered for reload instead, never silently replaced."""
    from xstilts_tui.dashboard.dialogs import Confirm

    if view.validate() is None or view.recipe_path is None:
        view.notify("fix the recipe before saving", severity="error")
        return
    path = view.recipe_path
    if changed_on_disk(path, view.text):
        def reload(yes: bool | None) -> None:
            if yes:
                view.load(path)
            else:
                view.notify(f"not saved: {path.name} changed on disk; Save as (ctrl+s) writes "
                            "the form to a new file", severity="warning", markup=False)

        view.app.push_screen(Confirm(f"{path.name} changed on disk since it was opened. Reload "
                                     "it? (the form's edits are dropped; no: nothing is saved)"),
                             reload)
        return

    def done(yes: bool | None) -> None:
        if yes and view._write(path, view.form_document()):
            view.load(path)

    view.app.push_screen(Confirm(f"Overwrite {path.name}? (its comments are kept)"), done)
