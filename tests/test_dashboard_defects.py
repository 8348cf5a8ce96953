"""The dashboard defects a new user meets in the first ten minutes, each driven with Pilot.

Waits are bounded polls (a slow machine makes a test slower, not red)."""

import tomllib
from pathlib import Path

import pytest
from textual.widgets import Input, SelectionList

from conftest import SMALL_DEMO
from dashboard_fixtures import wait_for
from xstilts_tui.dashboard import XstiltsApp
from xstilts_tui.recipe.parse import load_recipe

SIZE = (80, 24)


def make_app(folder: Path, tmp_path: Path, **kw) -> XstiltsApp:
    return XstiltsApp([folder], output_root=tmp_path / "runs", **kw)


def status_text(app) -> str:
    return str(app.query_one("#run-status").render())


# --- 1 and 5: a second run without restarting; cancel shown as cancelled -----------------


@pytest.mark.slow
async def test_a_second_run_after_a_finish_and_after_a_cancel(recipes_dir, tmp_path):
    app = make_app(recipes_dir, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        app.query_one("#recipe-list").focus()
        await pilot.press("r")
        await wait_for(pilot, lambda: app.running, 10, "the run to start")
        await wait_for(pilot, lambda: not app.running, 600, "the first run to end")
        assert set(app.stage_states().values()) == {"done"}
        # Again, from the Recipes tab: every stage comes from the stage cache, no crash.
        await pilot.press("1")
        app.query_one("#recipe-list").focus()
        await pilot.press("r")
        await wait_for(pilot, lambda: not app.running and app.stage_states()
                       and set(app.stage_states().values()) == {"cached"}, 120, "the second run")
        assert app.score_text("demo-qa", "jobs", "zh") != "-"
        assert "finished" in status_text(app)

        # Cancel a run with work left (a new seed), then run again: it resumes.
        app.query_one("#f-seeds", Input).value = "1, 5"
        await wait_for(pilot, lambda: app.recipe is not None and app.recipe.seeds == (1, 5), 10,
                       "the new seed")
        app.query_one("#recipe-list").focus()
        await pilot.press("r")
        await wait_for(pilot, lambda: "running" in app.stage_states().values(), 120, "a stage")
        await pilot.press("c", "y")  # cancelling asks first
        await wait_for(pilot, lambda: not app.running, 120, "the cancel")
        assert "cancelled" in app.stage_states().values()
        assert "cancelled" in status_text(app)
        assert "failed" not in status_text(app)
        overall = str(app.query_one("#overall").render())
        assert "cancelled" in overall and "100%" not in overall
        await pilot.press("1")
        app.query_one("#recipe-list").focus()
        await pilot.press("r")
        await wait_for(pilot, lambda: app.running, 10, "the third run")
        await wait_for(pilot, lambda: not app.running, 600, "the third run to end")
        assert set(app.stage_states().values()) <= {"done", "cached"}
        assert app.score_text("demo-qa", "jobs", "zh").count("±") == 1  # two seeds now


# --- 2: the form shows the values that will run, per phase --------------------------------

PHASED = SMALL_DEMO.replace("[hparams.target]\n", "[hparams.intermediate]\nbatch_size = 8\n"
                            "epochs = 1\n\n[hparams.target]\nepochs = 1\n")


async def test_the_form_shows_and_edits_each_phases_effective_values(tmp_path):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "phased.toml").write_text(PHASED, encoding="utf-8")
    app = make_app(folder, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")

        def shown(phase, key):
            field = app.query_one(f"#hp-{phase}-{key}", Input)
            return field.value or field.placeholder

        # The top level's 16 is what the target phase trains with; the intermediate sets 8.
        assert shown("intermediate", "batch_size").startswith("8")
        assert shown("target", "batch_size").startswith("16")
        assert shown("all", "batch_size").startswith("16")
        assert shown("intermediate", "epochs").startswith("1")
        # A phase left to the top level says so, and follows an edit of the top level.
        assert shown("intermediate", "lr").startswith("0.002")
        app.query_one("#hp-all-lr", Input).value = "0.001"
        await wait_for(pilot, lambda: app.recipe.hparams_target.lr == 0.001, 10, "the new lr")
        assert shown("intermediate", "lr").startswith("0.001")
        # Setting epochs at the top level does not change a phase that sets its own: the
        # field of that phase shows its own value, so the form says what will run.
        app.query_one("#hp-all-epochs", Input).value = "3"
        await pilot.pause()
        assert app.recipe.hparams_intermediate.epochs == 1.0
        assert shown("intermediate", "epochs").startswith("1")
        # Edit one phase.
        app.query_one("#hp-intermediate-epochs", Input).value = "3"
        await wait_for(pilot, lambda: app.recipe.hparams_intermediate.epochs == 3.0, 10, "3 epochs")
        assert app.recipe.hparams_target.epochs == 1.0
        assert app.recipe.hparams_intermediate.batch_size == 8
        assert app.recipe.hparams_target.batch_size == 16


# --- 3: the language picker shows every language ------------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_language_picker_shows_every_language_and_a_pick_changes_the_recipe(
        tmp_path, size):
    from xstilts_tui.dashboard.recipes import SHIPPED_RECIPES

    app = XstiltsApp([SHIPPED_RECIPES], output_root=tmp_path / "runs",
                     edit=SHIPPED_RECIPES / "full-vs-lora.toml")
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        assert app.recipe.name == "full-vs-lora"
        picker = app.query(".langs").first(SelectionList)
        picker.focus()
        picker.scroll_visible(animate=False)
        await pilot.pause()
        languages = list(app.recipe.tasks["xquad"].languages)
        assert picker.option_count >= len(languages)
        # Every language has a row, all in sight at once (the frame takes two more).
        assert picker.size.height >= picker.option_count
        assert picker.region.height >= picker.option_count + 2
        # Unpick the first language with the keyboard.
        picker.highlighted = 0
        first = picker.get_option_at_index(0).value
        await pilot.press("space")
        await wait_for(pilot, lambda: app.recipe is not None
                       and app.recipe.tasks["xquad"].languages == tuple(l for l in languages if l != first),
                       10, "the recipe without the first language")


# --- 4: keys are not swallowed by fields ------------------------------------------------


@pytest.mark.slow
async def test_escape_leaves_a_field_then_r_starts_a_run(recipes_dir, tmp_path):
    app = make_app(recipes_dir, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        seeds = app.query_one("#f-seeds", Input)
        seeds.focus()
        await pilot.press("escape")
        assert not isinstance(app.focused, Input)
        await pilot.press("r")
        await wait_for(pilot, lambda: app.running, 10, "the run")
        assert seeds.value == "1"  # the r went to the app, not into the field
        await pilot.press("c", "y")  # cancelling asks first
        await wait_for(pilot, lambda: not app.running, 120, "the cancel")


async def test_tab_after_choosing_a_recipe_lands_on_a_visible_field(recipes_dir, tmp_path):
    app = make_app(recipes_dir, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        # At start the recipe list has the focus, an entry highlighted.
        assert app.focused is app.query_one("#recipe-list")
        assert app.query_one("#recipe-list").index == 0
        await pilot.press("enter")
        await pilot.press("tab")
        assert app.focused is app.query_one("#f-name")


async def test_the_validation_message_stays_in_sight_while_editing_low_fields(recipes_dir, tmp_path):
    app = make_app(recipes_dir, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        field = app.query_one("#hp-target-max_length", Input)
        field.focus()
        field.scroll_visible(animate=False)
        await pilot.pause()
        field.value = "-3"
        validation = app.query_one("#validation")
        await wait_for(pilot, lambda: validation.has_class("bad"), 10, "the error")
        await pilot.pause()
        assert "max_length" in str(validation.render())
        region = validation.region
        assert region.height > 0 and region.bottom <= SIZE[1] and field.region.height > 0


# --- 6: save as a new recipe asks for its name, keeps comments and layout -------------------


async def test_save_as_asks_for_a_name_and_keeps_comments(recipes_dir, tmp_path):
    path = recipes_dir / "small-demo.toml"
    path.write_text("# my demo, small\n" + SMALL_DEMO.replace('targets = ["demo-qa"]',
                                                           'targets = ["demo-qa"]  # the QA one'),
                    encoding="utf-8")
    app = make_app(recipes_dir, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        app.query_one("#f-seeds", Input).value = "1, 2"
        await wait_for(pilot, lambda: app.recipe.seeds == (1, 2), 10, "the seeds")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "AskName", 10, "the dialog")
        name_field = app.screen.query_one(Input)
        # The name of an existing recipe is refused in the dialog.
        name_field.value = "small-demo"
        await pilot.press("enter")
        assert app.screen.__class__.__name__ == "AskName"
        name_field.value = "two-seeds"
        await pilot.press("enter")
        saved = recipes_dir / "two-seeds.toml"
        await wait_for(pilot, lambda: saved.exists(), 10, "the file")
        text = saved.read_text(encoding="utf-8")
        assert text.startswith("# my demo, small\n")
        assert '# the QA one' in text
        assert "seeds = [1, 2]\n" in text
        assert tomllib.loads(text)["name"] == "two-seeds"
        assert load_recipe(saved).seeds == (1, 2)
        assert load_recipe(path).seeds == (1,)  # the original is untouched
        assert app.recipe_path == saved  # the form now edits the new file
        # Overwrite keeps the comments too.
        app.query_one("#f-seeds", Input).value = "3"
        await wait_for(pilot, lambda: app.recipe.seeds == (3,), 10, "seed 3")
        await pilot.press("ctrl+o")
        await pilot.press("y")
        await wait_for(pilot, lambda: "seeds = [3]" in saved.read_text(encoding="utf-8"), 10, "write")
        assert "# the QA one" in saved.read_text(encoding="utf-8")


# --- 7: the recipe list, delta std, the ETA column ---------------------------------------------


async def test_the_recipe_list_has_each_file_once_and_whole_names(tmp_path):
    from xstilts_tui.dashboard.recipes import SHIPPED_RECIPES

    app = XstiltsApp([SHIPPED_RECIPES, SHIPPED_RECIPES / ".." / "recipes"],
                     output_root=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "a recipe")
        view = app.query_one("#recipe-list")
        labels = [str(item.query_one("Label").render()) for item in view.children]
        assert sorted(labels) == sorted({p.stem for p in SHIPPED_RECIPES.glob("*.toml")})
        for item in view.children:
            label = item.query_one("Label")
            assert label.region.width >= len(str(label.render())), str(label.render())


async def test_delta_mode_keeps_the_std_and_the_eta_column_fits_80_columns(tmp_path, recipes_dir):
    from dashboard_fixtures import built_results

    folder = built_results(tmp_path / "results")
    app = make_app(recipes_dir, tmp_path, results=folder)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.score_text("demo-qa", "jobs", "en") == "75.0±1.4"
        await pilot.press("d")
        mode = str(app.query_one("#scores-mode").render())
        assert "±std shown" in mode
        # The delta and the std of the per-seed differences (74-70, 76-72: 4 and 4).
        assert app.score_text("demo-qa", "jobs", "en") == "+4.0±0.0"
        assert app.score_text("demo-qa", "jobs", "es") == "+5.0±0.0"
        await pilot.press("m")
        assert app.score_text("demo-qa", "jobs", "es") == "+5.0"
        await pilot.press("2")
        await pilot.pause()
        table = app.query_one("#stages")
        right = 0
        for key, column in table.columns.items():
            right += column.get_render_width(table)
            if key.value == "left":
                break
        assert right <= table.size.width, (right, table.size.width)


def test_dashboard_arguments_are_checked_before_it_opens(tmp_path, capsys):
    from xstilts_tui.cli.main import main

    assert main(["--edit", str(tmp_path / "missing.toml")]) == 2
    assert "--edit" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [", encoding="utf-8")
    assert main(["--edit", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a TOML recipe" in err
    (tmp_path / "empty").mkdir()
    assert main(["--results", str(tmp_path / "empty")]) == 2
    assert "no run.json there or in its folders" in capsys.readouterr().err


async def test_the_runs_screen_shows_each_running_stage_and_an_overall_line(recipes_dir, tmp_path):
    from xstilts_tui.dashboard.runs import RunsView, StageBar
    from xstilts_tui.plan.stages import build_plan

    app = make_app(recipes_dir, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        plan = build_plan(app.recipe, tmp_path / "runs" / "small-demo")
        runs = app.query_one(RunsView)
        runs.show_plan(plan, "small-demo")
        await pilot.press("2")
        a, b = "base", "intermediate/demo-jobs/torch/seed1"
        assert [s.id for s in plan.stages][:2] == [a, b]
        runs.stage_started(a, 10)
        runs.stage_started(b, 20)
        await pilot.pause()
        assert [bar.stage for bar in runs.query(StageBar)] == [a, b]
        overall = str(app.query_one("#overall").render())
        assert overall.startswith(f"0/{len(plan.stages)} stages done, 2 running")
        runs.progress({"stage": b, "step": 5, "total_steps": 20, "loss": 1.0, "examples_per_s": 3.0})
        runs.stage_ended(a, "done", "")
        await pilot.pause()
        assert [bar.stage for bar in runs.query(StageBar)] == [b]
        runs.update_overall()
        overall = str(app.query_one("#overall").render())
        assert overall.startswith(f"1/{len(plan.stages)} stages done, 1 running")
        # The two target stages are not timed by the base stage's seconds: none has run yet.
        assert overall.endswith("time left: 2 stage(s) of a kind not run yet")
        runs.run_ended(ok=False, cancelled=True, error="")
        await pilot.pause()
        assert not runs.query(StageBar)
        assert str(app.query_one("#overall").render()).startswith("cancelled: 1/")


async def test_the_trainers_names_show_under_ours_and_are_kept_on_save(tmp_path):
    folder = tmp_path / "recipes"
    folder.mkdir()
    text = SMALL_DEMO.replace("lr = 2e-3", "learning_rate = 2e-3").replace(
        "[hparams.target]\n", "[hparams.target]\nper_device_train_batch_size = 8\n")
    (folder / "hf.toml").write_text(text, encoding="utf-8")
    app = make_app(folder, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        assert app.query_one("#hp-all-lr", Input).value == "0.002"
        assert app.query_one("#hp-target-batch_size", Input).value == "8"
        app.query_one("#hp-all-lr", Input).value = "0.001"
        await wait_for(pilot, lambda: app.recipe.hparams_target.lr == 0.001, 10, "the new lr")
        assert app.recipe.hparams_target.batch_size == 8
        await pilot.press("ctrl+o")
        await pilot.press("y")
        saved = folder / "hf.toml"
        await wait_for(pilot, lambda: "0.001" in saved.read_text(encoding="utf-8"), 10, "the file")
        written = saved.read_text(encoding="utf-8")
        assert "learning_rate = 0.001" in written and "per_device_train_batch_size = 8" in written
        assert "\nlr =" not in written


async def test_progress_that_arrives_before_a_stage_bar_is_mounted_is_kept(recipes_dir, tmp_path):
    from xstilts_tui.dashboard.runs import RunsView, StageBar
    from xstilts_tui.plan.stages import build_plan

    app = make_app(recipes_dir, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        runs = app.query_one(RunsView)
        runs.show_plan(build_plan(app.recipe, tmp_path / "runs" / "small-demo"), "small-demo")
        # Started and at once advanced, in one go: the bar is not mounted yet.
        runs.stage_started("base", 10)
        runs.progress({"stage": "base", "step": 4, "total_steps": 10, "loss": 1.0,
                       "examples_per_s": 3.0})
        await pilot.pause()
        await pilot.pause()
        bar = runs.query_one(StageBar).bar
        assert (bar.progress, bar.total) == (4, 10)


async def test_delta_mode_draws_the_per_language_deltas_as_a_chart(tmp_path, recipes_dir):
    from dashboard_fixtures import built_results

    folder = built_results(tmp_path / "results")
    app = make_app(recipes_dir, tmp_path, results=folder)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        view = app.query_one("ScoresView")
        chart = view.charts["demo-qa"]
        assert not chart.display  # absolute mode: tables only
        await pilot.press("d")
        await pilot.pause()
        assert chart.display
        columns, series = view.chart_data["demo-qa"]
        assert list(series) == ["jobs"]  # every arm but the baseline
        deltas = dict(zip(columns, series["jobs"]))
        assert deltas["en"] == pytest.approx(4.0) and deltas["es"] == pytest.approx(5.0)
        drawn = chart.plt.build()
        assert "demo-qa: F1 delta to baseline" in drawn and "jobs" in drawn
        await pilot.press("a")
        assert not chart.display
