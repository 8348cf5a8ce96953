"""The Recipes screen: the recipe files on the left, the open recipe as a form on the right.

The form edits the recipe file as written (``RecipeDocument``: comments and layout kept)
and validates every change with the messages of ``xstilts-tui validate``; the message is
pinned under the form, so it stays in sight while lower fields are edited.
Hyper-parameters are shown per phase: the top level ("all phases") and what each phase
sets over it; an empty phase field shows, greyed, the value the phase inherits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomlkit.exceptions
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import (Button, DataTable, Input, Label, ListItem, ListView, Select,
                             SelectionList, Static)

from xstilts_tui.protocol.hparams import HParams
from xstilts_tui.recipe.parse import parse_recipe
from xstilts_tui.recipe.schema import BACKENDS, Recipe, RecipeError
from xstilts_tui.recipe.doc import PHASES, RecipeDocument
from xstilts_tui.tasks.registry import TASKS
from xstilts_tui.dashboard import saving
from xstilts_tui.dashboard.context import backend_label
from xstilts_tui.dashboard.recipe_form import (HPARAM_FIELDS, LEVELS, document_of_form, fill_form,
                                              language_pickers, name_list)
from xstilts_tui.dashboard.saving import read_recipe_text

SHIPPED_RECIPES = Path(__file__).resolve().parent.parent.parent / "recipes"


def recipe_files(folders: list[Path]) -> list[Path]:
    """The recipes in the folders, each file once (a folder given twice lists once)."""
    seen: set[Path] = set()
    files: list[Path] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            real = path.resolve()
            if real not in seen:
                seen.add(real)
                files.append(path)
    return files


class RecipesView(Horizontal):
    """The recipe list and the form. Posts ``RunRequested`` when its Run button is pressed."""

    BINDINGS = [Binding("ctrl+s", "save_as", "Save as", show=False),
                Binding("ctrl+o", "overwrite", "Overwrite", show=False),
                Binding("ctrl+n", "new_recipe", "New recipe", show=False)]

    class RunRequested(Message):
        pass

    def __init__(self, recipes_dirs: list[Path], edit: Path | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.recipes_dirs = list(recipes_dirs)
        if edit is not None and edit.parent not in self.recipes_dirs:
            self.recipes_dirs.append(edit.parent)
        self.edit = edit
        self.files: list[Path] = []
        self.recipe_path: Path | None = None
        self.text = ""  # the opened file's text (LF line endings)
        self.crlf = False  # whether the file has CRLF line endings (kept on save)
        self.dropped: list[str] = []  # task settings the last form document left out
        self.raw: dict[str, Any] = {}
        self.recipe: Recipe | None = None
        self.arms_raw: list[dict[str, Any]] = []
        self.backend_choices: set[str] = set(BACKENDS)
        self._loading = False
        self._picker_targets: list[str] = []

    def compose(self) -> ComposeResult:
        yield ListView(id="recipe-list")
        with Vertical(id="form-pane"):
            with VerticalScroll(id="form", can_focus=False):
                for key in ("name", "model", "seeds", "targets"):
                    with Horizontal(classes="row"):
                        yield Label(key)
                        yield Input(id=f"f-{key}", compact=True)
                yield Label("arms (a row fills the editor below)", classes="section")
                yield DataTable(id="f-arms", cursor_type="row")
                with Horizontal(id="arm-editor", classes="row"):
                    yield Input(placeholder="arm name", id="f-arm-name", compact=True)
                    yield Input(placeholder="intermediate tasks, comma-separated", id="f-arm-inter",
                                compact=True)
                    yield Select([(b, b) for b in BACKENDS], value="torch", allow_blank=False,
                                 id="f-arm-backend", compact=True)
                with Horizontal(classes="buttons"):
                    yield Button("Add arm", id="arm-add", compact=True)
                    yield Button("Update arm", id="arm-update", compact=True)
                    yield Button("Remove arm", id="arm-remove", compact=True)
                yield Vertical(id="f-langs")
                with Horizontal(classes="row hp-head"):
                    yield Label("")
                    for level in LEVELS:
                        yield Label("all phases" if level == "all" else level, classes="hp-col")
                for key in HPARAM_FIELDS:
                    with Horizontal(classes="row hp-row"):
                        yield Label(key)
                        for level in LEVELS:
                            yield Input(id=f"hp-{level}-{key}", compact=True, classes="hp")
                with Horizontal(classes="buttons"):
                    yield Button("Save as (ctrl+s)", id="save", compact=True)
                    yield Button("Overwrite (ctrl+o)", id="overwrite", compact=True)
                    yield Button("Run (r)", id="run", variant="primary", compact=True)
            yield Static("", id="validation", markup=False)

    async def on_mount(self) -> None:
        arms = self.query_one("#f-arms", DataTable)
        arms.add_column("name", key="name")
        arms.add_column("intermediate", key="intermediate")
        arms.add_column("backend", key="backend")
        await self.refresh_list(self.edit)
        first = self.edit if self.edit is not None else (self.files[0] if self.files else None)
        if first is not None:
            self.load(first)

    # -- the list --

    async def refresh_list(self, highlight: Path | None = None) -> None:
        self.files = recipe_files(self.recipes_dirs)
        stems = [p.stem for p in self.files]
        labels = [p.stem if stems.count(p.stem) == 1 else f"{p.stem} ({p.parent.name})"
                  for p in self.files]
        view = self.query_one("#recipe-list", ListView)
        await view.clear()
        await view.extend([ListItem(Label(label, markup=False), name=str(path))
                           for path, label in zip(self.files, labels)])
        view.styles.width = min(max((len(label) for label in labels), default=10) + 4, 34)
        index = 0
        if highlight is not None:
            real = highlight.resolve()
            index = next((i for i, p in enumerate(self.files) if p.resolve() == real), 0)
        if self.files:
            view.index = index

    @on(ListView.Selected, "#recipe-list")
    def _chosen(self, event: ListView.Selected) -> None:
        if event.item.name:
            self.load(Path(event.item.name))

    # -- loading the form --

    def load(self, path: Path) -> None:
        """Open a recipe file into the form."""
        self.recipe_path = path
        try:
            self.text, self.crlf = read_recipe_text(path)
            document = RecipeDocument(self.text)
        except (OSError, UnicodeDecodeError, tomlkit.exceptions.TOMLKitError) as exc:
            self.text, self.raw, self.recipe = "", {}, None
            self.show_validation(f"{path}: cannot read: {exc}", ok=False)
            return
        self.raw = document.plain()
        self._loading = True
        fill_form(self, document, path)
        self.refresh_arms()
        self.rebuild_pickers(force=True)
        self.show_inherited()
        self._loading = False
        self.validate()

    def refresh_arms(self) -> None:
        table = self.query_one("#f-arms", DataTable)
        table.clear()
        for i, arm in enumerate(self.arms_raw):
            inter = ", ".join(arm.get("intermediate", []))
            mlm = arm.get("mlm")
            if isinstance(mlm, dict) and "ratio" in mlm:
                inter += f" + MLM {mlm['ratio']}"
            both = str(arm.get("backend", "torch"))
            label = backend_label(str(arm.get("intermediate_backend", both)) if arm.get("intermediate")
                                  else None, str(arm.get("target_backend", both)))
            table.add_row(str(arm.get("name", "")), inter, label, key=str(i))

    def rebuild_pickers(self, force: bool = False) -> None:
        """One language picker per known target task, every language in sight."""
        targets = [t for t in name_list(self.query_one("#f-targets", Input).value) if t in TASKS]
        if targets == self._picker_targets and not force:
            return
        self._picker_targets = targets
        box = self.query_one("#f-langs", Vertical)
        box.remove_children()  # the pickers have no ids: new ones never clash with old ones
        pickers = language_pickers(targets, self.raw)
        if pickers:
            box.mount_all(pickers)

    def show_inherited(self) -> None:
        """Each empty field shows, greyed, the value that level will run with: a phase
        inherits the top level, the top level the defaults."""
        defaults = HParams()
        for key in HPARAM_FIELDS:
            top = self.query_one(f"#hp-all-{key}", Input)
            default = getattr(defaults, key)
            top.placeholder = f"{default} (default)"
            inherited = f"{top.value.strip()} (all)" if top.value.strip() else f"{default} (default)"
            for phase in PHASES:
                self.query_one(f"#hp-{phase}-{key}", Input).placeholder = inherited

    # -- the form as a recipe --

    def form_document(self) -> RecipeDocument:
        """The opened file with the form's fields written into it: what the form does not
        show is kept as it was, comments and layout too."""
        return document_of_form(self)

    def form_text(self) -> str:
        return self.form_document().dumps()

    def validate(self) -> Recipe | None:
        """Validate what the form says, with the messages of ``xstilts-tui validate``."""
        if self.recipe_path is None or self._loading or not self.text:
            return None
        try:
            recipe = parse_recipe(self.form_text(), str(self.recipe_path), self.recipe_path.parent)
        except RecipeError as exc:
            self.recipe = None
            self.show_validation(str(exc), ok=False)
            return None
        self.recipe = recipe
        dropped = (f"; the settings of {', '.join(f'tasks.{t}' for t in self.dropped)} are left out "
                   "(no arm or target uses them)") if self.dropped else ""
        self.show_validation(f"{self.recipe_path.name}: ok ({len(recipe.arms)} arms, "
                             f"{len(recipe.targets)} target tasks, {len(recipe.seeds)} seeds){dropped}",
                             ok=True)
        return recipe

    def form_is_edited(self) -> bool:
        """Whether the form holds edits not in the file (what a quit would lose)."""
        if self.recipe_path is None or not self.text or self._loading:
            return False
        try:
            return self.form_text() != self.text
        except Exception:  # a form the document cannot take: edited, surely
            return True

    def has_unsaved_edits(self, recipe: Recipe) -> bool:
        """Whether the form's recipe differs from the file's (as it was loaded)."""
        if self.recipe_path is None:
            return False
        try:
            saved = parse_recipe(self.text, str(self.recipe_path), self.recipe_path.parent)
        except RecipeError:
            return True
        return saved.to_dict() != recipe.to_dict()

    def show_validation(self, text: str, ok: bool) -> None:
        widget = self.query_one("#validation", Static)
        widget.update(text)
        widget.set_class(not ok, "bad")
        widget.set_class(ok, "good")

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        if event.input.id in ("f-arm-name", "f-arm-inter"):
            return
        if event.input.id == "f-targets":
            self.rebuild_pickers()
        if event.input.id and event.input.id.startswith("hp-all-"):
            self.show_inherited()
        self.validate()

    @on(SelectionList.SelectedChanged)
    def _languages_changed(self) -> None:
        self.validate()

    # -- arms --

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
        arm: dict[str, Any] = {"name": self.query_one("#f-arm-name", Input).value.strip()}
        inter = name_list(self.query_one("#f-arm-inter", Input).value)
        if inter:
            arm["intermediate"] = inter
        backend = str(self.query_one("#f-arm-backend", Select).value)
        if backend != "torch":
            arm["backend"] = backend
        return arm

    @on(Button.Pressed, "#arm-add, #arm-update, #arm-remove")
    def _edit_arms(self, event: Button.Pressed) -> None:
        """Add the editor's arm, or replace or remove the arm under the table's cursor."""
        row = self.query_one("#f-arms", DataTable).cursor_row
        if event.button.id == "arm-add":
            self.arms_raw.append(self._arm_from_editor())
        elif 0 <= row < len(self.arms_raw):
            if event.button.id == "arm-update":  # settings the editor does not show stay
                edited = self._arm_from_editor()
                kept = {k: v for k, v in self.arms_raw[row].items()
                        if k not in ("name", "intermediate", "backend")}
                self.arms_raw[row] = {**edited, **kept}
            else:
                del self.arms_raw[row]
        else:
            return
        self.refresh_arms()
        self.validate()

    @on(Button.Pressed, "#run")
    def _run_pressed(self) -> None:
        self.post_message(self.RunRequested())

    # -- saving (the flows: ``saving``) --

    def _write(self, path: Path, document: RecipeDocument) -> bool:
        return saving.write_from_form(self, path, document)

    def name_problem(self, name: str) -> str:
        """What is wrong with a new recipe name ("" when nothing)."""
        return saving.name_problem(self, name)

    @on(Button.Pressed, "#save")
    def action_save_as(self) -> None:
        saving.save_as(self)

    def action_new_recipe(self) -> None:
        saving.new_recipe(self)

    @on(Button.Pressed, "#overwrite")
    def action_overwrite(self) -> None:
        saving.overwrite(self)
