"""Plans: stages, content-hash keys that change exactly when their inputs do, commands."""

import shlex

from conftest import ROOT, run_cli
from xstilts_tui.plan.show import describe
from xstilts_tui.plan.stages import build_plan
from xstilts_tui.recipe.parse import load_recipe, parse_recipe

RECIPE = """
name = "p"
seeds = [1, 2]
targets = ["demo-qa"]

[model]
config = { hidden_size = 32, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 64 }

[[arms]]
name = "baseline"

[[arms]]
name = "jobs"
intermediate = ["demo-jobs"]

[[arms]]
name = "jobs-again"
intermediate = ["demo-jobs"]
"""


def plan_of(text, tmp_path):
    return build_plan(parse_recipe(text, "p.toml", tmp_path), tmp_path / "out")


def test_stages_and_sharing(tmp_path):
    plan = plan_of(RECIPE, tmp_path)
    ids = [s.id for s in plan.stages]
    assert ids == [
        "base",
        "intermediate/demo-jobs/torch/seed1",
        "target/baseline/demo-qa/seed1", "target/jobs/demo-qa/seed1", "target/jobs-again/demo-qa/seed1",
        "intermediate/demo-jobs/torch/seed2",
        "target/baseline/demo-qa/seed2", "target/jobs/demo-qa/seed2", "target/jobs-again/demo-qa/seed2",
    ]
    inter = plan.by_id["intermediate/demo-jobs/torch/seed1"]
    # Two arms with the same intermediate training share one stage: it trains once.
    assert inter.arms == ("jobs", "jobs-again")
    assert plan.by_id["target/jobs/demo-qa/seed1"].deps == (inter.id,)
    assert plan.by_id["target/baseline/demo-qa/seed1"].deps == ("base",)
    # Same inputs, same key: the two arms' target stages are one computation.
    assert plan.by_id["target/jobs/demo-qa/seed1"].key == plan.by_id["target/jobs-again/demo-qa/seed1"].key
    assert len({s.key for s in plan.stages}) == len(plan.stages) - 2


def test_keys_are_deterministic_and_follow_their_inputs(tmp_path):
    a = {s.id: s.key for s in plan_of(RECIPE, tmp_path).stages}
    assert a == {s.id: s.key for s in plan_of(RECIPE, tmp_path).stages}
    # A target-phase setting changes target keys only.
    b = {s.id: s.key for s in plan_of(RECIPE + "\n[hparams.target]\nlr = 3e-5\n", tmp_path).stages}
    for sid in a:
        assert (a[sid] != b[sid]) == sid.startswith("target/"), sid
    # An intermediate setting changes the intermediate stages and the targets built on them.
    c = {s.id: s.key for s in plan_of(RECIPE + "\n[hparams.intermediate]\nepochs = 1\n", tmp_path).stages}
    for sid in a:
        changed = sid.startswith("intermediate/") or (sid.startswith("target/jobs"))
        assert (a[sid] != c[sid]) == changed, sid
    # The model changes everything.
    d = {s.id: s.key for s in plan_of(RECIPE.replace("hidden_size = 32", "hidden_size = 64"), tmp_path).stages}
    assert all(a[sid] != d[sid] for sid in a)
    # Evaluation languages belong to the target stage's key.
    e = {s.id: s.key for s in plan_of(RECIPE + '\n[tasks.demo-qa]\nlanguages = ["en", "zh"]\n', tmp_path).stages}
    assert all((a[sid] != e[sid]) == sid.startswith("target/") for sid in a)


def test_plan_command_prints_stages_and_commands_and_runs_nothing(tmp_path, capsys):
    recipe = tmp_path / "p.toml"
    recipe.write_text(RECIPE, encoding="utf-8")
    code, out, err = run_cli(["plan", recipe, "--output", tmp_path / "out"], capsys)
    assert code == 0, err
    plan = build_plan(load_recipe(recipe), tmp_path / "out")
    for stage in plan.stages:
        assert f"{stage.id}  key {stage.key[:12]}  pending" in out
        assert "$ " + shlex.join(plan.command(stage)) in out
    assert not (tmp_path / "out").exists()


def test_demo_plan_matches_describe(tmp_path):
    plan = build_plan(load_recipe(ROOT / "recipes" / "demo.toml"), tmp_path / "o")
    text = describe(plan)
    assert text.count("$ ") == len(plan.stages)
    assert all(cmd in text for cmd in ("-m xstilts_tui.compute.worker",))
