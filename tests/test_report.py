"""Per-example predictions, `score` on them, and `report` in every format with plots, on
a finished small run over the real XQuAD files."""

import json

import polars as pl
import pytest

from conftest import XQUAD_DIR, run_cli
from test_pipeline import _local_recipe

# Every test here reads the module's finished run: two real XQuAD pipelines.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model_dir):
    """A finished run (two arms, three languages) and a second, cached run of it."""
    import subprocess
    import sys

    from conftest import ROOT

    tmp = tmp_path_factory.mktemp("report")
    recipe = tmp / "local.toml"
    recipe.write_text(_local_recipe(tiny_model_dir, XQUAD_DIR / "xquad.en.json", ("en", "de", "th")),
                      encoding="utf-8")
    for out in ("out", "out2"):
        done = subprocess.run([sys.executable, "-m", "xstilts_tui.cli.main", "--recipe", str(recipe),
                               "--output", str(tmp / out)], cwd=ROOT, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stdout + done.stderr
    return tmp


def test_predictions_are_kept_per_stage_and_language_and_score_as_the_run(finished, capsys):
    run = json.loads((finished / "out" / "run.json").read_text(encoding="utf-8"))
    results = pl.read_parquet(finished / "out" / "results.parquet").filter(pl.col("split") == "test")
    targets = [s for s in run["stages"] if s["kind"] == "target"]
    assert len(targets) == 2
    squad = json.loads((XQUAD_DIR / "xquad.de.json").read_text(encoding="utf-8"))
    for stage in targets:
        for lang in ("en", "de", "th"):
            path = f"{stage['dir']}/predictions/xquad.{lang}.parquet"
            frame = pl.read_parquet(path)
            assert frame.height == 16
            assert set(frame["stage_key"].to_list()) == {stage["key"]}
            assert set(frame["seed"].to_list()) == {0}
            assert {"example_id", "prediction", "gold", "f1", "exact_match"} <= set(frame.columns)
            # The gold file of exactly the questions the stage scored.
            ids = set(frame["example_id"].to_list())
            source = json.loads((XQUAD_DIR / f"xquad.{lang}.json").read_text(encoding="utf-8"))
            for article in source["data"]:
                for paragraph in article["paragraphs"]:
                    paragraph["qas"] = [q for q in paragraph["qas"] if q["id"] in ids]
            gold = finished / f"gold.{lang}.json"
            gold.write_text(json.dumps(source), encoding="utf-8")
            code, out, err = run_cli(["score", "--task", "xquad", "--gold", gold, "--pred", path], capsys)
            assert code == 0, err
            scored = json.loads(out)
            mine = results.filter((pl.col("stage") == stage["id"]) & (pl.col("language") == lang))
            for metric in ("f1", "exact_match"):
                value = mine.filter(pl.col("metric") == metric).sort("step")["value"][-1]
                assert scored[metric] == pytest.approx(value, abs=1e-9), (stage["id"], lang, metric)
    assert squad  # the real file was read


@pytest.mark.parametrize("fmt", ["md", "latex", "csv", "html"])
def test_report_in_every_format(finished, capsys, fmt):
    code, out, err = run_cli(["report", finished / "out", "--format", fmt, "--resamples", "500"], capsys)
    assert code == 0, err
    if fmt == "md":
        assert "| arm" in out and "baseline (baseline)" in out and "squad" in out
        assert "[" in out  # the delta's interval
    elif fmt == "latex":
        assert out.count("\\toprule") == out.count("\\bottomrule") >= 2  # scores and cost
        assert "\\midrule" in out and "\\begin{tabular}{lrrrr}" in out  # arm, en, de, th, avg
        assert "\\caption{xquad (f1" in out and "\\_" not in out.split("\\caption")[0]
        assert "\\begin{table}" in out and out.count("\\begin{table}") == out.count("\\end{table}")
    elif fmt == "csv":
        frame = pl.read_csv(out.encode())
        squad = frame.filter((pl.col("arm") == "squad") & (pl.col("column") == "de"))
        assert squad.height == 1
        row = squad.row(0, named=True)
        assert row["delta_low"] <= row["delta"] <= row["delta_high"]
        assert 0 <= row["p"] <= 1 and row["examples"] == 16 and row["seeds"] == 1
    else:
        assert out.startswith("<!doctype html>") and out.count("<table") >= 2


def test_two_runs_side_by_side_and_plots(finished, capsys, tmp_path):
    plots = tmp_path / "plots"
    code, out, err = run_cli(["report", finished / "out", finished / "out2", "--format", "md",
                              "--out", tmp_path / "r.md", "--plots", plots, "--resamples", "200"], capsys)
    assert code == 0, err
    text = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "local (out): baseline" in text and "local (out2): squad" in text
    for name in ("deltas.png", "deltas.svg", "learning-curves-local (out).png"):
        assert (plots / name).stat().st_size > 1000, name
    assert (plots / "deltas.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_the_dashboards_delta_mode_shows_the_intervals_verdict(finished, tmp_path):
    import time

    from xstilts_tui.dashboard import XstiltsApp
    from xstilts_tui.dashboard.scores import ScoresView
    from xstilts_tui.results.significance import deltas, run_predictions

    app = XstiltsApp([tmp_path], results=finished / "out", output_root=tmp_path / "runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("d")
        view = app.query_one(ScoresView)
        deadline = time.monotonic() + 60
        while not view.significance and time.monotonic() < deadline:
            await pilot.pause(0.1)
        assert set(view.significance) == {"xquad"}
        mode = str(app.query_one("#scores-mode").render())
        assert "* 95% interval excludes 0; 1 seed)" in mode
        want = deltas(run_predictions(finished / "out"), "xquad", "f1", ["en", "de", "th"],
                      ["baseline", "squad"], "baseline", resamples=2000)
        for lang in ("en", "de", "th"):
            text = app.score_text("xquad", "squad", lang)
            assert text.endswith("*") == want[("squad", lang)].significant, (lang, text)
