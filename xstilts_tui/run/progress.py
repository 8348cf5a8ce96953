"""Headless progress: a live bar per stage on a terminal, plain lines in a file or pipe."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def clock(seconds: float) -> str:
    """``H:MM:SS``."""
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


Shape = tuple[str, str | None, str | None]  # (kind, task, backend): what sets a stage's pace


def stage_shape(stage: Any) -> Shape:
    """A plan stage's shape."""
    return stage.kind, stage.task, (stage.spec.get("backend") or {}).get("kind")


def time_left_estimate(walls: dict[Shape, list[float]], pending: list[Shape], running: list[Shape],
                       slots: int) -> tuple[float | None, int]:
    """The time the stages still to run take, each at the mean wall time of the stages of
    its shape this run finished (a running one counts half), over ``slots``; and how many
    are of a shape not timed yet, which the time leaves out. None where stages remain and
    none of them is timed."""
    mean = {shape: sum(w) / len(w) for shape, w in walls.items() if w}
    timed = [mean[s] for s in pending if s in mean] + [mean[s] / 2 for s in running if s in mean]
    untimed = sum(1 for s in pending + running if s not in mean)
    if untimed and not timed:
        return None, untimed
    return sum(timed) / max(1, slots), untimed


def time_left_words(left_s: float | None, untimed: int, lead: str) -> str:
    """The runner's estimate in words (``lead`` before them), saying how many stages it
    leaves out; "" where there is no estimate."""
    if untimed and left_s is None:
        return f"{lead}time left: {untimed} stage(s) of a kind not run yet"
    if left_s is None:
        return ""
    if untimed:
        return f"{lead}more than {clock(left_s)} left ({untimed} stage(s) of a kind not run yet)"
    return f"{lead}~{clock(left_s)} left"


def time_left(elapsed_s: float, step: int, total: int) -> str:
    """``H:MM:SS`` left at the pace so far (``-`` before the first step)."""
    if not step:
        return "-"
    return clock(elapsed_s / step * (total - step))


class PlainDisplay:
    """Lines for logs: each stage's start and end, scores, progress every ~10% or 30 s."""

    def __init__(self, out: TextIO | None = None, every_s: float = 30.0):
        self.out = out or sys.stdout
        self.every_s = every_s
        self._last: dict[str, tuple[float, int]] = {}
        self._started: dict[str, float] = {}
        self._rates: dict[str, tuple[float, float, float]] = {}  # first, last, examples

    def print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def average_rate(self, event: dict[str, Any]) -> float:
        """A stage's examples/s since its first progress event (each event's rate is over
        its last logging interval only): what the cost table will say for its training."""
        now = time.monotonic()
        first, last, examples = self._rates.get(event["stage"], (now, now, 0.0))
        examples += event["examples_per_s"] * (now - last)
        self._rates[event["stage"]] = (first, now, examples)
        return examples / (now - first) if now > first else event["examples_per_s"]

    def stage_started(self, stage: str, total_steps: int) -> None:
        self._started[stage] = time.monotonic()
        self.print(f"[{stage}] started" + (f", {total_steps} steps" if total_steps else ""))

    def progress(self, event: dict[str, Any]) -> None:
        stage, step, total = event["stage"], event["step"], event["total_steps"]
        now = time.monotonic()
        last_time, last_step = self._last.get(stage, (0.0, 0))
        if step < total and now - last_time < self.every_s and step - last_step < max(1, total // 10):
            return
        self._last[stage] = (now, step)
        left = time_left(now - self._started.get(stage, now), step, total)
        self.print(f"[{stage}] step {step}/{total} loss {event['loss']:.4f} lr {event['lr']:.2e} "
                   f"{event['examples_per_s']:.1f} ex/s eta {left}")

    def score(self, event: dict[str, Any]) -> None:
        self.print(f"[{event['stage']}] {event['task']} {event['language']} {event['split']} "
                   f"{event['metric']} {event['value']:.2f} (step {event['step']})")

    def message(self, stage: str, text: str) -> None:
        self.print(f"[{stage}] {text}")

    def stage_finished(self, stage: str, status: str, detail: str = "") -> None:
        self.print(f"[{stage}] {status}" + (f": {detail}" if detail else ""))

    def run_progress(self, done: int, total: int, running: int, elapsed_s: float,
                     left_s: float | None = None, untimed: int = 0) -> None:
        """The overall line: stages done (or cached) of all, after each stage ends."""
        self.print(f"[run] {done}/{total} stages done, {running} running, "
                   f"{clock(elapsed_s)} elapsed" + time_left_words(left_s, untimed, ", "))

    def log_line(self, stage: str, line: str) -> None:
        """A line of the worker's own output; kept in its log file, not shown headless."""

    def close(self) -> None:
        pass


class LiveDisplay(PlainDisplay):
    """Rich progress bars on a terminal: step of total, loss, examples/s, time left."""

    def __init__(self, out: TextIO | None = None):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeRemainingColumn)

        super().__init__(out)
        self.console = Console(file=self.out)
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                             console=self.console, transient=False)
        self.bars.start()
        self._tasks: dict[str, Any] = {}
        self._overall: Any = None

    def print(self, text: str) -> None:
        self.bars.console.print(text, markup=False, highlight=False)

    def stage_started(self, stage: str, total_steps: int) -> None:
        self._tasks[stage] = self.bars.add_task(stage, total=total_steps or None, stats="")

    def progress(self, event: dict[str, Any]) -> None:
        task = self._tasks.get(event["stage"])
        if task is None:
            return
        self.bars.update(task, completed=event["step"], total=event["total_steps"],
                         stats=f"loss {event['loss']:.4f}  {self.average_rate(event):.1f} ex/s")

    def run_progress(self, done: int, total: int, running: int, elapsed_s: float,
                     left_s: float | None = None, untimed: int = 0) -> None:
        """The overall bar: stages done of all, those running, the runner's estimate of the
        time left."""
        if self._overall is None:
            self._overall = self.bars.add_task("all stages", total=total, stats="")
        left = time_left_words(left_s, untimed, "") or "time left: after a stage trains"
        self.bars.update(self._overall, completed=done, stats=f"{running} running, {left}")

    def stage_finished(self, stage: str, status: str, detail: str = "") -> None:
        task = self._tasks.get(stage)
        if task is not None:
            t = self.bars.tasks[task]
            if t.total is None:
                self.bars.update(task, total=1, completed=1)
            self.bars.stop_task(task)
        super().stage_finished(stage, status, detail)

    def close(self) -> None:
        self.bars.stop()


def make_display(out: TextIO | None = None) -> PlainDisplay:
    out = out or sys.stdout
    return LiveDisplay(out) if out.isatty() else PlainDisplay(out)
