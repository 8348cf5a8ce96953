"""The terminal dashboard: build recipes, run them, watch per-language scores arrive.

Four tabs - Recipes, Runs, Scores, Compare - keyboard first, usable at 80x24. Runs go
through the same ``Runner`` as the headless mode, in a background thread that starts
each stage as a worker process; this process never imports the compute stack. The
runner's display posts small messages to the app; progress messages coalesce (a newer
one replaces a queued older one of the same stage), so a fast stream never makes the
interface lag.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import (Button, DataTable, Footer, Input, Label, ListItem, ListView,
                             ProgressBar, RichLog, Select, SelectionList, Static, TabbedContent,
                             TabPane)

from .plan import Plan, build_plan
from .progress import PlainDisplay, time_left
from .recipe import BACKENDS, Recipe, RecipeError, parse_recipe
from .results import AVG, AVG_NO_EN, RESULT_COLUMNS, format_cell, human_bytes, score_cells
from .runner import Runner
from .tasks import TASKS

SHIPPED_RECIPES = Path(__file__).resolve().parent.parent / "recipes"

# --- messages from the runner thread ------------------------------------------------


class StageStarted(Message):
    def __init__(self, stage: str, total: int) -> None:
        super().__init__()
        self.stage, self.total = stage, total


class StageProgress(Message):
    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__()
        self.event = event

    def can_replace(self, message: Message) -> bool:
        # A newer progress message of the same stage makes this one obsolete.
        return isinstance(message, StageProgress) and message.event["stage"] == self.event["stage"]


class ScoreArrived(Message):
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        super().__init__()
        self.rows = rows


class StageEnded(Message):
    def __init__(self, stage: str, status: str, detail: str, row: dict[str, Any] | None) -> None:
        super().__init__()
        self.stage, self.status, self.detail, self.row = stage, status, detail, row


class LogLine(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class RunEnded(Message):
    def __init__(self, ok: bool, error: str = "") -> None:
        super().__init__()
        self.ok, self.error = ok, error


class AppDisplay(PlainDisplay):
    """The runner's display, turned into messages for the app (thread-safe)."""

    def __init__(self, app: App, plan: Plan):
        super().__init__()
        self.app = app
        self.plan = plan
        self.runner: Runner | None = None

    def print(self, text: str) -> None:
        self.app.post_message(LogLine(text))

    def stage_started(self, stage: str, total_steps: int) -> None:
        self.app.post_message(StageStarted(stage, total_steps))

    def progress(self, event: dict[str, Any]) -> None:
        self.app.post_message(StageProgress(event))

    def score(self, event: dict[str, Any]) -> None:
        stage = self.plan.by_id[event["stage"]]
        self.app.post_message(ScoreArrived([
            {"run": "", "recipe": self.plan.recipe.name, "arm": arm, "seed": stage.seed,
             "stage": stage.id, "stage_key": stage.key, "task": event["task"],
             "language": event["language"], "split": event["split"], "metric": event["metric"],
             "value": float(event["value"]), "step": int(event["step"]), "cached": False}
            for arm in stage.arms]))

    def message(self, stage: str, text: str) -> None:
        self.app.post_message(LogLine(f"[{stage}] {text}"))

    def log_line(self, stage: str, line: str) -> None:
        self.app.post_message(LogLine(f"  {line}"))

    def stage_finished(self, stage: str, status: str, detail: str = "") -> None:
        row = None
        if self.runner is not None and self.runner.store.stages:
            last = self.runner.store.stages[-1]
            row = dict(last) if last["stage"] == stage else None
        self.app.post_message(StageEnded(stage, status, detail, row))


# --- modal screens --------------------------------------------------------------------


class Confirm(ModalScreen[bool]):
    BINDINGS = [Binding("y", "answer(True)", "yes"), Binding("n,escape", "answer(False)", "no")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question)
            with Horizontal():
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


HELP = """\
xstilts-tui - keys

 1 2 3 4    Recipes, Runs, Scores, Compare
 r          run the recipe in the Recipes tab
 c          cancel the run
 ctrl+s     save the recipe to a new file
 ctrl+o     overwrite the recipe file (asks first)
 a / d      scores: absolute values / delta to the baseline
 f          scores: F1 or exact match
 m          scores: show or hide std over seeds
 s          scores: sort by the next column (or click a header)
 ?          this help
 q          quit (asks first while a run is going)

Escape closes this help."""


class Help(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "close")]

    def compose(self) -> ComposeResult:
        yield Static(HELP, id="help")


# --- recipe form ----------------------------------------------------------------------

HPARAM_FIELDS = ("lr", "batch_size", "grad_accum", "epochs", "max_steps", "max_length")


def _number(text: str) -> Any:
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _number_list(text: str) -> list[Any]:
    return [_number(t) for t in text.split(",") if t.strip()]


def _name_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


@dataclass
class RunContext:
    """What the score and compare tabs show: arms, baseline, targets and languages."""

    name: str
    arms: list[str]
    backends: dict[str, str]
    baseline: str
    targets: list[str]
    languages: dict[str, list[str]]
    results_dir: Path | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of_recipe(cls, recipe: Recipe, results_dir: Path | None = None) -> RunContext:
        return cls(name=recipe.name, arms=[a.name for a in recipe.arms],
                   backends={a.name: _backend_label(a.backend if a.intermediate else None,
                                                     a.target_backend) for a in recipe.arms},
                   baseline=recipe.baseline.name, targets=list(recipe.targets),
                   languages={t: list(recipe.tasks[t].languages) for t in recipe.targets},
                   results_dir=results_dir)

    @classmethod
    def of_results(cls, folder: Path) -> RunContext:
        """Re-attach to a finished or interrupted run's results folder."""
        manifest_path = folder / "run.json"
        if not manifest_path.is_file():
            raise RecipeError(f"{folder}: no run.json; expected a results folder of xstilts-tui")
        recipe = json.loads(manifest_path.read_text(encoding="utf-8"))["recipe"]
        arms = recipe["arms"]
        baseline = next((a["name"] for a in arms if not a["intermediate"]), arms[0]["name"])
        context = cls(name=recipe["name"], arms=[a["name"] for a in arms],
                      backends={a["name"]: _backend_label(a["backend"] if a["intermediate"] else None,
                                                          a.get("target_backend", a["backend"]))
                                for a in arms}, baseline=baseline,
                      targets=list(recipe["targets"]),
                      languages={t: list(recipe["tasks"][t]["languages"]) for t in recipe["targets"]},
                      results_dir=folder)
        if (folder / "results.parquet").is_file():
            context.rows = pl.read_parquet(folder / "results.parquet").to_dicts()
        if (folder / "stages.parquet").is_file():
            context.stages = pl.read_parquet(folder / "stages.parquet").to_dicts()
        return context

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema=RESULT_COLUMNS)


def _backend_label(intermediate: str | None, target: str) -> str:
    """"torch", or "lora→torch" when an arm's two phases train differently."""
    return target if intermediate in (None, target) else f"{intermediate}→{target}"


def _bar(step: int, total: int, width: int = 12) -> str:
    if not total:
        return ""
    filled = int(width * min(step, total) / total)
    return "█" * filled + "░" * (width - filled) + f" {step}/{total}"



# --- the app ------------------------------------------------------------------------


class XstiltsApp(App):
    TITLE = "xstilts-tui"
    CSS = """
    Screen { layout: vertical; }
    #recipe-list { width: 22; border-right: solid $primary; }
    #form { padding: 0 1; }
    #form Input { height: 3; }
    .row { height: auto; }
    .row Label { width: 14; padding: 1 0 0 0; }
    .row Input { width: 1fr; }
    #arm-editor Input { width: 1fr; }
    #arm-editor Select { width: 16; }
    #f-arms { height: auto; max-height: 6; }
    .langs { height: auto; max-height: 8; }
    #validation { height: auto; padding: 0 1; }
    #validation.bad { color: $error; }
    #validation.good { color: $success; }
    #stages { height: 1fr; }
    #log { height: 8; border-top: solid $primary; }
    #current { height: 1; }
    #scores-mode { height: 1; padding: 0 1; }
    .score-title { padding: 0 1; text-style: bold; }
    .score-table { height: auto; max-height: 12; }
    #cmp-select { height: 3; }
    #cmp-select Select { width: 1fr; }
    #dialog, #help { width: 64; height: auto; border: thick $primary; padding: 1 2;
                     background: $surface; }
    Confirm, Help { align: center middle; }
    """
    BINDINGS = [
        Binding("1", "tab('recipes')", "Recipes"),
        Binding("2", "tab('runs')", "Runs"),
        Binding("3", "tab('scores')", "Scores"),
        Binding("4", "tab('compare')", "Compare"),
        Binding("r", "start_run", "Run"),
        Binding("c", "cancel_run", "Cancel"),
        Binding("ctrl+s", "save_recipe", "Save", show=False),
        Binding("ctrl+o", "overwrite_recipe", "Overwrite", show=False),
        Binding("a", "score_mode('absolute')", "Abs", show=False),
        Binding("d", "score_mode('delta')", "Delta", show=False),
        Binding("f", "toggle_metric", "F1/EM", show=False),
        Binding("m", "toggle_std", "±std", show=False),
        Binding("s", "sort_scores", "Sort", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q,ctrl+q", "quit_app", "Quit", priority=False),
    ]

    def __init__(self, recipes_dirs: list[Path] | None = None, results: Path | None = None,
                 output_root: Path | None = None) -> None:
        super().__init__()
        self.recipes_dirs = recipes_dirs if recipes_dirs is not None else [SHIPPED_RECIPES]
        self.results_path = results
        self.output_root = output_root
        self.recipe_files: list[Path] = []
        self.recipe_path: Path | None = None
        self.raw: dict[str, Any] = {}
        self.recipe: Recipe | None = None
        self.arms_raw: list[dict[str, Any]] = []
        self.backend_choices: set[str] = set(BACKENDS)
        self.runner: Runner | None = None
        self.run_thread: threading.Thread | None = None
        self.context: RunContext | None = None
        self.stage_state: dict[str, str] = {}
        self.stage_started_at: dict[str, float] = {}
        self.score_mode = "absolute"
        self.metric = "f1"
        self.show_std = True
        self.sort_column: dict[str, int] = {}
        self.cell_text: dict[tuple[str, str, str], str] = {}
        self._loading_form = False
        self._picker_targets: list[str] = []

    # -- layout --

    def compose(self) -> ComposeResult:
        with TabbedContent(initial="recipes", id="tabs"):
            with TabPane("Recipes", id="recipes"):
                with Horizontal():
                    yield ListView(id="recipe-list")
                    with VerticalScroll(id="form"):
                        yield Static("", id="validation", markup=False)
                        for key, label in (("name", "name"), ("model", "model"),
                                           ("seeds", "seeds"), ("targets", "targets")):
                            with Horizontal(classes="row"):
                                yield Label(label)
                                yield Input(id=f"f-{key}")
                        yield Label("arms (select a row to edit it)")
                        yield DataTable(id="f-arms", cursor_type="row")
                        with Horizontal(id="arm-editor", classes="row"):
                            yield Input(placeholder="arm name", id="f-arm-name")
                            yield Input(placeholder="intermediate tasks, comma-separated",
                                        id="f-arm-inter")
                            yield Select([(b, b) for b in BACKENDS], value="torch",
                                         allow_blank=False, id="f-arm-backend")
                        with Horizontal(classes="row"):
                            yield Button("Add arm", id="arm-add")
                            yield Button("Update arm", id="arm-update")
                            yield Button("Remove arm", id="arm-remove")
                        yield Vertical(id="f-langs")
                        for key in HPARAM_FIELDS:
                            with Horizontal(classes="row"):
                                yield Label(key)
                                yield Input(id=f"f-hp-{key}", placeholder="default")
                        with Horizontal(classes="row"):
                            yield Button("Save as new (ctrl+s)", id="save")
                            yield Button("Overwrite (ctrl+o)", id="overwrite")
                            yield Button("Run (r)", id="run", variant="primary")
            with TabPane("Runs", id="runs"):
                with Vertical():
                    yield Static("no run yet: pick a recipe and press r", id="run-status", markup=False)
                    yield DataTable(id="stages", cursor_type="row")
                    with Horizontal(id="current"):
                        yield ProgressBar(id="current-bar", show_eta=True)
                    yield RichLog(id="log", max_lines=2000, wrap=False, markup=False)
            with TabPane("Scores", id="scores"):
                with Vertical():
                    yield Static("", id="scores-mode", markup=False)
                    yield VerticalScroll(id="score-tables")
            with TabPane("Compare", id="compare"):
                with Vertical():
                    with Horizontal(id="cmp-select"):
                        yield Select([], prompt="arm A", id="cmp-a")
                        yield Select([], prompt="arm B", id="cmp-b")
                        yield Select([], prompt="task", id="cmp-task")
                    yield DataTable(id="cmp-scores")
                    yield DataTable(id="cmp-cost")
        yield Footer()

    async def on_mount(self) -> None:
        stages = self.query_one("#stages", DataTable)
        stages.add_column("stage", key="stage")
        stages.add_column("state", key="state")
        stages.add_column("progress", key="progress")
        stages.add_column("loss", key="loss")
        stages.add_column("ex/s", key="rate")
        stages.add_column("left", key="left")
        arms = self.query_one("#f-arms", DataTable)
        arms.add_column("name", key="name")
        arms.add_column("intermediate", key="intermediate")
        arms.add_column("backend", key="backend")
        self.refresh_recipe_list()
        if self.results_path is not None:
            self.attach(RunContext.of_results(self.results_path))
            self.action_tab("scores")
        elif self.recipe_files:
            self.load_recipe(self.recipe_files[0])
        self.update_scores_mode()

    # -- recipes tab --

    def refresh_recipe_list(self) -> None:
        files: list[Path] = []
        for folder in self.recipes_dirs:
            if folder.is_dir():
                files.extend(sorted(folder.glob("*.toml")))
        self.recipe_files = files
        view = self.query_one("#recipe-list", ListView)
        view.clear()
        for path in files:
            view.append(ListItem(Label(path.stem), name=str(path)))

    @on(ListView.Selected, "#recipe-list")
    def _recipe_chosen(self, event: ListView.Selected) -> None:
        if event.item.name:
            self.load_recipe(Path(event.item.name))

    def load_recipe(self, path: Path) -> None:
        """Open a recipe file into the form (its TOML, as written)."""
        self.recipe_path = path
        try:
            self.raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            self.raw = {}
            self.show_validation(f"{path}: cannot read: {exc}", ok=False)
            return
        self._loading_form = True
        raw = self.raw
        self.query_one("#f-name", Input).value = str(raw.get("name", path.stem))
        model = raw.get("model", {}) if isinstance(raw.get("model"), dict) else {}
        model_input = self.query_one("#f-model", Input)
        if "config" in model:
            model_input.value = "built from a configuration (edit the file to change it)"
            model_input.disabled = True
        else:
            model_input.disabled = False
            model_input.value = str(model.get("hub") or model.get("path") or "")
        self.query_one("#f-seeds", Input).value = ", ".join(str(s) for s in raw.get("seeds", [0]))
        self.query_one("#f-targets", Input).value = ", ".join(raw.get("targets", []))
        hp = raw.get("hparams", {}) if isinstance(raw.get("hparams"), dict) else {}
        for key in HPARAM_FIELDS:
            self.query_one(f"#f-hp-{key}", Input).value = str(hp[key]) if key in hp else ""
        self.arms_raw = [dict(a) for a in raw.get("arms", []) if isinstance(a, dict)]
        profiles = raw.get("backends", {}) if isinstance(raw.get("backends"), dict) else {}
        choices = [(b, b) for b in BACKENDS] + [(f"{p} ({v.get('kind', '?')})", p)
                                                for p, v in profiles.items()
                                                if isinstance(v, dict) and p not in BACKENDS]
        self.backend_choices = {value for _, value in choices}
        self.query_one("#f-arm-backend", Select).set_options(choices)
        self.query_one("#f-arm-backend", Select).value = "torch"
        self.refresh_arms_table()
        self.rebuild_language_pickers(force=True)
        self._loading_form = False
        self.validate_form()

    def refresh_arms_table(self) -> None:
        table = self.query_one("#f-arms", DataTable)
        table.clear()
        for i, arm in enumerate(self.arms_raw):
            inter = ", ".join(arm.get("intermediate", []))
            mlm = arm.get("mlm")
            if isinstance(mlm, dict) and "ratio" in mlm:
                inter += f" + MLM {mlm['ratio']}"
            both = str(arm.get("backend", "torch"))
            label = _backend_label(str(arm.get("intermediate_backend", both)) if arm.get("intermediate")
                                   else None, str(arm.get("target_backend", both)))
            table.add_row(str(arm.get("name", "")), inter, label, key=str(i))

    def rebuild_language_pickers(self, force: bool = False) -> None:
        """One language picker per known target task, from the task's own list."""
        targets = [t for t in _name_list(self.query_one("#f-targets", Input).value) if t in TASKS]
        if targets == self._picker_targets and not force:
            return
        self._picker_targets = targets
        box = self.query_one("#f-langs", Vertical)
        box.remove_children()
        tasks = self.raw.get("tasks", {}) if isinstance(self.raw.get("tasks"), dict) else {}
        for target in targets:
            spec = TASKS[target]
            chosen = tasks.get(target, {}).get("languages", list(spec.languages))
            picker = SelectionList[str](*[(lang, lang, lang in chosen) for lang in spec.all_languages],
                                        name=target, classes="langs")
            picker.border_title = f"{target} languages"
            box.mount(picker)

    def form_raw(self) -> dict[str, Any]:
        """The recipe as the form now says: the opened TOML with the form's fields applied,
        so settings the form does not show are kept as they were."""
        raw = copy.deepcopy(self.raw)
        raw["name"] = self.query_one("#f-name", Input).value.strip()
        model_input = self.query_one("#f-model", Input)
        model = raw.setdefault("model", {})
        if not model_input.disabled:
            value = model_input.value.strip()
            key = "path" if "path" in model else "hub"
            model.pop("hub", None), model.pop("path", None)
            model[key] = value
        raw["seeds"] = _number_list(self.query_one("#f-seeds", Input).value)
        raw["targets"] = _name_list(self.query_one("#f-targets", Input).value)
        raw["arms"] = self.arms_raw
        tasks = raw.setdefault("tasks", {})
        for picker in self.query(".langs").results(SelectionList):
            target = picker.name
            if target not in self._picker_targets:
                continue  # a picker on its way out
            spec = TASKS[target]
            chosen = [lang for lang in spec.all_languages if lang in picker.selected]
            original = self.raw.get("tasks", {}).get(target, {}).get("languages")
            if original is None and chosen == list(spec.languages):
                continue
            tasks.setdefault(target, {})["languages"] = chosen
        if not tasks:
            raw.pop("tasks")
        hp = raw.setdefault("hparams", {})
        for key in HPARAM_FIELDS:
            text = self.query_one(f"#f-hp-{key}", Input).value.strip()
            if text:
                hp[key] = _number(text)
            else:
                hp.pop(key, None)
        if not hp:
            raw.pop("hparams")
        return raw

    def form_text(self) -> str:
        import tomli_w

        return tomli_w.dumps(self.form_raw())

    def validate_form(self) -> Recipe | None:
        """Validate what the form says, with the messages of ``xstilts-tui validate``."""
        if self.recipe_path is None or self._loading_form:
            return None
        try:
            recipe = parse_recipe(self.form_text(), str(self.recipe_path), self.recipe_path.parent)
        except RecipeError as exc:
            self.recipe = None
            self.show_validation(str(exc), ok=False)
            return None
        self.recipe = recipe
        self.show_validation(f"{self.recipe_path.name}: ok ({len(recipe.arms)} arms, "
                             f"{len(recipe.targets)} target tasks, {len(recipe.seeds)} seeds)", ok=True)
        return recipe

    def show_validation(self, text: str, ok: bool) -> None:
        widget = self.query_one("#validation", Static)
        widget.update(text)
        widget.set_class(not ok, "bad")
        widget.set_class(ok, "good")

    @on(Input.Changed)
    def _form_changed(self, event: Input.Changed) -> None:
        if event.input.id in ("f-arm-name", "f-arm-inter"):
            return
        if event.input.id == "f-targets":
            self.rebuild_language_pickers()
        self.validate_form()

    @on(SelectionList.SelectedChanged)
    def _langs_changed(self) -> None:
        self.validate_form()

    @on(DataTable.RowHighlighted, "#f-arms")
    def _arm_highlighted(self, event: DataTable.RowHighlighted) -> None:
        index = int(event.row_key.value)
        if index < len(self.arms_raw):
            arm = self.arms_raw[index]
            self.query_one("#f-arm-name", Input).value = str(arm.get("name", ""))
            self.query_one("#f-arm-inter", Input).value = ", ".join(arm.get("intermediate", []))
            backend = arm.get("backend", "torch")
            if backend in self.backend_choices:
                self.query_one("#f-arm-backend", Select).value = backend

    def _arm_from_editor(self) -> dict[str, Any]:
        return {"name": self.query_one("#f-arm-name", Input).value.strip(),
                "intermediate": _name_list(self.query_one("#f-arm-inter", Input).value),
                "backend": str(self.query_one("#f-arm-backend", Select).value)}

    @on(Button.Pressed, "#arm-add, #arm-update, #arm-remove")
    def _edit_arms(self, event: Button.Pressed) -> None:
        """Add the editor's arm, or replace or remove the arm under the table's cursor."""
        row = self.query_one("#f-arms", DataTable).cursor_row
        if event.button.id == "arm-add":
            self.arms_raw.append(self._arm_from_editor())
        elif 0 <= row < len(self.arms_raw):
            if event.button.id == "arm-update":  # settings the editor does not show stay
                self.arms_raw[row] = {**self.arms_raw[row], **self._arm_from_editor()}
            else:
                del self.arms_raw[row]
        else:
            return
        self.refresh_arms_table()
        self.validate_form()

    def _new_path(self) -> Path:
        assert self.recipe_path is not None
        stem = self.form_raw().get("name") or self.recipe_path.stem
        folder = self.recipe_path.parent
        candidate = folder / f"{stem}.toml"
        n = 1
        while candidate.exists():
            candidate = folder / f"{stem}-{n}.toml"
            n += 1
        return candidate

    def _write_recipe(self, path: Path) -> None:
        text = self.form_text()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        self.refresh_recipe_list()
        self.recipe_path = path
        self.notify(f"saved {path}", markup=False)

    @on(Button.Pressed, "#save")
    def action_save_recipe(self) -> None:
        if self.validate_form() is None:
            self.notify("fix the recipe before saving", severity="error")
            return
        path = self._new_path()
        self._write_recipe(path)
        self.load_recipe(path)

    @on(Button.Pressed, "#overwrite")
    def action_overwrite_recipe(self) -> None:
        if self.validate_form() is None or self.recipe_path is None:
            self.notify("fix the recipe before saving", severity="error")
            return
        path = self.recipe_path

        def done(yes: bool | None) -> None:
            if yes:
                self._write_recipe(path)

        self.push_screen(Confirm(f"Overwrite {path.name}? Its comments are not kept."), done)

    # -- runs --

    @property
    def running(self) -> bool:
        return self.run_thread is not None and self.run_thread.is_alive()

    @on(Button.Pressed, "#run")
    def action_start_run(self) -> None:
        if self.running:
            self.notify("a run is already going", severity="warning")
            return
        recipe = self.validate_form()
        if recipe is None:
            self.notify("the recipe has a problem: see the Recipes tab", severity="error")
            return
        output = (self.output_root / recipe.name) if self.output_root else None
        plan = build_plan(recipe, output)
        display = AppDisplay(self, plan)
        self.runner = Runner(plan, display)
        display.runner = self.runner
        self.attach(RunContext.of_recipe(recipe, plan.output_dir), plan)
        self.query_one("#run-status", Static).update(
            f"running {recipe.name}: {len(plan.stages)} stages, results in {plan.output_dir}")
        self.action_tab("runs")
        runner = self.runner

        def work() -> None:
            try:
                outcome = runner.run()
                self.post_message(RunEnded(outcome.ok))
            except Exception as exc:  # a bug in the run loop must not take the app down
                self.post_message(RunEnded(False, f"{type(exc).__name__}: {exc}"))

        self.run_thread = threading.Thread(target=work, name="xstilts-run", daemon=True)
        self.run_thread.start()

    def action_cancel_run(self) -> None:
        if self.runner is not None and self.running:
            self.runner.cancel()
            self.notify("cancelling the run")

    def attach(self, context: RunContext, plan: Plan | None = None) -> None:
        """Show a run (starting or finished) in the runs, scores and compare tabs."""
        self.context = context
        self.cell_text.clear()
        stages = self.query_one("#stages", DataTable)
        stages.clear()
        self.stage_state.clear()
        if plan is not None:
            for stage in plan.stages:
                state = "cached" if plan.is_done(stage) else "pending"
                self.stage_state[stage.id] = state
                stages.add_row(stage.id, state, "", "", "", "", key=stage.id)
        else:
            for row in context.stages:
                self.stage_state[row["stage"]] = row["status"]
                rate = row.get("examples_per_s")
                stages.add_row(row["stage"], row["status"], "", "",
                               f"{rate:.1f}" if rate else "", "", key=row["stage"])
            self.query_one("#run-status", Static).update(
                f"results of {context.name} in {context.results_dir} (nothing running)")
        self.build_score_tables()
        self.build_compare()

    def showing_run(self) -> bool:
        """False once the app is closing: messages the run thread posted late are dropped."""
        return bool(self.query("#stages"))

    def _set_stage(self, stage: str, column: str, value: str) -> None:
        table = self.query_one("#stages", DataTable)
        try:
            table.update_cell(stage, column, value, update_width=True)
        except Exception:  # a stage not in the table (another plan): nothing to show
            pass

    def on_stage_started(self, message: StageStarted) -> None:
        if not self.showing_run():
            return
        self.stage_state[message.stage] = "running"
        self.stage_started_at[message.stage] = time.monotonic()
        self._set_stage(message.stage, "state", "running")
        self._set_stage(message.stage, "progress", _bar(0, message.total))
        bar = self.query_one("#current-bar", ProgressBar)
        bar.update(total=message.total or None, progress=0)

    def on_stage_progress(self, message: StageProgress) -> None:
        if not self.showing_run():
            return
        event = message.event
        stage, step, total = event["stage"], event["step"], event["total_steps"]
        self._set_stage(stage, "progress", _bar(step, total))
        self._set_stage(stage, "loss", f"{event['loss']:.3f}")
        self._set_stage(stage, "rate", f"{event['examples_per_s']:.0f}")
        started = self.stage_started_at.get(stage)
        if started:
            self._set_stage(stage, "left", time_left(time.monotonic() - started, step, total))
        self.query_one("#current-bar", ProgressBar).update(total=total, progress=step)

    def on_score_arrived(self, message: ScoreArrived) -> None:
        if not self.showing_run():
            return
        if self.context is None:
            return
        self.context.rows.extend(message.rows)
        for task in {r["task"] for r in message.rows}:
            self.update_score_table(task)
        self.update_compare()

    def on_stage_ended(self, message: StageEnded) -> None:
        if not self.showing_run():
            return
        self.stage_state[message.stage] = message.status
        self._set_stage(message.stage, "state", message.status)
        if message.status in ("done", "cached"):
            self._set_stage(message.stage, "left", "")
        if message.row is not None and self.context is not None:
            self.context.stages.append(message.row)
            self.update_compare()
        if message.status in ("failed", "skipped"):
            self.query_one("#log", RichLog).write(f"[{message.stage}] {message.status}: {message.detail}")

    def on_log_line(self, message: LogLine) -> None:
        if not self.showing_run():
            return
        self.query_one("#log", RichLog).write(message.text)

    def on_run_ended(self, message: RunEnded) -> None:
        if not self.showing_run():
            return
        status = self.query_one("#run-status", Static)
        name = self.context.name if self.context else "run"
        if message.error:
            status.update(f"{name}: the run stopped: {message.error}")
        else:
            failed = [s for s, v in self.stage_state.items() if v in ("failed", "skipped", "cancelled")]
            status.update(f"{name}: finished" + (f", {len(failed)} stage(s) not done" if failed else ""))
        self.notify("run finished" if message.ok else "run ended with failed stages",
                    severity="information" if message.ok else "warning")

    # -- scores tab --

    def build_score_tables(self) -> None:
        box = self.query_one("#score-tables", VerticalScroll)
        box.remove_children()
        if self.context is None:
            return
        for task in self.context.targets:
            table = DataTable(id=f"scores-{task}", classes="score-table", cursor_type="cell")
            box.mount(Static(task, classes="score-title", markup=False))
            box.mount(table)
            table.add_column("arm", key="arm")
            for column in self.score_columns(task):
                table.add_column(column, key=column)
            for arm in self.context.arms:
                label = Text(f"{arm} [{self.context.backends.get(arm, '')}]")
                table.add_row(label, *["-"] * len(self.score_columns(task)), key=arm)
            self.update_score_table(task)

    def score_columns(self, task: str) -> list[str]:
        languages = self.context.languages[task]
        extra = [AVG_NO_EN] if "en" in languages and len(languages) > 1 else []
        return [*languages, AVG, *extra]

    def metric_for(self, task: str) -> str:
        """F1 or exact match where the task has them (``f`` switches), else its own metric
        (accuracy for classification and Tatoeba)."""
        names = TASKS[task].metric_names if task in TASKS else ("f1",)
        return self.metric if self.metric in names else names[0]

    def update_score_table(self, task: str) -> None:
        """Fill one task's table; only cells whose text changed are updated."""
        if self.context is None or task not in self.context.languages:
            return
        try:
            table = self.query_one(f"#scores-{task}", DataTable)
        except Exception:
            return
        cells = score_cells(self.context.frame(), task, self.metric_for(task),
                            self.context.languages[task], self.context.baseline, without_english=True)
        for arm in self.context.arms:
            for column in self.score_columns(task):
                cell = cells.get((arm, column))
                text = self.cell_value(cell, arm)
                key = (task, arm, column)
                if self.cell_text.get(key) != text:
                    self.cell_text[key] = text
                    table.update_cell(arm, column, text, update_width=True)

    def cell_value(self, cell: dict[str, Any] | None, arm: str):
        if cell is None:
            return "-"
        if self.score_mode == "delta" and self.context is not None and arm != self.context.baseline:
            delta = cell["delta"]
            if delta is None:
                return "-"
            return Text(f"{delta:+.1f}", style="green" if delta > 0 else "red" if delta < 0 else "")
        shown = dict(cell, std=cell["std"] if self.show_std else None)
        return format_cell(shown, delta=False)

    def refresh_scores(self) -> None:
        self.cell_text.clear()
        if self.context is not None:
            for task in self.context.targets:
                self.update_score_table(task)
        self.update_scores_mode()

    def update_scores_mode(self) -> None:
        mode = "delta to the baseline" if self.score_mode == "delta" else "absolute"
        metric = "F1" if self.metric == "f1" else "exact match"
        std = "±std shown" if self.show_std else "±std hidden"
        self.query_one("#scores-mode", Static).update(
            f"{metric}, {mode}, {std}  (a/d mode, f metric, m std, s sort)")

    def action_score_mode(self, mode: str) -> None:
        self.score_mode = mode
        self.refresh_scores()

    def action_toggle_metric(self) -> None:
        self.metric = "exact_match" if self.metric == "f1" else "f1"
        self.refresh_scores()

    def action_toggle_std(self) -> None:
        self.show_std = not self.show_std
        self.refresh_scores()

    def _sort_table(self, table: DataTable, column_index: int) -> None:
        def value(cell: Any) -> float:
            text = str(cell).split("±")[0].split(" ")[0]
            try:
                return float(text)
            except ValueError:
                return float("-inf")

        keys = list(table.columns)
        key = keys[column_index]
        if column_index == 0:
            table.sort(key)
        else:
            table.sort(key, key=value, reverse=True)

    def action_sort_scores(self) -> None:
        if self.context is None:
            return
        for task in self.context.targets:
            table = self.query_one(f"#scores-{task}", DataTable)
            index = (self.sort_column.get(task, 0) + 1) % len(table.columns)
            self.sort_column[task] = index
            self._sort_table(table, index)

    @on(DataTable.HeaderSelected)
    def _header_selected(self, event: DataTable.HeaderSelected) -> None:
        if event.data_table.id and event.data_table.id.startswith("scores-"):
            self._sort_table(event.data_table, event.column_index)

    # -- compare tab --

    def build_compare(self) -> None:
        if self.context is None:
            return
        arms = [(a, a) for a in self.context.arms]
        a, b, task = (self.query_one(f"#cmp-{k}", Select) for k in ("a", "b", "task"))
        a.set_options(arms)
        b.set_options(arms)
        task.set_options([(t, t) for t in self.context.targets])
        if arms:
            a.value = self.context.baseline
            others = [x for x, _ in arms if x != self.context.baseline]
            b.value = others[0] if others else arms[0][0]
        if self.context.targets:
            task.value = self.context.targets[0]
        self.update_compare()

    @on(Select.Changed)
    def _compare_changed(self, event: Select.Changed) -> None:
        if event.select.id and event.select.id.startswith("cmp-"):
            self.update_compare()

    def update_compare(self) -> None:
        if self.context is None:
            return
        a = self.query_one("#cmp-a", Select).value
        b = self.query_one("#cmp-b", Select).value
        task = self.query_one("#cmp-task", Select).value
        scores = self.query_one("#cmp-scores", DataTable)
        cost = self.query_one("#cmp-cost", DataTable)
        if not all(isinstance(v, str) for v in (a, b, task)):
            return
        scores.clear(columns=True)
        scores.add_columns("language", f"{a}", f"{b}", "B - A")
        cells = score_cells(self.context.frame(), task, self.metric_for(task),
                            self.context.languages[task], self.context.baseline, without_english=True)
        for column in self.score_columns(task):
            ca, cb = cells.get((a, column)), cells.get((b, column))
            diff = f"{cb['mean'] - ca['mean']:+.1f}" if ca and cb else "-"
            scores.add_row(column, format_cell(ca, delta=False), format_cell(cb, delta=False), diff)
        cost.clear(columns=True)
        cost.add_columns("cost", f"{a}", f"{b}")
        rows = {arm: [s for s in self.context.stages
                      if arm in str(s.get("arms", "")).split(",") and s.get("kind") != "base"]
                for arm in (a, b)}
        measures = (("backend", "backend", str),
                    ("wall time (s)", "wall_s", lambda v: f"{v:.1f}"),
                    ("examples/s", "examples_per_s", lambda v: f"{v:.1f}"),
                    ("tokens/s", "tokens_per_s", lambda v: f"{v:.0f}"),
                    ("peak memory", "peak_memory_bytes", human_bytes),
                    ("trainable params", "trainable_params", lambda v: f"{v:,}"),
                    ("total params", "total_params", lambda v: f"{v:,}"),
                    ("checkpoint", "checkpoint_bytes", human_bytes),
                    ("adapter", "adapter_bytes", human_bytes),
                    ("kept step", "best_step", str))
        for kind in ("intermediate", "target"):
            for label, key, fmt in measures:
                values = []
                for arm in (a, b):
                    found = [s.get(key) for s in rows[arm] if s.get("kind") == kind
                             and (s.get("task") == task or kind == "intermediate")
                             and s.get(key) is not None]
                    values.append(fmt(found[0]) if found else "-")
                if any(v != "-" for v in values):
                    cost.add_row(f"{kind}: {label}", *values)

    # -- app-wide --

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        # Move the focus into the tab, or a focused widget of another tab pulls it back.
        first = {"recipes": "#recipe-list", "runs": "#stages", "scores": "#score-tables",
                 "compare": "#cmp-a"}[tab]
        self.query_one(first).focus()

    def action_help(self) -> None:
        self.push_screen(Help())

    async def action_quit_app(self) -> None:
        if not self.running:
            self.exit()
            return

        async def stop_and_quit(yes: bool | None) -> None:
            if not yes:
                return
            await self.stop_run()
            self.exit()

        self.push_screen(Confirm("A run is going. Stop its workers and quit?"), stop_and_quit)

    async def stop_run(self, timeout_s: float = 30.0) -> None:
        """Cancel the run and wait until its thread has stopped the worker and written
        what was scored."""
        if self.runner is not None:
            self.runner.cancel()
        thread = self.run_thread
        if thread is not None:
            await asyncio.to_thread(thread.join, timeout_s)


def run_dashboard(recipes_dirs: list[Path], results: Path | None, output_root: Path | None) -> int:
    app = XstiltsApp(recipes_dirs, results, output_root)
    app.run()
    if app.running:  # closed some other way while running: still stop cleanly
        app.runner.cancel()
        app.run_thread.join(30)
    return 0
