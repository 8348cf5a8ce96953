"""The dashboard app: five screens in tabs, and the run they show.

Each screen (``recipes``, ``runs``, ``scores``, ``compare``, ``past_runs``) owns its
widgets; this module composes them, starts and cancels runs, and routes the run
thread's messages to the screens. Runs go through the same ``Runner`` as the headless
mode, in a background thread that starts each stage as a worker process; this process
never imports the compute stack.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Input, TabbedContent, TabPane

from xstilts_tui.recipe.schema import Recipe, RecipeError
from xstilts_tui.run.runner import Runner
from xstilts_tui.dashboard.compare import CompareView
from xstilts_tui.dashboard.context import RunContext
from xstilts_tui.dashboard.dialogs import Confirm, Help
from xstilts_tui.dashboard.launch import prepare_run
from xstilts_tui.dashboard.messages import (AppDisplay, CompareRun, LogLine, OpenRun, RunEnded, ScoreArrived,
                       StageEnded, StageProgress, StageStarted)
from xstilts_tui.dashboard.past_runs import PastRunsView
from xstilts_tui.dashboard.recipes import SHIPPED_RECIPES, RecipesView
from xstilts_tui.dashboard.runs import RunsView
from xstilts_tui.dashboard.scores import ScoresView

# Each tab: its key, its title, and the widget that takes the focus when it is shown.
TABS = {"recipes": ("1", "Recipes", "#recipe-list"), "runs": ("2", "Runs", "#stages"),
        "scores": ("3", "Scores", "#score-tables"), "compare": ("4", "Compare", "#cmp-a"),
        "past": ("5", "Past runs", "#past-runs")}


class XstiltsApp(App):
    TITLE = "xstilts-tui"
    CSS_PATH = "dashboard.tcss"
    BINDINGS = [
        *[Binding(key, f"tab('{tab}')", title, show=False) for tab, (key, title, _) in TABS.items()],
        Binding("r", "start_run", "Run"),
        Binding("ctrl+r", "start_run", "Run", show=False, priority=True),
        Binding("c", "cancel_run", "Cancel"),
        Binding("escape", "leave_field", "Leave field", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit_app", "Quit"),
        Binding("ctrl+q", "quit_app", "Quit", show=False, priority=True),
    ]

    def __init__(self, recipes_dirs: list[Path] | None = None, results: Path | None = None,
                 output_root: Path | None = None, edit: Path | None = None,
                 run_options: dict | None = None) -> None:
        super().__init__()
        # --executor, --devices, --parallel: how runs started here place their stages.
        self.run_options = run_options or {}
        self.recipes_dirs = recipes_dirs if recipes_dirs is not None else [SHIPPED_RECIPES]
        self.results_path = results
        self.output_root = output_root
        self.edit = edit
        self.runner: Runner | None = None
        self.run_thread: threading.Thread | None = None
        self.context: RunContext | None = None  # the run the screens show
        self.cancel_requested = False
        self.run_open = False  # from the start of a run until its RunEnded is shown

    # -- the screens --

    def compose(self) -> ComposeResult:
        root = self.past_root()
        with TabbedContent(initial="recipes", id="tabs"):
            with TabPane(self.tab_title("recipes"), id="recipes"):
                yield RecipesView(self.recipes_dirs, self.edit)
            with TabPane(self.tab_title("runs"), id="runs"):
                yield RunsView()
            with TabPane(self.tab_title("scores"), id="scores"):
                yield ScoresView()
            with TabPane(self.tab_title("compare"), id="compare"):
                yield CompareView()
            with TabPane(self.tab_title("past"), id="past"):
                yield PastRunsView(root)
        yield Footer()

    @staticmethod
    def tab_title(tab: str) -> str:
        key, title, _ = TABS[tab]
        return f"{key} {title}"

    def past_root(self) -> Path:
        """Where past runs are listed from: --results ROOT, --output, or runs/ (the default
        output folder of a recipe without output_dir)."""
        if self.results_path is not None and not (self.results_path / "run.json").is_file():
            return self.results_path
        return self.output_root or Path("runs")

    async def on_mount(self) -> None:
        if self.results_path is not None and (self.results_path / "run.json").is_file():
            await self.open_results(self.results_path)
        elif self.results_path is not None:
            self.action_tab("past")
        else:
            self.action_tab("recipes")

    @property
    def recipes(self) -> RecipesView:
        return self.query_one(RecipesView)

    @property
    def recipe(self) -> Recipe | None:
        """The recipe of the form, when it validates."""
        return self.recipes.recipe

    @property
    def recipe_path(self) -> Path | None:
        return self.recipes.recipe_path

    def stage_states(self) -> dict[str, str]:
        return dict(self.query_one(RunsView).states)

    def score_text(self, task: str, arm: str, column: str) -> str:
        return self.query_one(ScoresView).score_text(task, arm, column)

    async def show_run(self, context: RunContext) -> None:
        self.context = context
        await self.query_one(ScoresView).show(context)
        self.query_one(CompareView).set_current(context)

    async def open_results(self, folder: Path) -> None:
        try:
            context = RunContext.of_results(folder)
        except RecipeError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self.query_one(RunsView).show_finished(context)
        await self.show_run(context)
        self.action_tab("scores")

    # -- runs --

    @property
    def running(self) -> bool:
        """A run is going: its thread is alive, or what it posted last (``RunEnded``) has
        not been shown yet."""
        return self.run_open or (self.run_thread is not None and self.run_thread.is_alive())

    @property
    def worker_alive(self) -> bool:
        return self.run_thread is not None and self.run_thread.is_alive()

    @on(RecipesView.RunRequested)
    async def _run_requested(self) -> None:
        await self.action_start_run()

    async def action_start_run(self) -> None:
        if self.results_path is not None:
            self.notify("opened with --results: this dashboard shows results and runs nothing "
                        "(start it without --results to run recipes)", severity="warning")
            return
        if self.running:
            self.notify("a run is already going", severity="warning")
            return
        recipe = self.recipes.validate()
        if recipe is None:
            self.notify("the recipe has a problem: see the Recipes tab", severity="error")
            return
        prepared = prepare_run(self, recipe)
        if prepared is None:
            return
        plan, slots, executor = prepared
        display = AppDisplay(self, plan)
        runner = Runner(plan, display, slots=slots, executor=executor)
        display.runner = runner
        self.runner, self.cancel_requested = runner, False
        context = RunContext.of_recipe(recipe, plan.output_dir)
        context.stage_ids = [s.id for s in plan.stages]
        self.query_one(RunsView).show_plan(plan, recipe.name)
        await self.show_run(context)
        self.action_tab("runs")

        def work() -> None:
            try:
                outcome = runner.run()
                self.post_message(RunEnded(outcome.ok, cancelled=runner.cancelled.is_set()))
            except Exception as exc:  # a bug in the run loop must not take the app down
                self.post_message(RunEnded(False, runner.cancelled.is_set(),
                                           f"{type(exc).__name__}: {exc}"))

        self.run_thread = threading.Thread(target=work, name="xstilts-run", daemon=True)
        self.run_open = True
        self.run_thread.start()

    def action_cancel_run(self) -> None:
        if self.runner is None or not self.worker_alive:
            return

        def cancel(yes: bool | None) -> None:
            if yes and self.runner is not None and self.worker_alive:
                self.cancel_requested = True
                self.runner.cancel()
                self.notify("cancelling the run: the running stages stop, what was scored is kept")

        self.push_screen(Confirm("Cancel the run? Its running stages stop (saving a resume state "
                                 "where they keep one); what was scored is kept; r runs the rest."),
                         cancel)

    # -- the run thread's messages, routed to the screens --

    def showing_run(self) -> bool:
        """False once the app is closing: messages the run thread posted late are dropped."""
        return self.is_running and bool(self.query(RunsView))

    def on_stage_started(self, message: StageStarted) -> None:
        if self.showing_run():
            self.query_one(RunsView).stage_started(message.stage, message.total)

    def on_stage_progress(self, message: StageProgress) -> None:
        if self.showing_run():
            self.query_one(RunsView).progress(message.event)

    def on_score_arrived(self, message: ScoreArrived) -> None:
        if not self.showing_run() or self.context is None:
            return
        self.context.add_rows(message.rows)
        self.query_one(ScoresView).scores_added({r["task"] for r in message.rows})
        self.query_one(CompareView).refresh_tables()

    def on_stage_ended(self, message: StageEnded) -> None:
        if not self.showing_run():
            return
        self.query_one(RunsView).stage_ended(message.stage, message.status, message.detail)
        if message.row is not None and self.context is not None:
            self.context.stages.append(message.row)
            self.query_one(CompareView).refresh_tables()

    def on_log_line(self, message: LogLine) -> None:
        if self.showing_run():
            self.query_one(RunsView).log(message.text)

    def on_run_ended(self, message: RunEnded) -> None:
        self.run_open = False
        if not self.showing_run():
            return
        cancelled = message.cancelled or self.cancel_requested
        line = self.query_one(RunsView).run_ended(message.ok, cancelled, message.error)
        self.query_one(PastRunsView).reload()
        if message.ok:
            self.notify("run finished")
        else:
            self.notify(line, severity="information" if cancelled else "warning", markup=False)

    # -- past runs and compare --

    async def on_open_run(self, message: OpenRun) -> None:
        if self.running:
            self.notify("a run is going: open past runs when it ends, or add them to Compare (x)",
                        severity="warning")
            return
        await self.open_results(Path(message.folder))

    def on_compare_run(self, message: CompareRun) -> None:
        try:
            context = RunContext.of_results(Path(message.folder))
        except RecipeError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self.query_one(CompareView).add_run(context)
        self.action_tab("compare")

    # -- app-wide keys --

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        # Move the focus into the tab, or a focused widget of another tab pulls it back.
        self.query_one(TABS[tab][2]).focus()

    def action_leave_field(self) -> None:
        """Escape: out of a text field, so that the single-letter keys work again."""
        if isinstance(self.focused, Input):
            self.action_tab(self.query_one(TabbedContent).active or "recipes")

    def action_help(self) -> None:
        self.push_screen(Help())

    async def action_quit_app(self) -> None:
        if not self.worker_alive:
            if self.recipes.form_is_edited():
                name = self.recipes.recipe_path.name if self.recipes.recipe_path else "the recipe"

                def quit_anyway(yes: bool | None) -> None:
                    if yes:
                        self.exit()

                self.push_screen(Confirm(f"The form has edits not saved to {name}. Quit and lose "
                                         "them? (no: ctrl+s saves as, ctrl+o overwrites)"), quit_anyway)
                return
            self.exit()
            return

        async def stop_and_quit(yes: bool | None) -> None:
            if not yes:
                return
            self.notify("stopping the workers (each saves a resume state first), then quitting...",
                        timeout=30)
            self.query_one(RunsView).query_one("#run-status").update(
                "stopping the workers, then quitting...")
            await self.stop_run()
            self.exit()

        self.push_screen(Confirm("A run is going. Stop its workers and quit?"), stop_and_quit)

    async def stop_run(self, timeout_s: float = 30.0) -> None:
        """Cancel the run and wait until its thread has stopped the worker and written
        what was scored."""
        if self.runner is not None:
            self.cancel_requested = True
            self.runner.cancel()
        thread = self.run_thread
        if thread is not None:
            await asyncio.to_thread(thread.join, timeout_s)
            self.run_open = thread.is_alive()


def run_dashboard(recipes_dirs: list[Path], results: Path | None, output_root: Path | None,
                  edit: Path | None = None, run_options: dict | None = None) -> int:
    app = XstiltsApp(recipes_dirs, results, output_root, edit, run_options)
    app.run()
    if app.worker_alive:  # closed some other way while running: still stop cleanly
        app.runner.cancel()
        app.run_thread.join(30)
    return 0
