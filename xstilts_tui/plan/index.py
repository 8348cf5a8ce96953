"""The stage cache as a whole: what it holds, why a stage runs again, and what may go.

Every finished stage's ``DONE`` marker records the stage's identity (its recipe spec,
parents by id) and its key's components (``provenance``). A stage that will run is
matched by identity with the last finished one in the cache; the differences of their
components say why it runs again: new; code changed (which files); libraries changed
(``transformers 5.24.0 -> 5.25.0``); weights changed; data changed (which input);
precision, device or threads changed; an input stage changed. The same match lets a
finished stage be kept across a change the user judges harmless (``--reuse code``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xstilts_tui.protocol.stage_cache import DONE, verify_done

REUSABLE = ("code", "libraries")  # the kinds of change --reuse may keep stages across


@dataclass
class Entry:
    """One stage folder of the cache."""

    path: Path
    key: str
    stage_id: str
    identity: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    made_by: dict[str, Any] = field(default_factory=dict)
    done: bool = False
    finished_at: float = 0.0


def read_entry(folder: Path) -> Entry | None:
    """A stage folder's entry: from its DONE marker when finished, else from its spec."""
    done = folder / DONE
    try:
        data = json.loads(done.read_text(encoding="utf-8"))
        finished = done.stat().st_mtime
        is_done = True
    except (OSError, ValueError):
        try:
            data = json.loads((folder / "stage.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        finished, is_done = 0.0, False
    if not isinstance(data, dict):
        return None
    return Entry(folder, str(data.get("key", "")), str(data.get("id", "")),
                 str(data.get("identity") or ""), data.get("provenance") or {},
                 data.get("made_by") or {}, is_done, finished)


class CacheIndex:
    """The finished stages of a cache folder, by identity (read once)."""

    def __init__(self, cache_dir: Path):
        self.cache_dir = Path(cache_dir)
        self.by_identity: dict[str, list[Entry]] = {}
        if self.cache_dir.is_dir():
            for folder in sorted(self.cache_dir.iterdir()):
                entry = read_entry(folder) if folder.is_dir() else None
                if entry is not None and entry.done and entry.identity:
                    self.by_identity.setdefault(entry.identity, []).append(entry)
        for entries in self.by_identity.values():
            entries.sort(key=lambda e: e.finished_at, reverse=True)

    def previous(self, identity: str, key: str) -> Entry | None:
        """The last finished stage of this identity under another key."""
        return next((e for e in self.by_identity.get(identity, []) if e.key != key), None)


def _changed(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    return [name for name in sorted(set(new) | set(old)) if new.get(name) != old.get(name)]


def _few(names: list[str], limit: int = 2) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", +{len(names) - limit} more" if len(names) > limit else "")


def differences(new: dict[str, Any], old: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, words) for each component in which two stages' keys differ."""
    out: list[tuple[str, str]] = []
    files = _changed(new.get("code", {}), old.get("code", {}))
    if files:
        out.append(("code", f"code changed ({_few(files)})"))
    libs = new.get("libraries", {}), old.get("libraries", {})
    changed = _changed(*libs)
    if changed:
        out.append(("libraries", "libraries changed (" + _few(
            [f"{n} {libs[1].get(n) or 'none'} -> {libs[0].get(n) or 'none'}" for n in changed]) + ")"))
    if new.get("weights") != old.get("weights"):
        out.append(("weights", "weights changed"))
    data_new, data_old = new.get("data", {}), old.get("data", {})
    inputs = []
    for task in _changed(data_new, data_old):
        a, b = data_new.get(task), data_old.get(task)
        inner = _changed(a, b) if isinstance(a, dict) and isinstance(b, dict) else []
        inputs += inner or [task]
    if inputs:
        out.append(("data", f"data changed ({_few(inputs)})"))
    run_new, run_old = new.get("runtime", {}), old.get("runtime", {})
    for name in _changed(run_new, run_old):
        if name == "threads" and run_new.get("device") != run_old.get("device"):
            continue  # a GPU stage has no thread count: the device says it
        out.append((name, f"{name} changed ({run_old.get(name)} -> {run_new.get(name)})"))
    parents = _changed(new.get("parents", {}), old.get("parents", {}))
    if parents:
        out.append(("parents", f"input stage changed ({_few(parents)})"))
    return out


def why(index: CacheIndex, identity: str, key: str, provenance: dict[str, Any]) -> str:
    """Why a stage that is not finished under its key runs: what differs from the last
    finished stage of the same identity, or "new"."""
    previous = index.previous(identity, key)
    if previous is None:
        return "new"
    found = differences(provenance, previous.provenance)
    return "; ".join(words for _, words in found) or "new"


def reusable(index: CacheIndex, stage, allowed: frozenset[str]) -> tuple[str, dict[str, Any]] | None:
    """(key, note) of a finished stage the given stage may use instead of running: same
    identity, differing only in the allowed kinds of change, intact."""
    if verify_done(stage.dir(index.cache_dir)) is None:
        return None  # finished under its own key: nothing to reuse
    for entry in index.by_identity.get(stage.identity, []):
        found = differences(stage.provenance, entry.provenance)
        if not found or not {kind for kind, _ in found} <= allowed:
            continue
        if verify_done(entry.path) is not None:
            continue
        made = entry.made_by.get("version") or "an earlier version"
        return entry.key, {"from": made, "key": entry.key,
                           "differs": [words for _, words in found]}
    return None
