"""``xstilts-tui cache``: what the stage cache holds, who uses it, and pruning it.

* ``ls``: each stage folder: key, state (done, damaged, unfinished, running), size, last
  used, the version that made it, and the recipes and runs (under the roots) that use it;
  then the feature files.
* ``du``: totals by state and by recipe (a stage shared by two recipes counts in both).
* ``gc``: removes what the given rules select: ``--unused`` (no run under the roots uses
  it), ``--older-than DAYS`` (not used for that long), ``--other-code`` (made by other
  code than this checkout's: stages whose code hash differs, feature files of other
  feature code); ``--dry-run`` lists and frees nothing. A stage whose lock is held (a run
  is writing it) is never touched.

A run "uses" a stage when its output folder's manifest (``run.json``, rewritten by each
run) lists the stage's folder; the roots are searched two levels deep for manifests.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xstilts_tui.errors import UsageError
from xstilts_tui.protocol.stage_cache import LAST_USED, LOCK, lock_held, stage_lock, verify_done
from xstilts_tui.plan.index import read_entry

NOT_STAGES = ("features", "jobs")  # folders of the cache that hold no stage


@dataclass
class CachedStage:
    path: Path
    key: str
    stage_id: str
    state: str  # done | damaged | unfinished | running
    bytes: int
    last_used: float
    version: str
    code: dict[str, Any]
    users: list[str] = field(default_factory=list)  # "recipe (run folder)"


def _bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _last_used(path: Path) -> float:
    times = [p.stat().st_mtime for p in (path / LAST_USED, path / "DONE", path / "events.jsonl",
                                         path / "stage.json") if p.exists()]
    return max(times, default=path.stat().st_mtime)


def users(roots: list[Path]) -> dict[str, list[str]]:
    """{stage folder: ["recipe (run folder)", ...]} from the run manifests under the roots."""
    found: dict[str, list[str]] = {}
    manifests: set[Path] = set()
    for root in roots:
        for pattern in ("run.json", "*/run.json", "*/*/run.json"):
            manifests.update(p.resolve() for p in Path(root).glob(pattern))
    for manifest in sorted(manifests):
        try:
            run = json.loads(manifest.read_text(encoding="utf-8"))
            name = run.get("recipe", {}).get("name") or manifest.parent.name
            for stage in run.get("stages", []):
                found.setdefault(str(Path(stage["dir"]).resolve()), []).append(
                    f"{name} ({manifest.parent})")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return found


def scan(cache_dir: Path, roots: list[Path]) -> list[CachedStage]:
    """Every stage folder of the cache, with its state, size and users."""
    used = users(roots)
    out = []
    if not cache_dir.is_dir():
        return out
    for folder in sorted(p for p in cache_dir.iterdir() if p.is_dir() and p.name not in NOT_STAGES):
        entry = read_entry(folder)
        if lock_held(folder):
            state = "running"
        elif entry is not None and entry.done:
            state = "done" if verify_done(folder) is None else "damaged"
        else:
            state = "unfinished"
        out.append(CachedStage(
            folder, entry.key if entry else "", entry.stage_id if entry else folder.name, state,
            _bytes(folder), _last_used(folder),
            (entry.made_by.get("version") if entry else None) or "?",
            (entry.provenance.get("code") if entry else None) or {},
            used.get(str(folder.resolve()), [])))
    return out


def feature_files(cache_dir: Path) -> list[Path]:
    folder = cache_dir / "features"
    return sorted(folder.glob("*.arrow")) if folder.is_dir() else []


def size_text(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def cmd_ls(cache_dir: Path, roots: list[Path], as_json: bool) -> int:
    stages = scan(cache_dir, roots)
    if as_json:
        print(json.dumps([{"dir": str(s.path), "key": s.key, "id": s.stage_id, "state": s.state,
                           "bytes": s.bytes, "last_used": s.last_used, "version": s.version,
                           "users": s.users} for s in stages], indent=2))
        return 0
    print(f"stage cache {cache_dir}: {len(stages)} stage(s), {size_text(sum(s.bytes for s in stages))}")
    for s in stages:
        who = "; ".join(s.users) if s.users else "no run under the roots"
        print(f"{s.key[:12] or '-':12}  {s.state:10}  {size_text(s.bytes):>10}  used {_when(s.last_used)}  "
              f"{s.stage_id}  made by {s.version}  used by {who}")
    files = feature_files(cache_dir)
    if files:
        print(f"features: {len(files)} file(s), {size_text(sum(_bytes(f) for f in files))}")
        for f in files:
            print(f"  {f.name}  {size_text(_bytes(f))}  used {_when(f.stat().st_mtime)}")
    return 0


def cmd_du(cache_dir: Path, roots: list[Path]) -> int:
    stages = scan(cache_dir, roots)
    by_state: dict[str, list[int]] = {}
    by_recipe: dict[str, list[int]] = {}
    for s in stages:
        by_state.setdefault(s.state, []).append(s.bytes)
        for recipe in {u.split(" (")[0] for u in s.users} or {"(no run)"}:
            by_recipe.setdefault(recipe, []).append(s.bytes)
    files = feature_files(cache_dir)
    total = sum(s.bytes for s in stages) + sum(_bytes(f) for f in files)
    print(f"stage cache {cache_dir}: {size_text(total)} in all")
    for title, groups in (("by state", by_state), ("by recipe", by_recipe)):
        print(title + ":")
        for name, sizes in sorted(groups.items()):
            print(f"  {name:24} {len(sizes):5} stage(s)  {size_text(sum(sizes)):>10}")
    print(f"features: {len(files)} file(s)  {size_text(sum(_bytes(f) for f in files))}")
    return 0


def _remove_stage(path: Path) -> bool:
    """Remove a stage folder under its lock; False when a run holds the lock."""
    lock = stage_lock(path)
    try:
        lock.acquire(timeout=0)
    except TimeoutError:
        return False
    try:
        for child in path.iterdir():
            if child.name == LOCK:
                continue
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    finally:
        lock.release()
    shutil.rmtree(path, ignore_errors=True)
    return True


def _selected(stage: CachedStage, unused: bool, cutoff: float | None,
              code: dict[str, str] | None) -> list[str]:
    why = []
    if unused and not stage.users:
        why.append("no run uses it")
    if cutoff is not None and stage.last_used < cutoff:
        why.append(f"last used {_when(stage.last_used)}")
    if code is not None and stage.code != code:
        why.append(f"other code ({stage.version})")
    return why


def cmd_gc(cache_dir: Path, roots: list[Path], unused: bool, older_than: float | None,
           other_code: bool, dry_run: bool) -> int:
    from xstilts_tui.protocol.provenance import code_fingerprint, feature_code_hash

    cutoff = time.time() - older_than * 86400 if older_than is not None else None
    code = code_fingerprint() if other_code else None
    freed, kept_running, removed = 0, 0, 0
    verb = "would remove" if dry_run else "removed"
    for stage in scan(cache_dir, roots):
        why = _selected(stage, unused, cutoff, code)
        if not why:
            continue
        if stage.state == "running":
            kept_running += 1
            print(f"kept {stage.stage_id} ({stage.key[:12]}): a run is writing it")
            continue
        if not dry_run and not _remove_stage(stage.path):
            kept_running += 1
            print(f"kept {stage.stage_id} ({stage.key[:12]}): a run is writing it")
            continue
        removed += 1
        freed += stage.bytes
        print(f"{verb} {stage.stage_id} ({stage.key[:12]}, {size_text(stage.bytes)}): {'; '.join(why)}")
    features_code = feature_code_hash() if other_code else None
    for path in feature_files(cache_dir):
        parts = path.stem.split("-")
        why = []
        if cutoff is not None and path.stat().st_mtime < cutoff:
            why.append(f"last used {_when(path.stat().st_mtime)}")
        if features_code is not None and (len(parts) < 3 or parts[1] != features_code):
            why.append("other feature code")
        if not why:
            continue
        size = _bytes(path)
        if not dry_run:
            path.unlink(missing_ok=True)
        removed += 1
        freed += size
        print(f"{verb} features {path.name} ({size_text(size)}): {'; '.join(why)}")
    print(f"{'would free' if dry_run else 'freed'} {size_text(freed)} in {removed} item(s)"
          + (f"; {kept_running} kept because a run is writing them" if kept_running else ""))
    return 0


ACTIONS = (("ls", "each stage: key, state, size, last use, the version that made it and the "
                  "recipes and runs using it; then the feature files"),
           ("du", "totals by state and by recipe"),
           ("gc", "remove stages and feature files chosen by --unused, --older-than and "
                  "--other-code (any of them); never one a run is writing"))


def add_parser(sub) -> None:
    """The ``cache`` command and its actions, on the command line's subparsers."""
    c = sub.add_parser("cache", help="what the stage cache holds (ls, du) and pruning it (gc)")
    actions = c.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    for name, text in ACTIONS:
        q = actions.add_parser(name, help=text)
        q.add_argument("--cache", metavar="DIR", help="the stage cache (default: $XSTILTS_CACHE, "
                       "else runs/stage-cache)")
        q.add_argument("--roots", metavar="DIR", action="append", default=[],
                       help="where runs' output folders are looked for (repeatable; default: the "
                            "folder holding the cache)")
        if name == "ls":
            q.add_argument("--json", action="store_true", help="print the same as JSON")
        if name == "gc":
            q.add_argument("--unused", action="store_true", help="stages no run under the roots uses")
            q.add_argument("--older-than", metavar="DAYS", type=float,
                           help="stages and feature files not used for DAYS days")
            q.add_argument("--other-code", action="store_true",
                           help="stages and feature files made by other code than this checkout's")
            q.add_argument("--dry-run", action="store_true", help="list what would go; remove nothing")


def run(args) -> int:
    from xstilts_tui.plan.stages import CACHE_ENV

    cache_dir = Path(args.cache or os.environ.get(CACHE_ENV) or Path("runs") / "stage-cache").resolve()
    if not cache_dir.is_dir():
        raise UsageError(f"no stage cache at {cache_dir} (give --cache DIR)")
    roots = [Path(r).resolve() for r in args.roots] or [cache_dir.parent]
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        raise UsageError(f"--roots {missing[0]}: no such folder")
    if args.cache_command == "ls":
        return cmd_ls(cache_dir, roots, args.json)
    if args.cache_command == "du":
        return cmd_du(cache_dir, roots)
    if not (args.unused or args.older_than is not None or args.other_code):
        raise UsageError("cache gc: choose what goes: --unused, --older-than DAYS and/or --other-code")
    if args.older_than is not None and args.older_than < 0:
        raise UsageError(f"--older-than {args.older_than:g}: expected 0 or more days")
    return cmd_gc(cache_dir, roots, args.unused, args.older_than, args.other_code, args.dry_run)
