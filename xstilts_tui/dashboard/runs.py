"""The Runs screen: every stage of the run with its state, a bar for each stage that is
running (several when stages run side by side), an overall line (stages done of all,
time elapsed, an estimate of the time left) and the log."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, ProgressBar, RichLog, Static

from xstilts_tui.plan.stages import Plan
from xstilts_tui.protocol.stage_cache import lock_held
from xstilts_tui.run.progress import Shape, clock, stage_shape, time_left_estimate, time_left_words
from xstilts_tui.dashboard.context import DONE, NOT_DONE, RunContext


def bar_text(step: int, total: int, width: int = 8) -> str:
    if not total:
        return ""
    filled = int(width * min(step, total) / total)
    return "█" * filled + "░" * (width - filled) + f" {step}/{total}"


COLUMNS = (("state", "state"), ("left", "left"), ("progress", "progress"), ("loss", "loss"),
           ("ex/s", "rate"), ("stage", "stage"))


def row(**cells: str) -> list[str]:
    """A stage's row in the columns' order (cells not given are empty)."""
    return [cells.get(key, "") for _, key in COLUMNS]


def why_word(why: str) -> str:
    """The first reason ``plan`` gives, without its details: "code changed", "new"..."""
    first = why.split(";")[0].strip()
    return first.split(" (")[0] or "pending"


class StageBar(Horizontal):
    """One running stage: its name and its own bar."""

    def __init__(self, stage: str, total: int) -> None:
        super().__init__(classes="stage-bar")
        self.stage, self.total = stage, total
        self.bar = ProgressBar(total=total or None, show_eta=False)
        self.pending: tuple[int, int] | None = None  # progress that came before the mount

    def compose(self) -> ComposeResult:
        yield Label(self.stage, markup=False)
        yield self.bar

    def on_mount(self) -> None:
        if self.pending is not None:
            self.call_after_refresh(self.advance, *self.pending)

    def advance(self, step: int, total: int) -> None:
        if not self.bar.is_mounted:  # a progress message can arrive before the bar is up
            self.pending = (step, total)
            return
        self.bar.update(total=total or None, progress=step)


class RunsView(Vertical):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.states: dict[str, str] = {}
        self.started_at: dict[str, float] = {}
        self.durations: dict[Shape, list[float]] = {}  # stages trained in this run, in seconds, by shape
        self.shapes: dict[str, Shape] = {}  # what sets each stage's pace (``stage_shape``)
        self.step_of: dict[str, tuple[int, int]] = {}
        self.bars: dict[str, StageBar] = {}
        self.run_name = ""
        self.run_started: float | None = None
        self.ended: str = ""  # "", or how the run ended: finished, cancelled, stopped

    def compose(self) -> ComposeResult:
        yield Static("no run yet: pick a recipe and press r", id="run-status", markup=False)
        yield Static("", id="overall", markup=False)
        yield DataTable(id="stages", cursor_type="row")
        yield Vertical(id="bars")
        yield RichLog(id="log", max_lines=2000, wrap=False, markup=False)

    def on_mount(self) -> None:
        table = self.query_one("#stages", DataTable)
        # The numbers first and the stage (up to 60 characters) last, so that every number
        # is in sight at 80 columns.
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        self.set_interval(1.0, self.update_overall)

    # -- a run starts, or a finished one is shown --

    def _reset(self, name: str) -> None:
        self.run_name = name
        self.states.clear()
        self.started_at.clear()
        self.durations.clear()
        self.step_of.clear()
        for bar in self.bars.values():
            bar.remove()
        self.bars.clear()
        self.query_one("#stages", DataTable).clear()
        self.ended = ""

    def show_plan(self, plan: Plan, name: str) -> None:
        """A run about to start: every stage, cached ones marked, and for each stage that
        will run why (new, code changed, weights changed...: as ``plan`` says it)."""
        self._reset(name)
        table = self.query_one("#stages", DataTable)
        self.shapes = {stage.id: stage_shape(stage) for stage in plan.stages}
        for stage_id, (state, why) in plan.states().items():
            self.states[stage_id] = "cached" if state == "reused" else state
            shown = "reused" if state == "reused" else (why_word(why) if state == "pending" else state)
            table.add_row(*row(stage=stage_id, state=shown), key=stage_id)
        self.run_started = time.monotonic()
        self.query_one("#run-status", Static).update(
            f"running {name}: {len(plan.stages)} stages, results in {plan.output_dir}")
        self.query_one("#log", RichLog).clear()
        self.update_overall()

    def show_finished(self, context: RunContext) -> None:
        """A run read from its folder: nothing running."""
        self._reset(context.name)
        self.run_started = None
        table = self.query_one("#stages", DataTable)
        rows = {r["stage"]: r for r in context.stages}
        for stage in context.stage_ids or list(rows):
            found = rows.get(stage, {})
            folder = context.stage_dirs.get(stage)
            state = found.get("status") or ("running elsewhere" if folder and lock_held(Path(folder))
                                            else "not run")
            self.states[stage] = state
            rate = found.get("examples_per_s")
            wall = found.get("wall_s")
            table.add_row(*row(stage=stage, state=state, progress=f"took {clock(wall)}" if wall else "",
                               rate=f"{rate:.0f}" if rate else ""), key=stage)
        folder = context.results_dir.name if context.results_dir else "?"
        date = f" of {context.label.removeprefix(context.name).strip()}" if context.run_id else ""
        elsewhere = sum(1 for s in self.states.values() if s == "running elsewhere")
        self.query_one("#run-status", Static).update(
            f"results of {context.name}{date} (folder {folder}; "
            + (f"a run in another process is writing {elsewhere} stage(s))" if elsewhere
               else "nothing running)"))
        status, done, total = context.status()
        self.ended = status
        self.query_one("#overall", Static).update(f"{status}: {done}/{total} stages done")

    # -- events of the running run --

    def _set(self, stage: str, column: str, value: str) -> None:
        table = self.query_one("#stages", DataTable)
        try:
            table.update_cell(stage, column, value, update_width=True)
        except Exception:  # a stage not in the table (another plan): nothing to show
            pass

    def stage_started(self, stage: str, total: int) -> None:
        self.states[stage] = "running"
        self.started_at[stage] = time.monotonic()
        self.step_of[stage] = (0, total)
        self._set(stage, "state", "running")
        self._set(stage, "progress", bar_text(0, total))
        if stage not in self.bars:
            bar = StageBar(stage, total)
            self.bars[stage] = bar
            self.query_one("#bars", Vertical).mount(bar)
        self.update_overall()

    def progress(self, event: dict[str, Any]) -> None:
        stage, step, total = event["stage"], event["step"], event["total_steps"]
        self.step_of[stage] = (step, total)
        self._set(stage, "progress", bar_text(step, total))
        self._set(stage, "loss", f"{event['loss']:.3f}")
        self._set(stage, "rate", f"{event['examples_per_s']:.0f}")
        left = self.stage_left(stage)
        self._set(stage, "left", clock(left) if left is not None else "-")
        if stage in self.bars:
            self.bars[stage].advance(step, total)

    def stage_ended(self, stage: str, status: str, detail: str) -> None:
        self.states[stage] = status
        self._set(stage, "state", status)
        started = self.started_at.pop(stage, None)
        if status == "done" and started is not None:
            self.durations.setdefault(self.shapes.get(stage), []).append(time.monotonic() - started)
        if status in DONE:
            self._set(stage, "left", "")
            if started is not None:
                self._set(stage, "progress", f"took {clock(time.monotonic() - started)}")
        bar = self.bars.pop(stage, None)
        if bar is not None:
            bar.remove()
        if status in ("failed", "skipped"):
            self.log(f"[{stage}] {status}: {detail}")
        self.update_overall()

    def log(self, text: str) -> None:
        self.query_one("#log", RichLog).write(text)

    def run_ended(self, ok: bool, cancelled: bool, error: str) -> str:
        """Say how the run ended; returns the line for a notification."""
        status = self.query_one("#run-status", Static)
        left_over = [s for s, v in self.states.items() if v in NOT_DONE]
        done = sum(1 for v in self.states.values() if v in DONE)
        if error:
            self.ended = "stopped"
            line = f"{self.run_name}: the run stopped: {error}"
        elif cancelled:
            self.ended = "cancelled"
            line = (f"{self.run_name}: cancelled, {done} of {len(self.states)} stages done "
                    "(r runs the rest)")
        else:
            self.ended = "finished"
            line = f"{self.run_name}: finished" + (f", {len(left_over)} stage(s) not done"
                                                if left_over else "")
        for bar in self.bars.values():
            bar.remove()
        self.bars.clear()
        status.update(line)
        self.update_overall()
        return line

    # -- the overall line --

    def stage_left(self, stage: str) -> float | None:
        started = self.started_at.get(stage)
        step, total = self.step_of.get(stage, (0, 0))
        if started is None or not step:
            return None
        return (time.monotonic() - started) / step * max(0, total - step)

    def estimate_left(self) -> tuple[float | None, int]:
        """Seconds left: the running stages' own estimates, then the pending stages each at
        the mean time of the stages of its shape this run trained, shared among as many as
        run at once; and how many pending stages are of a shape not timed yet."""
        pending = [self.shapes.get(s) for s, v in self.states.items() if v == "pending"]
        running = [s for s, v in self.states.items() if v == "running"]
        lefts = [self.stage_left(s) for s in running]
        seconds, untimed = time_left_estimate(self.durations, pending, [], max(1, len(running)))
        if any(v is None for v in lefts) or seconds is None:
            return None, untimed
        return max(lefts, default=0.0) + seconds, untimed

    def update_overall(self) -> None:
        if self.run_started is None or not self.states:
            return
        done = sum(1 for v in self.states.values() if v in DONE)
        total = len(self.states)
        elapsed = clock(time.monotonic() - self.run_started)
        if self.ended:  # the last word on this run: the clock stops here
            self.run_started = None
            self.query_one("#overall", Static).update(
                f"{self.ended}: {done}/{total} stages done, {elapsed} elapsed")
            return
        running = sum(1 for v in self.states.values() if v == "running")
        left, untimed = self.estimate_left()
        self.query_one("#overall", Static).update(
            f"{done}/{total} stages done, {running} running, {elapsed} elapsed, "
            + (time_left_words(left, untimed, "") or "time left: -"))
