"""Loading task data: from the hub through ``datasets``, from local files, or generated.

Every source gives rows in one shape per task kind:

* extractive QA: the hub's SQuAD schema (id, title, context, question, answers);
* classification: ``{"id", "text", "pair" (None for single sentences), "label"}``;
* multiple choice: ``{"id", "text", "choices", "label"}``;
* tagging: ``{"id", "tokens", "tags"}`` with tags as strings.

Rows without a gold label (a hub test split's ``-1`` or ``""``) are left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xstilts_tui.data import sources as datasources
from xstilts_tui.data import demo as demo_data
from xstilts_tui.tasks.formats import (
    TATOEBA_CODES,
    read_bucc,
    read_conllu,
    read_panx,
    read_tatoeba,
)
from xstilts_tui.data.sources import unset_variable
from xstilts_tui.tasks.rows import expected_columns, normalize_row
from xstilts_tui.tasks.squad import DataFileError, read_squad_json
from xstilts_tui.tasks.registry import EXTRACTIVE_QA, TASKS, TOKEN_TAGGING, HubSplit, TaskSpec
from xstilts_tui.tasks.selection import holdout
from xstilts_tui.data.upstream import UPSTREAM


class DataError(RuntimeError):
    """A data source could not be read; the message names it and the way around it."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _normalize_all(spec: TaskSpec, rows, where: str, tag_names: list[str] | None = None) -> list[dict]:
    out = []
    for i, row in enumerate(rows):
        try:
            item = normalize_row(spec, row, i, tag_names)
        except (KeyError, TypeError, ValueError) as exc:
            what = f"no column {exc}" if isinstance(exc, KeyError) else str(exc)
            raise DataError(f"{where}: row {i}: {what} (expected the columns of {spec.name}: "
                            f"{expected_columns(spec)})") from None
        if item is not None:
            out.append(item)
    return out


def _tag_names(dataset, spec: TaskSpec) -> list[str] | None:
    """Tag names of a hub dataset whose tags are a sequence of ClassLabel."""
    feature = dataset.features.get(spec.columns.tags) if hasattr(dataset, "features") else None
    inner = getattr(feature, "feature", None)
    return list(inner.names) if hasattr(inner, "names") else None


def _hub_dataset(source: HubSplit, lang: str, lang_name: str, field_hint: str):
    """One split of a hub dataset for a language, and its configuration name: from a
    local dataset folder when ``source.path`` is one, else from the first of the split's
    sources (``xstilts_tui.data.sources``) that is on this machine or can be fetched.
    Upstream sources give rows (Tatoeba: the aligned sentences) instead of a Dataset."""
    import datasets

    config = source.config.format(lang=lang, lang_name=lang_name,
                                  code3=TATOEBA_CODES.get(lang, lang)) if source.config else None
    where = f"{source.path}{f' ({config})' if config else ''} split {source.split}"
    if Path(source.path).is_dir():
        try:
            return datasets.load_dataset(source.path, config, split=source.split), config
        except Exception as exc:
            raise DataError(f"could not load {where} through datasets: {_first_line(exc)}; "
                            f"to use local files, set {field_hint}") from exc
    try:
        found, manifest = datasources.obtain(source, lang, lang_name)
    except datasources.DataSourceError as exc:
        manual = next((t.manual for t in TASKS.values() if t.manual and source in
                       (t.train, t.validation, t.evaluation)), "")
        raise DataError(f"{where}: {exc}; {manual or 'to use local files, set ' + field_hint}") from None
    root = datasources.data_root()
    folder = root / manifest["folder"]
    try:
        if found.kind == "hub":
            dataset = datasets.load_dataset(str(folder), found.config, split=found.split)
        elif found.kind == "parquet-export":
            files = [str(folder / item["path"]) for item in manifest["files"]]
            dataset = datasets.load_dataset("parquet", data_files=files, split="train")
        else:
            dataset = UPSTREAM[found.upstream].rows(root, found.split, lang, lang_name)
    except Exception as exc:
        raise DataError(f"{found.label}: could not read the fetched files in {folder}: "
                        f"{_first_line(exc)}") from exc
    return dataset, config


def _from_hub(source: HubSplit, lang: str, lang_name: str, field_hint: str,
              spec: TaskSpec | None = None) -> list[dict]:
    dataset, config = _hub_dataset(source, lang, lang_name, field_hint)
    prefix = source.id_prefix.format(lang=lang, lang_name=lang_name) if source.id_prefix else None
    where = f"{source.path}{f' ({config})' if config else ''} {source.split}"
    if spec is not None and spec.kind != EXTRACTIVE_QA:
        rows = (r for r in dataset if not prefix or str(r.get("id", "")).startswith(prefix))
        return _normalize_all(spec, rows, where, _tag_names(dataset, spec))
    rows = []
    for row in dataset:
        if prefix and not str(row["id"]).startswith(prefix):
            continue
        answers = row["answers"]
        rows.append({"id": str(row["id"]), "title": row.get("title", ""), "context": row["context"],
                     "question": row["question"],
                     "answers": {"text": list(answers["text"]),
                                 "answer_start": [int(s) for s in answers["answer_start"]]}})
    return rows


_TABLE_BUILDERS = {".jsonl": ("json", {}), ".json": ("json", {}), ".csv": ("csv", {}),
                   ".tsv": ("csv", {"delimiter": "\t"}), ".parquet": ("parquet", {})}


def read_conll_tags(path: str | Path) -> list[dict]:
    """Tagged sentences from CoNLL-style text: one word a line, its tag in the last
    tab-separated column, a blank line between sentences, ``#`` lines skipped."""
    path = Path(path)
    rows: list[dict] = []
    tokens: list[str] = []
    tags: list[str] = []

    def close() -> None:
        if tokens:
            rows.append({"id": f"{path.stem}-{len(rows)}", "tokens": list(tokens), "tags": list(tags)})
            tokens.clear()
            tags.clear()

    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                line = line.rstrip("\n")
                if not line.strip():
                    close()
                    continue
                if line.startswith("#"):
                    continue
                parts = line.split("\t")
                if len(parts) < 2:
                    raise DataFileError(f"{path}:{number}: expected a word and its tag separated "
                                        f"by a tab, got {line[:60]!r}")
                tokens.append(parts[0])
                tags.append(parts[-1])
    except UnicodeDecodeError:
        raise DataFileError(f"{path}: not UTF-8 text") from None
    except FileNotFoundError:
        raise DataFileError(f"{path}: no such file") from None
    close()
    return rows


def _expanded(path: str) -> str:
    """A data path with environment variables filled; an unset one is an error here."""
    import os

    path = os.path.expandvars(path)
    variable = unset_variable(path)
    if variable:
        raise DataError(f"{path}: set the environment variable {variable} to where this data lives")
    return path


def read_local(spec: TaskSpec, path: str) -> list[dict]:
    """A task's rows from a local file in one of its local forms."""
    path = _expanded(path)
    if spec.kind == EXTRACTIVE_QA:
        return read_squad_json(path)
    suffix = Path(path).suffix.lower()
    if spec.kind == TOKEN_TAGGING and suffix == ".conllu":
        return read_conllu(path)
    if spec.name == "panx" and suffix not in (".jsonl", ".json", ".parquet"):
        return read_panx(path)
    if spec.kind == TOKEN_TAGGING and suffix not in (".jsonl", ".json", ".parquet"):
        return read_conll_tags(path)
    if suffix not in _TABLE_BUILDERS:
        raise DataFileError(f"{path}: unknown file form {suffix or '(no suffix)'}; "
                            f"{spec.name} reads {spec.local_files}")
    import datasets

    builder, options = _TABLE_BUILDERS[suffix]
    try:
        dataset = datasets.load_dataset(builder, data_files=str(path), split="train", **options)
    except Exception as exc:
        raise DataFileError(f"{path}: could not read it as {builder}: {_first_line(exc)}") from exc
    return _normalize_all(spec, dataset, str(path), _tag_names(dataset, spec))


def load_rows(task: dict[str, Any], split: str, lang: str = "en") -> list[dict]:
    """Rows of one task, split ("train", "validation" or "test") and language.

    ``task`` is the task part of a stage spec: name and the recipe's settings.
    "test" is the per-language zero-shot evaluation set. A task that selects on rows held
    out of training (TyDiQA) gets them as "validation", and "train" without them.
    """
    spec, settings = TASKS[task["name"]], task["settings"]
    limit = settings["max_train_examples"] if split == "train" else settings["max_eval_examples"]
    if spec.selection == "train-holdout" and split in ("train", "validation") and lang == "en" \
            and not settings.get("validation_file"):
        kept, held = holdout(_split_rows(spec, settings, "train", "en"))
        rows = held if split == "validation" else kept
    else:
        rows = _split_rows(spec, settings, split, lang)
    return rows[:limit] if limit else rows


def _split_rows(spec: TaskSpec, settings: dict[str, Any], split: str, lang: str) -> list[dict]:
    """Every row of one split and language, from local files, the hub or the generator."""
    name = spec.name
    if spec.generated:
        count = (settings["generated_train_examples"] if split == "train"
                 else settings["generated_eval_examples"])
        rows = demo_data.generate(name, split, lang, count)
        if spec.kind != EXTRACTIVE_QA:
            rows = _normalize_all(spec, rows, name)
    else:
        file_key = {"train": "train_file", "validation": "validation_file", "test": "eval_files"}[split]
        path = settings.get(file_key)
        if split == "test" and spec.evaluation is None:
            # Tasks without a multilingual test set are evaluated on English validation data.
            path = settings.get("validation_file")
            file_key = "validation_file"
        if path:
            if split == "train" and lang != "en" and "{lang}" not in path:
                raise DataError(f"tasks.{name}.train_file has no {{lang}} to train in {lang}")
            rows = read_local(spec, path.replace("{lang}", lang))
        else:
            source = {"train": spec.train if lang == "en" else spec.translate_train,
                      "validation": spec.validation,
                      "test": spec.evaluation or spec.validation}[split]
            if source is None:
                raise DataError(f"{name} has no {split} data on the hub; set tasks.{name}.{file_key} "
                                f"({spec.local_files})")
            rows = _from_hub(source, lang, spec.lang_names.get(lang, lang),
                             f"tasks.{name}.{file_key} in the recipe", spec)
            if split == "train" and lang == "en":  # more English training data (ANLI+)
                for more in spec.train_also:
                    rows += _from_hub(more, lang, lang, f"tasks.{name}.{file_key} in the recipe", spec)
    where = path.replace("{lang}", lang) if not spec.generated and path else f"{name} {split} ({lang})"
    if not rows:
        raise DataError(f"{where}: no examples")
    check_rows(spec, rows, where, split)
    return rows


def check_rows(spec: TaskSpec, rows: list[dict], where: str, split: str) -> None:
    """Refuse data the pipeline would turn into wrong numbers without a word: QA questions
    without answers (but SQuAD v2.0's unanswerable ones), answers not where their
    answer_start says (training), a question id twice (predictions are keyed by it); tags
    outside a task's fixed tag set."""
    if spec.kind == EXTRACTIVE_QA:
        seen: set[str] = set()
        for row in rows:
            qid = row["id"]
            if qid in seen:
                raise DataError(f"{where}: question {qid} appears twice; ids must be unique")
            seen.add(qid)
            answers = row["answers"]
            if not answers["text"] and not spec.unanswerable:
                raise DataError(f"{where}: question {qid} has no answers")
            if split == "train":
                for text, start in zip(answers["text"], answers["answer_start"]):
                    if row["context"][start:start + len(text)] != text:
                        raise DataError(f"{where}: question {qid}: answer {text[:40]!r} is not at "
                                        f"answer_start {start} of its context")
    elif spec.kind == TOKEN_TAGGING and spec.tag_set:
        allowed = set(spec.tag_set)
        for row in rows:
            bad = next((t for t in row["tags"] if t not in allowed), None)
            if bad is not None:
                raise DataError(f"{where}: sentence {row['id']}: tag {bad!r} is not one of "
                                f"{spec.tag_set_name} ({', '.join(spec.tag_set)})")


def load_retrieval(task: dict[str, Any], lang: str) -> dict[str, Any]:
    """A retrieval task's sentences for one language: Tatoeba's aligned pairs (from the
    recipe's data_dir or the hub), or BUCC's sample and test splits (data_dir)."""
    name = task["name"]
    spec = TASKS[name]
    folder = task["settings"].get("data_dir")
    folder = _expanded(folder) if folder else None
    limit = task["settings"]["max_eval_examples"]
    if name == "tatoeba":
        if folder:
            data = read_tatoeba(folder, lang)
        else:
            rows, _ = _hub_dataset(spec.evaluation, lang, lang, f"tasks.{name}.data_dir in the recipe")
            if isinstance(rows, dict):  # LASER's own files, read line by line
                data = rows
            else:  # the hub's rows keep each line's newline
                data = {"source": [r["source_sentence"].rstrip("\r\n") for r in rows],
                        "english": [r["target_sentence"].rstrip("\r\n") for r in rows]}
        if limit:
            data = {k: v[:limit] for k, v in data.items()}
        return data
    if name == "bucc2018":
        if not folder:
            raise DataError("bucc2018 reads the shared task's files; set tasks.bucc2018.data_dir")
        return {"sample": read_bucc(folder, lang, "sample"), "test": read_bucc(folder, lang, "test")}
    raise DataError(f"{name} is not a retrieval task")
