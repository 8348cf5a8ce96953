"""``score``: a predictions file scored against a task's gold file with the task's own
metric (the scorers: ``xstilts_tui.scoring.scorers``)."""

from __future__ import annotations

import json

from xstilts_tui.errors import UsageError
from xstilts_tui.scoring import scorers
from xstilts_tui.scoring.scorers import native_predictions, score_recorded, scorer_for
from xstilts_tui.tasks.registry import TASKS


def cmd_score(task: str, gold_path: str | None, pred_path: str, lang: str | None) -> int:
    """Score a predictions file against a task's gold file (the formats: this module's
    doc); a stage's predictions parquet without ``--gold``: against the gold it records."""
    if task not in TASKS:
        raise UsageError(f"score: unknown task {task!r}; expected one of: {', '.join(sorted(TASKS))}")
    spec = TASKS[task]
    if lang is not None and lang not in spec.all_languages:
        raise UsageError(f"score: {task} has no language {lang!r}; expected one of: "
                         f"{', '.join(spec.all_languages)}")
    result: dict[str, object] = {"task": task, "language": lang}
    if gold_path is None:
        if not pred_path.endswith(".parquet"):
            raise UsageError("score: --gold FILE is needed, except for a stage's predictions "
                             "(predictions/<task>.<language>.parquet), which record their gold")
        result.update(score_recorded(spec, pred_path, lang))
        print(json.dumps(result))
        return 0
    if spec.generated:
        raise UsageError(f"score: {task} is generated: score a stage's predictions of it "
                         "(--pred predictions/<task>.<language>.parquet) without --gold")
    if pred_path.endswith(".parquet"):
        pred_path = native_predictions(pred_path, spec.kind, task)
    result.update(scorer_for(spec)(spec, gold_path, pred_path, lang))
    print(json.dumps(result))
    return 0


def add_parser(sub) -> None:
    """The ``score`` command on the command line's subparsers (its help lists every task
    and the formats)."""
    import argparse

    p = sub.add_parser("score", help="score a predictions file against a task's gold file",
                       description=scorers.__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, metavar="TASK",
                   help="one of: " + ", ".join(sorted(TASKS)))
    p.add_argument("--gold", metavar="FILE", help="the task's native gold file (or folder); "
                   "not needed for a stage's predictions parquet, which records its gold")
    p.add_argument("--pred", required=True, metavar="FILE",
                   help="QA: JSON {question id: answer}; classification: a label a line; tagging: "
                        "a tag a line, blank line between sentences; tatoeba: a line number a line; "
                        "bucc2018: source-id<TAB>english-id a line; or a stage's "
                        "predictions/<task>.<language>.parquet")
    p.add_argument("--lang", help="language of the answers (needed for mlqa)")
