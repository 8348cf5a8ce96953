"""What made a number: the code, libraries, weights, data and runtime behind a stage
(control plane: no torch here; the workers import it too, to check what they run).

A stage's cache key covers its recipe spec and these *components*:

* ``code``: the sha256 of every source file the worker can import (found by reading the
  imports of ``xstilts_tui.compute.worker``, inside functions too, over the project's own
  packages) and the package data it reads, read from the files themselves, so that an
  edited checkout counts;
* ``libraries``: the versions of the libraries that change numbers (the backend's and
  the task's own too: peft, deepspeed, seqeval);
* ``weights``: a hub model's resolved commit, a local folder's file hashes;
* ``data``: every input the stage reads: a local file's sha256, a fetched hub source's
  file list with its hashes; a path under an unset variable, or a source not fetched
  yet, is keyed by its name (both found by ``input_identity``);
* ``runtime``: the resolved precision, the device kind and, on a CPU, the thread count
  (numbers differ with the number of threads that sum them).

File hashes are remembered per (path, size, modification time; inode and change time
too) in a small SQLite file
(``$XSTILTS_HASH_CACHE``, default ``~/.cache/xstilts-tui/file-hashes.sqlite``), so that
a large file is read once.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata as md
import json
import os
import platform
import sqlite3
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from xstilts_tui import __version__

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Where each package of the project lives in the checkout: the compute plane installs as
# xstilts_tui.compute from the folder backends/.
PACKAGES = {"xstilts_tui.compute": "backends", "xstilts_tui": "xstilts_tui"}
ENTRY = "xstilts_tui.compute.worker"
# Package data the compute plane reads: DeepSpeed presets, the authors' files' checksums.
DATA_GLOBS = ("xstilts_tui/protocol/deepspeed_presets/*.json", "xstilts_tui/data/checksums/*.sha256")
HASH_CACHE_ENV = "XSTILTS_HASH_CACHE"
# The libraries whose versions change a stage's numbers, for every stage; a backend or a
# task kind adds its own.
LIBRARIES = ("torch", "transformers", "tokenizers", "datasets", "safetensors", "numpy")
BACKEND_LIBRARIES = {"peft": ("peft",), "deepspeed": ("deepspeed",)}
KIND_LIBRARIES = {"token_tagging": ("seqeval",)}


# --- file hashes, remembered ------------------------------------------------------------


def _hash_db() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xstilts-tui"
    return Path(os.environ.get(HASH_CACHE_ENV) or default / "file-hashes.sqlite").expanduser()


HASHED: list[str] = []  # the files this process read to hash (tests count them)


def _read_hash(path: Path) -> str:
    HASHED.append(str(path))
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path | str) -> str:
    """The sha256 of a file, read once per (path, size, modification time). The inode and
    the change time are remembered too: a write that restores the modification time
    (``touch -d``, ``cp -p``) still changes those, so it is read again."""
    path = Path(path).resolve()
    stat = path.stat()
    row = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    if row in _KNOWN:  # this process looked already: no database round trip
        return _KNOWN[row]
    _KNOWN[row] = _remembered_sha256(path, row)
    return _KNOWN[row]


_KNOWN: dict[tuple, str] = {}


def _remembered_sha256(path: Path, row: tuple) -> str:
    db = None
    try:
        _hash_db().parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(_hash_db(), timeout=10)
        db.execute("create table if not exists file_hashes (path text primary key, size integer, "
                   "mtime_ns integer, ctime_ns integer, inode integer, sha256 text)")
        found = db.execute("select sha256 from file_hashes where path = ? and size = ? and "
                           "mtime_ns = ? and ctime_ns = ? and inode = ?", row).fetchone()
        if found:
            db.close()
            return found[0]
    except sqlite3.Error:
        if db is not None:
            db.close()
        db = None  # an unwritable cache folder: hash every time
    digest = _read_hash(path)
    if db is not None:
        try:
            with db:
                db.execute("insert or replace into file_hashes values (?, ?, ?, ?, ?, ?)", (*row, digest))
        except sqlite3.Error:
            pass
        finally:
            db.close()
    return digest


def folder_hashes(folder: Path | str) -> dict[str, str]:
    """{relative path: sha256} of every file under a folder (hidden ones skipped)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# --- code ---------------------------------------------------------------------------------


def _module_file(name: str) -> Path | None:
    package = next((p for p in PACKAGES if name == p or name.startswith(p + ".")), None)
    if package is None:
        return None
    base = PROJECT_ROOT.joinpath(PACKAGES[package], *name[len(package):].split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(name: str, path: Path) -> set[str]:
    """The project modules one module imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    out = set()
    for module in found:
        parts = module.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in out if _module_file(m) is not None}


def code_modules(entry: str = ENTRY) -> list[Path]:
    """Every project source file the entry point can import, itself included."""
    seen: dict[str, Path] = {}
    todo = [entry]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or path is None:
            continue
        seen[name] = path
        todo.extend(_imported(name, path) - set(seen))
    return sorted(set(seen.values()))


def code_fingerprint() -> dict[str, str]:
    """{file relative to the project: sha256} of the code and data the worker runs."""
    files = code_modules()
    for pattern in DATA_GLOBS:
        files += sorted(PROJECT_ROOT.glob(pattern))
    return {str(p.relative_to(PROJECT_ROOT)): file_sha256(p)[:16] for p in files}


FEATURE_CODE = "xstilts_tui.compute.kinds.registry"  # what builds features: its sources and these libraries
FEATURE_LIBRARIES = ("tokenizers", "transformers", "pyarrow", "numpy")


@functools.cache
def feature_code_hash() -> str:
    """The hash of the code and libraries that build features (in a feature file's name)."""
    files = {str(p.relative_to(PROJECT_ROOT)): file_sha256(p) for p in code_modules(FEATURE_CODE)}
    return digest([files, {n: version_of(n) for n in FEATURE_LIBRARIES}])[:12]


# --- libraries, hardware, the checkout --------------------------------------------------


def version_of(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def library_versions(backend_kind: str = "torch", task_kinds: tuple[str, ...] = ()) -> dict[str, str | None]:
    names = list(LIBRARIES) + list(BACKEND_LIBRARIES.get(backend_kind, ()))
    for kind in task_kinds:
        names += [n for n in KIND_LIBRARIES.get(kind, ()) if n not in names]
    return {name: version_of(name) for name in names}


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def git_state() -> dict[str, Any] | None:
    """The checkout's commit and whether it has uncommitted changes, or None when the
    project does not run from a git checkout."""
    if not (PROJECT_ROOT / ".git").exists():
        return None
    try:
        run = functools.partial(subprocess.run, cwd=PROJECT_ROOT, capture_output=True, text=True,
                                timeout=10, check=True)
        commit = run(["git", "rev-parse", "HEAD"]).stdout.strip()
        dirty = bool(run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def code_version() -> str:
    """``0.1.0`` and, in a git checkout, ``+abc1234`` (``-dirty`` with uncommitted changes)."""
    git = git_state()
    if git is None:
        return __version__
    return f"{__version__}+{git['commit'][:7]}{'-dirty' if git['dirty'] else ''}"


# --- the runtime a stage will have ---------------------------------------------------------


@dataclass(frozen=True)
class Runtime:
    """Where the stages of a run will compute: the device kind, the GPUs (names, where
    known) and, on a CPU, the thread count each stage's worker gets."""

    device: str = "cpu"  # cpu | cuda
    threads: int | None = None  # a CPU worker's threads
    gpu: str = ""  # the GPU's name, where known
    bf16: bool = True  # a GPU with bf16 (auto resolves to bf16 there)

    def precision(self, requested: str) -> str:
        """The precision a stage asking for ``requested`` will compute in."""
        if requested != "auto":
            return requested
        return "bf16" if self.device == "cuda" and self.bf16 else "fp32"

    def of_stage(self, requested: str) -> dict[str, Any]:
        out: dict[str, Any] = {"device": self.device, "precision": self.precision(requested)}
        if self.device == "cpu":
            out["threads"] = self.threads
        return out

    def hardware(self) -> str:
        return self.gpu or cpu_model()


def _gpu_facts(indices: list[str]) -> tuple[str, bool]:
    """The name of the first given GPU and whether it has bf16 (compute capability 8+),
    from nvidia-smi; ("", True) where it cannot tell."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name,compute_cap",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "", True
    for line in out.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 3 and (not indices or fields[0] in indices):
            try:
                return fields[1], float(fields[2]) >= 8.0
            except ValueError:
                return fields[1], True
    return "", True


def runtime_of_slots(slots) -> Runtime:
    """The runtime of a run's slots (``slots.Slot``): GPUs where a slot names them, a
    cluster's GPUs for SLURM jobs, else the CPU with the slot's thread count (the
    environment's ``OMP_NUM_THREADS``, else every core this process may use)."""
    from xstilts_tui.protocol.slots import THREAD_VARIABLES, cpu_count

    slot = slots[0]
    if slot.name == "slurm":
        return Runtime(device="cuda")
    gpus = slot.env.get("CUDA_VISIBLE_DEVICES")
    if gpus:
        name, bf16 = _gpu_facts(gpus.split(","))
        count = len(gpus.split(","))
        return Runtime(device="cuda", gpu=f"{count} x {name}" if name else f"{count} GPU(s)", bf16=bf16)
    threads = slot.env.get(THREAD_VARIABLES[0]) or os.environ.get(THREAD_VARIABLES[0], "")
    return Runtime(device="cpu", threads=int(threads) if threads.strip().isdigit() else cpu_count())


def default_runtime() -> Runtime:
    """The runtime of one stage at a time on this machine."""
    from xstilts_tui.protocol.slots import make_slots

    return runtime_of_slots(make_slots(None, 1, 1))


def runtime_as_dict(runtime: Runtime) -> dict[str, Any]:
    """The runtime for people and manifests: a CPU's without the GPU fields."""
    out = asdict(runtime)
    if runtime.device == "cpu":
        out.pop("gpu")
        out.pop("bf16")
    return out


# --- what a result row says of what made it ---------------------------------------------------


def _short(identity: dict[str, Any]) -> str:
    """An input's identity in a few characters: its hash, or why it has none."""
    if "sha256" in identity:
        return "sha256:" + identity["sha256"][:16]
    if "commit" in identity:
        return f"{identity.get('hub')}@{identity['commit']}"
    if "files" in identity:
        return "sha256:" + digest(identity["files"])[:16]
    if identity.get("unset"):
        return "unset variable"
    if identity.get("fetched") is False:
        return "not fetched"
    return "missing" if identity.get("missing") else "?"


def summarize(components: dict[str, Any], made_by: dict[str, Any],
              world_size: int | None) -> dict[str, Any]:
    """What made a stage's numbers, for its result rows, the run manifest and trackers."""
    git = made_by.get("git") or {}
    data: dict[str, str] = {}
    for task, inputs in (components.get("data") or {}).items():
        if isinstance(inputs, dict) and inputs and all(isinstance(v, dict) for v in inputs.values()):
            data.update({name: _short(v) for name, v in inputs.items()})
        elif isinstance(inputs, dict) and inputs:
            data[task] = _short(inputs)
        elif inputs:
            data[task] = "sha256:" + digest(inputs)[:16]
    weights = components.get("weights") or {}
    runtime = components.get("runtime") or {}
    return {"version": made_by.get("version"), "commit": git.get("commit"), "dirty": git.get("dirty"),
            "hardware": made_by.get("hardware"), "code": digest(components.get("code", {}))[:16],
            "libraries": components.get("libraries", {}),
            "weights": _short(weights) if weights else ("parent stage" if components.get("parents") else None),
            "data": data, "precision": runtime.get("precision"), "device": runtime.get("device"),
            "threads": runtime.get("threads"), "world_size": world_size}


def made_of(stage, components: dict[str, Any], made_by: dict[str, Any]) -> dict[str, Any]:
    """``summarize`` for a plan's stage, with where a reused stage came from."""
    made = summarize(components, made_by, stage.spec.get("world_size"))
    if stage.reused:
        made["reused_from"] = stage.reused["from"]
    return made


def of_run(plan) -> dict[str, Any]:
    """What a run computes with: the project's version and checkout, the hardware, the
    runtime and every library that changes numbers."""
    import sys

    return {**plan.made_by, "runtime": runtime_as_dict(plan.runtime),
            "libraries": library_versions("deepspeed") | library_versions("peft", ("token_tagging",)),
            "python": sys.version.split()[0]}
