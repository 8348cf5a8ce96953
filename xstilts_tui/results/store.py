"""The results store: every event appended as it arrives, compacted with polars.

Under the output folder:
* ``events.jsonl``: every event of every run, annotated with run, arms and seed;
  appended and flushed line by line, so a crash loses nothing already reported.
* ``results.parquet``: the tidy table of the latest run, one row per run, arm, seed,
  stage, task, language, split, metric, step (and its value).
* ``stages.parquet``: one row per stage of the latest run: status, wall time and cost.
* ``history/<run id>/``: the tables and ``run.json`` of each earlier run in this folder,
  moved there when the next run starts (nothing a run finished is overwritten).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl

from xstilts_tui.protocol.events import COST_FIELDS, encode
from xstilts_tui.tasks.registry import TASKS
from xstilts_tui.scoring.xtreme import XTREME_TASKS, is_complete, task_summary, xtreme_score

RESULT_COLUMNS = {
    "run": pl.String, "recipe": pl.String, "arm": pl.String, "seed": pl.Int64,
    "stage": pl.String, "stage_key": pl.String, "task": pl.String, "language": pl.String,
    "split": pl.String, "metric": pl.String, "value": pl.Float64, "step": pl.Int64,
    "cached": pl.Boolean, "version": pl.String, "reused_from": pl.String, "provenance": pl.String,
}
STAGE_COLUMNS = {
    "run": pl.String, "stage": pl.String, "stage_key": pl.String, "kind": pl.String,
    "arms": pl.String, "seed": pl.Int64, "task": pl.String, "status": pl.String,
    "reason": pl.String, "cached": pl.Boolean, "wall_s": pl.Float64,
    "examples_per_s": pl.Float64, "tokens_per_s": pl.Float64, "peak_memory_bytes": pl.Int64,
    "memory_kind": pl.String, "trainable_params": pl.Int64, "total_params": pl.Int64,
    "checkpoint_bytes": pl.Int64, "train_examples": pl.Int64, "steps": pl.Int64,
    "best_step": pl.Int64, "stopped_early": pl.Boolean, "resumed_from": pl.Int64,
    "adapter_bytes": pl.Int64, "backend": pl.String, "backend_kind": pl.String,
    "world_size": pl.Int64, "versions": pl.String, "precision": pl.String,
    "attention": pl.String, "compiled": pl.Boolean, "dropout": pl.String,
    "version": pl.String, "reused_from": pl.String, "provenance": pl.String, "hardware": pl.String,
}


def _made_columns(made: dict[str, Any] | None) -> dict[str, Any]:
    """A row's record of what made it: the version, a reuse note, the whole summary as JSON."""
    made = made or {}
    return {"version": made.get("version"), "reused_from": made.get("reused_from"),
            "provenance": json.dumps(made, sort_keys=True) if made else None}


HISTORY = "history"
# What a run writes at the top of its output folder (run.json last: it names the run).
RUN_FILES = ("results.parquet", "stages.parquet", "run.json")


def archive_previous(output_dir: Path, run_id: str) -> Path | None:
    """Before a run writes its tables: move the previous run's (``run.json``, its tables)
    to ``history/<its run id>/``, so that a new run, even one cancelled at once, never
    truncates what an earlier run finished. Returns where they went (None: nothing)."""
    try:
        previous = json.loads((output_dir / "run.json").read_text(encoding="utf-8"))["run"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(previous, str) or previous == run_id or "/" in previous or previous.startswith("."):
        return None
    dest = output_dir / HISTORY / previous
    dest.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if (output_dir / name).exists():
            os.replace(output_dir / name, dest / name)
    return dest


def write_parquet_atomically(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)


class ResultsStore:
    def __init__(self, output_dir: Path, run: str, recipe: str):
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.run = run
        self.recipe = recipe
        self.rows: list[dict[str, Any]] = []
        self.stages: list[dict[str, Any]] = []
        self._log = open(self.output_dir / "events.jsonl", "a", encoding="utf-8")

    def close(self) -> None:
        self._log.close()

    def record(self, event: dict[str, Any], *, stage_key: str, arms: tuple[str, ...],
               seed: int | None, cached: bool, made: dict[str, Any] | None = None) -> None:
        """Append one worker event (annotated) and keep its score rows, each with what
        made it (``made``: ``provenance.summarize``)."""
        columns = _made_columns(made)
        annotated = {**event, "run": self.run, "arms": list(arms), "seed": seed,
                     "stage_key": stage_key, "cached": cached}
        self._log.write(encode(annotated))
        self._log.flush()
        if event["type"] == "score":
            for arm in arms:
                self.rows.append({
                    "run": self.run, "recipe": self.recipe, "arm": arm, "seed": seed,
                    "stage": event["stage"], "stage_key": stage_key, "task": event["task"],
                    "language": event["language"], "split": event["split"],
                    "metric": event["metric"], "value": float(event["value"]),
                    "step": int(event["step"]), "cached": cached, **columns,
                })

    def stage_result(self, *, stage: str, stage_key: str, kind: str, arms: tuple[str, ...],
                     seed: int | None, task: str | None, status: str, reason: str = "",
                     cached: bool = False, finished: dict[str, Any] | None = None,
                     made: dict[str, Any] | None = None) -> None:
        finished = finished or {}
        row = {"run": self.run, "stage": stage, "stage_key": stage_key, "kind": kind,
               "arms": ",".join(arms), "seed": seed, "task": task, "status": status,
               "reason": reason, "cached": cached, "wall_s": finished.get("wall_s"),
               "versions": json.dumps(finished["versions"]) if "versions" in finished else None}
        for name in COST_FIELDS:
            row[name] = finished.get(name)
        row.update(_made_columns(made))
        row["hardware"] = finished.get("hardware") or (made or {}).get("hardware")
        self.stages.append({k: row.get(k) for k in STAGE_COLUMNS})

    def results_frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema=RESULT_COLUMNS)

    def stages_frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.stages, schema=STAGE_COLUMNS)

    def compact(self) -> None:
        write_parquet_atomically(self.results_frame(), self.output_dir / "results.parquet")
        write_parquet_atomically(self.stages_frame(), self.output_dir / "stages.parquet")


def final_scores(results: pl.DataFrame, split: str = "test") -> pl.DataFrame:
    """The last evaluation of each arm, seed, task, language and metric."""
    if results.is_empty():
        return results
    return (results.filter(pl.col("split") == split)
            .sort("step")
            .group_by(["arm", "seed", "task", "language", "metric"], maintain_order=True)
            .last())


AVG = "avg"
AVG_NO_EN = "avg-en"  # the average over languages other than English


def score_cells(results: pl.DataFrame, task: str, metric: str, languages: list[str],
                baseline: str, without_english: bool = False) -> dict[tuple[str, str], dict[str, Any]]:
    """The numbers of one task's table: for each (arm, column) the mean, std and count over
    seeds and the delta of the mean against the baseline arm. Columns are the languages,
    ``avg`` (over every language, per seed, where a seed has them all) and, if asked,
    ``avg-en`` (the same without English)."""
    final = final_scores(results)
    if final.is_empty():
        return {}
    part = final.filter((pl.col("task") == task) & (pl.col("metric") == metric)
                        & pl.col("language").is_in(languages))
    if part.is_empty():
        return {}
    frames = [part.select(["arm", "seed", "language", "value"])]
    averages = [(AVG, languages)]
    others = [lang for lang in languages if lang != "en"]
    if without_english and "en" in languages and others:
        averages.append((AVG_NO_EN, others))
    for name, langs in averages:
        frames.append(part.filter(pl.col("language").is_in(langs))
                      .group_by(["arm", "seed"])
                      .agg(pl.col("value").mean(), pl.len().alias("n_lang"))
                      .filter(pl.col("n_lang") == len(langs))
                      .select(["arm", "seed", pl.lit(name).alias("language"), "value"]))
    per_seed = pl.concat(frames)
    stats = per_seed.group_by(["arm", "language"]).agg(
        pl.col("value").mean().alias("mean"), pl.col("value").std().alias("std"),
        pl.len().alias("n"))
    # The delta's spread: the std over seeds of the difference to the baseline's same seed.
    paired = (per_seed.join(per_seed.filter(pl.col("arm") == baseline)
                            .select(["seed", "language", pl.col("value").alias("base")]),
                            on=["seed", "language"])
              .group_by(["arm", "language"])
              .agg((pl.col("value") - pl.col("base")).std().alias("delta_std"),
                   pl.len().alias("n_paired")))
    spread = {(r["arm"], r["language"]): r for r in paired.iter_rows(named=True)}
    cells = {(r["arm"], r["language"]): r for r in stats.iter_rows(named=True)}
    for (arm, column), cell in cells.items():
        base = cells.get((baseline, column))
        cell["delta"] = cell["mean"] - base["mean"] if base and arm != baseline else None
        pair = spread.get((arm, column))
        cell["delta_std"] = pair["delta_std"] if pair and arm != baseline and pair["n_paired"] > 1 else None
    return cells


def format_cell(cell: dict[str, Any] | None, delta: bool = True) -> str:
    """``mean`` (``±std`` over several seeds) and `` (+delta)`` against the baseline."""
    if cell is None:
        return "-"
    text = f"{cell['mean']:.1f}"
    if cell["n"] > 1 and cell["std"] is not None:
        text += f"±{cell['std']:.1f}"
    if delta and cell["delta"] is not None:
        text += f" ({cell['delta']:+.1f})"
    return text


def text_table(rows: list[list[str]], left: int = 1) -> str:
    """Rows of cells as aligned text: the first ``left`` columns to the left, the rest to
    the right, a rule under the header row."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def human_bytes(n: Any) -> str:
    """1536 -> "1.5 KiB"; None -> "-"."""
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"


def cost_table(stages: pl.DataFrame) -> str:
    """What each training stage cost: backend and processes, wall time, examples/s,
    tokens/s, peak memory, trainable of total parameters, checkpoint (adapter) size."""
    table = cost_rows(stages)
    return text_table(table, left=3) if table else ""


def cost_rows(stages: pl.DataFrame) -> list[list[str]]:
    """The cost table's rows, the header first (empty when no stage trained)."""
    rows = [r for r in stages.iter_rows(named=True) if r["kind"] != "base"]
    if not rows:
        return []
    table = [["stage", "backend", "status", "wall", "ex/s", "tok/s", "peak mem", "trainable",
              "checkpoint"]]
    for r in rows:
        trainable = (f"{r['trainable_params']:,} / {r['total_params']:,}"
                     if r["trainable_params"] is not None and r["total_params"] else "-")
        checkpoint = human_bytes(r["checkpoint_bytes"])
        if r.get("adapter_bytes"):
            checkpoint += f" (adapter {human_bytes(r['adapter_bytes'])})"
        backend = r.get("backend") or "-"
        if r.get("world_size") and r["world_size"] > 1:
            backend += f" x{r['world_size']}"
        # how it ran: precision, attention implementation, torch.compile, CPU dropout
        how = [r.get("precision"), r.get("attention"), "compiled" if r.get("compiled") else None,
               "cpu-dropout" if r.get("dropout") == "cpu" else None]
        if any(how):
            backend += " (" + " ".join(h for h in how if h) + ")"
        status = r["status"] + (f" (reused from {r['reused_from']})" if r.get("reused_from") else "")
        table.append([r["stage"], backend, status,
                      f"{r['wall_s']:.1f} s" if r["wall_s"] is not None else "-",
                      f"{r['examples_per_s']:.0f}" if r["examples_per_s"] is not None else "-",
                      f"{r['tokens_per_s']:.0f}" if r.get("tokens_per_s") is not None else "-",
                      human_bytes(r["peak_memory_bytes"]), trainable, checkpoint])
    return table


def xtreme_table(results: pl.DataFrame, arms: list[str], tasks: list[str],
                 languages: dict[str, list[str]]) -> str:
    """The XTREME table as text (``xtreme_rows``); empty when no XTREME task ran."""
    table = xtreme_rows(results, arms, tasks, languages)
    return text_table(table) if table else ""


def xtreme_rows(results: pl.DataFrame, arms: list[str], tasks: list[str],
                languages: dict[str, list[str]]) -> list[list[str]]:
    """Per arm, the XTREME summary of each XTREME target of the run (the mean over seeds
    of each language's final score, averaged as evaluate.py does), the group scores and
    the overall score where every task of them ran in every one of XTREME's languages.
    A task scored on only some of them reads "partial (n/N)" and has no summary, as
    evaluate.py gives none. Empty when no XTREME task ran."""
    present = [t for t in tasks if t in XTREME_TASKS]
    final = final_scores(results)
    if not present or final.is_empty():
        return []
    header = ["XTREME", *present]
    rows, extra = [], []
    for arm in arms:
        per_task: dict[str, dict[str, dict[str, float]]] = {}
        counts: dict[str, int] = {}
        for task in present:
            # XTREME's languages of the task only (a run may add others, XQuAD's Romanian).
            xtreme_langs = [lang for lang in languages[task] if lang in TASKS[task].languages]
            part = final.filter((pl.col("arm") == arm) & (pl.col("task") == task)
                                & pl.col("language").is_in(xtreme_langs))
            if part.is_empty():
                continue
            means = part.group_by(["metric", "language"]).agg(pl.col("value").mean())
            by_metric: dict[str, dict[str, float]] = {}
            for r in means.iter_rows(named=True):
                by_metric.setdefault(r["metric"], {})[r["language"]] = r["value"]
            per_task[task] = by_metric
            counts[task] = min(len(v) for v in by_metric.values())
        summaries = {t: task_summary(t, s).get("avg_metric") for t, s in per_task.items()
                     if is_complete(t, s)}
        overall = xtreme_score(per_task)
        for name in overall:
            if name not in extra:
                extra.append(name)
        rows.append((arm, summaries, counts, overall))
    header += extra
    table = [header]
    for arm, summaries, counts, overall in rows:
        cells = [f"{summaries[t]:.1f}" if summaries.get(t) is not None
                 else f"partial ({counts[t]}/{len(TASKS[t].languages)})" if t in counts else "-"
                 for t in present]
        cells += [f"{overall[g]:.1f}" if g in overall else "-" for g in extra]
        table.append([arm, *cells])
    return table
