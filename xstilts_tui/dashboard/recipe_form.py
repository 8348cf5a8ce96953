"""The Recipes screen's form and the recipe file, both ways: the form's fields filled from
an opened file, and the file with the form's fields written into it (what the form does
not show kept as it was, comments and layout too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import Input, Select, SelectionList

from xstilts_tui.protocol.hparams import normalise_hparams
from xstilts_tui.recipe.doc import PHASES, RecipeDocument
from xstilts_tui.recipe.schema import BACKENDS
from xstilts_tui.tasks.registry import TASKS

# The hyper-parameters the form shows; the others are kept as the file has them.
HPARAM_FIELDS = ("lr", "batch_size", "grad_accum", "epochs", "max_steps", "max_length", "precision")
LEVELS = ("all", *PHASES)  # "all": the [hparams] top level, which both phases inherit


def number(text: str) -> Any:
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def number_list(text: str) -> list[Any]:
    return [number(t) for t in text.split(",") if t.strip()]


def name_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def fill_form(view, document: RecipeDocument, path: Path) -> None:
    """The form's fields, the arms and the backend choices from an opened recipe."""
    raw = view.raw
    view.query_one("#f-name", Input).value = str(raw.get("name", path.stem))
    model = raw.get("model", {}) if isinstance(raw.get("model"), dict) else {}
    model_input = view.query_one("#f-model", Input)
    if "config" in model:
        model_input.value = "built from a configuration (edit the file to change it)"
        model_input.disabled = True
    else:
        model_input.disabled = False
        model_input.value = str(model.get("hub") or model.get("path") or "")
    seeds = raw.get("seeds", [0])
    view.query_one("#f-seeds", Input).value = ", ".join(str(s) for s in seeds) \
        if isinstance(seeds, list) else str(seeds)
    targets = raw.get("targets", [])
    view.query_one("#f-targets", Input).value = ", ".join(map(str, targets)) \
        if isinstance(targets, list) else str(targets)
    for level in LEVELS:
        values = normalise_hparams(document.hparams(None if level == "all" else level))
        for key in HPARAM_FIELDS:
            view.query_one(f"#hp-{level}-{key}", Input).value = \
                str(values[key]) if key in values else ""
    view.arms_raw = [dict(a) for a in raw.get("arms", []) if isinstance(a, dict)]
    profiles = raw.get("backends", {}) if isinstance(raw.get("backends"), dict) else {}
    choices = [(b, b) for b in BACKENDS] + [(f"{p} ({v.get('kind', '?')})", p)
                                            for p, v in profiles.items()
                                            if isinstance(v, dict) and p not in BACKENDS]
    view.backend_choices = {value for _, value in choices}
    backend = view.query_one("#f-arm-backend", Select)
    backend.set_options(choices)
    backend.value = "torch"


def language_pickers(targets: list[str], raw: dict[str, Any]) -> list:
    """One language picker per target task, its recipe's languages picked."""
    tasks = raw.get("tasks", {}) if isinstance(raw.get("tasks"), dict) else {}
    pickers = []
    for target in targets:
        spec = TASKS[target]
        own = tasks.get(target, {}) if isinstance(tasks.get(target), dict) else {}
        chosen = own.get("languages", list(spec.languages))
        picker = SelectionList[str](*[(lang, lang, lang in chosen) for lang in spec.all_languages],
                                    name=target, classes="langs", compact=True)
        picker.border_title = f"{target} languages (space picks)"
        picker.styles.height = len(spec.all_languages) + 2
        pickers.append(picker)
    return pickers


def document_of_form(view) -> RecipeDocument:
    """The opened file with the form's fields written into it."""
    document = RecipeDocument(view.text)
    name = view.query_one("#f-name", Input).value.strip()
    if "name" in view.raw or name != view.recipe_path.stem:  # else the file's name says it
        document.set("name", name)
    model_input = view.query_one("#f-model", Input)
    if not model_input.disabled:
        model = view.raw.get("model", {}) if isinstance(view.raw.get("model"), dict) else {}
        document.set_model_source("path" if "path" in model else "hub", model_input.value.strip())
    seeds = number_list(view.query_one("#f-seeds", Input).value)
    if "seeds" in view.raw or seeds != [0]:  # [0]: what a recipe without seeds runs
        document.set("seeds", seeds)
    targets = name_list(view.query_one("#f-targets", Input).value)
    document.set("targets", targets)
    document.set_arms(view.arms_raw)
    used = set(targets) | {t for arm in view.arms_raw for t in arm.get("intermediate", [])}
    view.dropped = document.drop_task_settings(keep=used)
    tasks = view.raw.get("tasks", {}) if isinstance(view.raw.get("tasks"), dict) else {}
    for picker in view.query(".langs").results(SelectionList):
        target = picker.name
        if target not in view._picker_targets or picker.parent is None:
            continue
        spec = TASKS[target]
        chosen = [lang for lang in spec.all_languages if lang in picker.selected]
        written = isinstance(tasks.get(target), dict) and "languages" in tasks[target]
        if written or chosen != list(spec.languages):
            document.set_languages(target, chosen)
    for level in LEVELS:
        for key in HPARAM_FIELDS:
            text = view.query_one(f"#hp-{level}-{key}", Input).value.strip()
            document.set_hparam(None if level == "all" else level, key,
                                number(text) if text else None)
    return document
