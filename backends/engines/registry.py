"""The registry of engines that a recipe's ``backend = "..."`` names."""

from __future__ import annotations

from typing import Any

from .base import Backend


def registry() -> dict[str, type[Backend]]:
    """Every backend kind (the control plane's ``BACKEND_KINDS`` names the same ones).
    DeepSpeed and PEFT are imported when a stage trains with them, not here."""
    from .deepspeed_engine import DeepSpeedBackend
    from .peft_engine import PeftBackend
    from .torch_engine import TorchBackend

    return {cls.name: cls for cls in (TorchBackend, DeepSpeedBackend, PeftBackend)}


def get_backend(name: str, options: dict[str, Any] | None = None) -> Backend:
    backends = registry()
    if name not in backends:
        raise KeyError(f"unknown backend {name!r}; known: {', '.join(sorted(backends))}")
    return backends[name](options)
