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
