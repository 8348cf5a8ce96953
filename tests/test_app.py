"""The dashboard, driven with Textual's Pilot: recipes, runs, scores, compare, re-attach.

Waits are bounded polls (a slow machine makes a test slower, not red); nothing sleeps
a fixed time."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SMALL_DEMO
from dashboard_fixtures import built_results, wait_for
from xstilts_tui.dashboard import RunContext, XstiltsApp
from xstilts_tui.dashboard.scores import ScoresView
from xstilts_tui.recipe.parse import load_recipe, parse_recipe
from xstilts_tui.recipe.schema import RecipeError

SIZE = (80, 24)


async def start_run(pilot, app):
    """Press r (the run key) once the opened recipe has validated."""
    await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
    app.query_one("#recipe-list").focus()
    await pilot.press("r")


def make_app(recipes_dir, tmp_path, **kw):
    return XstiltsApp([recipes_dir], output_root=tmp_path / "runs", **kw)


def cell(app, task, arm, column):
    return app.score_text(task, arm, column)


# --- recipes ------------------------------------------------------------------------


async def test_recipe_form_validates_as_you_type_and_saves_a_round_trip(recipes_dir, tmp_path):
    app = make_app(recipes_dir, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        validation = app.query_one("#validation")
        await wait_for(pilot, lambda: "ok (2 arms" in str(validation.render()), 10, "validation")
        original = load_recipe(recipes_dir / "small-demo.toml")

        # A bad value: the same one-line message `xstilts-tui validate` prints.
        app.query_one("#f-seeds").value = "1, -2"
        await wait_for(pilot, lambda: validation.has_class("bad"), 10, "an error")
        message = str(validation.render())
        bad = tmp_path / "bad.toml"
        bad.write_text(SMALL_DEMO.replace("seeds = [1]", "seeds = [1, -2]"), encoding="utf-8")
        with pytest.raises(RecipeError) as cli_error:
            load_recipe(bad)
        # "FILE: FIELD: what is wrong": the same after the file name.
        assert message.split(": ", 1)[1] == str(cli_error.value).split(": ", 1)[1]
        assert validation.has_class("bad")

        # Fix it, edit an arm and a language, save to a new file.
        app.query_one("#f-seeds").value = "1, 2"
        app.query_one("#f-arm-name").value = "jobs-lr"
        app.query_one("#f-arm-inter").value = "demo-jobs"
        app.query_one("#arm-add").focus()
        await pilot.press("enter")
        picker = app.query(".langs").first()
        picker.deselect("zh")
        await wait_for(pilot, lambda: "ok (3 arms" in str(validation.render()), 10, "ok again")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "AskName", 10, "the dialog")
        app.screen.query_one("#ask-name").value = "small-demo-lr"
        await pilot.press("enter")
        await wait_for(pilot, lambda: (recipes_dir / "small-demo-lr.toml").exists(), 10, "the file")
        saved = load_recipe(recipes_dir / "small-demo-lr.toml")
        assert saved.name == "small-demo-lr"
        assert [a.name for a in saved.arms] == ["baseline", "jobs", "jobs-lr"]
        assert saved.seeds == (1, 2)
        assert saved.tasks["demo-qa"].languages == ("en", "es", "de", "ru")
        # Everything the form does not show is kept as it was.
        assert saved.model == original.model
        assert saved.hparams_target == original.hparams_target
        assert saved.tasks["demo-jobs"] == original.tasks["demo-jobs"]
        # The original file is untouched: saving writes a new file.
        assert load_recipe(recipes_dir / "small-demo.toml") == original

    # An unchanged form saves the same recipe.
    app = make_app(recipes_dir, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        app.recipes.load(recipes_dir / "small-demo.toml")
        await pilot.pause()
        recipe = app.recipes.validate()
        again = parse_recipe(app.recipes.form_text(), str(recipes_dir / "small-demo.toml"), recipes_dir)
        assert app.recipes.form_text() == (recipes_dir / "small-demo.toml").read_text(encoding="utf-8")
        assert again == recipe == load_recipe(recipes_dir / "small-demo.toml")


async def test_overwrite_asks_first(recipes_dir, tmp_path):
    app = make_app(recipes_dir, tmp_path)
    path = recipes_dir / "small-demo.toml"
    before = path.read_text(encoding="utf-8")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        app.query_one("#f-seeds").value = "3"
        await pilot.pause()
        await pilot.press("ctrl+o")
        await pilot.press("n")
        assert path.read_text(encoding="utf-8") == before
        await pilot.press("ctrl+o")
        await pilot.press("y")
        await wait_for(pilot, lambda: path.read_text(encoding="utf-8") != before, 10, "overwrite")
    assert load_recipe(path).seeds == (3,)


# --- runs and scores -----------------------------------------------------------------


@pytest.mark.slow
async def test_demo_from_the_dashboard_fills_every_language(recipes_dir, tmp_path):
    app = make_app(recipes_dir, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await start_run(pilot, app)
        assert app.query_one("#tabs").active == "runs"
        await wait_for(pilot, lambda: not app.running, 600, "the run to end")
        assert set(app.stage_states().values()) == {"done"}
        await pilot.press("3")
        langs = ["en", "es", "de", "ru", "zh"]
        for arm in ("baseline", "jobs"):
            for column in [*langs, "avg", "avg-en"]:
                assert cell(app, "demo-qa", arm, column) != "-", (arm, column)
        base_en = float(cell(app, "demo-qa", "baseline", "en"))
        jobs_en = float(cell(app, "demo-qa", "jobs", "en"))
        await pilot.press("d")
        assert cell(app, "demo-qa", "jobs", "en") == f"{jobs_en - base_en:+.1f}"
        assert cell(app, "demo-qa", "baseline", "en") == f"{base_en:.1f}"
        await pilot.press("a")
        assert cell(app, "demo-qa", "jobs", "en") == f"{jobs_en:.1f}"
        # The results store holds what the table shows.
        import polars as pl

        results = pl.read_parquet(tmp_path / "runs" / "small-demo" / "results.parquet")
        assert results.filter(pl.col("split") == "test")["language"].n_unique() == 5


@pytest.mark.slow
async def test_a_killed_worker_fails_its_stage_and_the_app_stays_up(recipes_dir, tmp_path):
    # A long intermediate stage, so that it is still running when it is killed.
    path = recipes_dir / "small-demo.toml"
    path.write_text(SMALL_DEMO + "\n[hparams.intermediate]\nmax_steps = 100000\n", encoding="utf-8")
    app = make_app(recipes_dir, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await start_run(pilot, app)
        stage = "intermediate/demo-jobs/torch/seed1"
        await wait_for(pilot, lambda: app.stage_states().get(stage) == "running"
                       and app.runner.worker is not None, 300, "the intermediate stage")
        killed_stage, pid = app.runner.worker
        assert killed_stage == stage
        os.kill(pid, signal.SIGKILL)
        await wait_for(pilot, lambda: app.stage_states().get(stage) == "failed", 60, "the failure")
        # The app answers, the dependent stage is skipped, the others go on.
        await pilot.press("3")
        assert app.query_one("#tabs").active == "scores"
        await wait_for(pilot, lambda: not app.running, 600, "the run to end")
        assert app.stage_states()["target/jobs/demo-qa/seed1"] == "skipped"
        assert app.stage_states()["target/baseline/demo-qa/seed1"] == "done"
        assert cell(app, "demo-qa", "baseline", "zh") != "-"
        status = str(app.query_one("#run-status").render())
        assert "2 stage(s) not done" in status


@pytest.mark.slow
async def test_quitting_during_a_run_asks_then_stops_the_workers(recipes_dir, tmp_path):
    app = make_app(recipes_dir, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await start_run(pilot, app)
        await wait_for(pilot, lambda: "running" in app.stage_states().values()
                       and app.runner.worker_pid is not None, 120, "a running stage")
        pid = app.runner.worker_pid
        await pilot.press("q")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "Confirm"
        await pilot.press("n")
        assert app.running
        await pilot.press("q")
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.running, 60, "the run to stop")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # no orphan worker
    events = (tmp_path / "runs" / "small-demo" / "events.jsonl").read_text(encoding="utf-8")
    assert '"type":"stage_started"' in events  # what was reported stays in the store


# --- re-attach, compare, snapshots -----------------------------------------------------


async def test_reattach_shows_scores_and_compare_without_running(tmp_path, recipes_dir):
    folder = built_results(tmp_path / "results")
    app = make_app(recipes_dir, tmp_path, results=folder)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.query_one("#tabs").active == "scores"
        assert not app.running
        # Mean ± std over the two seeds.
        assert cell(app, "demo-qa", "baseline", "en") == "71.0±1.4"
        assert cell(app, "demo-qa", "jobs", "es") == "15.5±0.7"
        await pilot.press("m")
        assert cell(app, "demo-qa", "jobs", "es") == "15.5"
        await pilot.press("d")
        assert cell(app, "demo-qa", "jobs", "en") == "+4.0"
        # Sorting by a column orders the arms by it (the header click does the same).
        await pilot.press("a")
        table = app.query_one(ScoresView).tables["demo-qa"]
        ScoresView.sort_table(table, list(table.columns).index("de"))
        await pilot.pause()
        assert [str(table.get_row_at(i)[0]).split(" ")[0] for i in range(2)] == ["baseline", "jobs"]
        ScoresView.sort_table(table, list(table.columns).index("en"))
        await pilot.pause()
        assert [str(table.get_row_at(i)[0]).split(" ")[0] for i in range(2)] == ["jobs", "baseline"]

        await pilot.press("4")
        scores = app.query_one("#cmp-scores")
        rows = {str(scores.get_row_at(i)[0]): [str(c) for c in scores.get_row_at(i)]
                for i in range(scores.row_count)}
        assert rows["en"][1:] == ["71.0±1.4", "75.0±1.4", "+4.0"]
        assert rows["de"][3] == "-2.0"
        cost = app.query_one("#cmp-cost")
        costs = {str(cost.get_row_at(i)[0]): [str(c) for c in cost.get_row_at(i)][1:]
                 for i in range(cost.row_count)}
        assert costs["target: wall time (s)"] == ["11.0", "11.0"]
        assert costs["target: peak memory"] == ["512.0 MiB", "512.0 MiB"]
        assert costs["target: checkpoint"] == ["3.0 MiB", "3.0 MiB"]
        assert costs["target: trainable params"] == ["175,170", "175,170"]

        await pilot.press("question_mark")
        assert app.screen.__class__.__name__ == "Help"
        await pilot.press("escape")
        await pilot.press("q")
    assert RunContext.of_results(folder).arms == ["baseline", "jobs"]


# --- past runs, two runs compared, the XTREME view ---------------------------------------

OTHER_VALUES = {("baseline", 1): [71.0, 12.0, 12.0, 8.0, 9.0], ("baseline", 2): [73.0, 12.0, 14.0, 8.0, 10.0],
                ("jobs", 1): [80.0, 20.0, 15.0, 9.0, 12.0], ("jobs", 2): [82.0, 22.0, 15.0, 11.0, 14.0]}


def two_runs(root: Path) -> tuple[Path, Path]:
    first = built_results(root / "small-demo", run_id="20261128-090000-11")
    second = built_results(root / "small-demo-lr", values=OTHER_VALUES, run_id="20261129-101500-22",
                           name="small-demo-lr", wall_s=20.0)
    return first, second


async def test_past_runs_lists_two_finished_runs_and_opens_one(tmp_path, recipes_dir):
    first, second = two_runs(tmp_path / "runs")
    # One stage of the newer run did not finish: its status says so.
    import polars as pl

    stages = pl.read_parquet(second / "stages.parquet")
    stages.with_columns(pl.when(pl.col("stage") == "target/jobs/demo-qa/seed2").then(pl.lit("cancelled"))
                        .otherwise(pl.col("status")).alias("status")).write_parquet(second / "stages.parquet")
    (tmp_path / "runs" / "stray").mkdir()  # not a run: not listed
    app = make_app(recipes_dir, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        table = app.query_one("#past-runs")
        await wait_for(pilot, lambda: table.row_count == 2, 10, "two runs")
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(2)]
        # Newest first: name, date, status, stages done of all, the best average.
        assert rows[0] == ["small-demo-lr", "2026-11-29 10:15", "cancelled", "3/4", "jobs 28.0"]
        assert rows[1] == ["small-demo", "2026-11-28 09:00", "done", "4/4", "jobs 24.7"]
        # Open the older one read-only.
        table.move_cursor(row=1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.query_one("#tabs").active == "scores", 10, "the scores")
        assert not app.running
        assert cell(app, "demo-qa", "jobs", "en") == "75.0±1.4"
        await pilot.press("2")
        assert app.stage_states() == {f"target/{a}/demo-qa/seed{s}": "done"
                                      for a in ("baseline", "jobs") for s in (1, 2)}
    # --results also takes the folder of runs: it opens on the list.
    app = XstiltsApp([recipes_dir], results=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.query_one("#past-runs").row_count == 2, 10, "the list")
        assert app.query_one("#tabs").active == "past"


async def test_compare_two_runs_side_by_side_with_their_difference_and_cost(tmp_path, recipes_dir):
    first, second = two_runs(tmp_path / "runs")
    app = make_app(recipes_dir, tmp_path, results=first)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("5")
        table = app.query_one("#past-runs")
        await wait_for(pilot, lambda: table.row_count == 2, 10, "two runs")
        table.move_cursor(row=0)  # the newer run, small-demo-lr
        await pilot.press("x")
        await wait_for(pilot, lambda: app.query_one("#tabs").active == "compare", 10, "compare")
        await pilot.pause()
        # A: this run's baseline; B: the same arm of the added run.
        a, b = app.query_one("#cmp-a").value, app.query_one("#cmp-b").value
        assert a.split("\x1f") == ["small-demo 2026-11-28 09:00", "baseline"]
        assert b.split("\x1f") == ["small-demo-lr 2026-11-29 10:15", "baseline"]
        app.query_one("#cmp-b").value = "small-demo-lr 2026-11-29 10:15\x1fjobs"
        await pilot.pause()
        scores = app.query_one("#cmp-scores")
        rows = {str(scores.get_row_at(i)[0]): [str(c) for c in scores.get_row_at(i)][1:]
                for i in range(scores.row_count)}
        assert rows["en"] == ["71.0±1.4", "81.0±1.4", "+10.0"]
        assert rows["es"] == ["10.5±0.7", "21.0±1.4", "+10.5"]
        assert rows["avg"] == ["22.1±0.4", "28.0±1.1", "+5.9"]
        cost = app.query_one("#cmp-cost")
        costs = {str(cost.get_row_at(i)[0]): [str(c) for c in cost.get_row_at(i)][1:]
                 for i in range(cost.row_count)}
        assert costs["target: wall time (s)"] == ["11.0", "21.0"]


async def test_the_xtreme_view_summarises_an_xtreme_target(tmp_path, recipes_dir):
    import json

    from xstilts_tui.recipe.parse import load_recipe as load
    from xstilts_tui.results.store import ResultsStore
    from xstilts_tui.tasks.registry import TASKS

    recipe = load(ROOT / "recipes" / "multilingual-vs-english.toml")
    folder = tmp_path / "xq"
    store = ResultsStore(folder, "20261129-120000-1", recipe.name)
    languages = list(recipe.tasks["xquad"].languages)
    for i, lang in enumerate(languages):
        for metric, value in (("f1", 70.0 + i), ("exact_match", 50.0 + i)):
            store.record({"type": "score", "stage": "target/english-only/xquad/seed1", "task": "xquad",
                          "language": lang, "split": "test", "metric": metric, "value": value,
                          "step": 1, "time": 0.0},
                         stage_key="k", arms=(recipe.arms[0].name,), seed=1, cached=False)
    store.compact()
    store.close()
    (folder / "run.json").write_text(json.dumps({"run": "20261129-120000-1", "recipe": recipe.to_dict()}),
                                     encoding="utf-8")
    app = make_app(recipes_dir, tmp_path, results=folder)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        text = str(app.query_one("#xtreme").render())
        xtreme_langs = [lang for lang in languages if lang in TASKS["xquad"].languages]
        f1 = sum(70.0 + languages.index(lang) for lang in xtreme_langs) / len(xtreme_langs)
        em = sum(50.0 + languages.index(lang) for lang in xtreme_langs) / len(xtreme_langs)
        assert f"{(f1 + em) / 2:.1f}" in text or f"{f1:.1f}" in text, text


# --- snapshots of each screen at 80x24 ------------------------------------------------


def test_snapshot_recipes(snap_compare, tmp_path, recipes_dir):
    assert snap_compare(make_app(recipes_dir, tmp_path), terminal_size=SIZE)


def test_snapshot_runs(snap_compare, tmp_path, recipes_dir):
    folder = built_results(tmp_path / "results")
    assert snap_compare(make_app(recipes_dir, tmp_path, results=folder), press=["2"],
                        terminal_size=SIZE)


def test_snapshot_scores_absolute(snap_compare, tmp_path, recipes_dir):
    folder = built_results(tmp_path / "results")
    assert snap_compare(make_app(recipes_dir, tmp_path, results=folder), terminal_size=SIZE)


def test_snapshot_scores_delta(snap_compare, tmp_path, recipes_dir):
    folder = built_results(tmp_path / "results")
    assert snap_compare(make_app(recipes_dir, tmp_path, results=folder), press=["d"],
                        terminal_size=SIZE)


def test_snapshot_compare(snap_compare, tmp_path, recipes_dir):
    folder = built_results(tmp_path / "results")
    assert snap_compare(make_app(recipes_dir, tmp_path, results=folder), press=["4"],
                        terminal_size=SIZE)


def test_snapshot_past_runs(snap_compare, tmp_path, recipes_dir, monkeypatch):
    two_runs(tmp_path / "runs")
    monkeypatch.chdir(tmp_path)  # the screen names its root as given: "runs"
    assert snap_compare(XstiltsApp([recipes_dir], output_root=Path("runs")), press=["5"],
                        terminal_size=SIZE)


@pytest.mark.slow
def test_the_dashboard_process_never_imports_the_compute_stack(tmp_path, recipes_dir):
    script = f"""
import asyncio, sys, time
from pathlib import Path
from xstilts_tui.dashboard import XstiltsApp

async def main():
    app = XstiltsApp([Path({str(recipes_dir)!r})], output_root=Path({str(tmp_path / 'runs')!r}))
    async with app.run_test(size=(80, 24)) as pilot:
        while app.recipe is None:
            await pilot.pause(0.1)
        app.query_one("#recipe-list").focus()
        await pilot.press("r")
        deadline = time.monotonic() + 300
        while app.running and time.monotonic() < deadline:
            await pilot.pause(0.2)
        for key in "12345":
            await pilot.press(key)
        print("STATES", sorted(set(app.stage_states().values())))
    print("HEAVY", [n for n in ("torch", "transformers", "datasets", "deepspeed", "peft",
                              "tokenizers") if n in sys.modules])

asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert "STATES ['done']" in out.stdout, out.stdout + out.stderr
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_progress_messages_coalesce_per_stage():
    from xstilts_tui.dashboard.messages import StageProgress

    def progress(stage, step):
        return StageProgress({"stage": stage, "step": step, "total_steps": 10, "loss": 1.0,
                              "lr": 1e-3, "examples_per_s": 5.0})

    # A newer message of the same stage replaces a queued older one; other stages stay.
    assert progress("a", 1).can_replace(progress("a", 2))
    assert not progress("a", 1).can_replace(progress("b", 2))
