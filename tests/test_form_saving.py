"""The recipe form saves without surprises and never traps the user (Pilot, 80x24 and
100x30): a failed write is a line, not a crash; links, modes and line endings are kept; a
file changed on disk is not silently replaced; an untouched save changes nothing; removed
arms take their task settings with them; quitting with edits asks; a new recipe can be
made; save-as names are judged by the recipes' names."""

import os
import stat
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from conftest import SMALL_DEMO
from dashboard_fixtures import wait_for
from xstilts_tui.dashboard import XstiltsApp
from xstilts_tui.dashboard import saving
from xstilts_tui.recipe.parse import load_recipe

SIZES = [(80, 24), (100, 30)]


def app_for(path: Path, tmp_path: Path) -> XstiltsApp:
    return XstiltsApp([path.parent], output_root=tmp_path / "runs", edit=path)


async def edit_seeds(app, pilot, value: str, seeds: tuple) -> None:
    await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
    app.query_one("#f-seeds", Input).value = value
    await wait_for(pilot, lambda: app.recipe is not None and app.recipe.seeds == seeds, 10, "the seeds")


def recipe_at(tmp_path: Path, text: str = SMALL_DEMO, name: str = "small-demo.toml") -> Path:
    folder = tmp_path / "recipes"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("size", SIZES)
async def test_a_failed_write_is_one_line_and_the_dashboard_stays(tmp_path, monkeypatch, size):
    path = recipe_at(tmp_path)
    before = path.read_text()

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(saving.os, "replace", refuse)
    app = app_for(path, tmp_path)
    async with app.run_test(size=size) as pilot:
        await edit_seeds(app, pilot, "2", (2,))
        await pilot.press("ctrl+o")
        await pilot.press("y")
        await pilot.pause()
        assert app.is_running
        assert any("could not save" in str(n.message) and "Permission denied" in str(n.message)
                   for n in app._notifications)
    assert path.read_text() == before and not list(path.parent.glob(".*.tmp"))


async def test_a_symlinked_recipe_updates_its_target_and_a_read_only_one_is_refused(tmp_path):
    target = recipe_at(tmp_path, name="real.toml")
    link = target.parent / "small-demo.toml"
    link.symlink_to(target)
    app = app_for(link, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await edit_seeds(app, pilot, "2", (2,))
        await pilot.press("ctrl+o")
        await pilot.press("y")
        await wait_for(pilot, lambda: load_recipe(target).seeds == (2,), 10, "the target written")
    assert link.is_symlink() and os.readlink(link) == str(target)
    target.chmod(0o444)
    app = app_for(link, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await edit_seeds(app, pilot, "3", (3,))
        await pilot.press("ctrl+o")
        await pilot.press("y")
        await pilot.pause()
        assert any("read-only" in str(n.message) for n in app._notifications)
    assert load_recipe(target).seeds == (2,) and stat.S_IMODE(target.stat().st_mode) == 0o444


async def test_the_mode_and_crlf_line_endings_are_kept(tmp_path):
    path = recipe_at(tmp_path)
    path.write_bytes(SMALL_DEMO.replace("\n", "\r\n").encode())
    path.chmod(0o640)
    app = app_for(path, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await edit_seeds(app, pilot, "4", (4,))
        await pilot.press("ctrl+o")
        await pilot.press("y")
        await wait_for(pilot, lambda: b"seeds = [4]" in path.read_bytes(), 10, "the write")
    data = path.read_bytes()
    assert data.count(b"\r\n") == data.count(b"\n") > 10
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


async def test_a_file_changed_on_disk_is_not_silently_replaced(tmp_path):
    path = recipe_at(tmp_path)
    app = app_for(path, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await edit_seeds(app, pilot, "2", (2,))
        path.write_text(SMALL_DEMO.replace("seeds = [1]", "seeds = [7]"))  # another editor
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "Confirm", 10, "the question")
        assert "changed on disk" in str(app.screen.query_one("Label").render())
        await pilot.press("n")
        assert load_recipe(path).seeds == (7,)  # nothing saved
        await pilot.press("ctrl+o")
        await pilot.press("y")  # reload
        await wait_for(pilot, lambda: app.recipe is not None and app.recipe.seeds == (7,), 10, "reload")
        assert app.query_one("#f-seeds", Input).value == "7"
    assert load_recipe(path).seeds == (7,)


INLINE = SMALL_DEMO.split("[[arms]]")[0].replace(
    'targets = ["demo-qa"]\n',
    'targets = ["demo-qa"]\narms = [{ name = "baseline" }, { name = "jobs", intermediate = ["demo-jobs"] }]'
    '  # two arms\n') + "[tasks.demo-qa]" + SMALL_DEMO.split("[tasks.demo-qa]")[1]


async def test_an_untouched_save_changes_nothing(tmp_path):
    path = recipe_at(tmp_path, INLINE)
    before = path.read_bytes()
    app = app_for(path, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        assert not app.recipes.form_is_edited()
        await pilot.press("ctrl+o")
        await pilot.press("y")
        await wait_for(pilot, lambda: any("saved" in str(n.message) for n in app._notifications), 10,
                       "the save")
    assert path.read_bytes() == before


@pytest.mark.parametrize("size", SIZES)
async def test_removing_the_arms_of_a_task_leaves_its_settings_out_and_saves(tmp_path, size):
    path = recipe_at(tmp_path)
    app = app_for(path, tmp_path)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        app.recipes.arms_raw = [a for a in app.recipes.arms_raw if a["name"] != "jobs"]
        app.recipes.refresh_arms()
        app.recipes.validate()
        await pilot.pause()
        message = str(app.query_one("#validation", Static).render())
        assert "ok (1 arms" in message and "tasks.demo-jobs are left out" in message
        await pilot.press("ctrl+o")
        await pilot.press("y")
        await wait_for(pilot, lambda: "demo-jobs" not in path.read_text(), 10, "the write")
    assert [a.name for a in load_recipe(path).arms] == ["baseline"]


@pytest.mark.parametrize("size", SIZES)
async def test_quitting_with_edits_asks_first(tmp_path, size):
    path = recipe_at(tmp_path)
    app = app_for(path, tmp_path)
    async with app.run_test(size=size) as pilot:
        await edit_seeds(app, pilot, "2", (2,))
        app.query_one("#recipe-list").focus()
        await pilot.press("q")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "Confirm", 10, "the question")
        await pilot.press("n")
        assert app.is_running
        await pilot.press("q")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "Confirm", 10, "the question")
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.is_running, 10, "the exit")


async def test_a_new_recipe_and_save_as_names_judged_by_recipe_names(tmp_path):
    path = recipe_at(tmp_path)
    # a listed file whose name is not its stem
    (path.parent / "other-file.toml").write_text(SMALL_DEMO.replace('name = "small-demo"',
                                                                    'name = "named-inside"'))
    app = app_for(path, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "AskName", 10, "the dialog")
        field = app.screen.query_one(Input)
        field.value = "other-file"  # a file's stem, not a recipe's name: fine as a name...
        assert app.recipes.name_problem("other-file").startswith("other-file.toml already exists")
        assert app.recipes.name_problem("named-inside") == \
            "other-file.toml is called 'named-inside': both would write to one output folder"
        await pilot.press("escape")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "AskName", 10, "the dialog")
        app.screen.query_one(Input).value = "fresh"
        await pilot.press("enter")
        fresh = path.parent / "fresh.toml"
        await wait_for(pilot, lambda: app.recipe_path == fresh, 10, "the new recipe open")
        assert load_recipe(fresh).name == "fresh"
