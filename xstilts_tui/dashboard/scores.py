"""The Scores screen: per target task, arms as rows and languages as columns, filled as
scores arrive; mean ± std over seeds, or the delta to the baseline arm (± the std of the
per-seed differences) with a bar chart of the per-language deltas under each table; below,
the XTREME view (per-task summaries, groups, overall)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from xstilts_tui.results.store import format_cell, xtreme_table
from xstilts_tui.dashboard.context import RunContext


class ScoresView(Vertical):
    BINDINGS = [
        Binding("a", "mode('absolute')", "Abs", show=False),
        Binding("d", "mode('delta')", "Delta", show=False),
        Binding("f", "toggle_metric", "F1/EM", show=False),
        Binding("m", "toggle_std", "±std", show=False),
        Binding("s", "sort", "Sort", show=False),
    ]

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.context: RunContext | None = None
        self.mode = "absolute"
        self.metric = "f1"
        self.show_std = True
        self.tables: dict[str, DataTable] = {}
        self.charts: dict[str, PlotextPlot] = {}
        # Per task, what its chart shows: the columns and each arm's deltas (None: no score).
        self.chart_data: dict[str, tuple[list[str], dict[str, list[float | None]]]] = {}
        self.sort_column: dict[str, int] = {}
        self.sorted_by = ""  # the label of the column the tables are sorted by
        self.cell_text: dict[tuple[str, str, str], str] = {}
        # Per task, the deltas' intervals (``significance.deltas``) of the run shown.
        self.significance: dict[str, dict] = {}
        self.significance_of: RunContext | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="scores-mode", markup=False)
        with VerticalScroll(id="score-tables"):
            yield Vertical(id="score-blocks")
            yield Static("XTREME", classes="score-title")
            yield Static("", id="xtreme", markup=False)

    def on_mount(self) -> None:
        self.update_mode_line()

    async def show(self, context: RunContext) -> None:
        """Tables for a run's targets (a new run replaces the old tables)."""
        self.context = context
        self.significance, self.significance_of = {}, None
        self.cell_text.clear()
        self.sort_column.clear()
        self.sorted_by = ""
        blocks = self.query_one("#score-blocks", Vertical)
        await blocks.remove_children()
        self.tables, self.charts, self.chart_data = {}, {}, {}
        widgets = []
        for task in context.targets:
            table = DataTable(classes="score-table", cursor_type="cell")
            table.add_column("arm", key="arm")
            for column in context.score_columns(task):
                table.add_column(column, key=column)
            for arm in context.arms:
                table.add_row(Text(f"{arm} [{context.backends.get(arm, '')}]"),
                              *["-"] * len(context.score_columns(task)), key=arm)
            self.tables[task] = table
            chart = PlotextPlot(classes="delta-chart")
            chart.display = self.mode == "delta"
            self.charts[task] = chart
            widgets += [Static(task, classes="score-title", markup=False), table, chart]
        await blocks.mount_all(widgets)
        for task in context.targets:
            self.update_table(task)
        self.update_xtreme()

    def scores_added(self, tasks: set[str]) -> None:
        for task in tasks:
            self.update_table(task)
        self.update_xtreme()

    def update_table(self, task: str) -> None:
        """Fill one task's table; only cells whose text changed are updated."""
        table = self.tables.get(task)
        if self.context is None or table is None:
            return
        cells = self.context.cells(task, self.metric)
        for arm in self.context.arms:
            for column in self.context.score_columns(task):
                text = self.cell_value(cells.get((arm, column)), arm, task, column)
                key = (task, arm, column)
                if self.cell_text.get(key) != str(text):
                    self.cell_text[key] = str(text)
                    table.update_cell(arm, column, text, update_width=True)
        if self.mode == "delta":
            self.update_chart(task, cells)

    def update_chart(self, task: str, cells: dict[tuple[str, str], dict[str, Any]]) -> None:
        """The task's per-language deltas to the baseline as grouped bars, one colour per arm."""
        chart = self.charts.get(task)
        if self.context is None or chart is None:
            return
        columns = list(self.context.score_columns(task))
        arms = [a for a in self.context.arms if a != self.context.baseline]
        series = {arm: [(cells.get((arm, c)) or {}).get("delta") for c in columns] for arm in arms}
        data = (columns, series)
        if self.chart_data.get(task) == data:
            return
        self.chart_data[task] = data
        plt = chart.plt
        plt.clear_data()
        plt.clear_figure()
        shown = {arm: values for arm, values in series.items() if any(v is not None for v in values)}
        metric = "F1" if self.metric == "f1" else "EM"
        if shown:
            plt.multiple_bar(columns, [[v if v is not None else 0.0 for v in values]
                                       for values in shown.values()], labels=list(shown), width=0.5)
            plt.hline(0.0)
        plt.title(f"{task}: {metric} delta to {self.context.baseline}"
                  + ("" if shown else " (no score yet)"))
        chart.refresh()

    def cell_value(self, cell: dict[str, Any] | None, arm: str, task: str, column: str) -> str | Text:
        if cell is None:
            return "-"
        if self.mode == "delta" and self.context is not None and arm != self.context.baseline:
            delta = cell["delta"]
            if delta is None:
                return "-"
            text = f"{delta:+.1f}"
            if self.show_std and cell.get("delta_std") is not None:
                text += f"±{cell['delta_std']:.1f}"
            found = self.significance.get(task, {}).get((arm, column))
            if found is not None and found.significant:
                text += "*"
            return Text(text, style="green" if delta > 0 else "red" if delta < 0 else "")
        return format_cell(dict(cell, std=cell["std"] if self.show_std else None), delta=False)

    def score_text(self, task: str, arm: str, column: str) -> str:
        return str(self.tables[task].get_cell(arm, column))

    def update_xtreme(self) -> None:
        if self.context is None:
            return
        text = xtreme_table(self.context.frame(), self.context.arms, self.context.targets,
                            self.context.languages)
        self.query_one("#xtreme", Static).update(
            text or "no XTREME task among this run's targets (or no score yet)")

    # -- keys --

    def refresh_all(self) -> None:
        self.cell_text.clear()
        for task in self.tables:
            self.update_table(task)
        self.update_mode_line()

    def update_mode_line(self) -> None:
        mode = "delta to the baseline" if self.mode == "delta" else "absolute"
        if self.mode == "delta" and self.significance:
            seeds = max((d.n_seeds for found in self.significance.values() for d in found.values()),
                        default=0)
            mode += f" (* 95% interval excludes 0; {seeds} seed{'s' if seeds != 1 else ''})"
        metric = "F1" if self.metric == "f1" else "exact match"
        std = "±std shown" if self.show_std else "±std hidden"
        order = f", sorted by {self.sorted_by}" if self.sorted_by else ""
        self.query_one("#scores-mode", Static).update(
            f"{metric}, {mode}, {std}{order}  (a/d mode, f metric, m std, s sort)")

    def action_mode(self, mode: str) -> None:
        self.mode = mode
        for chart in self.charts.values():
            chart.display = mode == "delta"
        self.chart_data.clear()
        self.refresh_all()
        if mode == "delta":
            self.find_significance()

    def find_significance(self) -> None:
        """The deltas' intervals from the run's kept predictions, in a thread (a bootstrap
        per cell); the cells whose interval excludes zero get a ``*``."""
        context = self.context
        if context is None or context.results_dir is None or self.significance_of is context \
                or not (context.results_dir / "run.json").is_file():
            return
        self.significance_of = context
        wanted = self.metric

        def work() -> None:
            from xstilts_tui.results.significance import RESAMPLES, deltas, run_predictions
            from xstilts_tui.dashboard.context import metric_for

            try:
                predictions = run_predictions(context.results_dir)
                found = {} if predictions.is_empty() else {
                    task: deltas(predictions, task, metric_for(task, wanted), context.languages[task],
                                 context.arms, context.baseline, resamples=RESAMPLES)
                    for task in context.targets}
            except Exception as exc:  # no predictions kept, a file half written: no marks
                self.app.call_from_thread(self.notify, f"no intervals: {exc}", severity="warning")
                return
            self.app.call_from_thread(self._significance_found, context, found)

        self.run_worker(work, thread=True, exclusive=True, group="significance")

    def _significance_found(self, context: RunContext, found: dict[str, dict]) -> None:
        if context is self.context:
            self.significance = found
            self.refresh_all()

    def action_toggle_metric(self) -> None:
        self.metric = "exact_match" if self.metric == "f1" else "f1"
        self.chart_data.clear()
        self.significance, self.significance_of = {}, None  # the intervals were of the other
        self.refresh_all()
        if self.mode == "delta":
            self.find_significance()

    def action_toggle_std(self) -> None:
        self.show_std = not self.show_std
        self.refresh_all()

    @staticmethod
    def sort_table(table: DataTable, column_index: int) -> None:
        """Sort rows by a column: the arm's name ascending, a score descending."""
        def value(cell: Any) -> float:
            text = str(cell).split("±")[0].split(" ")[0]
            try:
                return float(text)
            except ValueError:
                return float("-inf")

        key = list(table.columns)[column_index]
        if column_index == 0:
            table.sort(key, key=lambda cell: str(cell))  # the cells are Text: compare their words
        else:
            table.sort(key, key=value, reverse=True)

    def sort_by(self, task: str, table: DataTable, column_index: int) -> None:
        """Sort a task's table by a column and say which in the mode line."""
        self.sort_table(table, column_index)
        self.sort_column[task] = column_index
        self.sorted_by = str(table.columns[list(table.columns)[column_index]].label)
        self.update_mode_line()

    def action_sort(self) -> None:
        for task, table in self.tables.items():
            self.sort_by(task, table, (self.sort_column.get(task, 0) + 1) % len(table.columns))

    @on(DataTable.HeaderSelected)
    def _header_selected(self, event: DataTable.HeaderSelected) -> None:
        for task, table in self.tables.items():
            if table is event.data_table:
                self.sort_by(task, table, event.column_index)
