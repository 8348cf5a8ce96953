"""The report's last section: what made each run's numbers (the version and checkout,
libraries, hardware, precision, threads, world size, data and weights), read from every
result row, and a warning where runs shown side by side, or the stages of one run, were
made differently."""

from __future__ import annotations

import html
import json
from typing import Any

import polars as pl

# The fields compared between runs, as the report names them.
COMPARED = ("version", "libraries", "hardware", "device", "precision", "threads", "world_size")


def made_by(results: pl.DataFrame) -> dict[str, list[str]]:
    """{field: its distinct values over the run's result rows}, each value as text."""
    if "provenance" not in results.columns:
        return {}
    values: dict[str, list[str]] = {}
    for text in results["provenance"].drop_nulls().unique().sort().to_list():
        try:
            record = json.loads(text)
        except ValueError:
            continue
        for name, value in record.items():
            shown = _text(name, value)
            if shown is not None and shown not in values.setdefault(name, []):
                values[name].append(shown)
    return values


def _text(name: str, value: Any) -> str | None:
    if value is None or value == {}:
        return None
    if name == "libraries":
        return ", ".join(f"{k} {v}" for k, v in value.items() if v)
    if name == "data":
        return "; ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def _lines(values: dict[str, list[str]]) -> list[str]:
    if not values:
        return ["no provenance recorded (made by an older version)"]
    one = {k: " | ".join(v) for k, v in values.items()}
    version = one.get("version", "?")
    if values.get("commit"):
        version += f" (commit {one['commit']}" + (", uncommitted changes" if "True" in values.get("dirty", [])
                                                  else "") + ")"
    lines = [f"xstilts-tui {version}", f"libraries: {one.get('libraries', '?')}",
             f"hardware: {one.get('hardware', '?')}; device {one.get('device', '?')}, precision "
             f"{one.get('precision', '?')}" + (f", {one['threads']} threads a stage" if "threads" in one else "")
             + f"; world size {one.get('world_size', '?')}"]
    if "weights" in one:
        lines.append(f"weights: {one['weights']}")
    if "data" in one:
        lines.append(f"data: {one['data']}")
    if "reused_from" in one:
        lines.append(f"stages reused from {one['reused_from']} (kept across a change with --reuse)")
    mixed = [k for k in COMPARED if len(values.get(k, [])) > 1]
    if mixed:
        lines.append(f"warning: the stages of this run were made differently: {', '.join(mixed)}")
    return lines


def completeness(run) -> str | None:
    """"N of M stages done (k cancelled...)" when a run did not finish every stage, with
    where the earlier runs' tables are; None for a complete run."""
    stages = run.stages
    if stages is None or stages.is_empty():
        return None
    status = stages["status"].to_list()
    done = sum(1 for s in status if s in ("done", "cached"))
    if done == len(status):
        return None
    others = {s: status.count(s) for s in sorted(set(status)) if s not in ("done", "cached")}
    text = (f"incomplete: {done} of {len(status)} stages done ("
            + ", ".join(f"{n} {s}" for s, n in others.items()) + ")")
    history = run.folder / "history"
    if history.is_dir() and any(history.iterdir()):
        text += f"; earlier runs' tables are in {history}"
    return text


def differences(runs) -> list[str]:
    """The compared fields in which the runs differ."""
    seen = [made_by(run.results) for run in runs]
    return [k for k in COMPARED if len({tuple(v.get(k, [])) for v in seen}) > 1]


def section(runs, fmt: str) -> str:
    """The provenance section in a report format (empty for CSV)."""
    blocks = [(f"{run.name} (run {run.run_id})",
               [line for line in [completeness(run)] if line]
               + [f"warning: {problem}" for problem in getattr(run, "problems", [])]
               + _lines(made_by(run.results)))
              for run in runs]
    differ = differences(runs) if len(runs) > 1 else []
    warning = f"warning: the runs differ in what made them: {', '.join(differ)}" if differ else ""
    if fmt == "md":
        body = "\n\n".join(f"**{title}**\n\n" + "\n".join(f"- {line}" for line in lines)
                           for title, lines in blocks)
        return "\n## Provenance\n\n" + (warning + "\n\n" if warning else "") + body + "\n"
    if fmt == "latex":
        return "\n% Provenance\n" + (f"% {warning}\n" if warning else "") + "".join(
            f"% {title}\n" + "".join(f"%   {line}\n" for line in lines) for title, lines in blocks)
    if fmt == "html":
        items = "".join(f"<h3>{html.escape(title)}</h3><ul>"
                        + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>\n"
                        for title, lines in blocks)
        return "<h2>Provenance</h2>\n" + (f"<p>{html.escape(warning)}</p>\n" if warning else "") + items
    return ""
