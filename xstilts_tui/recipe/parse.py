"""Recipes: TOML files validated into typed objects.

Every problem is reported as one ``RecipeError`` line naming the file, the field and
what would be right. Paths inside a recipe (model folders, data files, corpora) are
relative to the recipe file; ``output_dir`` is relative to the working directory.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from xstilts_tui.protocol.hparams import HParams
from xstilts_tui.recipe.overrides import apply_settings
from xstilts_tui.recipe.schema import BACKENDS, NAME, Arm, Recipe, RecipeError, TaskSettings
from xstilts_tui.recipe.sections import (read_backend_profiles, read_hparams, read_launch, read_mlm,
                                         read_model, read_slurm, read_tracking)
from xstilts_tui.recipe.table import Table, choice_error
from xstilts_tui.recipe.task_settings import read_task_settings, task_spec
from xstilts_tui.tasks.registry import DEFAULT_MAX_POSITIONS, RETRIEVAL, TASKS

def _has_file(tasks_data: Any, task: str, key: str) -> bool:
    settings = tasks_data.get(task) if isinstance(tasks_data, dict) else None
    return isinstance(settings, dict) and isinstance(settings.get(key), str)


def _check_max_length(top: Table, model, where: str, max_length: int | None) -> None:
    """A model built from a configuration has room for its position embeddings less two."""
    if model.config is None or max_length is None:
        return
    positions = model.config.get("max_position_embeddings", DEFAULT_MAX_POSITIONS)
    if max_length > positions - 2:
        top.fail(where, f"{max_length} exceeds what model.config.max_position_embeddings "
                        f"({positions}) allows: at most {positions - 2}")


def _top_fields(top: Table, file: str) -> tuple[str, str, str | None, tuple[int, ...]]:
    """The recipe's name, description, output folder and seeds."""
    name = top.get("name", str) or Path(file).stem
    if not NAME.fullmatch(name) or name in (".", ".."):
        top.fail("name", "must be a name, not a path: letters, digits, '.', '_' and '-', "
                         f"starting with a letter or digit; got {name!r}")
    description = top.get("description", str, "")
    output_dir = top.get("output_dir", str)
    seeds = top.get("seeds", list, [0])
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        top.fail("seeds", f"expected a non-empty list of integers 0 or more, got {seeds!r}")
    if any(s >= 2**32 for s in seeds):
        top.fail("seeds", f"each seed must be below 2**32 (what random generators take), got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        top.fail("seeds", "lists a seed twice")
    return name, description, output_dir, tuple(seeds)


def _phase_hparams(top: Table, file: str, model) -> tuple[HParams, HParams]:
    """``[hparams]`` shared, with ``[hparams.intermediate]`` and ``[hparams.target]`` over it."""
    hp_data = top.get("hparams", dict, {})
    shared = read_hparams(file, "hparams", {k: v for k, v in hp_data.items()
                                            if k not in ("intermediate", "target")}, HParams())
    phases = {phase: read_hparams(file, f"hparams.{phase}", hp_data.get(phase, {}), shared)
              for phase in ("intermediate", "target")}
    for phase, hp in phases.items():
        _check_max_length(top, model, f"hparams.{phase}.max_length" if phase in hp_data
                          else "hparams.max_length", hp.max_length)
    return phases["intermediate"], phases["target"]


def _targets(top: Table, tasks_data: Any) -> tuple[str, ...]:
    targets = top.get_str_list("targets", required=True)
    if not targets:
        top.fail("targets", "must name at least one target task")
    for t in targets:
        spec = task_spec(top, "targets", t)
        if spec.kind == RETRIEVAL:
            if spec.evaluation is None and not _has_file(tasks_data, t, "data_dir"):
                top.fail("targets", f"{t} has no data on the hub; give tasks.{t}.data_dir "
                                    f"({spec.local_files})")
            continue
        if spec.train is None and not spec.generated and not _has_file(tasks_data, t, "train_file"):
            top.fail("targets", f"{t} has no English training data on the hub; give "
                                f"tasks.{t}.train_file ({spec.local_files})")
        if (spec.evaluation or spec.validation) is None and not spec.generated \
                and not _has_file(tasks_data, t, "eval_files") \
                and not _has_file(tasks_data, t, "validation_file"):
            top.fail("targets", f"{t} has no evaluation data on the hub; give "
                                f"tasks.{t}.validation_file ({spec.local_files})")
    if len(set(targets)) != len(targets):
        top.fail("targets", "lists a task twice")
    return targets


def _intermediate(table: Table, tasks_data: Any) -> tuple[str, ...]:
    intermediate = table.get_str_list("intermediate")
    for t in intermediate:
        spec = task_spec(table, "intermediate", t)
        if spec.kind == RETRIEVAL:
            table.fail("intermediate", f"{t} is a retrieval task with no training data; "
                                       "name it in targets")
        if spec.train is None and not spec.generated and not _has_file(tasks_data, t, "train_file"):
            table.fail("intermediate", f"{t} has no training data on the hub; give "
                                       f"tasks.{t}.train_file ({spec.local_files})")
        if spec.validation is None and not spec.generated \
                and not _has_file(tasks_data, t, "validation_file"):
            table.fail("intermediate", f"{t} has no validation data on the hub; give "
                                       f"tasks.{t}.validation_file ({spec.local_files})")
    if len(set(intermediate)) != len(intermediate):
        table.fail("intermediate", "lists a task twice")
    return intermediate


def _arm(table: Table, file: str, base: Path, tasks_data: Any, profiles: dict, arms: list[Arm]) -> Arm:
    """One ``[[arms]]`` entry: its name, intermediate tasks, continued MLM and backends."""
    arm_name = table.get("name", str, required=True)
    if not arm_name.strip() or "/" in arm_name:
        table.fail("name", f"must be a non-empty name without '/', got {arm_name!r}")
    own = table.get("tasks", dict, {})
    merged = {**tasks_data, **{t: {**tasks_data.get(t, {}), **v} for t, v in own.items()
                               if isinstance(v, dict)}} if isinstance(tasks_data, dict) else tasks_data
    intermediate = _intermediate(table, merged)
    task_settings = _arm_tasks(table, file, base, merged, intermediate, own)
    mlm_data = table.get("mlm", dict)
    mlm = read_mlm(file, base, f"{table.where}.mlm", mlm_data) if mlm_data is not None else None
    if mlm is not None and not intermediate:
        table.fail("mlm", "continued MLM is mixed into intermediate training; "
                          "name at least one intermediate task")
    backend = table.get("backend", str, "torch")
    phase_backends = {}
    for key in ("backend", "intermediate_backend", "target_backend"):
        value = table.get(key, str)
        if value is not None and value not in BACKENDS and value not in profiles:
            table.fail(key, choice_error("backend", value, sorted(BACKENDS) + sorted(profiles)))
        phase_backends[key] = value
    if phase_backends["intermediate_backend"] and not intermediate:
        table.fail("intermediate_backend", "this arm has no intermediate task")
    table.finish()
    if any(a.name == arm_name for a in arms):
        table.fail("name", f"another arm is already called {arm_name!r}")
    return Arm(name=arm_name, intermediate=intermediate, mlm=mlm,
               backend=phase_backends["intermediate_backend"] or backend,
               target_backend=phase_backends["target_backend"] or backend, tasks=task_settings)


def _arm_tasks(table: Table, file: str, base: Path, merged: dict, intermediate: tuple[str, ...],
               own: dict) -> dict[str, TaskSettings]:
    """``[arms.tasks.NAME]``: an arm's own settings of one of its intermediate tasks (its
    training languages, data files...), over the recipe's ``[tasks.NAME]``; targets keep
    the recipe's settings, so that every arm is scored on the same data."""
    out: dict[str, TaskSettings] = {}
    for name, values in own.items():
        if name not in intermediate:
            table.fail(f"tasks.{name}", f"{name} is not one of this arm's intermediate tasks; an "
                                        "arm's own task settings apply to those only")
        if not isinstance(values, dict):
            table.fail(f"tasks.{name}", f"expected a table, got {type(values).__name__}")
        if "hparams" in values:
            table.fail(f"tasks.{name}.hparams", f"an arm cannot change a task's hyper-parameters; "
                                                f"set them in [tasks.{name}.hparams]")
        out[name] = read_task_settings(file, base, name, TASKS[name], merged[name],
                                       where=f"{table.where}.tasks.{name}")
    return out


def _tasks(top: Table, file: str, base: Path, tasks_data: Any, used: set[str],
           model, narrowed: bool = False) -> dict[str, TaskSettings]:
    """``[tasks.NAME]`` of every task the recipe uses (defaults where it gives none).
    A table for a task nothing uses is refused, unless ``--set`` settings were given
    (``narrowed``: they may leave a study's tables, or a prepared list's settings,
    without a stage): then it is checked and left out."""
    tasks: dict[str, TaskSettings] = {}
    tasks_table = Table(file, "tasks", tasks_data)
    for task_name in tasks_data:
        task_spec(tasks_table, task_name, task_name)
        if task_name not in used:
            if not narrowed:
                tasks_table.fail(task_name, "settings for a task no arm or target uses")
            read_task_settings(file, base, task_name, TASKS[task_name], tasks_data[task_name])
        tasks_table.seen.add(task_name)
    for task_name in sorted(used):
        tasks[task_name] = read_task_settings(file, base, task_name, TASKS[task_name],
                                              tasks_data.get(task_name, {}))
        _check_max_length(top, model, f"tasks.{task_name}.hparams.max_length",
                          (tasks[task_name].hparams or {}).get("max_length"))
    return tasks


def parse_recipe(text: str, file: str, base: Path | None = None,
                 settings: tuple[str, ...] = ()) -> Recipe:
    """Validate recipe text; ``base`` is the folder relative paths start from;
    ``settings``: the command line's ``--set KEY=VALUE`` overrides, applied first."""
    base = base or Path(file).resolve().parent
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{file}: TOML syntax: {exc}") from None
    except RecursionError:
        raise RecipeError(f"{file}: TOML nested too deeply to be a recipe") from None
    if settings:
        try:
            data = apply_settings(data, settings)
        except RecipeError as exc:
            raise RecipeError(f"{file}: {exc}") from None
    top = Table(file, "", data)
    name, description, output_dir, seeds = _top_fields(top, file)
    model = read_model(file, base, top.get("model", dict, required=True))
    hp_inter, hp_target = _phase_hparams(top, file, model)
    tasks_data = top.get("tasks", dict, {})
    targets = _targets(top, tasks_data)
    profiles = read_backend_profiles(file, base, top.get("backends", dict, {}))
    launch = read_launch(file, base, top.get("launch", dict, {}))
    slurm = read_slurm(file, top.get("slurm", dict, {}))
    tracking = read_tracking(file, base, top.get("tracking", dict, {}))
    arms_data = top.get("arms", list, required=True)
    if not arms_data:
        top.fail("arms", "must define at least one arm ([[arms]])")
    arms: list[Arm] = []
    for i, arm_data in enumerate(arms_data):
        arms.append(_arm(Table(file, f"arms[{i}]", arm_data), file, base, tasks_data, profiles, arms))
    used = set(targets) | {t for a in arms for t in a.intermediate}
    tasks = _tasks(top, file, base, tasks_data, used, model, narrowed=bool(settings))
    top.finish(["name", "description", "output_dir", "seeds", "model", "hparams", "targets",
                "arms", "tasks", "backends", "launch", "slurm", "tracking"])
    return Recipe(name=name, path=str(Path(file)), model=model, arms=tuple(arms),
                  targets=targets, seeds=seeds, tasks=tasks,
                  hparams_intermediate=hp_inter, hparams_target=hp_target,
                  description=description, output_dir=output_dir, backends=profiles,
                  launch=launch, slurm=slurm, tracking=tracking, settings=tuple(settings))


def load_recipe(path: str | Path, settings: tuple[str, ...] = ()) -> Recipe:
    """A recipe file, validated, with the command line's ``--set`` overrides applied."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: is a folder; expected a recipe .toml file") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not UTF-8 text; expected a TOML recipe") from None
    return parse_recipe(text, str(path), path.resolve().parent, tuple(settings))
