"""What a stage folder vouches for, and who may write it (no torch here: the control
process and the workers share this module).

* ``DONE`` records the size, modification time and sha256 of the stage's event log and of
  every checkpoint file. A cached stage is used only when every recorded file is there at
  its size with its hash (a file whose size and modification time are unchanged is taken
  as verified; any other is hashed again).
* A resume state's ``resume.json`` (written last) records its files the same way; one
  function, ``usable_state``, decides for the control process and the worker alike
  which state a stage resumes from, and a state whose files do not verify is never
  loaded (DeepSpeed loads its own checkpoints with pickle: this is what keeps a planted
  file from running).
* ``stage_lock`` makes one process the writer of a stage folder at a time; the lock is
  the operating system's, so a killed holder's lock is free at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from xstilts_tui.protocol.provenance import file_sha256

DONE = "DONE"
STATE = "state"
RESUME_FILE = "resume.json"
LOCK = ".lock"
LAST_USED = "last-used"  # touched when a run replays the stage (``cache ls``)


def record(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns,
            "inode": stat.st_ino, "sha256": file_sha256(path)}


def records(folder: Path, base: Path, skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Every file under ``folder``, by its path relative to ``base``."""
    return {str(p.relative_to(base)): record(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in skip}


def _untouched(stat, want: dict[str, Any]) -> bool:
    """The file is the one recorded: same size, modification and change time, inode. A
    write that restores the modification time still moves the change time."""
    return (stat.st_mtime_ns == want.get("mtime_ns") and stat.st_ctime_ns == want.get("ctime_ns")
            and stat.st_ino == want.get("inode"))


def check(base: Path, files: dict[str, dict[str, Any]]) -> str | None:
    """Why the recorded files under ``base`` are not as recorded, or None. A file not
    provably untouched since it was recorded is hashed again."""
    for name, want in files.items():
        path = base / name
        try:
            stat = path.stat()
        except OSError:
            return f"{name} is missing"
        if stat.st_size != want["size"]:
            return f"{name} is {stat.st_size} bytes, {want['size']} were recorded"
        # file_sha256 remembers the hash per (path, size, times, inode): a moved cache is
        # read once, not at every look
        if not _untouched(stat, want) and file_sha256(path) != want["sha256"]:
            return f"{name} has changed (its sha256 differs from the recorded one)"
    return None


def recorded_predictions(stage_dir: Path) -> tuple[list[Path], str | None]:
    """The prediction files a stage's DONE marker vouches for, verified; or why none can
    be used (not done, a file missing or changed)."""
    try:
        done = json.loads((stage_dir / DONE).read_text(encoding="utf-8"))
        files = {k: v for k, v in done["files"].items() if k.startswith("predictions/")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return [], "its DONE marker is missing or damaged"
    problem = check(stage_dir, files)
    return ([], problem) if problem else ([stage_dir / name for name in sorted(files)], None)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# What a stage's spec says of where it came from, copied into its DONE marker.
PROVENANCE_FIELDS = ("identity", "provenance", "made_by")


def seal(stage_dir: Path, key: str, stage_id: str) -> None:
    """Mark a stage done, recording its event log and checkpoint files, and what made it
    (its spec's identity, key components and the version that ran it)."""
    files = {"events.jsonl": record(stage_dir / "events.jsonl")}
    for folder in ("checkpoint", "predictions"):
        if (stage_dir / folder).is_dir():
            files.update(records(stage_dir / folder, stage_dir))
    marker: dict[str, Any] = {"key": key, "id": stage_id, "files": files}
    try:
        spec = json.loads((stage_dir / "stage.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        spec = {}
    if isinstance(spec, dict) and spec.get("key") == key:
        marker.update({name: spec[name] for name in PROVENANCE_FIELDS if name in spec})
    _write_atomically(stage_dir / DONE, json.dumps(marker, indent=1))


def verify_done(stage_dir: Path) -> str | None:
    """None when the stage is done and everything its DONE records is intact; else why
    not ("not done" when there is no DONE)."""
    try:
        done = json.loads((stage_dir / DONE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "not done"
    except (OSError, ValueError):
        return "its DONE marker is damaged"
    if not isinstance(done, dict) or not isinstance(done.get("files"), dict):
        return "its DONE marker records no files (written by an older version)"
    if "events.jsonl" not in done["files"]:
        return "its DONE marker records no event log"
    return check(stage_dir, done["files"])


def discard(stage_dir: Path) -> None:
    """Remove what a stage that does not verify left (marker, events, checkpoint)."""
    import shutil

    (stage_dir / DONE).unlink(missing_ok=True)
    (stage_dir / "events.jsonl").unlink(missing_ok=True)
    for name in ("checkpoint", "checkpoint.tmp"):
        if (stage_dir / name).exists():
            shutil.rmtree(stage_dir / name, ignore_errors=True)


# --- resume states ----------------------------------------------------------------


def state_info(folder: Path) -> dict[str, Any] | None:
    """A resume state's recorded info when the state verifies, else None."""
    try:
        info = json.loads((folder / RESUME_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("files"), dict) \
            or not isinstance(info.get("events_offset"), int) or not isinstance(info.get("step"), int):
        return None
    return info if check(folder, info["files"]) is None else None


def usable_state(stage_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The resume state a stage continues from: ``state``, else ``state.old`` (a stop
    came between the two renames of a save), whichever verifies first; None for a fresh
    start."""
    for name in (STATE, STATE + ".old"):
        folder = stage_dir / name
        if (folder / RESUME_FILE).exists():
            info = state_info(folder)
            if info is not None:
                return folder, info
    return None


def unusable_states(stage_dir: Path) -> list[str]:
    """The names of states present that do not verify (for a warning)."""
    return [name for name in (STATE, STATE + ".old")
            if (stage_dir / name).exists() and state_info(stage_dir / name) is None]


# --- one writer per stage ------------------------------------------------------------


def stage_lock(stage_dir: Path):
    """The lock of a stage folder (``filelock``: an OS lock, freed when its holder dies)."""
    from filelock import FileLock

    stage_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(str(stage_dir / LOCK))


def lock_held(stage_dir: Path) -> bool:
    """Whether a process holds a stage folder's lock now (a run is writing the stage)."""
    if not (stage_dir / LOCK).exists():
        return False
    lock = stage_lock(stage_dir)
    try:
        lock.acquire(timeout=0)
    except TimeoutError:
        return True
    lock.release()
    return False
