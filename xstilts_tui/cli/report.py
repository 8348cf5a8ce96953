"""``report``: the tables (and plots) of finished runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from xstilts_tui.errors import UsageError
from xstilts_tui.results.significance import RESAMPLES


def _check_out(out: str) -> None:
    """``--out`` is a new path in a writable folder, or a regular file to replace; never a
    link, a folder, a FIFO or a device (replacing one would destroy what it is)."""
    import stat

    path = Path(out)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise UsageError(f"--out {out}: {exc.strerror or exc}") from None
    if mode is not None and not stat.S_ISREG(mode):
        kind = ("a symbolic link" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode)
                else "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "not a regular file")
        raise UsageError(f"--out {out}: {kind}; give a new file name or a regular file to replace")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"--out {out}: no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: the folder {folder} is not writable")


def cmd_report(runs: list[str], fmt: str, out: str | None, plots: str | None,
               resamples: int) -> int:
    from xstilts_tui.results.report import ReportError, add_significance, load_run, plot_deltas, plot_learning_curves, render

    if resamples < 100:
        raise UsageError(f"--resamples {resamples}: use at least 100")
    try:
        loaded = [load_run(Path(folder)) for folder in runs]
    except ReportError as exc:
        raise UsageError(f"report: {exc}") from None
    names = [r.name for r in loaded]
    if len(set(names)) != len(names):  # two runs of one recipe: told apart by their folders
        for run in loaded:
            run.name = f"{run.name} ({run.folder.name})"
    for run in loaded:
        add_significance(run, resamples)
    from xstilts_tui.results.report_provenance import completeness

    for run in loaded:
        for problem in ([completeness(run)] if completeness(run) else []) + run.problems:
            print(f"warning: {run.folder}: {problem}", file=sys.stderr)
    if out:
        _check_out(out)
    text = render(loaded, fmt)
    if out:
        path = Path(out)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        print(f"wrote {path}")
    else:
        sys.stdout.write(text)
    if plots:
        folder = Path(plots)
        folder.mkdir(parents=True, exist_ok=True)
        written = plot_deltas(loaded, folder)
        for run in loaded:
            written += plot_learning_curves(run, folder)
        print("plots: " + ", ".join(str(p) for p in written), file=sys.stderr if not out else sys.stdout)
    return 0


def add_parser(sub) -> None:
    r = sub.add_parser("report", help="tables (and plots) of finished runs: deltas with 95%% "
                       "intervals, the XTREME and cost tables")
    r.add_argument("runs", nargs="+", metavar="RUN", help="a run's output folder (several: side by side)")
    r.add_argument("--format", choices=("md", "latex", "csv", "html"), default="md")
    r.add_argument("--out", metavar="FILE", help="write the report here (default: print it)")
    r.add_argument("--plots", metavar="DIR", help="also write PNG and SVG plots into DIR")
    r.add_argument("--resamples", type=int, default=RESAMPLES, metavar="N",
                   help=f"bootstrap and permutation resamples (default {RESAMPLES}, as the run's own "
                        "table and the dashboard)")
