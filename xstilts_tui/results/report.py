"""Reports of finished runs: the tables a paper needs, and plots.

Per target task: arms as rows, languages and their average as columns; each cell the mean
(± std over seeds) and, for the other arms, the delta to the baseline with its 95%
interval (``*``: the interval excludes zero) from the per-example predictions
(``significance``). Then the XTREME table and the cost table. Several runs: their arms
side by side (``run: arm``), joined on task and language. Formats: Markdown, LaTeX
(booktabs, from pandas' Styler), CSV (the numbers, one row a cell) and HTML.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from xstilts_tui.recipe.schema import RecipeError
from xstilts_tui.results.store import (AVG, RESULT_COLUMNS, STAGE_COLUMNS, cost_rows, final_scores, score_cells,
                      xtreme_rows)
from xstilts_tui.results.manifest import read_manifest, read_table
from xstilts_tui.results.significance import RESAMPLES, Delta, deltas, format_delta, run_predictions
from xstilts_tui.tasks.registry import TASKS

FORMATS = ("md", "latex", "csv", "html")


class ReportError(ValueError):
    pass


@dataclass
class Run:
    folder: Path
    name: str
    run_id: str
    arms: list[str]
    baseline: str
    targets: list[str]
    languages: dict[str, list[str]]
    results: pl.DataFrame
    stages: pl.DataFrame | None
    stage_dirs: dict[str, str]
    deltas: dict[str, dict[tuple[str, str], Delta]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # inputs of the report that were not used


def load_run(folder: Path) -> Run:
    try:
        manifest = read_manifest(folder)
    except RecipeError as exc:
        raise ReportError(str(exc)) from None
    try:
        results = read_table(folder, "results.parquet", RESULT_COLUMNS)
        stages = read_table(folder, "stages.parquet", STAGE_COLUMNS)
    except RecipeError as exc:
        raise ReportError(str(exc)) from None
    results = results if results is not None else pl.DataFrame(schema=RESULT_COLUMNS)
    return Run(folder, manifest.name, manifest.run_id, manifest.arm_names, manifest.baseline,
               manifest.targets, manifest.languages, results, stages,
               {s["id"]: s.get("dir", "") for s in manifest.stages})


def all_targets(runs: list[Run]) -> list[str]:
    """The runs' target tasks, each once, in the order the runs name them."""
    targets: list[str] = []
    for run in runs:
        targets += [t for t in run.targets if t not in targets]
    return targets


def main_metric(task: str) -> str:
    names = TASKS[task].metric_names if task in TASKS else ("f1",)
    return names[0]


def add_significance(run: Run, resamples: int = RESAMPLES) -> None:
    """Each target's deltas with intervals, where the stages kept their predictions; a
    finished stage whose predictions are missing or changed is named in ``run.problems``."""
    found: list[tuple[str, str]] = []
    predictions = run_predictions(run.folder, found)
    finished = set(run.stages.filter(pl.col("status").is_in(["done", "cached"]))["stage"].to_list()) \
        if run.stages is not None and "status" in run.stages.columns else {s for s, _ in found}
    run.problems = [text for stage, text in found if stage in finished]
    if predictions.is_empty():
        return
    for task in run.targets:
        run.deltas[task] = deltas(predictions, task, main_metric(task), run.languages[task],
                                  run.arms, run.baseline, resamples=resamples)


def _seeds(run: Run, task: str) -> int:
    final = final_scores(run.results)
    if final.is_empty():
        return 0
    return final.filter(pl.col("task") == task)["seed"].n_unique()


def score_table(runs: list[Run], task: str) -> tuple[list[str], list[dict[str, Any]]]:
    """One task's table: the columns, and a record per (run, arm) row with, per column,
    the mean, std, seeds and the delta with its interval."""
    columns: list[str] = []
    for run in runs:
        if task in run.languages:
            columns += [lang for lang in run.languages[task] if lang not in columns]
    columns.append(AVG)
    rows = []
    for run in runs:
        if task not in run.languages:
            continue
        metric = main_metric(task)
        cells = score_cells(run.results, task, metric, run.languages[task], run.baseline)
        found = run.deltas.get(task, {})
        for arm in run.arms:
            label = f"{run.name}: {arm}" if len(runs) > 1 else arm
            record: dict[str, Any] = {"run": run.name, "arm": arm, "label": label,
                                      "baseline": arm == run.baseline, "cells": {}}
            for column in columns:
                cell = cells.get((arm, column))
                record["cells"][column] = {"cell": cell, "delta": found.get((arm, column))}
            rows.append(record)
    return columns, rows


def cell_text(entry: dict[str, Any], baseline: bool) -> str:
    cell = entry["cell"]
    if cell is None:
        return "-"
    text = f"{cell['mean']:.1f}"
    if cell["n"] > 1 and cell["std"] is not None:
        text += f"±{cell['std']:.1f}"
    if not baseline and (entry["delta"] is not None or cell["delta"] is not None):
        text += " " + format_delta(entry["delta"], cell["delta"])
    return text


def _split_cells(entry: dict[str, Any], baseline: bool) -> tuple[str, str]:
    """A cell in two lines for a narrow paper column: the mean (± std) with the delta and
    its ``*``, then the interval."""
    cell, d = entry["cell"], entry["delta"]
    if cell is None:
        return "-", ""
    text = f"{cell['mean']:.1f}" + (f"±{cell['std']:.1f}" if cell["n"] > 1 and cell["std"] is not None else "")
    if baseline:
        return text, ""
    delta = d.delta if d is not None else cell["delta"]
    if delta is not None:
        text += f" ({delta:+.1f}{'*' if d is not None and d.significant else ''})"
    return text, f"[{d.low:+.1f}, {d.high:+.1f}]" if d is not None else ""


def tables(runs: list[Run], split: bool = False) -> list[tuple[str, list[list[str]]]]:
    """The report's tables as (title, rows with the header first); ``split``: each arm's
    intervals in a row of their own under its scores (a paper's narrow columns)."""
    out = []
    targets = all_targets(runs)
    for task in targets:
        columns, rows = score_table(runs, task)
        seeds = {run.name: _seeds(run, task) for run in runs if task in run.languages}
        title = (f"{task} ({main_metric(task)}; mean ± std over seeds; delta to the baseline "
                 f"[95% interval], * the interval excludes zero; seeds: "
                 + ", ".join(f"{n} {name}" if len(seeds) > 1 else str(n) for name, n in seeds.items()) + ")")
        body = [["arm", *columns]]
        for record in rows:
            label = record["label"] + (" (baseline)" if record["baseline"] else "")
            if not split:
                body.append([label, *(cell_text(record["cells"][c], record["baseline"]) for c in columns)])
                continue
            parts = [_split_cells(record["cells"][c], record["baseline"]) for c in columns]
            body.append([label, *(p[0] for p in parts)])
            if any(p[1] for p in parts):
                body.append(["", *(p[1] for p in parts)])
        out.append((title, body))
    for run in runs:
        xtreme = xtreme_rows(run.results, run.arms, run.targets, run.languages)
        if xtreme:
            out.append((f"XTREME ({run.name})", xtreme))
        if run.stages is not None:
            cost = cost_rows(run.stages)
            if cost:
                out.append((f"cost ({run.name})", cost))
    return out


def tidy(runs: list[Run]) -> pl.DataFrame:
    """The numbers behind the tables, a row a cell (the CSV report)."""
    records = []
    targets = all_targets(runs)
    for task in targets:
        columns, rows = score_table(runs, task)
        for record in rows:
            for column in columns:
                entry = record["cells"][column]
                cell, d = entry["cell"], entry["delta"]
                if cell is None:
                    continue
                records.append({
                    "run": record["run"], "arm": record["arm"], "task": task,
                    "metric": main_metric(task), "column": column, "mean": cell["mean"],
                    "std": cell["std"], "seeds": cell["n"], "delta": cell["delta"],
                    "delta_low": d.low if d else None, "delta_high": d.high if d else None,
                    "p": d.p if d else None, "significant": d.significant if d else None,
                    "examples": d.n_examples if d else None, "seed_p": d.seed_p if d else None})
    return pl.DataFrame(records, infer_schema_length=None)


def _frame(rows: list[list[str]]):
    import pandas as pd

    return pd.DataFrame(rows[1:], columns=rows[0])


def render(runs: list[Run], fmt: str) -> str:
    from xstilts_tui.results.report_provenance import section

    if fmt == "csv":
        return tidy(runs).write_csv()
    parts = tables(runs)
    made = section(runs, fmt)
    if fmt == "md":
        blocks = []
        for title, rows in parts:
            rows = [[_md_cell(c) for c in row] for row in rows]
            frame = pl.DataFrame(rows[1:], schema=_unique(rows[0]), orient="row")
            with pl.Config(tbl_formatting="MARKDOWN", tbl_hide_column_data_types=True,
                           tbl_hide_dataframe_shape=True, tbl_rows=-1, tbl_cols=-1,
                           fmt_str_lengths=200, tbl_width_chars=1000):
                blocks.append(f"**{_md_cell(title)}**\n\n{frame}")
        return "\n\n".join(blocks) + "\n" + made
    if fmt == "latex":
        blocks = []
        for title, rows in tables(runs, split=True):
            frame = _frame([[_latex_escape(c) for c in row] for row in rows])
            styler = frame.style.hide(axis="index")
            blocks.append(styler.to_latex(hrules=True, caption=_latex_escape(title),
                                          column_format="l" + "r" * (len(rows[0]) - 1),
                                          position="htbp", position_float="centering"))
        return "% needs \\usepackage{booktabs}\n" + "\n".join(blocks) + made
    if fmt == "html":
        import html

        # every cell and header escaped: an arm's name is text, never markup
        blocks = [f"<h2>{html.escape(title)}</h2>\n" + _frame(rows).style.hide(axis="index")
                  .format(escape="html").format_index(escape="html", axis=1).to_html()
                  for title, rows in parts]
        return ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>xstilts-tui report"
                f"</title><style>{HTML_STYLE}</style></head><body>\n" + "\n".join(blocks)
                + _inline_plots(runs) + made + "</body></html>\n")
    raise ReportError(f"unknown format {fmt!r}; expected one of: {', '.join(FORMATS)}")


HTML_STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:80em;color:#222}"
              "table{border-collapse:collapse;margin:0 0 1.5em 0;font-variant-numeric:tabular-nums}"
              "th,td{border-bottom:1px solid #ddd;padding:.25em .7em;text-align:right}"
              "th:first-child,td:first-child{text-align:left}thead th{border-bottom:2px solid #444}"
              "h2{font-size:1.1em;margin-top:2em}figure{margin:1em 0}svg{max-width:100%;height:auto}")


def _inline_plots(runs: list[Run]) -> str:
    """The deltas plot as inline SVG (the report is one file); empty where it cannot be drawn."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        try:
            svgs = [p for p in plot_deltas(runs, Path(folder)) if p.suffix == ".svg"]
        except Exception:  # a plot is a courtesy: the tables are the report
            return ""
        parts = []
        for path in svgs:
            text = path.read_text(encoding="utf-8")
            parts.append("<figure>" + text[text.index("<svg"):] + "</figure>\n")
    return "<h2>Deltas to the baseline, 95% intervals</h2>\n" + "".join(parts) if parts else ""


def _md_cell(text: str) -> str:
    """A table cell of Markdown: one line, a ``|`` escaped (else it starts a column)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _unique(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        out.append(name if name not in out else f"{name} ({len(out)})")
    return out


def _plain_label(text: str) -> str:
    """A label for matplotlib drawn as written: ``$`` would start its math mode."""
    return str(text).replace("$", r"\$")


def _latex_escape(text: str) -> str:
    replacements = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                    "^": r"\textasciicircum{}", "±": r"$\pm$", "→": r"$\to$"}
    return "".join(replacements.get(ch, ch) for ch in text)


# --- plots -------------------------------------------------------------------------


def plot_deltas(runs: list[Run], folder: Path) -> list[Path]:
    """Per-language deltas to the baseline with their intervals, one panel per target
    task, the arms side by side; PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = all_targets(runs)
    if not targets:
        return []
    fig, axes = plt.subplots(len(targets), 1, figsize=(10, 3.2 * len(targets)), squeeze=False)
    for ax, task in zip(axes[:, 0], targets):
        columns, rows = score_table(runs, task)
        others = [r for r in rows if not r["baseline"]]
        width = 0.8 / max(1, len(others))
        for i, record in enumerate(others):
            xs, ys, lows, highs = [], [], [], []
            for j, column in enumerate(columns):
                entry = record["cells"][column]
                d, cell = entry["delta"], entry["cell"]
                value = d.delta if d else (cell["delta"] if cell else None)
                if value is None:
                    continue
                xs.append(j + (i - (len(others) - 1) / 2) * width)
                ys.append(value)
                lows.append(value - d.low if d else 0.0)
                highs.append(d.high - value if d else 0.0)
            ax.bar(xs, ys, width=width, label=_plain_label(record["label"]), yerr=[lows, highs],
                   capsize=2)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(columns)), columns)
        ax.set_ylabel(f"Δ {main_metric(task)}")
        ax.set_title(f"{task}: delta to the baseline, 95% intervals")
        if others:
            ax.legend(fontsize="small", ncols=min(4, len(others)))
    return _save(fig, folder / "deltas", dpi=120)


def validation_lines(validation: list[tuple[int, float, str]]) -> dict[str, list[tuple[int, float]]]:
    """The validation scores of a stage as lines: one per task and metric, in step order
    (a multi-task stage's tasks are never joined into one line)."""
    lines: dict[str, list[tuple[int, float]]] = {}
    for step, value, name in validation:
        lines.setdefault(name, []).append((step, value))
    return {name: sorted(points) for name, points in sorted(lines.items())}


def plot_learning_curves(run: Run, folder: Path) -> list[Path]:
    """Per training stage: the training loss and the validation score against the step,
    from the stage's events; PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = []
    for stage_id, directory in run.stage_dirs.items():
        events_path = Path(directory) / "events.jsonl" if directory else None
        if events_path is None or not events_path.is_file():
            continue
        loss, validation = [], []
        for line in events_path.read_text(encoding="utf-8").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("type") == "progress":
                loss.append((event["step"], event["loss"]))
            elif event.get("type") == "score" and event.get("split") == "validation":
                # one line per task and metric: a multi-task stage scores each of its tasks
                validation.append((event["step"], event["value"],
                                   f"{event.get('task', '')} {event['metric']}".strip()))
        if loss:
            curves.append((stage_id, loss, validation))
    if not curves:
        return []
    fig, axes = plt.subplots(len(curves), 1, figsize=(9, 2.6 * len(curves)), squeeze=False)
    for ax, (stage_id, loss, validation) in zip(axes[:, 0], curves):
        ax.plot(*zip(*loss), label="training loss", color="tab:blue")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(_plain_label(stage_id), fontsize="small")
        if validation:
            twin = ax.twinx()
            for metric, points in validation_lines(validation).items():
                twin.plot(*zip(*points), marker="o", linestyle="--", label=f"validation {metric}")
            twin.set_ylabel("validation")
            twin.legend(fontsize="small", loc="lower right")
    return _save(fig, folder / f"learning-curves-{run.name}", dpi=100)


def _save(fig, stem: Path, dpi: int) -> list[Path]:
    """A figure as PNG and SVG; the figure is closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    written = []
    for suffix in ("png", "svg"):
        path = stem.with_name(f"{stem.name}.{suffix}")
        fig.savefig(path, dpi=dpi)
        written.append(path)
    plt.close(fig)
    return written


def write_report(run_folder: Path, folder: Path, resamples: int = RESAMPLES) -> list[Path]:
    """A finished run's report as files in ``folder``: ``report.md``, ``report.csv`` and
    the plots (what trackers keep as artifacts)."""
    run = load_run(run_folder)
    add_significance(run, resamples)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt, suffix in (("md", "md"), ("csv", "csv")):
        path = folder / f"report.{suffix}"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(render([run], fmt), encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    plots = folder / "plots"
    plots.mkdir(exist_ok=True)
    plot_deltas([run], plots)
    plot_learning_curves(run, plots)
    return written + [plots]
