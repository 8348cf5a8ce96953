"""What the screens show about a run: its arms, targets and languages, its scores and
stages (``RunContext``), and the runs under an output root (``past_runs``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from xstilts_tui.recipe.schema import Recipe, RecipeError
from xstilts_tui.results.store import AVG, AVG_NO_EN, RESULT_COLUMNS, STAGE_COLUMNS, score_cells
from xstilts_tui.results.manifest import read_manifest, read_table
from xstilts_tui.tasks.registry import TASKS

DONE = ("done", "cached")
NOT_DONE = ("failed", "skipped", "cancelled")


def backend_label(intermediate: str | None, target: str) -> str:
    """"torch", or "lora→torch" when an arm's two phases train differently."""
    return target if intermediate in (None, target) else f"{intermediate}→{target}"


def metric_for(task: str, wanted: str) -> str:
    """``wanted`` (F1 or exact match) where the task has it, else the task's own metric."""
    names = TASKS[task].metric_names if task in TASKS else ("f1",)
    return wanted if wanted in names else names[0]


@dataclass
class RunContext:
    """One run as the screens show it: arms, baseline, targets and languages, the score
    rows and stage rows so far."""

    name: str
    arms: list[str]
    backends: dict[str, str]
    baseline: str
    targets: list[str]
    languages: dict[str, list[str]]
    results_dir: Path | None = None
    run_id: str = ""
    stage_ids: list[str] = field(default_factory=list)  # every stage of the run, in plan order
    stage_dirs: dict[str, str] = field(default_factory=dict)  # stage id -> its cache folder
    rows: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    _frame: pl.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        """How the compare screen names the run: its name, and its date when it has one."""
        return f"{self.name} {run_date(self.run_id)}".strip()

    @classmethod
    def of_recipe(cls, recipe: Recipe, results_dir: Path | None = None) -> RunContext:
        return cls(name=recipe.name, arms=[a.name for a in recipe.arms],
                   backends={a.name: backend_label(a.backend if a.intermediate else None,
                                                    a.target_backend) for a in recipe.arms},
                   baseline=recipe.baseline.name, targets=list(recipe.targets),
                   languages={t: list(recipe.tasks[t].languages) for t in recipe.targets},
                   results_dir=results_dir)

    @classmethod
    def of_results(cls, folder: Path) -> RunContext:
        """A finished or interrupted run's results folder, read-only."""
        manifest = read_manifest(folder)
        context = cls(name=manifest.name, arms=manifest.arm_names,
                      backends={a["name"]: backend_label(a["backend"] if a["intermediate"] else None,
                                                         a.get("target_backend", a["backend"]))
                                for a in manifest.arms},
                      baseline=manifest.baseline, targets=manifest.targets,
                      languages=manifest.languages, results_dir=folder, run_id=manifest.run_id,
                      stage_ids=[s["id"] for s in manifest.stages],
                      stage_dirs={s["id"]: s.get("dir", "") for s in manifest.stages})
        results = read_table(folder, "results.parquet", RESULT_COLUMNS)
        stages = read_table(folder, "stages.parquet", STAGE_COLUMNS)
        context.rows = results.to_dicts() if results is not None else []
        context.stages = stages.to_dicts() if stages is not None else []
        return context

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        """Scores that arrived: the frame is built again on its next use."""
        self.rows.extend(rows)
        self._frame = None

    def frame(self) -> pl.DataFrame:
        """The rows as a table, built once per batch of arrivals (every screen reads it)."""
        if self._frame is None:
            self._frame = pl.DataFrame(self.rows, schema=RESULT_COLUMNS)
        return self._frame

    def score_columns(self, task: str) -> list[str]:
        languages = self.languages[task]
        extra = [AVG_NO_EN] if "en" in languages and len(languages) > 1 else []
        return [*languages, AVG, *extra]

    def cells(self, task: str, metric: str,
              languages: list[str] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        """The task's cells over its languages (or ``languages``: the averages over those)."""
        return score_cells(self.frame(), task, metric_for(task, metric),
                           languages if languages is not None else self.languages[task],
                           self.baseline, without_english=True)

    def status(self) -> tuple[str, int, int]:
        """(done | cancelled | failed | incomplete, stages done or cached, stages in all)."""
        states = {r["stage"]: r["status"] for r in self.stages}
        total = len(self.stage_ids) or len(states)
        done = sum(1 for s in states.values() if s in DONE)
        if "cancelled" in states.values():
            return "cancelled", done, total
        if any(s in ("failed", "skipped") for s in states.values()):
            return "failed", done, total
        return ("done" if done >= total else "incomplete"), done, total

    def best_average(self) -> tuple[str, float] | None:
        """The arm with the best average over languages on the first target (F1 where the
        task has it), and that average."""
        if not self.targets or not self.rows:
            return None
        task = self.targets[0]
        cells = self.cells(task, "f1")
        averages = [(arm, cells[(arm, AVG)]["mean"]) for arm in self.arms if (arm, AVG) in cells]
        return max(averages, key=lambda a: a[1]) if averages else None


def run_date(run_id: str) -> str:
    """"20261129-101500-4242" -> "2026-11-29 10:15"; "" when the id is not of that form."""
    stamp = run_id.split("-")
    if len(stamp) < 2 or len(stamp[0]) != 8 or len(stamp[1]) != 6 or not (stamp[0] + stamp[1]).isdigit():
        return ""
    d, t = stamp[0], stamp[1]
    return f"{d[:4]}-{d[4:6]}-{d[6:]} {t[:2]}:{t[2:4]}"


@dataclass
class PastRun:
    folder: Path
    context: RunContext | None
    problem: str = ""


def past_runs(root: Path) -> list[PastRun]:
    """The runs under an output root (each folder with a run.json), newest first; a
    folder whose files cannot be read is listed with what is wrong."""
    found: list[PastRun] = []
    if not root.is_dir():
        return found
    for manifest in sorted(root.glob("*/run.json")):
        try:
            found.append(PastRun(manifest.parent, RunContext.of_results(manifest.parent)))
        except (RecipeError, OSError, pl.exceptions.PolarsError) as exc:
            found.append(PastRun(manifest.parent, None, str(exc).split(": ")[-1]))
    found.sort(key=lambda p: (p.context.run_id if p.context else "", p.folder.name), reverse=True)
    return found
