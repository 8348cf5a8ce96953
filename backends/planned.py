"""A worker computes what its stage's key says, or nothing: the code, the libraries, the
device, the precision and (on a CPU) the thread count must be those the plan keyed the
stage with (``xstilts_tui.protocol.provenance``); otherwise the stage fails in one line before it
computes, and no result is sealed under a key that does not describe it."""

from __future__ import annotations

from typing import Any

from xstilts_tui.protocol import provenance


class NotAsPlanned(RuntimeError):
    """The worker's environment differs from the one its stage was keyed for."""


def _differing(planned: dict[str, Any], here: dict[str, Any]) -> list[str]:
    return [f"{name} {planned.get(name)} planned, {here.get(name)} here"
            for name in sorted(set(planned) | set(here)) if planned.get(name) != here.get(name)]


def check_code_and_libraries(spec: dict[str, Any]) -> None:
    planned = spec.get("provenance") or {}
    if "libraries" in planned:
        tasks = spec.get("tasks") or ([spec["task"]] if "task" in spec else [])
        here = provenance.library_versions() if spec["kind"] == "base" else provenance.library_versions(
            spec.get("backend", {}).get("kind", "torch"), tuple(t["kind"] for t in tasks))
        wrong = _differing(planned["libraries"], here)
        if wrong:
            raise NotAsPlanned(f"the libraries differ from the plan's ({'; '.join(wrong[:3])}): "
                               "plan and run the recipe again in this environment")
    if "code" in planned:
        code = provenance.code_fingerprint()
        changed = sorted(name for name, sha in code.items() if planned["code"].get(name) != sha)
        if changed or set(planned["code"]) - set(code):
            raise NotAsPlanned(f"the code changed after the stage was planned "
                               f"({', '.join(changed[:3]) or 'files removed'}): run the recipe again")


def apply_runtime(spec: dict[str, Any], device) -> None:
    """Give torch the planned thread count on a CPU; refuse another device kind."""
    import torch

    runtime = (spec.get("provenance") or {}).get("runtime")
    if not runtime:
        return
    if runtime["device"] != device.type:
        raise NotAsPlanned(f"the stage was planned for the {runtime['device']} and this worker "
                           f"computes on the {device.type}: plan it where it runs "
                           "(--devices, --parallel, the executor)")
    if device.type == "cpu" and runtime.get("threads"):
        torch.set_num_threads(int(runtime["threads"]))


def check_precision(spec: dict[str, Any], resolved: str) -> None:
    runtime = (spec.get("provenance") or {}).get("runtime")
    if runtime and runtime.get("precision") != resolved:
        raise NotAsPlanned(f"precision {spec['hparams']['precision']} resolves to {resolved} on this "
                           f"device, the plan expected {runtime['precision']}: set hparams.precision "
                           "explicitly")


def planned_commit(spec: dict[str, Any]) -> str | None:
    """The hub commit the stage's key holds for its starting weights, if resolved."""
    import re

    commit = ((spec.get("provenance") or {}).get("weights") or {}).get("commit") or ""
    return commit if re.fullmatch(r"[0-9a-f]{40}", commit) else None
