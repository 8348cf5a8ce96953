"""Loading task data: from the hub through ``datasets``, from local files, or generated."""

from __future__ import annotations

from typing import Any

from xstilts_tui import demo_data
from xstilts_tui.squad_format import read_squad_json
from xstilts_tui.tasks import TASKS, HubSplit


class DataError(RuntimeError):
    """A data source could not be read; the message names it and the way around it."""


def _from_hub(source: HubSplit, lang: str, lang_name: str, field_hint: str) -> list[dict]:
    import datasets

    config = source.config.format(lang=lang) if source.config else None
    try:
        dataset = datasets.load_dataset(source.path, config, split=source.split)
    except Exception as exc:  # offline, unknown id, schema problems: say which and how around
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"could not load {source.path}"
                        f"{f' ({config})' if config else ''} split {source.split} through "
                        f"datasets: {first[:200]}; to use local files, set {field_hint}") from exc
    rows = []
    prefix = source.id_prefix.format(lang=lang, lang_name=lang_name) if source.id_prefix else None
    for row in dataset:
        if prefix and not str(row["id"]).startswith(prefix):
            continue
        answers = row["answers"]
        rows.append({"id": str(row["id"]), "title": row.get("title", ""), "context": row["context"],
                     "question": row["question"],
                     "answers": {"text": list(answers["text"]),
                                 "answer_start": [int(s) for s in answers["answer_start"]]}})
    return rows


def load_rows(task: dict[str, Any], split: str, lang: str = "en") -> list[dict]:
    """Rows of one task, split ("train", "validation" or "test") and language.

    ``task`` is the task part of a stage spec: name and the recipe's settings.
    "test" is the per-language zero-shot evaluation set.
    """
    name = task["name"]
    spec = TASKS[name]
    settings = task["settings"]
    limit = settings["max_train_examples"] if split == "train" else settings["max_eval_examples"]
    if spec.generated:
        count = (settings["generated_train_examples"] if split == "train"
                 else settings["generated_eval_examples"])
        rows = demo_data.generate(name, split, lang, count)
    else:
        file_key = {"train": "train_file", "validation": "validation_file", "test": "eval_files"}[split]
        path = settings.get(file_key)
        if split == "test" and spec.evaluation is None:
            # Tasks without a multilingual test set are evaluated on English validation data.
            path = settings.get("validation_file")
            file_key = "validation_file"
        if path:
            rows = read_squad_json(path.format(lang=lang))
        else:
            source = {"train": spec.train, "validation": spec.validation,
                      "test": spec.evaluation or spec.validation}[split]
            if source is None:
                raise DataError(f"{name} has no {split} data")
            rows = _from_hub(source, lang, spec.lang_names.get(lang, lang),
                             f"tasks.{name}.{file_key} in the recipe")
    if not rows:
        raise DataError(f"{name} {split} ({lang}): no examples")
    return rows[:limit] if limit else rows
