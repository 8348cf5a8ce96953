"""No surprises: nothing a run finished is lost or overwritten, whatever the next run or
the dashboard's form does (fake workers: no torch)."""

import os
from pathlib import Path

import polars as pl
import pytest
from textual.widgets import Input

from conftest import SMALL_DEMO, run_cli
from dashboard_fixtures import wait_for
from xstilts_tui.dashboard import XstiltsApp
from xstilts_tui.plan.stages import build_plan
from xstilts_tui.run.progress import PlainDisplay
from xstilts_tui.recipe.parse import parse_recipe
from xstilts_tui.run.runner import Runner


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
        await pilot.press("c", "y")  # cancelling asks first
        await wait_for(pilot, lambda: not app.running, 120, "the cancel")
    assert pl.read_parquet(saved / "results.parquet").equals(finished)
    edited = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("small-demo.edited-")]
    assert len(edited) == 1 and (edited[0] / "run.json").is_file()


def _finished_run(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_PREDICTIONS", "1")
    plan = build_plan(parse_recipe(SMALL_DEMO, "r.toml", tmp_path), tmp_path / "out", tmp_path / "cache")
    assert Runner(plan, quiet()).run().ok
    return plan


def _report(folder, capsys):
    code, out, err = run_cli(["report", folder, "--resamples", "200"], capsys)
    assert code == 0, err
    return out, err


def test_report_uses_only_the_predictions_done_vouches_for(tmp_path, fake, monkeypatch, capsys):
    plan = _finished_run(tmp_path, monkeypatch)
    clean, err = _report(plan.output_dir, capsys)
    assert "[" in clean and "warning" not in err  # intervals, nothing to say
    jobs = plan.stage_dir(plan.by_id["target/jobs/demo-qa/seed1"]) / "predictions"
    # a stray file beside the recorded ones changes nothing
    (jobs / "demo-qa.es.extra.parquet").write_bytes((jobs / "demo-qa.es.parquet").read_bytes())
    assert _report(plan.output_dir, capsys)[0] == clean
    # the same size and the old modification time, other bytes: refused and said
    baseline = plan.stage_dir(plan.by_id["target/baseline/demo-qa/seed1"]) / "predictions" / "demo-qa.de.parquet"
    stat = baseline.stat()
    data = bytearray(baseline.read_bytes())
    data[len(data) // 2] ^= 0x01
    baseline.write_bytes(bytes(data))
    os.utime(baseline, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    out, err = _report(plan.output_dir, capsys)
    assert "target/baseline/demo-qa/seed1: predictions not used (predictions/demo-qa.de.parquet has " \
           "changed" in err
    table = out.split("**demo-qa (f1")[1].split("**cost")[0]
    assert "[" not in table.split("| jobs")[1]  # no interval rests on it
    assert "predictions not used" in out  # the report itself says so
    # a deleted file is said, not skipped
    baseline.unlink()
    out, err = _report(plan.output_dir, capsys)
    assert "predictions/demo-qa.de.parquet is missing" in err


def test_strict_cache_refuses_a_same_size_change_with_the_old_modification_time(
        tmp_path, fake, monkeypatch):
    plan = _finished_run(tmp_path, monkeypatch)
    events = plan.stage_dir(plan.by_id["target/jobs/demo-qa/seed1"]) / "events.jsonl"
    stat = events.stat()
    events.write_text(events.read_text().replace("f1", "F1", 1))
    os.utime(events, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert events.stat().st_size == stat.st_size
    again = build_plan(parse_recipe(SMALL_DEMO, "r.toml", tmp_path), tmp_path / "out", tmp_path / "cache")
    outcome = Runner(again, quiet(), strict_cache=True).run()
    assert outcome.status["target/jobs/demo-qa/seed1"] == "failed"
    assert "events.jsonl has changed" in outcome.reasons["target/jobs/demo-qa/seed1"]


def test_report_out_refuses_what_is_not_a_regular_file_or_a_new_path(tmp_path, fake, monkeypatch, capsys):
    plan = _finished_run(tmp_path, monkeypatch)
    target = tmp_path / "kept.txt"
    target.write_text("mine")
    link = tmp_path / "link.md"
    link.symlink_to(target)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    for out, kind in ((link, "a symbolic link"), (fifo, "a FIFO"), (folder, "a folder"),
                      (Path("/dev/null"), "a device")):
        code, _, err = run_cli(["report", plan.output_dir, "--resamples", "200", "--out", out], capsys)
        assert code == 2 and err.count("\n") == 1 and f"--out {out}: {kind}" in err, err
    assert link.is_symlink() and target.read_text() == "mine" and fifo.is_fifo()
    assert list(folder.iterdir()) == [] and not list(tmp_path.glob("*.tmp"))
    code, out, err = run_cli(["report", plan.output_dir, "--resamples", "200", "--out",
                              tmp_path / "report.md"], capsys)
    assert code == 0 and (tmp_path / "report.md").read_text().startswith("**demo-qa")


async def test_sorting_the_scores_cycles_every_column_and_says_which(tmp_path, recipes_dir):
    from dashboard_fixtures import built_results

    folder = built_results(tmp_path / "results")
    for size in ((80, 24), (100, 30)):
        app = XstiltsApp([recipes_dir], results=folder, output_root=tmp_path / "runs")
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            seen = []
            for _ in range(8):  # past the arm column, twice round
                await pilot.press("s")
                await pilot.pause()
                seen.append(str(app.query_one("#scores-mode").render()).split("sorted by ")[1].split(" ")[0])
            assert app.is_running
            assert seen == ["en", "es", "de", "ru", "zh", "avg", "avg-en", "arm"], seen


DAMAGES = {
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda data: b"\x00garbage" * 50,
    "empty": lambda data: b"",
}


def _damage(path, kind):
    import polars as pl

    if kind in DAMAGES:
        path.write_bytes(DAMAGES[kind](path.read_bytes()))
    elif kind == "columns":
        pl.DataFrame({"what": [1, 2]}).write_parquet(path)
    elif kind == "types":
        frame = pl.read_parquet(path)
        first = "value" if "value" in frame.columns else "wall_s"
        frame.with_columns(pl.lit("high").alias(first)).write_parquet(path)


def test_a_damaged_table_is_one_line_in_report_and_the_dashboard(tmp_path, capsys):
    import asyncio
    import shutil

    from dashboard_fixtures import built_results

    good = built_results(tmp_path / "good")
    for table in ("results.parquet", "stages.parquet"):
        for kind in ("truncated", "garbage", "empty", "columns", "types"):
            folder = tmp_path / f"{table}-{kind}"
            shutil.copytree(good, folder)
            _damage(folder / table, kind)
            for fmt in ("md", "html"):
                code, out, err = run_cli(["report", folder, "--format", fmt, "--resamples", "200"], capsys)
                assert code == 2 and err.count("\n") == 1 and str(folder / table) in err, (table, kind, err)
                assert "Traceback" not in err

            async def open_it():
                app = XstiltsApp([tmp_path], results=folder, output_root=tmp_path / "runs")
                async with app.run_test(size=(80, 24)) as pilot:
                    await pilot.pause()
                    assert app.is_running
                    assert any(str(folder / table) in str(n.message) for n in app._notifications)

            asyncio.run(open_it())


HOSTILE = SMALL_DEMO + '''
[[arms]]
name = "<img src=x onerror=alert(1)>"
intermediate = ["demo-jobs"]

[[arms]]
name = "a|b"
intermediate = ["demo-jobs"]

[[arms]]
name = '$\\foo$'
intermediate = ["demo-jobs"]

[[arms]]
name = "two\\n\\nlines"
intermediate = ["demo-jobs"]
'''


def test_arm_names_are_text_in_every_report_format_and_plot(tmp_path, fake, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_PREDICTIONS", "1")
    plan = build_plan(parse_recipe(HOSTILE, "r.toml", tmp_path), tmp_path / "out", tmp_path / "cache")
    assert Runner(plan, quiet()).run().ok
    code, html, err = run_cli(["report", plan.output_dir, "--format", "html", "--resamples", "200"], capsys)
    assert code == 0, err
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    code, md, err = run_cli(["report", plan.output_dir, "--resamples", "200"], capsys)
    assert code == 0, err
    table = md.split("**demo-qa (f1")[1].split("\n\n")[1]
    lines = table.splitlines()
    assert len(lines) == 2 + 6  # header, rule, six arms: no name ends the table early
    assert {line.replace("\\|", "").count("|") for line in lines} == {8}  # arm, 5 languages, avg
    assert "a\\|b" in table and "two lines" in table
    code, out, err = run_cli(["report", plan.output_dir, "--resamples", "200", "--plots",
                              tmp_path / "plots"], capsys)
    assert code == 0, err
    assert (tmp_path / "plots" / "deltas.png").stat().st_size > 1000


def _pred_file(path, **columns):
    import polars as pl

    pl.DataFrame(columns).write_parquet(path)
    return path


def test_score_refuses_predictions_files_it_cannot_read_in_one_line(tmp_path, capsys):
    from conftest import SHARED_DATA, XQUAD_DIR

    gold = XQUAD_DIR / "xquad.en.json"
    conllu = SHARED_DATA / "udpos" / "en_ewt-ud-test.conllu"
    cases = [
        ("xquad", gold, _pred_file(tmp_path / "cols.parquet", id=["a"], answer=["x"]),
         "no column example_id, prediction"),
        ("xquad", gold, _pred_file(tmp_path / "binary.parquet", example_id=["a"], prediction=[b"\x00x"]),
         "column prediction holds Binary, expected text"),
        ("xquad", gold, _pred_file(tmp_path / "float.parquet", example_id=["a"], prediction=[1.5]),
         "column prediction holds Float64, expected text"),
        ("xquad", gold, _pred_file(tmp_path / "other.parquet", example_id=["a"], prediction=["x"],
                                   task=["mlqa"]), "the predictions of task mlqa, not xquad"),
        ("udpos", conllu, _pred_file(tmp_path / "nested.parquet", example_id=["a"],
                                     prediction=['[["NOUN"]]']), "row 0: expected the sentence's tags"),
        ("udpos", conllu, _pred_file(tmp_path / "ints.parquet", example_id=["a"], prediction=["[1, 2]"]),
         "row 0: expected the sentence's tags"),
        ("udpos", conllu, _pred_file(tmp_path / "text.parquet", example_id=["a"], prediction=["NOUN"]),
         "row 0: expected the sentence's tags"),
    ]
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet at all" * 10)
    cases.append(("xquad", gold, tmp_path / "garbage.parquet", "not a readable parquet file"))
    for task, gold_file, pred, words in cases:
        code, out, err = run_cli(["score", "--task", task, "--gold", gold_file, "--pred", pred], capsys)
        assert code == 2 and err.count("\n") == 1 and words in err, (pred.name, err)
        assert "Traceback" not in err and out == ""


def test_more_stages_at_once_than_cores_is_one_line_before_anything_is_allocated(tmp_path, capsys):
    from xstilts_tui.protocol.slots import cpu_count

    recipe = tmp_path / "r.toml"
    recipe.write_text(SMALL_DEMO, encoding="utf-8")
    for command in (["plan", recipe, "--parallel", "10000000"],
                    ["--recipe", recipe, "--parallel", "10000000", "--output", tmp_path / "out"]):
        code, out, err = run_cli(command, capsys)
        assert code == 2 and err == (f"error: --parallel 10000000: more stages at once than this "
                                     f"machine's {cpu_count()} cores share; at most {cpu_count()}\n")
    assert not (tmp_path / "out").exists()
    recipe.write_text(SMALL_DEMO + "\n[launch]\nparallel_stages = 100000000\n", encoding="utf-8")
    code, out, err = run_cli(["validate", recipe], capsys)
    assert code == 2 and "launch.parallel_stages: must be at most 1024" in err


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_the_dashboard_refuses_a_recipe_whose_inputs_are_not_here_before_it_starts(
        tmp_path, monkeypatch, size):
    from textual.widgets import Static

    monkeypatch.setenv("XSTILTS_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "away.toml").write_text('name = "away"\ntargets = ["udpos"]\n[model]\nhub = "org/model"\n'
                                      '[[arms]]\nname = "baseline"\n[tasks.udpos]\nlanguages = ["de"]\n')
    app = XstiltsApp([folder], output_root=tmp_path / "runs")
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        app.query_one("#recipe-list").focus()
        await pilot.press("r")
        await pilot.pause()
        assert not app.running
        line = str(app.query_one("#validation", Static).render())
        assert "org/model is not on this machine and HF_HUB_OFFLINE is set" in line
    assert not (tmp_path / "runs").exists()


def test_data_status_lists_local_inputs_and_fits_100_columns(tmp_path, monkeypatch, capsys):
    from conftest import XQUAD_DIR

    monkeypatch.setenv("XSTILTS_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.delenv("XS_BUCC_DIR", raising=False)
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'''name = "r"
targets = ["xquad", "bucc2018"]
[model]
config = {{ hidden_size = 32, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 64 }}
tokenizer = {{ vocab_size = 1000, corpus = ["demo"] }}
[[arms]]
name = "baseline"
[tasks.xquad]
languages = ["en", "de"]
train_file = "{XQUAD_DIR / 'xquad.en.json'}"
eval_files = "{XQUAD_DIR / 'xquad.{lang}.json'}"
[tasks.bucc2018]
data_dir = "${{XS_BUCC_DIR}}"
''')
    code, out, err = run_cli(["data", "status", recipe], capsys)
    assert code == 1, err
    lines = out.splitlines()
    rows = lines[lines.index(next(l for l in lines if l.startswith("state"))):]
    assert max(len(line) for line in rows) <= 100, max(rows, key=len)
    row = next(line for line in lines if "tasks.bucc2018.data_dir" in line)
    assert row.startswith("UNSET") and "${XS_BUCC_DIR}" in row
    assert next(line for line in lines if "tasks.xquad.eval_files" in line).startswith("here")
    monkeypatch.setenv("XS_BUCC_DIR", str(tmp_path / "bucc"))
    (tmp_path / "bucc").mkdir()
    code, out, err = run_cli(["data", "status", recipe], capsys)
    assert next(line for line in out.splitlines() if "bucc2018.data_dir" in line).startswith("here")


def test_devices_that_do_not_exist_are_refused(tmp_path, monkeypatch, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(SMALL_DEMO, encoding="utf-8")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi: no GPU at all
    code, out, err = run_cli(["--recipe", recipe, "--devices", "7", "--output", tmp_path / "out"], capsys)
    assert code == 2 and err == ("error: --devices 7: no GPU 7 on this machine (nvidia-smi and "
                                 "CUDA_VISIBLE_DEVICES show none)\n")
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    code, out, err = run_cli(["plan", recipe, "--devices", "1,7"], capsys)
    assert code == 2 and err == "error: --devices 1,7: no GPU 7 on this machine (it has 0, 1)\n"


def test_a_short_max_length_fits_the_qa_defaults_and_a_given_stride_is_still_checked(tmp_path):
    from xstilts_tui.recipe.schema import RecipeError

    base = SMALL_DEMO.replace("doc_stride = 48\nmax_query_length = 24\n", "")
    recipe = parse_recipe(base.replace("max_length = 96", "max_length = 128"), "r.toml", tmp_path)
    assert (recipe.hparams_target.doc_stride, recipe.hparams_target.max_query_length) == (64, 64)
    recipe = parse_recipe(base.replace("max_length = 96", "max_length = 64"), "r.toml", tmp_path)
    assert (recipe.hparams_target.doc_stride, recipe.hparams_target.max_query_length) == (32, 16)
    assert parse_recipe(base.replace("max_length = 96", "max_length = 384"), "r.toml",
                        tmp_path).hparams_target.doc_stride == 128  # the default where it fits
    with pytest.raises(RecipeError, match=r"doc_stride: must be below max_length \(128\), got 128"):
        parse_recipe(base.replace("max_length = 96", "max_length = 128\ndoc_stride = 128"), "r.toml", tmp_path)


def test_score_reads_index_predictions_of_a_label_file_and_scores_a_stage_s_own_gold(
        tmp_path, fake, monkeypatch, capsys):
    import json

    gold = tmp_path / "xnli-test-de.tsv"
    gold.write_text("entailment\nneutral\ncontradiction\nneutral\n")
    pred = tmp_path / "pred.txt"
    pred.write_text("0\n1\n2\n0\n")  # indices in the task's label order
    code, out, err = run_cli(["score", "--task", "xnli", "--gold", gold, "--pred", pred], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["accuracy"] == 75.0
    assert result["predictions_read_as"] == "indices into entailment, neutral, contradiction"
    pred.write_text("0\n1\n7\n0\n")
    code, out, err = run_cli(["score", "--task", "xnli", "--gold", gold, "--pred", pred], capsys)
    assert code == 2 and "index 7 is not a label of xnli" in err
    # a demo task's kept predictions, scored against the gold they record
    plan = _finished_run(tmp_path, monkeypatch)
    kept = plan.stage_dir(plan.by_id["target/jobs/demo-qa/seed1"]) / "predictions" / "demo-qa.de.parquet"
    code, out, err = run_cli(["score", "--task", "demo-qa", "--pred", kept], capsys)
    assert code == 0, err
    import polars as pl

    assert json.loads(out)["f1"] == pytest.approx(pl.read_parquet(kept)["f1"].mean())
    code, out, err = run_cli(["score", "--task", "xquad", "--pred", kept], capsys)
    assert code == 2 and "the predictions of task demo-qa, not xquad; give --task demo-qa" in err


def test_score_help_lists_the_tasks_and_the_formats(capsys):
    import pytest as _pytest

    with _pytest.raises(SystemExit):
        run_cli(["score", "--help"], capsys)
    out = capsys.readouterr().out
    assert "score --help" not in out
    for task in ("xquad", "xnli", "udpos", "tatoeba", "bucc2018", "demo-qa"):
        assert task in out
    assert "SQuAD JSON" in out and "CoNLL-U" in out


def test_the_headless_table_and_the_report_give_one_interval(tmp_path, fake, monkeypatch, capsys):
    import re

    monkeypatch.setenv("FAKE_PREDICTIONS", "1")
    recipe = tmp_path / "r.toml"
    recipe.write_text(SMALL_DEMO, encoding="utf-8")
    code, out, err = run_cli(["--recipe", recipe, "--output", tmp_path / "out"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    jobs = next(i for i, line in enumerate(lines) if line.startswith("jobs "))
    headless = re.findall(r"\[([+-][\d.]+),([+-][\d.]+)\]", lines[jobs + 2])
    code, report, err = run_cli(["report", tmp_path / "out"], capsys)
    row = next(line for line in report.splitlines() if line.startswith("| jobs"))
    reported = re.findall(r"\[([+-][\d.]+), ([+-][\d.]+)\]", row)
    assert len(headless) == 6 and headless == reported


def test_plan_writes_nothing_and_names_what_it_cannot_estimate(tmp_path, capsys):
    from conftest import ROOT

    code, out, err = run_cli(["plan", ROOT / "recipes" / "xstilts-paper.toml", "--output",
                              tmp_path / "runs" / "paper"], capsys)
    assert code == 0, err
    assert not (tmp_path / "runs").exists()  # no stage folder, no output folder
    estimate = next(line for line in out.splitlines() if line.startswith("estimate:"))
    assert "66 with nothing to train" in estimate and " none" not in estimate
    assert "6 unknown (their data's size is not known)" in estimate
    assert "--write-specs" in out
    code, out, err = run_cli(["plan", ROOT / "recipes" / "demo.toml", "--output", tmp_path / "runs" / "demo",
                              "--write-specs"], capsys)
    assert code == 0 and (tmp_path / "runs" / "stage-cache").is_dir()


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_compare_averages_over_the_languages_both_runs_have_and_says_so(tmp_path, recipes_dir, size):
    import json

    from textual.widgets import Static

    from test_app import two_runs

    first, second = two_runs(tmp_path / "runs")
    manifest = json.loads((second / "run.json").read_text())
    manifest["recipe"]["tasks"]["demo-qa"]["languages"] = ["en", "es", "de"]
    (second / "run.json").write_text(json.dumps(manifest))
    results = pl.read_parquet(second / "results.parquet")
    results.filter(pl.col("language").is_in(["en", "es", "de"])).write_parquet(second / "results.parquet")
    app = XstiltsApp([recipes_dir], results=first, output_root=tmp_path / "runs")
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        await pilot.press("5")
        table = app.query_one("#past-runs")
        await wait_for(pilot, lambda: table.row_count == 2, 10, "two runs")
        table.move_cursor(row=0)
        await pilot.press("x")
        await wait_for(pilot, lambda: app.query_one("#tabs").active == "compare", 10, "compare")
        await pilot.pause()
        scores = app.query_one("#cmp-scores")
        rows = {str(scores.get_row_at(i)[0]): [str(c) for c in scores.get_row_at(i)][1:]
                for i in range(scores.row_count)}
        assert set(rows) == {"en", "es", "de", "avg", "avg-en"}
        # A's average over en, es, de (seed 1: 30.7, seed 2: 32.0), not over its five (22.1)
        assert rows["avg"][0] == "31.3±0.9"
        assert "compared on the 3 languages both have (left out: A ru zh)" in \
            str(app.query_one("#cmp-help", Static).render())


def test_latex_html_and_curves_read_as_a_paper_needs(tmp_path, fake, monkeypatch, capsys):
    from xstilts_tui.results.report import validation_lines

    plan = _finished_run(tmp_path, monkeypatch)
    code, latex, err = run_cli(["report", plan.output_dir, "--format", "latex", "--resamples", "200"], capsys)
    assert code == 0, err
    jobs = latex.splitlines().index(next(l for l in latex.splitlines() if l.startswith("jobs &")))
    first, second = latex.splitlines()[jobs], latex.splitlines()[jobs + 1]
    assert "[" not in first and "seed" not in first and second.startswith(" & [")  # interval below
    code, html, err = run_cli(["report", plan.output_dir, "--format", "html", "--resamples", "200"], capsys)
    assert "<style>" in html and "<figure><svg" in html
    # a multi-task stage's validation scores: a line per task, never one zig-zag
    lines = validation_lines([(10, 50.0, "demo-jobs accuracy"), (10, 80.0, "demo-nli accuracy"),
                              (20, 55.0, "demo-jobs accuracy"), (20, 82.0, "demo-nli accuracy")])
    assert lines == {"demo-jobs accuracy": [(10, 50.0), (20, 55.0)],
                     "demo-nli accuracy": [(10, 80.0), (20, 82.0)]}


async def test_the_runs_screen_names_its_stages_and_cancelling_asks(recipes_dir, tmp_path, fake, monkeypatch):
    from xstilts_tui.dashboard.runs import StageBar

    monkeypatch.setenv("FAKE_HOLD", "3")
    app = XstiltsApp([recipes_dir], output_root=tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.recipe is not None, 10, "the recipe")
        app.query_one("#recipe-list").focus()
        await pilot.press("r")
        await wait_for(pilot, lambda: bool(app.query(StageBar)), 30, "a stage bar")
        bar = app.query(StageBar).first()
        label = bar.query_one("Label")
        await pilot.pause(0.2)
        assert label.region.width == len(bar.stage) and label.region.height == 1
        await pilot.press("c")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "Confirm", 10, "the question")
        await pilot.press("n")
        assert app.running and not app.runner.cancelled.is_set()
        await pilot.press("c", "y")
        await wait_for(pilot, lambda: not app.running, 60, "the cancel")


async def test_results_mode_runs_nothing_and_shows_a_stage_another_process_writes(tmp_path, recipes_dir):
    import json
    import subprocess
    import sys

    from dashboard_fixtures import built_results

    from conftest import ROOT

    folder = built_results(tmp_path / "results")
    manifest = json.loads((folder / "run.json").read_text())
    busy = tmp_path / "cache" / "target-busy"
    busy.mkdir(parents=True)
    manifest["stages"].append({"id": "target/jobs/demo-qa/seed3", "kind": "target", "dir": str(busy)})
    (folder / "run.json").write_text(json.dumps(manifest))
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from xstilts_tui.protocol.stage_cache "
                               "import stage_lock; l = stage_lock(__import__('pathlib').Path(sys.argv[1])); "
                               "l.acquire(); print('held', flush=True); time.sleep(60)", str(busy)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        app = XstiltsApp([recipes_dir], results=folder, output_root=tmp_path / "runs")
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            assert app.stage_states()["target/jobs/demo-qa/seed3"] == "running elsewhere"
            assert "a run in another process is writing 1 stage(s)" in str(app.query_one("#run-status").render())
            await pilot.press("1")
            app.query_one("#recipe-list").focus()
            await pilot.press("r")
            await pilot.pause()
            assert not app.running and not (tmp_path / "runs").exists()
            assert any("runs nothing" in str(n.message) for n in app._notifications)
    finally:
        holder.kill()
        holder.wait()


def test_the_headless_overall_line_counts_running_stages_and_a_bar_shows_the_average_rate(
        tmp_path, fake, monkeypatch):
    import io

    out = io.StringIO()
    plan = build_plan(parse_recipe(SMALL_DEMO, "r.toml", tmp_path), tmp_path / "out", tmp_path / "cache")
    assert Runner(plan, PlainDisplay(out)).run().ok
    lines = [line for line in out.getvalue().splitlines() if line.startswith("[run]")]
    assert lines[0].startswith("[run] 0/4 stages done, 1 running")
    assert any("left" in line for line in lines[1:])  # an estimate once a stage trained
    display = PlainDisplay(io.StringIO())
    clock = iter([0.0, 1.0, 3.0])
    monkeypatch.setattr("xstilts_tui.run.progress.time.monotonic", lambda: next(clock))
    event = {"stage": "s", "examples_per_s": 0.0}
    display.average_rate({**event, "examples_per_s": 1000.0})  # the first event starts the clock
    display.average_rate({**event, "examples_per_s": 100.0})  # 1 s at 100 ex/s
    assert display.average_rate({**event, "examples_per_s": 10.0}) == (100 * 1 + 10 * 2) / 3


def test_the_time_left_counts_each_kind_of_stage_at_its_own_pace_and_says_what_is_not_timed():
    from xstilts_tui.run.progress import time_left_estimate

    ud, xquad, tatoeba = ("intermediate", "udpos", "torch"), ("target", "xquad", "torch"), \
        ("target", "tatoeba", "torch")
    # The small study after its 9 short intermediate stages (40 s each): 24 target stages
    # wait, none of their kind has run. Not "24 x 40 s left".
    walls = {ud: [40.0] * 9}
    assert time_left_estimate(walls, [xquad] * 12 + [tatoeba] * 11, [tatoeba], 1) == (None, 24)
    # Once one of each has run, each kind at its own pace; a running stage counts half.
    walls = {ud: [40.0] * 9, xquad: [450.0], tatoeba: [250.0]}
    seconds, untimed = time_left_estimate(walls, [xquad] * 11 + [tatoeba] * 10, [xquad], 1)
    assert untimed == 0 and seconds == 11 * 450 + 10 * 250 + 450 / 2
    assert time_left_estimate(walls, [xquad] * 2, [], 2) == (450.0, 0)  # two slots
    # Some kinds timed, some not: the timed part, and how many are not.
    assert time_left_estimate({xquad: [400.0, 500.0]}, [xquad, tatoeba], [], 1) == (450.0, 1)
    assert time_left_estimate({}, [], [], 1) == (0.0, 0)


def test_the_overall_line_says_when_its_estimate_leaves_stages_out():
    import io

    out = io.StringIO()
    display = PlainDisplay(out)
    display.run_progress(9, 33, 1, 428.0, None, untimed=24)
    display.run_progress(11, 33, 1, 1200.0, 3000.0, untimed=20)
    display.run_progress(30, 33, 1, 9000.0, 900.0)
    assert out.getvalue().splitlines() == [
        "[run] 9/33 stages done, 1 running, 0:07:08 elapsed, time left: 24 stage(s) of a kind not run yet",
        "[run] 11/33 stages done, 1 running, 0:20:00 elapsed, more than 0:50:00 left "
        "(20 stage(s) of a kind not run yet)",
        "[run] 30/33 stages done, 1 running, 2:30:00 elapsed, ~0:15:00 left"]
