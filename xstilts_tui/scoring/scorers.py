"""``xstilts-tui score``: a predictions file scored against a task's gold, with the
task's own metric, as XTREME's ``evaluate.py`` scores it.

Formats, per kind: QA - gold SQuAD JSON, predictions ``{"question id": "answer text"}``;
classification and multiple choice - gold in a local form of the task (or XTREME's label
file), predictions one label (name or index) a line in gold order; tagging - gold CoNLL-U
(udpos), PAN-X text (panx) or tab-separated word and tag lines, predictions one tag a line
with a blank line after each sentence; tatoeba - gold the folder of LASER's files (with
--lang), predictions the 0-based English line each source line retrieves, one a line;
bucc2018 - gold the .gold file, predictions the mined pairs, ``source-id<TAB>english-id`` a
line. A stage's kept predictions (``predictions/<task>.<language>.parquet``) are read as
the task's native predictions; without ``--gold`` they are scored against the gold they
record (every task, the demo's too).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from xstilts_tui.errors import UsageError
from xstilts_tui.scoring.metrics import score_qa
from xstilts_tui.tasks.squad import DataFileError, gold_answers, read_squad_json
from xstilts_tui.tasks.registry import EXTRACTIVE_QA


def _read_pred_lines(path: str) -> list[str]:
    return _file_lines(path, "--pred")


def _file_lines(path: str, flag: str) -> list[str]:
    """A file's lines as ``for line in open(path)`` gives them (evaluate.py's reading),
    without their line ends."""
    try:
        with open(path, encoding="utf-8") as handle:
            return [line.rstrip("\n") for line in handle]
    except FileNotFoundError:
        raise UsageError(f"score: {flag} {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"score: {flag} {path}: a folder, not a file") from None
    except UnicodeDecodeError:
        raise UsageError(f"score: {flag} {path}: not UTF-8 text") from None


def _stage_predictions(path: str, task: str, with_gold: bool = False):
    """A stage's predictions table (example id and prediction as text; the gold too with
    ``with_gold``), checked: a UsageError in one line for a file that is not one, or is
    another task's."""
    import polars as pl

    if not Path(path).is_file():
        raise UsageError(f"score: --pred {path}: no such file")
    try:
        frame = pl.read_parquet(path)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # polars raises, or panics, on what is not parquet
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise UsageError(f"score: --pred {path}: not a readable parquet file ({text})") from None
    wanted = ("example_id", "prediction") + (("gold",) if with_gold else ())
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise UsageError(f"score: --pred {path}: no column {', '.join(missing)}; expected a stage's "
                         "predictions/<task>.<language>.parquet")
    for column in wanted:
        if frame.schema[column] not in (pl.String, pl.Int64, pl.Int32):
            raise UsageError(f"score: --pred {path}: column {column} holds {frame.schema[column]}, "
                             "expected text")
    recorded = frame["task"].drop_nulls().unique().to_list() if "task" in frame.columns else []
    if recorded and recorded != [task]:
        raise UsageError(f"score: --pred {path}: the predictions of task {', '.join(map(str, recorded))}, "
                         f"not {task}; give --task {recorded[0]}")
    return frame.with_columns([pl.col(c).cast(pl.String) for c in wanted])


def _tag_lists(path: str, values) -> list[list[str]]:
    """Each sentence's predicted tags from their JSON text: a list of tag strings."""
    out = []
    for i, text in enumerate(values):
        try:
            tags = json.loads(text) if text is not None else None
        except (ValueError, RecursionError):
            tags = None
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise UsageError(f"score: --pred {path}: row {i}: expected the sentence's tags as a JSON "
                             "list of strings")
        out.append(tags)
    return out


def native_predictions(path: str, kind: str, task: str) -> str:
    """A stage's predictions file (``predictions/<task>.<lang>.parquet``) written out in the
    task's native predictions format, to a temporary file scored like any other."""
    import atexit
    import tempfile

    from xstilts_tui.tasks.registry import TOKEN_TAGGING

    frame = _stage_predictions(path, task)
    if kind == EXTRACTIVE_QA:
        text = json.dumps(dict(zip(frame["example_id"], frame["prediction"])), ensure_ascii=False)
    elif kind == TOKEN_TAGGING:
        text = "".join("\n".join(tags) + "\n\n" for tags in _tag_lists(path, frame["prediction"]))
    else:
        text = "".join(f"{label}\n" for label in frame["prediction"])
    handle = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8")
    with handle:
        handle.write(text)
    atexit.register(os.unlink, handle.name)
    return handle.name


def _is_label_file(path: str) -> bool:
    """XTREME's label file for a classification task: .tsv or .txt without a tab."""
    if Path(path).suffix.lower() not in (".tsv", ".txt") or not Path(path).is_file():
        return False
    return not any("\t" in line for line in _file_lines(path, "--gold"))


def _gold_table(spec, path: str) -> list[dict]:
    """A classification or multiple-choice gold file, read with polars (no compute stack)."""
    import polars as pl

    from xstilts_tui.tasks.rows import normalize_row

    suffix = Path(path).suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            try:
                frame = pl.read_ndjson(path)
            except Exception:
                frame = pl.read_json(path)
        elif suffix in (".csv", ".tsv"):
            frame = pl.read_csv(path, separator="\t" if suffix == ".tsv" else ",", quote_char=None
                                if suffix == ".tsv" else '"', infer_schema_length=0)
        elif suffix == ".parquet":
            frame = pl.read_parquet(path)
        else:
            raise UsageError(f"score: --gold {path}: unknown file form; {spec.name} reads {spec.local_files}")
    except FileNotFoundError:
        raise UsageError(f"score: --gold {path}: no such file") from None
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"score: --gold {path}: cannot read it ({str(exc).splitlines()[0][:120]})") from None
    rows = []
    for i, raw in enumerate(frame.iter_rows(named=True)):
        try:
            row = normalize_row(spec, raw, i)
        except (KeyError, ValueError, TypeError) as exc:
            raise UsageError(f"score: --gold {path}: row {i}: {exc}") from None
        if row is not None:
            rows.append(row)
    return rows


def _gold_tags(spec, path: str) -> list[dict]:
    """Gold tags from CoNLL-U, PAN-X text (word<TAB>tag), or XTREME's label files (a tag a
    line, a blank line after each sentence; evaluate.py's ``read_tag``)."""
    from xstilts_tui.tasks.formats import read_conllu, read_panx

    suffix = Path(path).suffix.lower()
    if suffix == ".conllu":
        return read_conllu(path)
    lines = _file_lines(path, "--gold")
    if any("\t" in line for line in lines):
        return read_panx(path)
    return [{"tags": tags} for tags in _predicted_sentences(lines)]


def _predicted_sentences(lines: list[str]) -> list[list[str]]:
    """evaluate.py's read_tag: one tag a line, a blank line after each sentence."""
    sentences, current = [], []
    for line in lines:
        if line.strip():
            current.append(line.strip())
        else:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences


def _score_qa_file(spec, gold_path: str, pred_path: str, lang: str | None) -> dict:
    if spec.metric == "mlqa" and lang is None:
        raise UsageError(f"score: {spec.name} normalises answers per language; give --lang, one of: "
                         f"{', '.join(spec.languages)}")
    try:
        gold = gold_answers(read_squad_json(gold_path))
    except DataFileError as exc:
        raise UsageError(f"score: --gold {exc}") from None
    if not gold:
        raise UsageError(f"score: --gold {gold_path}: no questions")
    empty = next((qid for qid, answers in gold if not answers), None)
    if empty is not None and not spec.unanswerable:
        raise UsageError(f"score: --gold {gold_path}: question {empty} has no answers")
    try:
        predictions = json.loads("\n".join(_file_lines(pred_path, "--pred")))
    except json.JSONDecodeError as exc:
        raise UsageError(f"score: --pred {pred_path}: not JSON ({exc})") from None
    except RecursionError:
        raise UsageError(f"score: --pred {pred_path}: JSON nested too deeply") from None
    if not isinstance(predictions, dict) or not all(isinstance(v, str) for v in predictions.values()):
        raise UsageError(f"score: --pred {pred_path}: expected a JSON object {{question id: answer text}}")
    return {**_qa_scores(spec, score_qa(gold, predictions, spec.metric, lang)),
            "predicted": sum(1 for q, _ in gold if q in predictions)}


def _qa_scores(spec, scores: dict) -> dict:
    """What ``score`` prints of ``score_qa``'s result: exact match and F1 first, the task's
    other numbers where the file gave them (v2.0's HasAns/NoAns), the number of questions."""
    names = ("exact_match", "f1", *spec.metric_names)
    return {**{name: scores[name] for name in names if name in scores}, "questions": scores["count"]}


def _as_label_names(spec, gold: list[str], lines: list[str], pred_path: str) -> tuple[list[str], dict]:
    """XTREME's label files hold names; predictions given as indices in the task's label
    order are read as those names (said in the result), never compared as text to names."""
    labels = list(spec.labels or ())
    if not labels or not lines or not all(x.isdigit() and x.isascii() for x in lines) \
            or any(g.isdigit() for g in gold):
        return lines, {}
    out_of_range = next((x for x in lines if int(x) >= len(labels)), None)
    if out_of_range is not None:
        raise UsageError(f"score: --pred {pred_path}: index {out_of_range} is not a label of "
                         f"{spec.name} (0-{len(labels) - 1}: {', '.join(labels)})")
    return [labels[int(x)] for x in lines], {"predictions_read_as": "indices into " + ", ".join(labels)}


def _score_label_file(spec, gold_path: str, pred_path: str, lang: str | None) -> dict:
    """XTREME's label files (a label a line): compared as text, as evaluate.py does."""
    from xstilts_tui.scoring.metrics import accuracy

    gold_lines = [line.strip() for line in _file_lines(gold_path, "--gold")]
    lines = [line.strip() for line in _file_lines(pred_path, "--pred")]
    if len(lines) != len(gold_lines):
        raise UsageError(f"score: --pred {pred_path}: {len(lines)} lines for {len(gold_lines)} gold labels")
    lines, note = _as_label_names(spec, gold_lines, lines, pred_path)
    return {"accuracy": accuracy(gold_lines, lines), "examples": len(gold_lines), **note}


def _score_classification(spec, gold_path: str, pred_path: str, lang: str | None) -> dict:
    from xstilts_tui.scoring.metrics import accuracy

    if _is_label_file(gold_path):
        return _score_label_file(spec, gold_path, pred_path, lang)
    rows = _gold_table(spec, gold_path)
    if not rows:
        raise UsageError(f"score: --gold {gold_path}: no examples")
    lines = [line.strip() for line in _file_lines(pred_path, "--pred")]
    if len(lines) != len(rows):
        raise UsageError(f"score: --pred {pred_path}: {len(lines)} lines for {len(rows)} gold examples")
    labels = list(spec.labels or ())
    # A label name or an index in the task's order; anything else (a capitalised name,
    # a blank line) is a wrong answer, as evaluate.py's string comparison makes it.
    predicted = [labels.index(x) if x in labels else int(x) if x.isdigit() and x.isascii() else None
                 for x in lines]
    result = {"accuracy": accuracy([r["label"] for r in rows], predicted), "examples": len(rows)}
    if labels:
        result["index_order"] = labels
    return result


def _score_tagging(spec, gold_path: str, pred_path: str, lang: str | None) -> dict:
    from xstilts_tui.scoring.metrics import accuracy, tagging_f1

    try:
        gold = _gold_tags(spec, gold_path)
    except DataFileError as exc:
        raise UsageError(f"score: --gold {exc}") from None
    if not gold:
        raise UsageError(f"score: --gold {gold_path}: no sentences")
    predicted = _predicted_sentences(_read_pred_lines(pred_path))
    lengths = [len(r["tags"]) for r in gold]
    if [len(p) for p in predicted] != lengths:
        raise UsageError(f"score: --pred {pred_path}: {len(predicted)} sentences of "
                         f"{sum(len(p) for p in predicted)} tags for {len(gold)} gold sentences of "
                         f"{sum(lengths)} words")
    tags = [r["tags"] for r in gold]
    result = dict(tagging_f1(tags, predicted)) if spec.metric == "seqeval" else \
        {"accuracy": accuracy([t for s in tags for t in s], [t for s in predicted for t in s])}
    return {**result, "sentences": len(gold)}


def _score_tatoeba(spec, gold_path: str, pred_path: str, lang: str | None) -> dict:
    from xstilts_tui.scoring.metrics import accuracy
    from xstilts_tui.tasks.formats import read_tatoeba

    if lang is None:
        raise UsageError("score: tatoeba scores one language; give --lang")
    if Path(gold_path).is_dir():  # LASER's files: English line i translates source line i
        try:
            count = len(read_tatoeba(gold_path, lang)["english"])
        except DataFileError as exc:
            raise UsageError(f"score: --gold {exc}") from None
        gold_lines = [str(i) for i in range(count)]
    else:  # XTREME's label file: the right line number a line
        gold_lines = [line.strip() for line in _file_lines(gold_path, "--gold")]
    lines = [line.strip() for line in _file_lines(pred_path, "--pred")]
    if len(lines) != len(gold_lines):
        raise UsageError(f"score: --pred {pred_path}: {len(lines)} lines for {len(gold_lines)} "
                         "English sentences (0-based line numbers, one a line)")
    # Compared as text, as evaluate.py does: "007" is not "7".
    return {"accuracy": accuracy(gold_lines, lines), "sentences": len(lines)}


def _score_bucc(spec, gold_path: str, pred_path: str, lang: str | None) -> dict:
    from xstilts_tui.scoring.retrieval import f1_of

    # evaluate.py's bucc_f1: each line stripped and split at tabs; a blank or odd line
    # is a pair that matches nothing.
    gold = {tuple(line.strip().split("\t")) for line in _file_lines(gold_path, "--gold")}
    predicted = {tuple(line.strip().split("\t")) for line in _file_lines(pred_path, "--pred")}
    precision, recall, f1 = f1_of(predicted, gold)
    return {"f1": f1, "precision": precision, "recall": recall, "pairs": len(predicted),
            "gold_pairs": len(gold)}


def scorer_for(spec):
    """The scorer of a task, chosen from its kind (and for retrieval its name), as
    evaluate.py chooses from its tables."""
    from xstilts_tui.tasks.registry import MULTIPLE_CHOICE, PAIR_CLASSIFICATION, SENTENCE_CLASSIFICATION, TOKEN_TAGGING

    by_kind = {EXTRACTIVE_QA: _score_qa_file, SENTENCE_CLASSIFICATION: _score_classification,
               PAIR_CLASSIFICATION: _score_classification, MULTIPLE_CHOICE: _score_classification,
               TOKEN_TAGGING: _score_tagging}
    by_name = {"tatoeba": _score_tatoeba, "bucc2018": _score_bucc}
    return by_name.get(spec.name) or by_kind[spec.kind]


def score_recorded(spec, pred_path: str, lang: str | None) -> dict:
    """A stage's predictions scored against the gold the file records, with the task's
    own metric (what the stage reported, for every task the demo's included)."""
    from xstilts_tui.scoring.metrics import accuracy, tagging_f1
    from xstilts_tui.tasks.registry import TOKEN_TAGGING

    frame = _stage_predictions(pred_path, spec.name, with_gold=True)
    if lang is None and "language" in frame.columns and frame["language"].n_unique() == 1:
        lang = frame["language"][0]
    if spec.kind == EXTRACTIVE_QA:
        gold = [(qid, json.loads(g)) for qid, g in zip(frame["example_id"], frame["gold"])]
        return _qa_scores(spec, score_qa(gold, dict(zip(frame["example_id"], frame["prediction"])),
                                         spec.metric, lang))
    if spec.kind == TOKEN_TAGGING:
        gold = _tag_lists(pred_path, frame["gold"])
        predicted = _tag_lists(pred_path, frame["prediction"])
        return (dict(tagging_f1(gold, predicted)) if spec.metric == "seqeval" else
                {"accuracy": accuracy([t for s in gold for t in s], [t for s in predicted for t in s])})
    return {"accuracy": accuracy(frame["gold"].to_list(), frame["prediction"].to_list()),
            "examples": frame.height}
