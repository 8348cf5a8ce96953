"""The scheduler: stages side by side on slots, in dependency order, with a fake worker
(no torch; waits are bounded polls)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from conftest import ROOT, SMALL_DEMO, run_cli
from xstilts_tui.plan.stages import build_plan
from xstilts_tui.run.progress import PlainDisplay
from xstilts_tui.protocol.provenance import runtime_of_slots
from xstilts_tui.recipe.parse import parse_recipe
from xstilts_tui.run.runner import Runner, stage_priorities
from xstilts_tui.protocol.slots import Slot, make_slots, visible_gpus
from xstilts_tui.protocol.stage_cache import verify_done

TWO_SEEDS = SMALL_DEMO.replace("seeds = [1]", "seeds = [1, 2]")


def notes(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def plan_of(tmp_path, text=TWO_SEEDS, output="out"):
    recipe = parse_recipe(text, str(tmp_path / "r.toml"), tmp_path)
    return build_plan(recipe, tmp_path / output, tmp_path / "cache")


def wait_until(condition, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def intervals(log):
    start = {n["stage"]: n for n in notes(log) if n["event"] == "start"}
    end = {n["stage"]: n["t"] for n in notes(log) if n["event"] == "end"}
    return start, end


def max_overlap(start, end):
    points = sorted([(s["t"], 1) for s in start.values()] + [(t, -1) for t in end.values()],
                    key=lambda p: (p[0], p[1]))
    level = best = 0
    for _, step in points:
        level += step
        best = max(best, level)
    return best


def test_stages_start_after_their_inputs_and_never_beyond_the_slots(tmp_path, fake):
    plan = plan_of(tmp_path, TWO_SEEDS.replace("seeds = [1, 2]", "seeds = [1, 2, 3]"))
    runner = Runner(plan, PlainDisplay(open(os.devnull, "w")), poll_s=0.02,
                    slots=make_slots(None, 1, 2, cores=2))
    outcome = runner.run()
    assert outcome.ok, outcome.reasons
    start, end = intervals(fake)
    assert set(start) == {s.id for s in plan.stages}  # each stage once
    for stage in plan.stages:
        for dep in stage.deps:
            assert start[stage.id]["t"] >= end[dep], (stage.id, dep)
    assert max_overlap(start, end) == 2  # two at once, never three
    # The longest chains first: after base, the three intermediate stages.
    order = [s for s, _ in sorted(start.items(), key=lambda kv: kv[1]["t"])]
    assert order[0] == "base"
    assert {*order[1:3]} <= {s.id for s in plan.stages if s.kind == "intermediate"}
    # Each CPU slot gets half the cores.
    assert {n["omp"] for n in start.values()} == {"1"}
    assert len({n["port"] for n in start.values()}) == len(start)  # a port each


def test_start_order_is_deterministic():
    plan = build_plan(parse_recipe(TWO_SEEDS, "r.toml", Path(".")), Path("/tmp/x/out"))
    chain = stage_priorities(plan)
    assert chain["base"] == 3
    assert all(chain[s.id] == (2 if s.kind == "intermediate" else 1) for s in plan.stages if s.id != "base")


def test_devices_are_shared_out_through_the_environment(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert visible_gpus() == ["4", "5", "6", "7"]
    slots = make_slots(None, 2, 1)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["4,5", "6,7"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in make_slots(["0", "1", "2"], 1, 1)] == ["0", "1", "2"]
    with pytest.raises(ValueError, match="needs 4 GPUs and only 2"):
        make_slots(["0", "1"], 4, 1)
    plan = plan_of(tmp_path)
    outcome = Runner(plan, PlainDisplay(open(os.devnull, "w")), poll_s=0.02, slots=slots).run()
    assert outcome.ok
    start, end = intervals(fake)
    assert {n["cuda"] for n in start.values()} == {"4,5", "6,7"}
    # Stages that ran at the same time never shared a device.
    for a in start.values():
        for b in start.values():
            if a is not b and a["t"] < end[b["stage"]] and b["t"] < end[a["stage"]]:
                assert a["cuda"] != b["cuda"]


def test_a_stage_killed_while_others_run_fails_only_its_dependents(tmp_path, fake, monkeypatch):
    plan = plan_of(tmp_path)
    victim = "intermediate/demo-jobs/torch/seed1"
    monkeypatch.setenv("FAKE_LONG_STAGE", victim)
    runner = Runner(plan, PlainDisplay(open(os.devnull, "w")), poll_s=0.02,
                    slots=make_slots(None, 1, 2, cores=2))
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("outcome", runner.run()))
    thread.start()
    wait_until(lambda: victim in intervals(fake)[0], 60, "the long stage")
    os.kill(intervals(fake)[0][victim]["pid"], signal.SIGKILL)
    thread.join(120)
    outcome = result["outcome"]
    assert outcome.status[victim] == "failed"
    assert outcome.status["target/jobs/demo-qa/seed1"] == "skipped"
    assert all(outcome.status[s.id] == "done" for s in plan.stages
               if s.id not in (victim, "target/jobs/demo-qa/seed1"))


def test_cancel_stops_every_running_worker(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("FAKE_HOLD", "120")
    plan = plan_of(tmp_path)
    runner = Runner(plan, PlainDisplay(open(os.devnull, "w")), poll_s=0.02,
                    slots=make_slots(None, 1, 2, cores=2))
    monkeypatch.setattr(runner, "stop_workers", lambda grace_s=5.0, _s=runner.stop_workers: _s(grace_s))
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("outcome", runner.run()))
    thread.start()
    # base first (alone: everything waits for it), then two at once.
    wait_until(lambda: "base" in intervals(fake)[0], 60, "base")
    pid = intervals(fake)[0]["base"]["pid"]
    runner.cancel()
    thread.join(60)
    assert not thread.is_alive()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert set(result["outcome"].status.values()) == {"cancelled"}


def test_two_runs_at_once_on_one_cache_train_each_stage_once(tmp_path, fake):
    plans = [plan_of(tmp_path, output=f"out{i}") for i in (1, 2)]
    outcomes = {}
    threads = [threading.Thread(target=lambda i=i, p=p: outcomes.setdefault(
        i, Runner(p, PlainDisplay(open(os.devnull, "w")), poll_s=0.02,
                  slots=make_slots(None, 1, 2, cores=2)).run())) for i, p in enumerate(plans)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert all(o.ok for o in outcomes.values())
    starts = [n["stage"] for n in notes(fake) if n["event"] == "start"]
    assert sorted(starts) == sorted(s.id for s in plans[0].stages)  # each trained once
    for stage in plans[0].stages:  # its worker log written by one worker only
        log = (plans[0].stage_dir(stage) / "worker.log").read_text(encoding="utf-8")
        assert log.count("worker started by run") == 1

    def table(plan):
        frame = pl.read_parquet(plan.output_dir / "results.parquet")
        return frame.select(["arm", "seed", "task", "language", "metric", "value"]).sort(
            ["arm", "seed", "language"])

    assert table(plans[0]).height == 2 * 2 * 5
    assert table(plans[0]).equals(table(plans[1]))


def test_plan_json_gives_stages_costs_and_makespan(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(TWO_SEEDS, encoding="utf-8")
    code, out, err = run_cli(["plan", str(recipe), "--output", str(tmp_path / "out"), "--json",
                              "--parallel", "2"], capsys)
    assert code == 0, err
    data = json.loads(out)
    plan = build_plan(parse_recipe(TWO_SEEDS, str(recipe), tmp_path), tmp_path / "out")
    assert [s["id"] for s in data["stages"]] == [s.id for s in plan.stages]
    summary = data["summary"]
    assert summary["by_kind"] == {"base": 1, "intermediate": 2, "target": 4}
    assert summary["slots"] == 2
    # 12 steps x batch 16 for each of the six training stages.
    assert summary["train_examples"] == 6 * 12 * 16
    assert summary["estimate_sources"] == {"none": 1, "flops": 6}
    assert 0 < summary["makespan_s"] < summary["sequential_s"]
    assert not (tmp_path / "out").exists()  # nothing trained, no results written


def test_makespan_schedules_like_the_runner():
    from xstilts_tui.plan.cost import makespan

    plan = build_plan(parse_recipe(TWO_SEEDS, "r.toml", Path(".")), Path("/tmp/x/out"))
    seconds = {s.id: {"base": 1.0, "intermediate": 10.0, "target": 5.0}[s.kind] for s in plan.stages}
    assert makespan(plan, seconds, 1) == sum(seconds.values())
    # Two slots: base, then both intermediates, then four targets two by two.
    assert makespan(plan, seconds, 2) == 1 + 10 + 5 + 5
    assert makespan(plan, seconds, 8) == 1 + 10 + 5


@pytest.mark.slow
def test_a_printed_stage_command_runs_by_hand(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(SMALL_DEMO, encoding="utf-8")
    code, out, err = run_cli(["plan", str(recipe), "--output", str(tmp_path / "out"),
                              "--write-specs"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    command = next(lines[i + 1] for i, line in enumerate(lines) if line.startswith("base  key"))
    assert command.startswith("  $ ")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(command[4:], shell=True, check=True, cwd=tmp_path, env=env, timeout=600,
                   capture_output=True)
    plan = build_plan(parse_recipe(SMALL_DEMO, str(recipe), tmp_path), tmp_path / "out")
    assert verify_done(plan.stage_dir(plan.by_id["base"])) is None


@pytest.mark.slow
def test_a_parallel_run_gives_the_sequential_run_s_results(tmp_path):
    one_thread = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    tables = []
    for name, slots in (("seq", [Slot("cpu", one_thread)]),
                        ("par", [Slot("a", one_thread), Slot("b", one_thread)])):
        recipe = parse_recipe(TWO_SEEDS, str(tmp_path / "r.toml"), tmp_path)
        plan = build_plan(recipe, tmp_path / name, tmp_path / f"cache-{name}",
                          runtime=runtime_of_slots(slots))
        assert plan.runtime.threads == 1
        outcome = Runner(plan, PlainDisplay(open(os.devnull, "w")), slots=slots).run()
        assert outcome.ok, outcome.reasons
        frame = pl.read_parquet(plan.output_dir / "results.parquet")
        tables.append(frame.select(["arm", "seed", "task", "language", "split", "metric", "step",
                                    "value"]).sort(["arm", "seed", "language", "split", "metric", "step"]))
    assert tables[0].height > 0
    assert tables[0].equals(tables[1])


def test_submitit_local_executor_runs_the_stages_in_dependency_order(tmp_path, fake):
    from xstilts_tui.run.executors import JOB_FILE, SubmititExecutor

    plan = plan_of(tmp_path)
    executor = SubmititExecutor("local", tmp_path / "jobs")
    outcome = Runner(plan, PlainDisplay(open(os.devnull, "w")), poll_s=0.05,
                     slots=make_slots(None, 1, 2, cores=2), executor=executor).run()
    assert outcome.ok, outcome.reasons
    start, end = intervals(fake)
    assert set(start) == {s.id for s in plan.stages}
    for stage in plan.stages:
        for dep in stage.deps:
            assert start[stage.id]["t"] >= end[dep]
        job = json.loads((plan.stage_dir(stage) / JOB_FILE).read_text(encoding="utf-8"))
        assert job["executor"] == "local" and job["stage"] == stage.id
    assert pl.read_parquet(plan.output_dir / "results.parquet").height == 2 * 2 * 5


def test_a_rerun_follows_a_job_still_running_instead_of_submitting_it_again(tmp_path, fake,
                                                                          monkeypatch):
    from xstilts_tui.run.executors import SubmititExecutor
    from xstilts_tui.run.workers import worker_env

    plan = plan_of(tmp_path)
    executor = SubmititExecutor("local", tmp_path / "jobs")
    base = plan.by_id["base"]
    plan.write_spec(base)
    # An earlier run submitted base and went away; its job still runs.
    monkeypatch.setenv("FAKE_HOLD", "2")
    executor.submit(plan.stage_dir(base), base.id, plan.command(base), worker_env(), [])
    wait_until(lambda: "base" in intervals(fake)[0], 60, "the earlier job")
    monkeypatch.setenv("FAKE_HOLD", "0.1")
    outcome = Runner(plan, PlainDisplay(open(os.devnull, "w")), poll_s=0.05,
                     slots=make_slots(None, 1, 2, cores=2), executor=executor).run()
    assert outcome.ok, outcome.reasons
    starts = [n["stage"] for n in notes(fake) if n["event"] == "start"]
    assert starts.count("base") == 1
    assert sorted(starts) == sorted(s.id for s in plan.stages)


def test_a_rerun_after_the_controller_died_keeps_everything_the_followed_job_wrote(
        tmp_path, fake, monkeypatch):
    """The controller is gone while a target stage's job runs and has scored (its score
    before training); the rerun follows the job without cutting its event log, so the
    table has every score the job wrote and the job seals its stage."""
    from xstilts_tui.run.executors import SubmititExecutor
    from xstilts_tui.run.workers import worker_env
    from xstilts_tui.protocol.stage_cache import verify_done

    plan = plan_of(tmp_path, text=SMALL_DEMO)
    executor = SubmititExecutor("local", tmp_path / "jobs")
    slots = make_slots(None, 1, 2, cores=2)
    display = PlainDisplay(open(os.devnull, "w"))
    target = plan.by_id["target/baseline/demo-qa/seed1"]
    # what the earlier run finished: every stage but this target
    for stage in plan.stages:
        if stage.id != target.id:
            plan.write_spec(stage)
            subprocess.run(plan.command(stage), env=worker_env(), check=True)
    plan.write_spec(target)
    monkeypatch.setenv("FAKE_HOLD", "3")
    monkeypatch.setenv("FAKE_EARLY_SCORE", "1")
    executor.submit(plan.stage_dir(target), target.id, plan.command(target), worker_env(), [])
    events = plan.stage_dir(target) / "events.jsonl"
    wait_until(lambda: events.exists() and '"step":0' in events.read_text(), 60, "the early score")
    outcome = Runner(plan, display, poll_s=0.05, slots=slots, executor=executor).run()
    assert outcome.ok, outcome.reasons
    assert verify_done(plan.stage_dir(target)) is None
    rows = pl.read_parquet(plan.output_dir / "results.parquet").filter(
        pl.col("stage") == target.id)
    assert sorted(rows["step"].to_list()) == [0] + [4] * 5  # the score before training is kept
    starts = [n["stage"] for n in notes(fake) if n["event"] == "start"]
    assert starts.count(target.id) == 1


def test_slurm_jobs_ask_for_what_the_recipe_says_and_wait_for_their_inputs(tmp_path):
    from submitit.slurm.slurm import _make_sbatch_string

    from xstilts_tui.run.executors import SubmititExecutor

    recipe = parse_recipe(TWO_SEEDS + """
[slurm]
partition = "gpu"
gpus_per_node = 1
cpus_per_task = 6
mem_gb = 48
time_min = 90
account = "proj"
sbatch = { qos = "high" }
""", str(tmp_path / "r.toml"), tmp_path)
    executor = SubmititExecutor("slurm", tmp_path / "jobs", recipe.slurm, 1)
    params = executor.slurm_parameters("target/jobs/demo-qa/seed1", ["101", "102"])
    sbatch = _make_sbatch_string(command="python -m xstilts_tui.compute.worker x", folder=tmp_path / "jobs",
                                 **params)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=6",
                 "#SBATCH --mem=48GB", "#SBATCH --time=90", "#SBATCH --account=proj",
                 "#SBATCH --qos=high", "#SBATCH --dependency=afterok:101:102",
                 "#SBATCH --kill-on-invalid-dep=yes"):
        assert line in sbatch, (line, sbatch)
    assert "dependency" not in _make_sbatch_string(
        command="x", folder=tmp_path / "jobs", **executor.slurm_parameters("base", []))
    with pytest.raises(Exception, match=r"slurm.mem_gb: must be at least 0"):
        parse_recipe(TWO_SEEDS + "\n[slurm]\nmem_gb = -1\n", "r.toml", tmp_path)


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path, fake):
    plan = plan_of(tmp_path)
    base_dir = plan.stage_dir(plan.by_id["base"])
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from xstilts_tui.protocol.stage_cache import stage_lock\n"
        f"lock = stage_lock(__import__('pathlib').Path({str(base_dir)!r}))\n"
        "lock.acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(300)\n")], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()  # a run killed with -9 while it held the stage: its lock file stays
    holder.wait()
    assert (base_dir / ".lock").exists()
    outcome = Runner(plan, PlainDisplay(open(os.devnull, "w")), poll_s=0.02,
                     slots=make_slots(None, 1, 2, cores=2)).run()
    assert outcome.ok
    assert [n["stage"] for n in notes(fake) if n["event"] == "start"].count("base") == 1
