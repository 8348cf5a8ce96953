"""The Past runs screen: the runs under the output root, newest first (name, date,
status, stages done of all, the best average); enter opens one read-only in the Runs,
Scores and Compare screens, x adds it to Compare beside the run shown there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from xstilts_tui.dashboard.context import PastRun, past_runs
from xstilts_tui.dashboard.messages import CompareRun, OpenRun


class PastRunsView(Vertical):
    BINDINGS = [Binding("x", "compare", "Add to Compare"),
                Binding("g", "reload", "Reload")]

    def __init__(self, root: Path, **kw: Any) -> None:
        super().__init__(**kw)
        self.root = root
        self.found: list[PastRun] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="past-root", markup=False)
        yield DataTable(id="past-runs", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one("#past-runs", DataTable)
        for label, key in (("run", "run"), ("date", "date"), ("status", "status"),
                           ("stages", "stages"), ("best average", "best")):
            table.add_column(label, key=key)
        self.reload()

    def reload(self) -> None:
        self.found = past_runs(self.root)
        table = self.query_one("#past-runs", DataTable)
        table.clear()
        for run in self.found:
            context = run.context
            if context is None:
                table.add_row(run.folder.name, "", "unreadable", "", run.problem[:40],
                              key=str(run.folder))
                continue
            status, done, total = context.status()
            best = context.best_average()
            table.add_row(context.name, context.label.removeprefix(context.name).strip(), status,
                          f"{done}/{total}", f"{best[0]} {best[1]:.1f}" if best else "-",
                          key=str(run.folder))
        self.query_one("#past-root", Static).update(
            f"{len(self.found)} run(s) under {self.root}  (enter opens, x adds to Compare, g reloads)"
            if self.found else f"no runs under {self.root} yet")

    def action_reload(self) -> None:
        self.reload()

    def _highlighted(self) -> PastRun | None:
        table = self.query_one("#past-runs", DataTable)
        if not self.found or table.cursor_row < 0 or table.cursor_row >= len(self.found):
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((r for r in self.found if str(r.folder) == key), None)

    @on(DataTable.RowSelected, "#past-runs")
    def _selected(self) -> None:
        run = self._highlighted()
        if run is not None and run.context is not None:
            self.post_message(OpenRun(run.folder))

    def action_compare(self) -> None:
        run = self._highlighted()
        if run is not None and run.context is not None:
            self.post_message(CompareRun(run.folder))
