"""The Compare screen: two arms side by side, of one run or of two runs (a run from the
Past runs screen is added with x): per-language scores with their difference, then what
each cost (wall time, throughput, memory, trainable parameters, checkpoint size)."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Select, Static

from xstilts_tui.results.store import AVG, AVG_NO_EN, format_cell, human_bytes
from xstilts_tui.dashboard.context import RunContext

HELP = "A and B: an arm of this run, or of a run added from Past runs (x)"

SEP = "\x1f"  # between a run's key and an arm's name in a Select's value

COSTS = (("backend", "backend", str),
         ("wall time (s)", "wall_s", lambda v: f"{v:.1f}"),
         ("examples/s", "examples_per_s", lambda v: f"{v:.1f}"),
         ("tokens/s", "tokens_per_s", lambda v: f"{v:.0f}"),
         ("peak memory", "peak_memory_bytes", human_bytes),
         ("trainable params", "trainable_params", lambda v: f"{v:,}"),
         ("total params", "total_params", lambda v: f"{v:,}"),
         ("checkpoint", "checkpoint_bytes", human_bytes),
         ("adapter", "adapter_bytes", human_bytes),
         ("kept step", "best_step", str))


class CompareView(Vertical):
    BINDINGS = [Binding("f", "toggle_metric", "F1/EM")]

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.runs: dict[str, RunContext] = {}  # key: the run's label, unique here
        self.current: str | None = None
        self.metric = "f1"

    def compose(self) -> ComposeResult:
        yield Static(HELP, id="cmp-help", markup=False)
        with Horizontal(id="cmp-select"):
            yield Select([], prompt="A", id="cmp-a", compact=True)
            yield Select([], prompt="B", id="cmp-b", compact=True)
            yield Select([], prompt="task", id="cmp-task", compact=True)
        yield DataTable(id="cmp-scores")
        yield DataTable(id="cmp-cost")

    def _key_for(self, context: RunContext, replace: str | None = None) -> str:
        key, n = context.label or context.name, 2
        while key in self.runs and key != replace:
            key, n = f"{context.label or context.name} ({n})", n + 1
        return key

    def set_current(self, context: RunContext) -> None:
        """The run of the Runs and Scores screens: A its baseline, B its next arm."""
        if self.current is not None:
            self.runs.pop(self.current, None)
        key = self._key_for(context)
        self.current = key
        self.runs = {key: context, **self.runs}
        others = [a for a in context.arms if a != context.baseline]
        self._options(a=(key, context.baseline), b=(key, others[0] if others else context.baseline))

    def add_run(self, context: RunContext) -> str:
        """Another run to compare with: B becomes its arm of A's name (or its first arm)."""
        for key, known in self.runs.items():
            if known.results_dir is not None and known.results_dir == context.results_dir \
                    and key != self.current:
                self.runs[key] = context
                break
        else:
            key = self._key_for(context)
            self.runs[key] = context
        a = self._selected("a")
        arm = a[1] if a and a[1] in context.arms else context.arms[0]
        self._options(a=a, b=(key, arm))
        return key

    def _options(self, a: tuple[str, str] | None, b: tuple[str, str] | None) -> None:
        several = len(self.runs) > 1
        options = [(f"{key}: {arm}" if several else arm, f"{key}{SEP}{arm}")
                   for key, context in self.runs.items() for arm in context.arms]
        select_a, select_b = self.query_one("#cmp-a", Select), self.query_one("#cmp-b", Select)
        with self.prevent(Select.Changed):
            select_a.set_options(options)
            select_b.set_options(options)
            if a:
                select_a.value = SEP.join(a)
            if b:
                select_b.value = SEP.join(b)
        self._task_options()
        self.refresh_tables()

    def _selected(self, which: str) -> tuple[str, str] | None:
        value = self.query_one(f"#cmp-{which}", Select).value
        if not isinstance(value, str) or SEP not in value:
            return None
        key, arm = value.split(SEP, 1)
        return (key, arm) if key in self.runs else None

    def _task_options(self) -> None:
        chosen = [self._selected(w) for w in ("a", "b")]
        tasks: list[str] = []
        for pick in chosen:
            if pick:
                tasks += [t for t in self.runs[pick[0]].targets if t not in tasks]
        both = [t for t in tasks if all(p is None or t in self.runs[p[0]].targets for p in chosen)]
        select = self.query_one("#cmp-task", Select)
        current = select.value
        with self.prevent(Select.Changed):
            select.set_options([(t, t) for t in both])
            if both:
                select.value = current if current in both else both[0]

    @on(Select.Changed)
    def _changed(self, event: Select.Changed) -> None:
        if event.select.id in ("cmp-a", "cmp-b"):
            self._task_options()
        self.refresh_tables()

    def action_toggle_metric(self) -> None:
        self.metric = "exact_match" if self.metric == "f1" else "f1"
        self.refresh_tables()

    def refresh_tables(self) -> None:
        a, b = self._selected("a"), self._selected("b")
        task = self.query_one("#cmp-task", Select).value
        scores = self.query_one("#cmp-scores", DataTable)
        cost = self.query_one("#cmp-cost", DataTable)
        scores.clear(columns=True)
        cost.clear(columns=True)
        if a is None or b is None or not isinstance(task, str):
            return
        ctx_a, ctx_b = self.runs[a[0]], self.runs[b[0]]
        name_a, name_b = (f"A {a[1]}", f"B {b[1]}")
        scores.add_columns("language", name_a, name_b, "B - A")
        # Averages are compared over the languages both runs have, and the line says so.
        shared = [lang for lang in ctx_a.languages[task] if lang in ctx_b.languages[task]]
        cells_a = ctx_a.cells(task, self.metric, shared)
        cells_b = ctx_b.cells(task, self.metric, shared)
        extra = [AVG_NO_EN] if "en" in shared and len(shared) > 1 else []
        columns = [*shared, AVG, *extra]
        only_a = [lang for lang in ctx_a.languages[task] if lang not in shared]
        only_b = [lang for lang in ctx_b.languages[task] if lang not in shared]
        self.query_one("#cmp-help", Static).update(
            HELP if not (only_a or only_b) else
            f"compared on the {len(shared)} languages both have (left out: "
            + "; ".join(part for part in (f"A {' '.join(only_a)}" if only_a else "",
                                          f"B {' '.join(only_b)}" if only_b else "") if part) + ")")
        for column in columns:
            ca, cb = cells_a.get((a[1], column)), cells_b.get((b[1], column))
            diff = f"{cb['mean'] - ca['mean']:+.1f}" if ca and cb else "-"
            scores.add_row(column, format_cell(ca, delta=False), format_cell(cb, delta=False), diff)
        cost.add_columns("cost", name_a, name_b)
        sides = [(ctx_a, a[1]), (ctx_b, b[1])]
        for kind in ("intermediate", "target"):
            for label, key, fmt in COSTS:
                values = []
                for context, arm in sides:
                    found = [s.get(key) for s in context.stages
                             if arm in str(s.get("arms", "")).split(",") and s.get("kind") == kind
                             and (s.get("task") == task or kind == "intermediate")
                             and s.get(key) is not None]
                    values.append(fmt(found[0]) if found else "-")
                if any(v != "-" for v in values):
                    cost.add_row(f"{kind}: {label}", *values)
