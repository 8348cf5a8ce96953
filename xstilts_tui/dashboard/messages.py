"""What the run thread tells the dashboard, as small messages.

The runner's display (``AppDisplay``) turns each runner callback into a message posted to
the app, which routes it to the screens that show it. Progress messages coalesce: a newer
one of the same stage replaces a queued older one, so a fast stream never makes the
interface lag.
"""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.message import Message

from xstilts_tui.plan.stages import Plan
from xstilts_tui.run.progress import PlainDisplay


class StageStarted(Message):
    def __init__(self, stage: str, total: int) -> None:
        super().__init__()
        self.stage, self.total = stage, total


class StageProgress(Message):
    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__()
        self.event = event

    def can_replace(self, message: Message) -> bool:
        # A newer progress message of the same stage makes this one obsolete.
        return isinstance(message, StageProgress) and message.event["stage"] == self.event["stage"]


class ScoreArrived(Message):
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        super().__init__()
        self.rows = rows


class StageEnded(Message):
    def __init__(self, stage: str, status: str, detail: str, row: dict[str, Any] | None) -> None:
        super().__init__()
        self.stage, self.status, self.detail, self.row = stage, status, detail, row


class LogLine(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class RunEnded(Message):
    """The run thread is done: ``ok`` (every stage done or cached), ``cancelled`` (the user
    stopped it), or ``error`` (the run loop itself failed)."""

    def __init__(self, ok: bool, cancelled: bool = False, error: str = "") -> None:
        super().__init__()
        self.ok, self.cancelled, self.error = ok, cancelled, error


class OpenRun(Message):
    """Show a finished run's folder (from the past-runs screen)."""

    def __init__(self, folder: Any) -> None:
        super().__init__()
        self.folder = folder


class CompareRun(Message):
    """Add a run's folder to the compare screen."""

    def __init__(self, folder: Any) -> None:
        super().__init__()
        self.folder = folder


class AppDisplay(PlainDisplay):
    """The runner's display, turned into messages for the app (thread-safe)."""

    def __init__(self, app: App, plan: Plan):
        super().__init__()
        self.app = app
        self.plan = plan
        self.runner = None

    def print(self, text: str) -> None:
        self.app.post_message(LogLine(text))

    def stage_started(self, stage: str, total_steps: int) -> None:
        self.app.post_message(StageStarted(stage, total_steps))

    def progress(self, event: dict[str, Any]) -> None:
        self.app.post_message(StageProgress(event))

    def score(self, event: dict[str, Any]) -> None:
        stage = self.plan.by_id[event["stage"]]
        self.app.post_message(ScoreArrived([
            {"run": "", "recipe": self.plan.recipe.name, "arm": arm, "seed": stage.seed,
             "stage": stage.id, "stage_key": stage.key, "task": event["task"],
             "language": event["language"], "split": event["split"], "metric": event["metric"],
             "value": float(event["value"]), "step": int(event["step"]), "cached": False}
            for arm in stage.arms]))

    def message(self, stage: str, text: str) -> None:
        self.app.post_message(LogLine(f"[{stage}] {text}"))

    def log_line(self, stage: str, line: str) -> None:
        self.app.post_message(LogLine(f"  {line}"))

    def run_progress(self, done: int, total: int, running: int, elapsed_s: float,
                     left_s: float | None = None, untimed: int = 0) -> None:
        """The Runs screen keeps its own overall line."""

    def stage_finished(self, stage: str, status: str, detail: str = "") -> None:
        rows = self.runner.store.stages if self.runner is not None else []
        row = next((dict(r) for r in reversed(rows) if r["stage"] == stage), None)
        self.app.post_message(StageEnded(stage, status, detail, row))
