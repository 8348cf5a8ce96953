"""The tables a headless run ends with: per target task and metric, the arms as rows and
the languages (and their average) as columns, within 100 columns.

Each arm's row holds its scores (mean ± std where several seeds ran); under each other arm
a ``Δ`` row holds the delta to the baseline (``*``: its 95% interval excludes zero) and a
``95%`` row the interval from the paired bootstrap over the test examples. The number of
seeds and what the scores are (zero-shot after training on which languages) are said once,
in the title; a task with more languages than fit is shown in groups of languages.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from xstilts_tui.results.store import AVG, format_cell, score_cells, text_table
from xstilts_tui.tasks.registry import TASKS

WIDTH = 100


def _seeds(results: pl.DataFrame, task: str) -> int:
    if results.is_empty():
        return 0
    return results.filter(pl.col("task") == task)["seed"].n_unique()


def _rows(arms: list[str], baseline: str, columns: list[str], cells: dict, found: dict) -> list[list[str]]:
    rows = []
    for arm in arms:
        if not any((arm, c) in cells for c in columns):
            continue
        rows.append([arm, *(format_cell(cells.get((arm, c)), delta=False) for c in columns)])
        if arm == baseline:
            continue
        deltas = []
        for c in columns:
            d, cell = found.get((arm, c)), cells.get((arm, c))
            value = d.delta if d is not None else (cell or {}).get("delta")
            deltas.append("-" if value is None else f"{value:+.1f}" + ("*" if d is not None and d.significant else ""))
        rows.append(["  Δ", *deltas])
        if any(found.get((arm, c)) is not None for c in columns):
            rows.append(["  95%", *(f"[{d.low:+.1f},{d.high:+.1f}]" if (d := found.get((arm, c))) else "-"
                                    for c in columns)])
    return rows


def _groups(rows: list[list[str]], columns: list[str], width: int) -> list[list[int]]:
    """Column indices in groups whose table fits ``width`` (the arm column in each)."""
    first = max(len(r[0]) for r in rows + [["arm"]])
    groups: list[list[int]] = [[]]
    used = first
    for i, column in enumerate(columns, start=1):
        need = 2 + max(len(column), *(len(r[i]) for r in rows))
        if groups[-1] and used + need > width:
            groups.append([])
            used = first
        groups[-1].append(i)
        used += need
    return groups


def summary_tables(results: pl.DataFrame, arms: list[str], baseline: str, tasks: list[str],
                   languages: dict[str, list[str]], significance: dict[str, dict] | None = None,
                   trained_on: dict[str, list[str]] | None = None, width: int = WIDTH) -> str:
    """The run's tables as text (see the module's doc); ``significance``: per task, the
    deltas with intervals of its main metric; ``trained_on``: per task, the languages its
    target stages train on (English unless a recipe says)."""
    blocks = []
    for task in tasks:
        columns = languages[task] + [AVG]
        names = TASKS[task].metric_names if task in TASKS else ("f1", "exact_match")
        shown = names[:2] if "exact_match" in names else names[:1]
        seeds = _seeds(results, task)
        train = (trained_on or {}).get(task) or ["en"]
        zero_shot = [lang for lang in languages[task] if lang not in train]
        what = (f"{seeds} seed" + ("s, mean±std" if seeds > 1 else "") + f"; trained on {', '.join(train)}"
                + (", zero-shot in the other languages" if zero_shot and set(train) & set(languages[task])
                   else ", zero-shot" if zero_shot else ""))
        for metric in shown:
            cells = score_cells(results, task, metric, languages[task], baseline)
            if not cells:
                continue
            found = (significance or {}).get(task, {}) if metric == shown[0] else {}
            rows = _rows(arms, baseline, columns, cells, found)
            parts = [f"{task} {metric}: {what}; Δ to {baseline}"]
            for group in _groups(rows, columns, width):
                header = ["arm", *(columns[i - 1] for i in group)]
                parts.append(text_table([header] + [[r[0], *(r[i] for i in group)] for r in rows]))
            if found:
                parts.append("Δ: delta to the baseline; 95%: its interval from the paired bootstrap "
                             "over the test examples,\nseeds pooled; * the interval excludes zero")
            blocks.append("\n".join(parts))
    return "\n\n".join(blocks) if blocks else "no scores were recorded"


def what_the_model_is(recipe: Any) -> str | None:
    """A line for a run whose encoder is not a pretrained one (a pipeline check)."""
    if recipe.model.source == "config":
        return ("note: the encoder is built from a configuration, with random weights: these "
                "numbers check the pipeline;\nthey say nothing about a pretrained model")
    return None
