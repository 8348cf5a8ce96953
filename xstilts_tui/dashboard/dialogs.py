"""Modal dialogs: a yes/no question, a name to save under, the key help."""

from __future__ import annotations

from collections.abc import Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class Confirm(ModalScreen[bool]):
    BINDINGS = [Binding("y", "answer(True)", "yes"), Binding("n,escape", "answer(False)", "no")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class AskName(ModalScreen["str | None"]):
    """A name, checked as it is given: ``check`` answers what is wrong with it, or ""."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, question: str, value: str, check: Callable[[str], str]) -> None:
        super().__init__()
        self.question, self.value, self.check = question, value, check

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            yield Input(self.value, id="ask-name")
            yield Static("enter saves, escape cancels", id="ask-problem", markup=False)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        name = event.value.strip()
        problem = self.check(name)
        if problem:
            self.query_one("#ask-problem", Static).update(problem)
            self.query_one("#ask-problem").add_class("bad")
            return
        self.dismiss(name)

    def action_cancel(self) -> None:
        self.dismiss(None)


HELP = """\
xstilts-tui - keys

 1 2 3 4 5  Recipes, Runs, Scores, Compare, Past runs
 r          run the recipe in the Recipes tab
 c          cancel the run
 escape     leave a field (then r, c and the tab keys work)
 ctrl+s     save the recipe under a new name
 ctrl+o     overwrite the recipe file (asks first)
 ctrl+n     a new recipe beside the open one
 a / d      scores: absolute values / delta to the baseline
 f          scores: F1 or exact match
 m          scores: show or hide std over seeds
 s          scores: sort by the next column (or click a header)
 enter      past runs: open the run; x: add it to Compare
 ?          this help
 q          quit (asks first while a run is going or the form has edits)

Escape closes this help."""


class Help(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "close")]

    def compose(self) -> ComposeResult:
        yield Static(HELP, id="help")
