"""The backend interface: what every engine provides (device, precision, training, saving).

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

from xstilts_tui.protocol.hparams import HParams

from .training import TrainJob, TrainStats


class Backend(ABC):
    """An engine. ``train`` runs ``loop.train_loop`` with the engine's hooks: ``begin``
    (wrap the model, build the optimiser, load a resume state), ``train_mode``,
    ``to_device``, ``forward_backward``, ``optimizer_step``, ``lr``, ``keep_best``,
    ``save_state``, ``restore_best`` and ``end``; ``trainable`` counts what it trains."""

    name: ClassVar[str]
    trainable: int = 0

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


def total_steps(n_examples: int, hparams: HParams, world: int = 1) -> int:
    """Optimiser steps of a stage: ``max_steps``, or ``epochs`` over the examples, with a
    global batch of batch size x accumulation x processes."""
    if hparams.max_steps:
        return hparams.max_steps
    per_epoch = math.ceil(n_examples / (hparams.batch_size * hparams.grad_accum * world))
    return max(1, math.ceil(per_epoch * hparams.epochs))
