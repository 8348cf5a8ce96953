"""No surprises: nothing a run finished is lost or overwritten, whatever the next run or
the dashboard's form does (fake workers: no torch)."""

import os

import polars as pl
from textual.widgets import Input

from conftest import SMALL_DEMO, run_cli
from dashboard_fixtures import wait_for
from xstilts_tui.dashboard import XstiltsApp
from xstilts_tui.plan import build_plan
from xstilts_tui.progress import PlainDisplay
from xstilts_tui.recipe import parse_recipe
from xstilts_tui.runner import Runner


def quiet():
    return PlainDisplay(open(os.devnull, "w"))


def test_a_new_run_in_a_finished_run_s_folder_keeps_that_run_s_tables(tmp_path, fake, capsys):
    first = build_plan(parse_recipe(SMALL_DEMO, "r.toml", tmp_path), tmp_path / "out", tmp_path / "cache")
    runner = Runner(first, quiet())
    assert runner.run().ok
    finished = pl.read_parquet(first.output_dir / "results.parquet")
    assert finished.height > 0
    other = SMALL_DEMO.replace("seeds = [1]", "seeds = [2]")
    second = build_plan(parse_recipe(other, "r.toml", tmp_path), tmp_path / "out", tmp_path / "cache")
    cancelled = Runner(second, quiet())
    cancelled.cancel()  # cancelled before any stage ran
    assert not cancelled.run().ok
    assert pl.read_parquet(first.output_dir / "results.parquet").height == 0
    kept = first.output_dir / "history" / runner.run_id
    assert pl.read_parquet(kept / "results.parquet").equals(finished)
    assert (kept / "run.json").is_file() and (kept / "stages.parquet").is_file()
    code, out, err = run_cli(["report", first.output_dir, "--resamples", "200"], capsys)
    assert code == 0
    assert f"incomplete: 0 of {len(second.stages)} stages done ({len(second.stages)} cancelled); " \
           f"earlier runs' tables are in {first.output_dir / 'history'}" in err
    code, out, err = run_cli(["report", kept, "--resamples", "200"], capsys)
    assert code == 0 and "incomplete" not in err and "baseline" in out


async def test_a_run_of_unsaved_edits_never_writes_over_the_saved_recipe_s_results(
        recipes_dir, tmp_path, fake):
    app = XstiltsApp([recipes_dir], output_root=tmp_path / "runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        app.query_one("#recipe-list").focus()
        await pilot.press("r")
        await wait_for(pilot, lambda: app.running, 10, "the run to start")
        await wait_for(pilot, lambda: not app.running, 120, "the first run to end")
        saved = tmp_path / "runs" / "small-demo"
        finished = pl.read_parquet(saved / "results.parquet")
        assert finished.height > 0
        await pilot.press("1")
        app.query_one("#f-seeds", Input).value = "2"
        await wait_for(pilot, lambda: app.recipe is not None and app.recipe.seeds == (2,), 10, "seed 2")
        app.query_one("#recipe-list").focus()
        await pilot.press("r")
        await wait_for(pilot, lambda: app.running, 10, "the edited run to start")
        await pilot.press("c")
        await wait_for(pilot, lambda: not app.running, 120, "the cancel")
    assert pl.read_parquet(saved / "results.parquet").equals(finished)
    edited = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("small-demo.edited-")]
    assert len(edited) == 1 and (edited[0] / "run.json").is_file()
