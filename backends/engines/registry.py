"""The backend interface and the registry that a recipe's ``backend = "..."`` names.

A backend decides how a stage trains (devices, precision, optimiser sharding); what
is trained and how it is scored belong to the task code in the worker. Every backend
must leave the model in a state ``save`` can write in the transformers layout, so the
next phase loads it whatever backend trained it.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from .training import ProgressFn, TrainJob, TrainStats  # noqa: F401  (the interface's types)


class Backend(ABC):
    name: ClassVar[str]

    def __init__(self, options: dict[str, Any] | None = None):
        self.options = dict(options or {})

    @property
    @abstractmethod
    def device(self):
        """The torch device the model lives on for training and evaluation."""

    @abstractmethod
    def train(self, job: TrainJob) -> TrainStats:
        """Train ``job.model`` in place: ``job.steps`` optimiser steps over ``job.batch``,
        evaluating and keeping the best weights as ``job.hparams`` say, resuming from and
        saving resume states in ``job.state_dir``. On return the model holds the kept
        weights."""

    def resolve_precision(self, requested: str) -> str:
        """The precision training computes in when ``requested`` is asked for here."""
        choose = getattr(self, "_choose_precision", None)
        return choose(requested) if choose is not None else "fp32"

    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision context for forward passes (evaluation too)."""
        return contextlib.nullcontext()

    def save(self, model, tokenizer, out_dir: Path) -> None:
        """Write the hand-off checkpoint of a task model (``xstilts_tui.compute.kinds.multitask.TaskModel``):
        its primary task model, in the transformers layout, as safetensors, so that any
        backend loads it. Every rank calls it; rank 0 writes."""
        from . import distributed

        if distributed.rank() == 0:
            model.primary.save_pretrained(out_dir, safe_serialization=True)
            tokenizer.save_pretrained(out_dir)


def total_steps(n_examples: int, hparams: dict[str, Any], world: int = 1) -> int:
    """Optimiser steps of a stage: ``max_steps``, or ``epochs`` over the examples, with a
    global batch of batch size x accumulation x processes."""
    if hparams["max_steps"]:
        return hparams["max_steps"]
    per_epoch = math.ceil(n_examples / (hparams["batch_size"] * hparams["grad_accum"] * world))
    return max(1, math.ceil(per_epoch * hparams["epochs"]))


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
