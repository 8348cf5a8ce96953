"""A stage's files as the control plane follows and prepares them: the lines and events
a worker appended since the last look, the event log cut back to a resume state before a
worker starts, and stopping workers (no torch here)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from xstilts_tui.protocol.events import decode
from xstilts_tui.protocol.stage_cache import unusable_states, usable_state


class LineTail:
    """Reads the whole lines appended to a file since the last read."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.partial = ""

    def lines(self) -> list[str]:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
                self.offset = handle.tell()
        except FileNotFoundError:
            return []
        lines = (self.partial + chunk).split("\n")
        self.partial = lines.pop()
        return lines


class EventTail(LineTail):
    """Reads the whole events appended to an event file since the last read."""

    def read(self) -> list[dict[str, Any]]:
        return [e for e in (decode(line) for line in self.lines()) if e is not None]


def _resume_info(stage_dir: Path) -> dict[str, Any] | None:
    """What the stage's usable resume state says (the step and the event-file offset it
    was saved at): the same state the worker will resume from (``stage_cache``)."""
    found = usable_state(stage_dir)
    return found[1] if found else None


def keep_events_until(stage_dir: Path) -> int:
    """Before a stage's worker starts: keep the events written up to its resume state
    (they will not be written again) and drop the rest; without a state drop them all.
    Returns the step the worker will resume from (0: from the start)."""
    info = _resume_info(stage_dir)
    events = stage_dir / "events.jsonl"
    if info is None:
        events.unlink(missing_ok=True)
        return 0
    if events.exists():
        with open(events, "r+b") as handle:
            handle.truncate(min(info["events_offset"], events.stat().st_size))
    return int(info.get("step", 0))


def prepare_stage(plan, stage, display) -> None:
    """Before a worker starts on a stage: drop its marker, keep the events up to its
    resume state (or none), write its spec."""
    stage_dir = plan.stage_dir(stage)
    (stage_dir / "DONE").unlink(missing_ok=True)
    damaged = unusable_states(stage_dir)
    resume_at = keep_events_until(stage_dir)
    if damaged:
        display.message(stage.id, f"warning: resume state {', '.join(damaged)} does not verify and "
                                  "is not used; " + (f"resuming from step {resume_at}" if resume_at
                                                     else "starting the stage over"))
    elif resume_at:
        display.message(stage.id, f"resuming from the state saved at step {resume_at}")
    plan.write_spec(stage)


def stop_processes(running: list[Any], grace_s: float) -> None:
    """Stop workers and everything they started: SIGTERM (a worker saves a resume state
    after its current step; one evaluating stops at its next batch), then SIGKILL after ``grace_s``; a job is cancelled (scancel)."""
    for process in running:
        process.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.signal(signal.SIGKILL)
            process.wait(timeout=None)


