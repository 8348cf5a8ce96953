"""A run's folder as written by the runner: its manifest (``run.json``) read once, for
the dashboard's past runs and for reports."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstilts_tui.recipe.schema import RecipeError

# The columns a run's table must have to be read (later columns may be missing in the
# tables of older versions: they read as null).
REQUIRED = {"results.parquet": ("arm", "seed", "task", "language", "split", "metric", "value", "step"),
            "stages.parquet": ("stage", "status")}


@dataclass
class RunManifest:
    name: str
    run_id: str
    arms: list[dict[str, Any]]  # as the recipe's to_dict wrote them
    baseline: str  # the first arm without intermediate tasks
    targets: list[str]
    languages: dict[str, list[str]]
    stages: list[dict[str, Any]]  # id, key, kind, arms, seed, task, deps, dir, command

    @property
    def arm_names(self) -> list[str]:
        return [a["name"] for a in self.arms]


def read_manifest(folder: Path) -> RunManifest:
    """``folder/run.json``; a RecipeError naming the file when it is not a run's."""
    path = folder / "run.json"
    if not path.is_file():
        raise RecipeError(f"{folder}: no run.json; expected the output folder of an xstilts-tui run")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        recipe = manifest["recipe"]
        arms = list(recipe["arms"])
        baseline = next((a["name"] for a in arms if not a["intermediate"]), arms[0]["name"])
        return RunManifest(name=recipe["name"], run_id=str(manifest.get("run", "")), arms=arms,
                           baseline=baseline, targets=list(recipe["targets"]),
                           languages={t: list(recipe["tasks"][t]["languages"])
                                      for t in recipe["targets"]},
                           stages=list(manifest.get("stages", [])))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise RecipeError(f"{path}: not a run manifest of xstilts-tui ({exc!r})") from None


def read_table(folder: Path, name: str, schema: dict[str, Any]):
    """One of a run's tables (``results.parquet``, ``stages.parquet``) with ``schema``'s
    columns and types (absent ones null), None when the file is not there; a RecipeError
    naming the file when it cannot be read, lacks a column or holds the wrong types."""
    import polars as pl

    path = folder / name
    if not path.is_file():
        return None
    try:
        frame = pl.read_parquet(path)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # polars raises, or panics, on a damaged file
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise RecipeError(f"{path}: not a readable table ({text}); the run's events.jsonl still "
                          "holds every event") from None
    missing = [c for c in REQUIRED.get(name, ()) if c not in frame.columns]
    if missing:
        raise RecipeError(f"{path}: no column {', '.join(missing)}; not a table this tool wrote")
    try:
        return frame.select([pl.col(c).cast(t, strict=True) if c in frame.columns
                             else pl.lit(None, dtype=t).alias(c) for c, t in schema.items()])
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise RecipeError(f"{path}: a column holds the wrong type ({text})") from None


def write_manifest(plan, run_id: str, slots: list[str], made: dict[str, dict[str, Any]]) -> None:
    """``run.json``: the run, the resolved recipe, the slots, what made the run and each
    stage (``provenance``), each stage's folder and command; written atomically."""
    import os
    import sys

    from xstilts_tui import __version__
    from xstilts_tui.protocol import provenance

    manifest = {
        "run": run_id,
        "xstilts_tui": __version__,
        "python": sys.version.split()[0],
        "recipe": plan.recipe.to_dict(),
        "slots": slots,
        "provenance": provenance.of_run(plan),
        "stages": [{"id": s.id, "key": s.key, "kind": s.kind, "arms": list(s.arms),
                    "seed": s.seed, "task": s.task, "deps": list(s.deps),
                    "dir": str(plan.stage_dir(s)), "reused": s.reused, "provenance": made[s.id],
                    "command": plan.command(s)} for s in plan.stages],
    }
    path = plan.output_dir / "run.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)
