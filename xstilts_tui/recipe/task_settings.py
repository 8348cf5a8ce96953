"""``[tasks.NAME]``: a task's languages, data files, sizes, training languages and their
sampling, data folder and own hyper-parameters, each checked."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from xstilts_tui.data.sources import unset_variable
from xstilts_tui.protocol.hparams import HParams
from xstilts_tui.recipe.schema import LANGUAGE_SAMPLING, TaskSettings
from xstilts_tui.recipe.sections import hparam_values, read_hparams, resolve_path
from xstilts_tui.recipe.table import Table, choice_error
from xstilts_tui.tasks.registry import RETRIEVAL, TASKS, TaskSpec


def task_spec(table: Table, key: str, name: str) -> TaskSpec:
    if name not in TASKS:
        table.fail(key, choice_error("task", name, sorted(TASKS)))
    return TASKS[name]


def _languages(table: Table, name: str, spec: TaskSpec) -> tuple[str, ...]:
    languages = table.get_str_list("languages", spec.languages)
    if not languages:
        table.fail("languages", "must name at least one language")
    for lang in languages:
        if lang not in spec.all_languages:
            table.fail("languages", choice_error(f"language for {name}", lang, list(spec.all_languages)))
    if len(set(languages)) != len(languages):
        table.fail("languages", "lists a language twice")
    return languages


def _data_files(table: Table, base: Path, name: str, spec: TaskSpec, languages: tuple[str, ...],
                values: dict[str, Any]) -> None:
    """train_file, validation_file and eval_files ("{lang}" in it), resolved and checked
    (a path naming an unset variable is checked when the stage runs)."""
    for key in ("train_file", "validation_file", "eval_files"):
        value = table.get(key, str)
        if value is None:
            continue
        if spec.generated:
            table.fail(key, f"{name} is generated offline and reads no files")
        value = resolve_path(base, os.path.expandvars(value))
        if unset_variable(value):
            values[key] = value  # checked when the stage runs, with the variable set
            continue
        if key == "eval_files":
            if "{lang}" not in value:
                table.fail(key, "must contain {lang}, filled with each evaluation language")
            for lang in languages:
                if not Path(value.replace("{lang}", lang)).is_file():
                    table.fail(key, f"no file for language {lang!r} at " + value.replace("{lang}", lang))
        elif key == "train_file" and "{lang}" in value:
            pass  # checked per training language below
        elif not Path(value).is_file():
            table.fail(key, f"no file at {value}")
        values[key] = value


def _sizes(table: Table, name: str, spec: TaskSpec, values: dict[str, Any]) -> None:
    for key in ("max_train_examples", "max_eval_examples"):
        value = table.get(key, int)
        if value is not None:
            if value < 0:
                table.fail(key, f"must be 0 (all) or more, got {value}")
            values[key] = value
    for key in ("generated_train_examples", "generated_eval_examples"):
        value = table.get(key, int)
        if value is not None:
            if not spec.generated:
                table.fail(key, f"only generated tasks take it; {name} loads its data")
            if value <= 0:
                table.fail(key, f"must be greater than 0, got {value}")
            values[key] = value


def _training_languages(table: Table, name: str, spec: TaskSpec, values: dict[str, Any]) -> None:
    """train_languages, how batches are drawn across them, and a train_file per language."""
    train_languages = table.get_str_list("train_languages")
    if train_languages:
        for lang in train_languages:
            if lang not in spec.train_languages:
                table.fail("train_languages", choice_error(
                    f"training language for {name}", lang, list(spec.train_languages)))
        if len(set(train_languages)) != len(train_languages):
            table.fail("train_languages", "lists a language twice")
        train_file = values.get("train_file")
        if train_file and len(train_languages) > 1 and "{lang}" not in train_file:
            table.fail("train_file", "must contain {lang} to train in several languages")
        values["train_languages"] = train_languages
    sampling = table.get("language_sampling", str)
    if sampling is not None:
        if sampling not in LANGUAGE_SAMPLING:
            table.fail("language_sampling", choice_error("language sampling", sampling,
                                                         list(LANGUAGE_SAMPLING)))
        values["language_sampling"] = sampling
    temperature = table.get("sampling_temperature", float)
    if temperature is not None:
        if temperature <= 0:
            table.fail("sampling_temperature", f"must be greater than 0, got {temperature}")
        values["sampling_temperature"] = temperature
    train_file = values.get("train_file")
    if train_file and "{lang}" in train_file and not unset_variable(train_file):
        for lang in values.get("train_languages", ("en",)):
            if not Path(train_file.replace("{lang}", lang)).is_file():
                table.fail("train_file", f"no file for language {lang!r} at " + train_file.replace("{lang}", lang))


def read_task_settings(file: str, base: Path, name: str, spec: TaskSpec, data: dict,
                       where: str | None = None) -> TaskSettings:
    """``[tasks.NAME]`` (or an arm's own settings of the task, ``where``), checked."""
    table = Table(file, where or f"tasks.{name}", data)
    languages = _languages(table, name, spec)
    values: dict[str, Any] = {"languages": languages}
    _data_files(table, base, name, spec, languages, values)
    _sizes(table, name, spec, values)
    _training_languages(table, name, spec, values)
    data_dir = table.get("data_dir", str)
    if data_dir is not None:
        if spec.kind != RETRIEVAL:
            table.fail("data_dir", f"only retrieval tasks read a data folder; {name} reads "
                                   "train_file, validation_file and eval_files")
        data_dir = resolve_path(base, os.path.expandvars(data_dir))
        if not unset_variable(data_dir) and not Path(data_dir).is_dir():
            table.fail("data_dir", f"no folder at {data_dir}")
        values["data_dir"] = data_dir
    overrides = table.get("hparams", dict)
    if overrides is not None:
        checked = read_hparams(file, f"{table.where}.hparams", overrides, HParams())
        given = hparam_values(Table(file, f"{table.where}.hparams", overrides))
        values["hparams"] = {k: getattr(checked, k) for k in given}
    table.finish([f.name for f in fields(TaskSettings)])
    return TaskSettings(**values)
