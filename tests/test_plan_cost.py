"""The plan's cost estimate: a rate measured by a finished stage applies to every stage
that trains the same encoder the same way, and only to those (no torch, no training)."""

import json

from conftest import SMALL_DEMO
from xstilts_tui.plan.cost import plan_costs
from xstilts_tui.plan.stages import build_plan
from xstilts_tui.recipe.parse import parse_recipe


def local_model(folder, hidden=32):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "bert", "hidden_size": hidden, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 1000,
        "max_position_embeddings": 128}), encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"weights of " + str(hidden).encode())
    return folder


def recipe_on(folder):
    text = SMALL_DEMO.replace(
        'config = { hidden_size = 32, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 64 }\n'
        'tokenizer = { vocab_size = 1000, corpus = ["demo"] }',
        f'path = "{folder}"')
    assert text != SMALL_DEMO
    return text


def finish(plan, stage, examples_per_s):
    """What a finished stage leaves in the cache that the estimate reads."""
    folder = plan.stage_dir(stage)
    folder.mkdir(parents=True)
    (folder / "stage.json").write_text(json.dumps({**stage.spec, "kind": stage.kind}), encoding="utf-8")
    (folder / "events.jsonl").write_text(json.dumps(
        {"type": "stage_finished", "examples_per_s": examples_per_s}) + "\n", encoding="utf-8")
    (folder / "DONE").write_text("{}", encoding="utf-8")


def test_a_rate_measured_on_the_baseline_target_times_the_target_after_an_intermediate(tmp_path):
    model = local_model(tmp_path / "encoder")
    plan = build_plan(parse_recipe(recipe_on(model), str(tmp_path / "r.toml"), tmp_path),
                      tmp_path / "out", tmp_path / "cache")
    baseline = next(s for s in plan.stages if s.id.startswith("target/baseline/"))
    after_jobs = next(s for s in plan.stages if s.id.startswith("target/jobs/"))
    finish(plan, baseline, 8.0)
    costs = {c.stage: c for c in plan_costs(plan, done={baseline.id})}
    # The target that starts from the intermediate checkpoint trains the same encoder, the
    # same way: 12 steps x 16 examples at 8 examples/s.
    assert (costs[after_jobs.id].source, costs[after_jobs.id].seconds) == ("measured", 12 * 16 / 8.0)


def test_a_rate_measured_on_one_encoder_never_times_another(tmp_path):
    first = local_model(tmp_path / "encoder-a", hidden=32)
    other = local_model(tmp_path / "encoder-b", hidden=64)
    plan_a = build_plan(parse_recipe(recipe_on(first), str(tmp_path / "a.toml"), tmp_path),
                        tmp_path / "out-a", tmp_path / "cache")
    plan_b = build_plan(parse_recipe(recipe_on(other), str(tmp_path / "b.toml"), tmp_path),
                        tmp_path / "out-b", tmp_path / "cache")
    inter_a = next(s for s in plan_a.stages if s.kind == "intermediate")
    target_a = next(s for s in plan_a.stages if s.id.startswith("target/jobs/"))
    finish(plan_a, inter_a, 50.0)
    finish(plan_a, target_a, 8.0)
    costs = {c.stage: c for c in plan_costs(plan_b, done=set())}
    # Encoder b's stages have nothing measured: every one from FLOPs.
    assert {c.source for c in costs.values() if c.examples} == {"flops"}


def test_on_a_cpu_the_flop_estimate_uses_this_cpus_rate_and_the_non_embedding_parameters(tmp_path, monkeypatch):
    """A plan for a CPU is timed at a rate measured on this CPU, not an H100's (3 s for a
    stage that took 34 minutes); and, as in 6ND, from the parameters that do the
    multiplications: the word-embedding lookup does none (96M of multilingual-e5-small's
    118M parameters)."""
    from xstilts_tui.plan import cost
    from xstilts_tui.plan.show import describe
    from xstilts_tui.protocol.provenance import Runtime

    monkeypatch.setattr(cost, "_matmul_flops", lambda: 1e11)
    monkeypatch.setattr(cost, "cpu_count", lambda: 4)
    recipe = parse_recipe(SMALL_DEMO, str(tmp_path / "r.toml"), tmp_path)
    plan = build_plan(recipe, tmp_path / "out", tmp_path / "cache", runtime=Runtime(device="cpu", threads=2))
    target = next(c for c in plan_costs(plan, done=set()) if c.stage.startswith("target/baseline/"))
    # One layer of hidden 32 and inner 64: 4 x 32 x 32 + 2 x 32 x 64 = 8,192 parameters
    # multiply; at 40% of the rate measured on all 4 cores, halved for a stage's 2 threads.
    assert target.source == "flops"
    assert target.seconds == 6 * 8_192 * target.tokens / (0.40 * 1e11 * 2 / 4)
    text = describe(plan)
    assert "H100" not in text and "measured here" in text


def test_on_a_gpu_the_flop_estimate_names_the_gpu_rate(tmp_path):
    from xstilts_tui.plan.show import describe
    from xstilts_tui.protocol.provenance import Runtime

    recipe = parse_recipe(SMALL_DEMO, str(tmp_path / "r.toml"), tmp_path)
    plan = build_plan(recipe, tmp_path / "out", tmp_path / "cache", runtime=Runtime(device="cuda"))
    target = next(c for c in plan_costs(plan, done=set()) if c.stage.startswith("target/baseline/"))
    assert target.seconds == 6 * 8_192 * target.tokens / (0.40 * 989e12)
    assert "989 TFLOP/s" in describe(plan)
