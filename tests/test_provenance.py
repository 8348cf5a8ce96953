"""Provenance: a stage's key covers the code, weights, data, libraries and runtime that
make its numbers; `plan` says why a stage runs again; --reuse keeps finished stages across
a change the user allows, marked; results, the run manifest and the report say what made
them; `cache ls/du/gc` show and prune the cache. No torch here: stages are finished by
hand (spec, event log, DONE) or by the fake worker."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest

from conftest import ROOT, SMALL_DEMO, XQUAD_DIR, run_cli
from xstilts_tui.protocol import provenance
from xstilts_tui.protocol.events import encode, make_event
from xstilts_tui.plan.stages import build_plan
from xstilts_tui.protocol.provenance import Runtime
from xstilts_tui.recipe.parse import parse_recipe
from xstilts_tui.protocol.stage_cache import seal

CPU = Runtime(device="cpu", threads=2)


@pytest.fixture(autouse=True)
def hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(provenance.HASH_CACHE_ENV, str(tmp_path / "hashes.sqlite"))


@pytest.fixture
def project_copy(tmp_path, monkeypatch):
    """The project's packages copied, and provenance reading its code there: a checkout
    the test may edit."""
    root = tmp_path / "project"
    for package in ("backends", "xstilts_tui"):
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PROJECT_ROOT", root)
    return root


def plan_of(text, tmp_path, runtime=CPU, reuse=frozenset(), output="out"):
    recipe = parse_recipe(text, str(tmp_path / "r.toml"), tmp_path)
    return build_plan(recipe, tmp_path / output, tmp_path / "cache", runtime=runtime, reuse=reuse)


def finish(plan, stage, value=50.0):
    """Finish a stage as a worker would: its spec, an event log with a score, DONE."""
    plan.write_spec(stage)
    folder = plan.stage_dir(stage)
    events = [make_event("stage_started", stage=stage.id, total_steps=1)]
    if stage.kind == "target":
        for lang in stage.spec["task"]["settings"]["languages"]:
            events.append(make_event("score", stage=stage.id, task=stage.task, language=lang,
                                     split="test", metric="f1", value=value, step=1))
    events.append(make_event("stage_finished", stage=stage.id, status="ok", wall_s=0.1))
    (folder / "events.jsonl").write_text("".join(encode(e) for e in events), encoding="utf-8")
    seal(folder, stage.key, stage.id)


def finish_all(plan):
    for stage in plan.stages:
        finish(plan, stage)


def keys(plan):
    return {s.id: s.key for s in plan.stages}


def test_an_unchanged_tree_keeps_every_key_and_a_comment_in_the_code_changes_them(
        tmp_path, project_copy):
    before = plan_of(SMALL_DEMO, tmp_path)
    assert keys(plan_of(SMALL_DEMO, tmp_path)) == keys(before)
    finish_all(before)
    assert set(before.states().values()) == {("cached", "")}
    qa = project_copy / "backends" / "kinds" / "qa.py"
    qa.write_text(qa.read_text(encoding="utf-8") + "\n# a comment\n", encoding="utf-8")
    after = plan_of(SMALL_DEMO, tmp_path)
    # every stage runs code the worker imports (xstilts_tui.compute.kinds.qa among it): every key changes
    assert all(keys(after)[sid] != key for sid, key in keys(before).items())
    states = after.states()
    assert states["base"] == ("pending", "code changed (backends/kinds/qa.py)")
    assert states["intermediate/demo-jobs/torch/seed1"][1].startswith("code changed (backends/kinds/qa.py)")
    # a stage's key includes its parents': the reason names them too
    assert "input stage changed (intermediate/demo-jobs/torch/seed1)" in \
        states["target/jobs/demo-qa/seed1"][1]


def test_the_plan_command_names_why_a_stage_runs(tmp_path, project_copy, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(SMALL_DEMO, encoding="utf-8")
    args = ["plan", recipe, "--output", tmp_path / "out", "--cache", tmp_path / "cache"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "base  key" in out and "pending (new)" in out
    plan = build_plan(parse_recipe(SMALL_DEMO, str(recipe), tmp_path), tmp_path / "out",
                      tmp_path / "cache")
    finish_all(plan)
    metrics = project_copy / "xstilts_tui" / "scoring" / "metrics.py"
    metrics.write_text("# edited\n" + metrics.read_text(encoding="utf-8"), encoding="utf-8")
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "pending (code changed (xstilts_tui/scoring/metrics.py))" in out
    assert " cached" not in out


def _model_folder(folder: Path, weights: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 32}))
    (folder / "model.safetensors").write_bytes(weights)
    return folder


LOCAL_MODEL = """
name = "local"
seeds = [1]
targets = ["demo-qa"]

[model]
path = "model"

[[arms]]
name = "baseline"

[[arms]]
name = "jobs"
intermediate = ["demo-jobs"]
"""


def test_other_weights_with_the_same_config_train_every_stage_again(tmp_path):
    _model_folder(tmp_path / "model", b"weights one")
    before = plan_of(LOCAL_MODEL, tmp_path)
    finish_all(before)
    assert keys(plan_of(LOCAL_MODEL, tmp_path)) == keys(before)
    weights = tmp_path / "model" / "model.safetensors"
    stat = weights.stat()
    _model_folder(tmp_path / "model", b"weights two")  # same config.json, same size
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old modification time
    after = plan_of(LOCAL_MODEL, tmp_path)
    states = after.states()
    assert all(state == "pending" for state, _ in states.values()), states
    assert states["intermediate/demo-jobs/torch/seed1"] == ("pending", "weights changed")
    assert states["target/baseline/demo-qa/seed1"] == ("pending", "weights changed")
    assert states["target/jobs/demo-qa/seed1"][1] == \
        "input stage changed (intermediate/demo-jobs/torch/seed1)"


def _xquad_recipe(folder: Path) -> str:
    for lang in ("en", "de"):
        shutil.copy(XQUAD_DIR / f"xquad.{lang}.json", folder / f"xquad.{lang}.json")
    return textwrap.dedent(f"""
        name = "files"
        seeds = [1]
        targets = ["xquad"]

        [model]
        config = {{ hidden_size = 32, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 64 }}
        tokenizer = {{ vocab_size = 1000, corpus = ["demo"] }}

        [[arms]]
        name = "baseline"

        [[arms]]
        name = "jobs"
        intermediate = ["demo-jobs"]

        [tasks.xquad]
        languages = ["en", "de"]
        train_file = "{folder / 'xquad.en.json'}"
        eval_files = "{folder / 'xquad.{lang}.json'}"
        """)


def test_one_byte_of_a_local_data_file_runs_exactly_the_stages_that_read_it(tmp_path):
    text = _xquad_recipe(tmp_path)
    german = tmp_path / "xquad.de.json"
    provenance.HASHED.clear()
    before = plan_of(text, tmp_path)
    plan_of(text, tmp_path)  # a second plan hashes nothing again
    assert provenance.HASHED.count(str(german.resolve())) == 1
    finish_all(before)
    data = german.read_bytes()
    german.write_bytes(data.replace(b'"title"', b'"Title"', 1))  # one byte
    assert german.stat().st_size == len(data)
    after = plan_of(text, tmp_path)
    changed = {sid for sid, key in keys(after).items() if keys(before)[sid] != key}
    assert changed == {"target/baseline/xquad/seed1", "target/jobs/xquad/seed1"}
    states = after.states()
    assert states["target/baseline/xquad/seed1"] == ("pending", f"data changed ({german})")
    assert provenance.HASHED.count(str(german.resolve())) == 2  # new (size, mtime): read again


def test_the_runtime_is_in_the_key_precision_device_and_threads(tmp_path):
    cpu = plan_of(SMALL_DEMO, tmp_path)
    gpu = plan_of(SMALL_DEMO, tmp_path, runtime=Runtime(device="cuda"))
    one_thread = plan_of(SMALL_DEMO, tmp_path, runtime=Runtime(device="cpu", threads=1))
    same = plan_of(SMALL_DEMO + "\n", tmp_path, runtime=CPU)
    stage = "target/baseline/demo-qa/seed1"
    assert cpu.by_id[stage].provenance["runtime"] == {"device": "cpu", "precision": "fp32", "threads": 2}
    assert gpu.by_id[stage].provenance["runtime"] == {"device": "cuda", "precision": "bf16"}
    assert len({cpu.by_id[stage].key, gpu.by_id[stage].key, one_thread.by_id[stage].key}) == 3
    # the same device with another resolved precision: another key
    explicit = plan_of(SMALL_DEMO.replace("[hparams]\n", '[hparams]\nprecision = "bf16"\n'), tmp_path)
    assert explicit.by_id[stage].provenance["runtime"]["precision"] == "bf16"
    assert explicit.by_id[stage].key != cpu.by_id[stage].key
    assert same.by_id[stage].key == cpu.by_id[stage].key
    finish_all(cpu)
    assert one_thread.states()[stage] == ("pending", "threads changed (2 -> 1)")
    assert gpu.states()[stage][1] == "device changed (cpu -> cuda); precision changed (fp32 -> bf16)"


def test_the_library_versions_are_in_the_key(tmp_path, monkeypatch):
    before = plan_of(SMALL_DEMO, tmp_path)
    finish_all(before)
    real = provenance.version_of
    monkeypatch.setattr(provenance, "version_of",
                        lambda name: "9.9.9" if name == "transformers" else real(name))
    after = plan_of(SMALL_DEMO, tmp_path)
    assert all(keys(after)[sid] != key for sid, key in keys(before).items())
    assert after.states()["base"][1] == \
        f"libraries changed (transformers {real('transformers')} -> 9.9.9)"


def test_reuse_keeps_finished_stages_across_a_code_change_and_says_so(tmp_path, project_copy):
    before = plan_of(SMALL_DEMO, tmp_path)
    finish_all(before)
    qa = project_copy / "backends" / "kinds" / "qa.py"
    qa.write_text(qa.read_text(encoding="utf-8") + "\n# harmless\n", encoding="utf-8")
    assert all(state == "pending" for state, _ in plan_of(SMALL_DEMO, tmp_path).states().values())
    kept = plan_of(SMALL_DEMO, tmp_path, reuse={"code"})
    assert keys(kept) == keys(before)
    states = kept.states()
    assert all(state == "reused" for state, _ in states.values()), states
    assert states["base"][1] == f"reused from {before.made_by['version']}: code changed (backends/kinds/qa.py)"
    # libraries are not covered by --reuse code
    assert all(state == "pending" for state, _ in
               plan_of(SMALL_DEMO, tmp_path, reuse={"libraries"}).states().values())


def test_reused_stages_are_marked_in_the_results_and_the_report(tmp_path, project_copy, fake, capsys):
    from xstilts_tui.run.progress import PlainDisplay
    from xstilts_tui.run.runner import Runner

    first = plan_of(SMALL_DEMO, tmp_path)
    assert Runner(first, PlainDisplay(open("/dev/null", "w"))).run().ok
    qa = project_copy / "backends" / "kinds" / "qa.py"
    qa.write_text(qa.read_text(encoding="utf-8") + "\n# harmless\n", encoding="utf-8")
    kept = plan_of(SMALL_DEMO, tmp_path, reuse={"code"}, output="kept")
    outcome = Runner(kept, PlainDisplay(open("/dev/null", "w"))).run()
    assert set(outcome.status.values()) == {"cached"}
    results = pl.read_parquet(kept.output_dir / "results.parquet")
    assert results.height > 0
    assert set(results["reused_from"].to_list()) == {first.made_by["version"]}
    stages = pl.read_parquet(kept.output_dir / "stages.parquet")
    assert set(stages["reused_from"].to_list()) == {first.made_by["version"]}
    code, out, err = run_cli(["report", kept.output_dir, "--resamples", "200"], capsys)
    assert code == 0, err
    assert f"reused from {first.made_by['version']}" in out


def test_results_and_the_manifest_say_what_made_them(tmp_path, fake, capsys):
    from xstilts_tui.run.progress import PlainDisplay
    from xstilts_tui.run.runner import Runner

    plan = plan_of(SMALL_DEMO, tmp_path)
    assert Runner(plan, PlainDisplay(open("/dev/null", "w"))).run().ok
    manifest = json.loads((plan.output_dir / "run.json").read_text(encoding="utf-8"))
    made = manifest["provenance"]
    assert made["libraries"]["torch"] == provenance.version_of("torch")
    assert made["libraries"]["transformers"] == provenance.version_of("transformers")
    assert made["runtime"]["device"] == "cpu" and made["hardware"] == provenance.cpu_model()
    assert made["version"].startswith("0.")
    stage = next(s for s in manifest["stages"] if s["id"] == "target/jobs/demo-qa/seed1")
    assert stage["provenance"]["precision"] == "fp32" and stage["provenance"]["threads"] == 2
    results = pl.read_parquet(plan.output_dir / "results.parquet")
    row = json.loads(results["provenance"][0])
    assert row["libraries"]["torch"] == provenance.version_of("torch")
    assert row["precision"] == "fp32" and row["hardware"] == provenance.cpu_model()
    assert row["version"] == results["version"][0] == plan.made_by["version"]
    code, out, err = run_cli(["report", plan.output_dir, "--resamples", "200"], capsys)
    assert code == 0, err
    provenance_part = out.split("## Provenance", 1)[1]
    assert f"torch {provenance.version_of('torch')}" in provenance_part
    assert f"transformers {provenance.version_of('transformers')}" in provenance_part
    assert "fp32" in provenance_part and provenance.cpu_model() in provenance_part


def test_report_warns_when_runs_side_by_side_differ_in_what_made_them(tmp_path, fake, capsys):
    from xstilts_tui.run.progress import PlainDisplay
    from xstilts_tui.run.runner import Runner

    one = plan_of(SMALL_DEMO, tmp_path, output="one")
    assert Runner(one, PlainDisplay(open("/dev/null", "w"))).run().ok
    two = plan_of(SMALL_DEMO, tmp_path, output="two", runtime=Runtime(device="cpu", threads=1))
    assert Runner(two, PlainDisplay(open("/dev/null", "w"))).run().ok
    code, out, err = run_cli(["report", one.output_dir, two.output_dir, "--resamples", "200"], capsys)
    assert code == 0, err
    assert "warning: the runs differ in what made them: threads" in out


def _hold_lock(folder: Path):
    script = ("import sys, time; from xstilts_tui.protocol.stage_cache import stage_lock; "
              "lock = stage_lock(__import__('pathlib').Path(sys.argv[1])); lock.acquire(); "
              "print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE,
                              text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_cache_ls_du_and_gc(tmp_path, capsys):
    runs = tmp_path
    plan = plan_of(SMALL_DEMO, tmp_path)
    finish_all(plan)
    (plan.output_dir).mkdir(parents=True)
    (plan.output_dir / "run.json").write_text(json.dumps({
        "recipe": {"name": "small-demo"},
        "stages": [{"id": s.id, "dir": str(plan.stage_dir(s))} for s in plan.stages
                   if s.id != "target/jobs/demo-qa/seed1"]}), encoding="utf-8")
    cache = ["--cache", tmp_path / "cache", "--roots", runs]
    code, out, err = run_cli(["cache", "ls", *cache], capsys)
    assert code == 0, err
    line = next(l for l in out.splitlines() if "target/baseline/demo-qa/seed1" in l)
    assert "done" in line and "used by small-demo (" in line
    assert "no run under the roots" in next(l for l in out.splitlines() if "target/jobs/demo-qa" in l)
    code, out, err = run_cli(["cache", "du", *cache], capsys)
    assert code == 0 and "small-demo" in out and "(no run)" in out
    unused = plan.stage_dir(plan.by_id["target/jobs/demo-qa/seed1"])
    before = sorted(p for p in (tmp_path / "cache").rglob("*"))
    code, out, err = run_cli(["cache", "gc", "--unused", "--dry-run", *cache], capsys)
    assert code == 0, err
    assert "would remove target/jobs/demo-qa/seed1" in out and "would free" in out
    assert sorted(p for p in (tmp_path / "cache").rglob("*")) == before  # freed nothing
    holder = _hold_lock(unused)
    try:
        code, out, err = run_cli(["cache", "gc", "--unused", *cache], capsys)
        assert code == 0, err
        assert "kept target/jobs/demo-qa/seed1" in out and (unused / "DONE").exists()
    finally:
        holder.kill()
        holder.wait()
    code, out, err = run_cli(["cache", "gc", "--unused", *cache], capsys)
    assert code == 0, err
    assert "removed target/jobs/demo-qa/seed1" in out and not unused.exists()
    assert plan.stage_dir(plan.by_id["target/baseline/demo-qa/seed1"]).exists()
    code, out, err = run_cli(["cache", "gc", *cache], capsys)
    assert code == 2 and "choose what goes" in err


def test_cache_gc_other_code_removes_stages_of_other_code(tmp_path, project_copy, capsys):
    old = plan_of(SMALL_DEMO, tmp_path)
    finish_all(old)
    qa = project_copy / "backends" / "kinds" / "qa.py"
    qa.write_text(qa.read_text(encoding="utf-8") + "\n# new code\n", encoding="utf-8")
    new = plan_of(SMALL_DEMO, tmp_path)
    finish(new, new.by_id["base"])
    code, out, err = run_cli(["cache", "gc", "--other-code", "--cache", tmp_path / "cache"], capsys)
    assert code == 0, err
    assert not any(new.stage_dir(s).exists() for s in old.stages)
    assert new.stage_dir(new.by_id["base"]).exists()


async def test_the_runs_screen_shows_why_each_stage_runs(tmp_path, project_copy):
    from textual.app import App
    from textual.widgets import DataTable

    from xstilts_tui.dashboard.runs import RunsView

    before = plan_of(SMALL_DEMO, tmp_path)
    finish_all(before)
    qa = project_copy / "backends" / "kinds" / "qa.py"
    qa.write_text(qa.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    more_arms = SMALL_DEMO + '\n[[arms]]\nname = "nli"\nintermediate = ["demo-nli"]\n'
    after = plan_of(more_arms, tmp_path)
    finish(after, after.by_id["base"])

    class Runs(App):
        def compose(self):
            yield RunsView()

    for size in ((80, 24), (100, 30)):
        app = Runs()
        async with app.run_test(size=size) as pilot:
            app.query_one(RunsView).show_plan(after, "small-demo")
            await pilot.pause()
            table = app.query_one("#stages", DataTable)
            state = {sid: str(table.get_cell(sid, "state")) for sid in after.by_id}
            assert state["base"] == "cached"
            assert state["intermediate/demo-jobs/torch/seed1"] == "code changed"
            assert state["target/baseline/demo-qa/seed1"] == "code changed"
            assert state["intermediate/demo-nli/torch/seed1"] == "new"
            assert state["target/nli/demo-qa/seed1"] == "new"
