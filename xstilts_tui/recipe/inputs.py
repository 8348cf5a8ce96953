"""What a recipe reads and whether this machine has it: each model and data split its
stages read from the hub (``Need``, with the stages that read it), each local path its
tasks name, and the one line that says what is missing and what to do (control plane:
no torch here; no server is asked, but for one short probe of the hub when something is
missing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xstilts_tui.data.sources import (Source, candidates, data_root, hub_offline, hub_reachable, model_present,
                          present, unset_variable)
from xstilts_tui.tasks.registry import RETRIEVAL, TASKS


@dataclass
class Need:
    kind: str  # model | data
    label: str  # "FacebookAI/xlm-roberta-large", "xquad test (de)"
    field: str  # the recipe setting that would replace it
    stages: list[str] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    model: tuple[str, str | None] | None = None


def _split_needs(name: str, settings: dict, split: str, langs, add) -> None:
    spec = TASKS[name]
    if spec.generated:
        return
    key = {"train": "train_file", "validation": "validation_file", "test": "eval_files"}[split]
    for lang in langs:
        if split == "test" and spec.evaluation is None:
            if settings.get("validation_file"):
                continue
            source, key = spec.validation, "validation_file"
        elif settings.get(key):
            continue
        else:
            source = {"train": spec.train if lang == "en" else spec.translate_train,
                      "validation": spec.validation, "test": spec.evaluation}[split]
        if source is None or Path(source.path).is_dir():
            continue  # the recipe check asks for a file; a local dataset folder needs nothing
        lang_name = spec.lang_names.get(lang, lang)
        add(Need("data", f"{name} {split} ({lang})", f"tasks.{name}.{key}",
                 sources=candidates(source, lang, lang_name)))
        if split == "train" and lang == "en":
            for more in spec.train_also:  # ANLI+: MNLI and SNLI after ANLI
                add(Need("data", f"{name} {split} ({lang}): {more.path}", f"tasks.{name}.{key}",
                         sources=candidates(more, lang, lang)))


def _selects(hparams: dict) -> bool:
    """Whether a target stage evaluates on validation data for checkpoint selection: every
    ``eval_every`` steps (an intermediate stage always does, at its end). Without a step
    cap the number of steps is known only from the data, so it may."""
    every, cap = hparams.get("eval_every", 0), hparams.get("max_steps", 0)
    return bool(every) and (not cap or cap >= every)


def recipe_needs(plan) -> list[Need]:
    """Every model and dataset split the plan's stages read from the hub, once each,
    with the stages that read it."""
    needs: dict[str, Need] = {}

    def add_for(stage_id: str):
        def add(need: Need) -> None:  # one need per source (xquad and squad share SQuAD)
            key = need.label if need.kind == "model" else need.sources[0].key
            stages = needs.setdefault(key, need).stages
            if stage_id not in stages:
                stages.append(stage_id)
        return add

    for stage in plan.stages:
        add = add_for(stage.id)
        model = stage.spec.get("model", {})
        if stage.kind == "base":
            continue
        if model.get("hub"):
            add(Need("model", model["hub"], "[model] hub", model=(model["hub"], model.get("revision"))))
        tasks = stage.spec.get("tasks") or [stage.spec["task"]]
        for task in tasks:
            name, settings = task["name"], task["settings"]
            spec = TASKS[name]
            if spec.kind == RETRIEVAL:
                if name == "tatoeba" and not settings.get("data_dir") and spec.evaluation:
                    for lang in settings["languages"]:
                        add(Need("data", f"tatoeba test ({lang})", "tasks.tatoeba.data_dir",
                                 sources=candidates(spec.evaluation, lang, lang)))
                continue
            _split_needs(name, settings, "train", settings.get("train_languages") or ("en",), add)
            if stage.kind == "intermediate" or _selects(stage.spec.get("hparams", {})):
                _split_needs(name, settings, "validation", ("en",), add)
            if stage.kind == "target":
                _split_needs(name, settings, "test", settings["languages"], add)
    return list(needs.values())


def need_status(need: Need, root: Path | None = None, cache_dir: str | None = None) -> dict[str, Any]:
    """Whether a need is on this machine, from which source, and its size (no network)."""
    root = root or data_root()
    if need.kind == "model":
        folder = model_present(*need.model, cache_dir=cache_dir)
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) if folder else None
        return {"kind": "model", "need": need.label, "present": folder is not None,
                "source": f"hub model {need.model[0]}" + (f"@{need.model[1]}" if need.model[1] else ""),
                "where": str(folder) if folder else None, "bytes": size, "stages": need.stages}
    for source in need.sources:
        manifest = present(source, root)
        if manifest is not None:
            size = sum(item["size"] for item in manifest["files"])
            return {"kind": "data", "need": need.label, "present": True, "source": source.label,
                    "where": str(root / manifest["folder"]), "bytes": size, "stages": need.stages}
    return {"kind": "data", "need": need.label, "present": False,
            "source": " | ".join(s.label for s in need.sources), "where": None, "bytes": None,
            "stages": need.stages}


def missing_line(file: str, statuses: list[dict], needs: list[Need]) -> str | None:
    """One line for a recipe whose hub inputs are missing while the hub cannot be used."""
    missing = [(s, n) for s, n in zip(statuses, needs) if not s["present"]]
    if not missing:
        return None
    status, need = missing[0]
    why = "HF_HUB_OFFLINE is set" if hub_offline() else "the hub is unreachable"
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    instead = ("give [model] path (a local folder)" if need.kind == "model"
               else f"set {need.field}")
    return (f"{file}: {need.field}: {need.label} is not on this machine and {why}{more}; run "
            f"`xstilts-tui data fetch {file}` where the hub is reachable, or {instead}")


def inputs_missing(file: str, plan) -> tuple[list[Need], str | None]:
    """The hub inputs of a plan not on this machine, and, when the hub cannot be used
    either, the one line that says so and what to do (None while it can)."""
    needs = recipe_needs(plan)
    statuses = [need_status(n) for n in needs]
    missing = [need for need, status in zip(needs, statuses) if not status["present"]]
    if not missing or hub_reachable():
        return missing, None
    return missing, missing_line(file, statuses, needs)


LOCAL_KEYS = ("train_file", "validation_file", "eval_files", "data_dir")


def local_inputs(recipe) -> list[dict[str, Any]]:
    """Every local file or folder a recipe's tasks name (``train_file``, ``eval_files``,
    ``data_dir``...), each with whether it is here: present, missing, or under an
    environment variable that is unset."""
    out = []
    used = set(recipe.targets) | {t for arm in recipe.arms for t in arm.intermediate}
    each = [(f"tasks.{name}", name, recipe.tasks[name]) for name in sorted(used)]
    each += [(f"arms.{arm.name}.tasks.{name}", name, settings) for arm in recipe.arms
             for name, settings in arm.tasks.items()]
    for where, _, settings in each:
        for key in LOCAL_KEYS:
            value = getattr(settings, key, None)
            if not value:
                continue
            languages = settings.languages if key == "eval_files" else (
                settings.train_languages or ("en",)) if "{lang}" in value else ("",)
            paths = [value.replace("{lang}", lang) for lang in languages]
            variable = unset_variable(value)
            if variable:
                state, size = "UNSET", None
            else:
                found = [Path(p) for p in paths if Path(p).exists()]
                state = "here" if len(found) == len(paths) else "MISSING"
                size = sum(f.stat().st_size if f.is_file() else
                           sum(x.stat().st_size for x in f.rglob("*") if x.is_file()) for f in found)
            out.append({"kind": "local", "need": f"{where}.{key}", "present": state == "here",
                        "state": state, "source": value + (f" (${variable} is unset)" if variable else ""),
                        "where": value, "bytes": size, "stages": []})
    return out
