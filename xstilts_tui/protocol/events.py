"""The event schema: the only channel from a worker back to the control plane.

A worker appends one JSON object a line to its stage's event file (rank 0 only); the
control plane tails that file. Both sides import this module; it needs no torch.
"""

from __future__ import annotations

import json
import time
from typing import Any

# Required fields of each event type (besides "type" and "time").
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    # A stage began; total_steps is the optimiser steps it will take (0: evaluation only).
    "stage_started": ("stage", "total_steps"),
    # Training progress; examples_per_s over the last logging interval.
    "progress": ("stage", "step", "total_steps", "loss", "lr", "examples_per_s"),
    # One number: task, language, split, metric name, value (0-100 for F1/EM), at a step.
    "score": ("stage", "task", "language", "split", "metric", "value", "step"),
    # A stage ended: status "ok" or "failed", and what it cost.
    "stage_finished": ("stage", "status", "wall_s"),
    # Free text for the log.
    "log": ("stage", "message"),
    # A failure the worker could name (it then exits non-zero).
    "error": ("stage", "message"),
}

# Optional cost fields a stage_finished event carries where the worker knows them.
COST_FIELDS = ("examples_per_s", "tokens_per_s", "peak_memory_bytes", "memory_kind",
               "trainable_params", "total_params", "checkpoint_bytes", "train_examples", "steps",
               "best_step", "stopped_early", "resumed_from", "adapter_bytes", "backend",
               "backend_kind", "world_size", "precision", "attention", "compiled",
               "dropout")


class EventError(ValueError):
    pass


def make_event(kind: str, **fields: Any) -> dict[str, Any]:
    if kind not in EVENT_FIELDS:
        raise EventError(f"unknown event type {kind!r}")
    missing = [f for f in EVENT_FIELDS[kind] if f not in fields]
    if missing:
        raise EventError(f"{kind} event lacks {', '.join(missing)}")
    return {"type": kind, "time": time.time(), **fields}


def encode(event: dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"


def decode(line: str) -> dict[str, Any] | None:
    """One event from one line, or None for a line that is not a whole, known event."""
    line = line.strip()
    if not line:
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(event, dict) or event.get("type") not in EVENT_FIELDS:
        return None
    if any(f not in event for f in EVENT_FIELDS[event["type"]]):
        return None
    return event
