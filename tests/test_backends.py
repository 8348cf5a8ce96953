"""The backends behind one interface: options validated with the recipe, the launch
commands, torch vs DeepSpeed ZeRO-2 loss curves, ZeRO-3 saving (one process and two under
torchrun), and LoRA adapters that reload to exactly the same scores."""

import sys
from dataclasses import asdict

import polars as pl
import pytest
import torch

from conftest import SMALL_DEMO, run_cli
from xstilts_tui.protocol.backend_options import BACKEND_KINDS
from xstilts_tui.plan.stages import build_plan
from xstilts_tui.protocol.hparams import HParams
from xstilts_tui.recipe.parse import parse_recipe
from xstilts_tui.recipe.schema import RecipeError


def test_registry_matches_the_control_plane_table():
    from xstilts_tui.compute.engines.registry import get_backend, registry

    assert set(registry()) == set(BACKEND_KINDS)
    with pytest.raises(KeyError, match="unknown backend 'nope'"):
        get_backend("nope")


# --- options as data, checked with the recipe ------------------------------------------------

BAD_OPTIONS = [
    ("unknown option", 'kind = "deepspeed"\nstage = 3', "backends.big.stage",
     "unknown option for backend kind deepspeed; known: config_file, offload_optimizer"),
    ("wrong type", 'kind = "deepspeed"\nzero_stage = "3"', "backends.big.zero_stage", "expected an integer"),
    ("no such stage", 'kind = "deepspeed"\nzero_stage = 4', "backends.big.zero_stage",
     "must be one of 0, 1, 2, 3, got 4"),
    ("param offload needs stage 3", 'kind = "deepspeed"\noffload_params = true', "backends.big.offload_params",
     "parameter offload needs zero_stage = 3"),
    ("unknown preset", 'kind = "deepspeed"\npreset = "zero4"', "backends.big.preset",
     "unknown preset 'zero4'"),
    ("missing config file", 'kind = "deepspeed"\nconfig_file = "nope.json"', "backends.big.config_file",
     "no DeepSpeed JSON file at"),
    ("rank zero", 'kind = "peft"\nr = 0', "backends.big.r", "must be at least 1, got 0"),
    ("targets not a list", 'kind = "peft"\ntarget_modules = "query"', "backends.big.target_modules",
     "expected a non-empty list of names"),
    ("unknown kind", 'kind = "jax"', "backends.big.kind", "unknown backend kind 'jax'"),
]


def _with_profile(body: str) -> str:
    return SMALL_DEMO.replace('intermediate = ["demo-jobs"]',
                              'intermediate = ["demo-jobs"]\nbackend = "big"') + f"\n[backends.big]\n{body}\n"


@pytest.mark.parametrize("label, body, field, words", BAD_OPTIONS, ids=[b[0] for b in BAD_OPTIONS])
def test_a_bad_backend_option_is_a_one_line_error(tmp_path, capsys, label, body, field, words):
    recipe = tmp_path / "r.toml"
    recipe.write_text(_with_profile(body), encoding="utf-8")
    code, out, err = run_cli(["validate", recipe], capsys)
    assert code == 2 and out == ""
    line = err.strip()
    assert "\n" not in line and f"{recipe}: {field}: " in line and words in line, line


def test_an_arm_naming_an_unknown_backend(tmp_path):
    text = SMALL_DEMO.replace('intermediate = ["demo-jobs"]', 'intermediate = ["demo-jobs"]\nbackend = "lora"')
    with pytest.raises(RecipeError, match=r"arms\[1\].backend: unknown backend 'lora'; expected one of: "
                                          "deepspeed, peft, torch"):
        parse_recipe(text, str(tmp_path / "r.toml"))


def test_profiles_and_per_phase_backends_reach_the_stages(tmp_path):
    text = SMALL_DEMO.replace('intermediate = ["demo-jobs"]',
                              'intermediate = ["demo-jobs"]\nintermediate_backend = "lora4"\n'
                              'target_backend = "zero3"') + """
[backends.lora4]
kind = "peft"
r = 4
target_modules = ["query", "key", "value"]

[backends.zero3]
kind = "deepspeed"
zero_stage = 3
offload_optimizer = true
"""
    plan = build_plan(parse_recipe(text, str(tmp_path / "r.toml")), tmp_path / "out")
    stages = {s.id: s for s in plan.stages}
    inter = stages["intermediate/demo-jobs/lora4/seed1"].spec["backend"]
    assert inter == {"name": "lora4", "kind": "peft", "options": {
        "r": 4, "alpha": 16, "dropout": 0.1, "target_modules": ["query", "key", "value"], "lr": 5e-4}}
    target = stages["target/jobs/demo-qa/seed1"].spec["backend"]
    assert target["kind"] == "deepspeed" and target["options"]["zero_stage"] == 3
    assert target["options"]["offload_optimizer"] is True
    assert stages["target/baseline/demo-qa/seed1"].spec["backend"]["kind"] == "torch"


# --- launch commands ---------------------------------------------------------------------------

LAUNCHES = [
    ("one process", "", lambda spec: [sys.executable, "-m", "xstilts_tui.compute.worker", spec]),
    ("torchrun, one node", '[launch]\nlauncher = "torchrun"\nnproc_per_node = 4',
     lambda spec: [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                   "--nproc-per-node", "4", "-m", "xstilts_tui.compute.worker", spec]),
    ("torchrun, two nodes", '[launch]\nlauncher = "torchrun"\nnproc_per_node = 8\nnnodes = 2\n'
                            'rdzv_endpoint = "node01:29500"',
     lambda spec, key: [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                        "--rdzv-backend", "c10d", "--rdzv-endpoint", "node01:29500", "--rdzv-id",
                        key[:16], "--nproc-per-node", "8", "-m", "xstilts_tui.compute.worker", spec]),
    ("deepspeed, GPUs", '[launch]\nlauncher = "deepspeed"\nnum_gpus = 2',
     lambda spec: [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2",
                   "--no_local_rank", "--module", "xstilts_tui.compute.worker", spec]),
    ("deepspeed, hostfile", '[launch]\nlauncher = "deepspeed"\nhostfile = "hosts"\nmaster_port = 29600',
     lambda spec, hosts: [sys.executable, "-m", "deepspeed.launcher.runner", "--hostfile", hosts,
                          "--master_port", "29600", "--no_local_rank", "--module", "xstilts_tui.compute.worker",
                          spec]),
    ("srun wrapper", '[launch]\nlauncher = "torchrun"\nnproc_per_node = 2\nnnodes = 2\n'
                     'rdzv_endpoint = "n1:29500"\nwrapper = ["srun", "--ntasks-per-node=1"]',
     lambda spec, key: ["srun", "--ntasks-per-node=1", sys.executable, "-m", "torch.distributed.run",
                        "--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "n1:29500",
                        "--rdzv-id", key[:16], "--nproc-per-node", "2", "-m", "xstilts_tui.compute.worker", spec]),
]


@pytest.mark.parametrize("label, section, expected", LAUNCHES, ids=[x[0] for x in LAUNCHES])
def test_plan_prints_the_launch_command_of_each_form(tmp_path, capsys, label, section, expected):
    (tmp_path / "hosts").write_text("node01 slots=8\nnode02 slots=8\n", encoding="utf-8")
    recipe = tmp_path / "r.toml"
    recipe.write_text(SMALL_DEMO + "\n" + section + "\n", encoding="utf-8")
    code, out, err = run_cli(["plan", recipe, "--output", tmp_path / "out"], capsys)
    assert code == 0, err
    plan = build_plan(parse_recipe(recipe.read_text(), str(recipe)), tmp_path / "out")
    stage = next(s for s in plan.stages if s.kind == "target")
    spec = str(plan.stage_dir(stage) / "stage.json")
    args = {"spec": spec, "key": stage.key, "hosts": str(tmp_path / "hosts")}
    names = expected.__code__.co_varnames[: expected.__code__.co_argcount]
    argv = expected(*(args[n] for n in names))
    assert plan.command(stage) == argv
    import shlex

    assert f"  $ {shlex.join(argv)}" in out.splitlines()
    # The base stage trains nothing and runs as one process whatever the launcher.
    base = plan.by_id["base"]
    assert plan.command(base)[:3] == [sys.executable, "-m", "xstilts_tui.compute.worker"]


BAD_LAUNCHES = [
    ('launcher = "mpirun"', "launch.launcher", "unknown launcher 'mpirun'"),
    ('launcher = "torchrun"\nnnodes = 2', "launch.rdzv_endpoint", "2 nodes need a rendezvous endpoint"),
    ('launcher = "torchrun"\nnum_gpus = 2', "launch.num_gpus", "only the deepspeed launcher takes it"),
    ('launcher = "deepspeed"\nhostfile = "nope"', "launch.hostfile", "no hostfile at"),
    ('launcher = "torchrun"\nnproc_per_node = 0', "launch.nproc_per_node", "at least 1"),
]


@pytest.mark.parametrize("body, field, words", BAD_LAUNCHES)
def test_bad_launch_sections(tmp_path, body, field, words):
    with pytest.raises(RecipeError, match=f"{field}: .*{words}"):
        parse_recipe(SMALL_DEMO + f"\n[launch]\n{body}\n", str(tmp_path / "r.toml"))


def test_launch_file_replaces_the_recipes_section(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(SMALL_DEMO, encoding="utf-8")
    launch = tmp_path / "launch.toml"
    launch.write_text('[launch]\nlauncher = "torchrun"\nnproc_per_node = 3\n', encoding="utf-8")
    code, out, _ = run_cli(["plan", recipe, "--output", tmp_path / "o", "--launch", launch], capsys)
    assert code == 0 and "launcher torchrun" in out and "--nproc-per-node 3" in out
    # Three processes make a three times larger global batch: other stages, other keys.
    one = build_plan(parse_recipe(SMALL_DEMO, str(recipe)), tmp_path / "o")
    assert "--nproc-per-node 3" not in "\n".join(" ".join(one.command(s)) for s in one.stages)
    code, out3, _ = run_cli(["plan", recipe, "--output", tmp_path / "o"], capsys)
    keys = lambda text: {line.split()[2] for line in text.splitlines() if " key " in line}  # noqa: E731
    assert len(keys(out) & keys(out3)) == 1  # only the base stage is shared


# --- training with each backend -----------------------------------------------------------------


def _qa_model(tokenizer, dropout=0.0):
    from transformers import XLMRobertaConfig, XLMRobertaForQuestionAnswering

    config = XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=64, type_vocab_size=1,
                              pad_token_id=1, hidden_dropout_prob=dropout,
                              attention_probs_dropout_prob=dropout)
    torch.manual_seed(0)
    return XLMRobertaForQuestionAnswering(config)


def test_an_adapter_arm_without_its_own_lr_learns_at_the_adapter_default(demo_tokenizer, monkeypatch):
    """LoRA at full fine-tuning's 1e-5 barely moves: a peft backend without its own lr
    trains at the documented adapter default, whatever the phase's lr; one it names wins."""
    from xstilts_tui.compute.engines import torch_engine
    from xstilts_tui.compute.engines.registry import get_backend
    from xstilts_tui.compute.kinds.multitask import TaskModel
    from xstilts_tui.compute.engines.training import TrainJob
    from xstilts_tui.protocol.backend_options import ADAPTER_LR, defaults

    seen = []
    monkeypatch.setattr(torch_engine.TorchBackend, "train", lambda self, job: seen.append(job.hparams.lr))
    job = TrainJob(model=TaskModel({"task": _qa_model(demo_tokenizer)}), batch=lambda i: ("task", {}),
                   steps=1, hparams=HParams(lr=1e-5), seed=0, report=lambda *a: None)
    get_backend("peft", {}).train(job)
    get_backend("peft", {"lr": 2e-4}).train(job)
    assert seen == [ADAPTER_LR, 2e-4] and 1e-4 <= ADAPTER_LR <= 5e-4
    assert defaults("peft")["lr"] == ADAPTER_LR and job.hparams.lr == 1e-5  # the job left as it came


@pytest.fixture(scope="module")
def qa_features(demo_tokenizer):
    from xstilts_tui.compute.kinds.qa import build_features
    from xstilts_tui.data import demo as demo_data

    return build_features(demo_tokenizer, demo_data.generate("demo-qa", "train", "en", 320), 96, 48, 24)


def _train(backend, tokenizer, features, steps=20, **overrides):
    from xstilts_tui.compute.kinds.multitask import single_task_job
    from xstilts_tui.compute.kinds.qa import pad_batch

    hp = HParams(**{**asdict(HParams()), "lr": 1e-3, "batch_size": 8, "grad_accum": 2, "max_steps": steps,
          "log_every": 1, "eval_every": 0, "save_every": 0, "precision": "fp32", **overrides})
    losses = []
    job = single_task_job(_qa_model(tokenizer), features, lambda b: pad_batch(b, tokenizer.pad_token_id, True),
                          hp, seed=3, report=lambda step, total, loss, lr, rate: losses.append(loss))
    stats = backend.train(job)
    return job.model, losses, stats


@pytest.mark.slow
def test_torch_and_zero2_give_the_same_loss_curve(demo_tokenizer, qa_features):
    from xstilts_tui.compute.engines.registry import get_backend

    _, torch_losses, _ = _train(get_backend("torch"), demo_tokenizer, qa_features)
    _, zero_losses, stats = _train(get_backend("deepspeed", {"zero_stage": 2}), demo_tokenizer, qa_features)
    assert len(torch_losses) == len(zero_losses) == 20 and stats.steps == 20
    assert torch_losses[-1] < torch_losses[0]
    # Same data order, same AdamW; ZeRO-2 keeps flat fp32 partitions and reduces gradients
    # in its own order, so the sums differ in the last bits: within 1e-4 relative.
    torch.testing.assert_close(torch.tensor(zero_losses), torch.tensor(torch_losses), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_zero3_saves_a_complete_checkpoint(demo_tokenizer, qa_features, tmp_path):
    import deepspeed
    from safetensors.torch import load_file
    from transformers import AutoModelForQuestionAnswering

    from xstilts_tui.compute.engines.registry import get_backend

    backend = get_backend("deepspeed", {"zero_stage": 3})
    model, losses, _ = _train(backend, demo_tokenizer, qa_features, steps=5)
    out = tmp_path / "checkpoint"
    out.mkdir()
    backend.save(model, demo_tokenizer, out)
    saved = load_file(out / "model.safetensors")
    engine_module = backend.engine.module
    params = dict(engine_module.named_parameters())
    with deepspeed.zero.GatheredParameters(list(params.values())):
        for name, param in params.items():
            key = name[len("models.task."):]
            assert key in saved, key
            assert torch.equal(saved[key], param.detach().float().cpu()), key
            assert param.numel() > 0
    # And it is what the next phase loads, strictly.
    loaded, info = AutoModelForQuestionAnswering.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_a_bf16_deepspeed_stage_hands_on_its_fp32_master_weights(demo_tokenizer, qa_features, tmp_path,
                                                                  monkeypatch, stage):
    """The next phase starts from the fp32 master weights (what DeepSpeed's zero_to_fp32
    gives), not from their bf16 rounding, so that backends compare fairly."""
    from deepspeed.utils import safe_get_full_fp32_param
    from safetensors.torch import load_file

    from xstilts_tui.compute.engines.deepspeed_engine import DeepSpeedBackend
    from xstilts_tui.compute.engines.registry import get_backend

    monkeypatch.setattr(DeepSpeedBackend, "_choose_precision", lambda self, requested: "bf16")
    backend = get_backend("deepspeed", {"zero_stage": stage})
    model, _, _ = _train(backend, demo_tokenizer, qa_features, steps=5)
    masters = {name[len("models.task."):]: safe_get_full_fp32_param(p).detach().float().cpu().clone()
               for name, p in backend.engine.module.named_parameters()}
    out = tmp_path / "checkpoint"
    out.mkdir()
    backend.save(model, demo_tokenizer, out)
    saved = load_file(out / "model.safetensors")
    rounded = 0
    for key, master in masters.items():
        assert saved[key].dtype == torch.float32 and torch.equal(saved[key], master), key
        rounded += not torch.equal(master.to(torch.bfloat16).float(), master)
    assert rounded > len(masters) / 2  # bf16 would have rounded most of them


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_a_deepspeed_stage_hands_on_its_best_steps_fp32_weights(demo_tokenizer, qa_features, tmp_path,
                                                                monkeypatch, stage):
    """Checkpoint selection keeps an earlier step: what is handed on is that step's fp32
    master weights, not the last step's (nor their bf16 rounding)."""
    from deepspeed.utils import safe_get_full_fp32_param
    from safetensors.torch import load_file

    from xstilts_tui.compute.engines.deepspeed_engine import DeepSpeedBackend
    from xstilts_tui.compute.engines.registry import get_backend
    from xstilts_tui.compute.kinds.multitask import single_task_job
    from xstilts_tui.compute.kinds.qa import pad_batch

    monkeypatch.setattr(DeepSpeedBackend, "_choose_precision", lambda self, requested: "bf16")
    backend = get_backend("deepspeed", {"zero_stage": stage})
    kept = {}

    def evaluate(step):  # step 2 scores best
        if step == 2:
            kept.update({n[len("models.task."):]: safe_get_full_fp32_param(p).detach().float().cpu().clone()
                         for n, p in backend.engine.module.named_parameters()})
        return 1.0 if step == 2 else 0.0

    hp = HParams(**{**asdict(HParams()), "lr": 1e-3, "batch_size": 8, "grad_accum": 1, "max_steps": 5,
                    "log_every": 1, "eval_every": 1, "save_every": 0, "precision": "bf16"})
    job = single_task_job(_qa_model(demo_tokenizer), qa_features,
                          lambda b: pad_batch(b, demo_tokenizer.pad_token_id, True), hp, seed=3,
                          evaluate=evaluate, state_dir=tmp_path / "state")
    (tmp_path / "state").mkdir()
    stats = backend.train(job)
    assert stats.best_step == 2
    backend.save(job.model, demo_tokenizer, tmp_path / "checkpoint")
    saved = load_file(tmp_path / "checkpoint" / "model.safetensors")
    for key, master in kept.items():
        assert torch.equal(saved[key], master), key


def test_lora_adapter_reloads_to_exactly_the_same_scores(demo_tokenizer, qa_features, tmp_path):
    from peft import PeftModel

    from xstilts_tui.compute.kinds.registry import KINDS
    from xstilts_tui.compute.kinds.multitask import TaskModel
    from xstilts_tui.compute.engines.peft_engine import ADAPTER_DIR
    from xstilts_tui.compute.engines.registry import get_backend
    from xstilts_tui.data import demo as demo_data
    from xstilts_tui.tasks.registry import TASKS

    backend = get_backend("peft", {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["query", "value"],
                                   "lr": 5e-3})
    model, losses, stats = _train(backend, demo_tokenizer, qa_features, steps=30)
    assert losses[-1] < losses[0]
    total = sum(p.numel() for p in model.parameters())
    assert 0 < stats.trainable_params < total / 4  # adapters and the head only
    kind, spec = KINDS["extractive_qa"], TASKS["demo-qa"]
    rows = demo_data.generate("demo-qa", "test", "en", 60)
    hp = HParams(**{**asdict(HParams()), "max_length": 96, "doc_stride": 48, "max_query_length": 24})
    in_memory = kind.evaluate(model.models["task"], demo_tokenizer, backend, rows, hp, spec, "en", {})
    backend.peft_model.save_pretrained(tmp_path / ADAPTER_DIR)
    adapter_bytes = sum(f.stat().st_size for f in (tmp_path / ADAPTER_DIR).iterdir())
    # A fresh copy of the same base model (same seed), then the saved adapter and head.
    fresh = TaskModel({"task": _qa_model(demo_tokenizer)})
    reloaded = PeftModel.from_pretrained(fresh, tmp_path / ADAPTER_DIR)
    again = kind.evaluate(reloaded.base_model.model.models["task"], demo_tokenizer, backend, rows, hp,
                          spec, "en", {})
    assert again == in_memory and in_memory["f1"] > 0
    # The head came back with the adapter: without it the reloaded scores are another model's.
    head = reloaded.base_model.model.models["task"].qa_outputs
    assert torch.equal(head.modules_to_save["default"].weight,
                       model.models["task"].qa_outputs.modules_to_save["default"].weight)
    assert adapter_bytes < 0.5 * sum(p.numel() * 4 for p in model.parameters())
    # The hand-off: merged weights, loadable by every backend, scoring as the adapter model.
    out = tmp_path / "checkpoint"
    out.mkdir()
    backend.save(model, demo_tokenizer, out)
    assert (out / ADAPTER_DIR / "adapter_model.safetensors").is_file()
    merged = kind.evaluate(model.models["task"], demo_tokenizer, backend, rows, hp, spec, "en", {})
    assert abs(merged["f1"] - in_memory["f1"]) < 1.0
    from transformers import AutoModelForQuestionAnswering

    loaded, info = AutoModelForQuestionAnswering.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


MIXED = SMALL_DEMO.replace('name = "baseline"\n', 'name = "baseline"\nbackend = "lora"\n').replace(
    'intermediate = ["demo-jobs"]',
    'intermediate = ["demo-jobs"]\nintermediate_backend = "z3"\ntarget_backend = "torch"') + """
[[arms]]
name = "lora-then-full"
intermediate = ["demo-nli"]
intermediate_backend = "lora"
target_backend = "z3"

[tasks.demo-nli]
generated_train_examples = 200
generated_eval_examples = 30

[backends.z3]
kind = "deepspeed"
zero_stage = 3

[backends.lora]
kind = "peft"
r = 4
lr = 5e-3

[launch]
launcher = "torchrun"
nproc_per_node = 2
"""


@pytest.mark.slow
def test_two_processes_under_torchrun_with_every_backend(tmp_path, capsys):
    """ZeRO-3 and torch (DDP) and LoRA, each phase its own, two processes (gloo on CPU):
    every stage trains, hands off a loadable encoder, and only rank 0 reports."""
    recipe = tmp_path / "mixed.toml"
    recipe.write_text(MIXED, encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["--recipe", recipe, "--output", out], capsys)
    assert code == 0, stdout + stderr
    stages = pl.read_parquet(out / "stages.parquet").filter(pl.col("kind") != "base")
    assert set(stages["status"]) == {"done"} and set(stages["world_size"]) == {2}
    by = {r["stage"]: r for r in stages.iter_rows(named=True)}
    assert by["intermediate/demo-jobs/z3/seed1"]["backend_kind"] == "deepspeed"
    assert by["intermediate/demo-nli/lora/seed1"]["adapter_bytes"] > 0
    lora = by["target/baseline/demo-qa/seed1"]
    full = by["target/jobs/demo-qa/seed1"]
    assert lora["backend_kind"] == "peft" and lora["trainable_params"] < full["trainable_params"] / 4
    # Rank 0 alone reported: one score per language and metric and stage.
    results = pl.read_parquet(out / "results.parquet").filter(pl.col("split") == "test")
    counts = results.group_by(["stage", "language", "metric", "step"]).len()
    assert set(counts["len"]) == {1}
    assert results.filter(pl.col("step") == 12).height == 3 * 5 * 2
    from transformers import AutoModelForQuestionAnswering

    for stage_dir in (tmp_path / "stage-cache").glob("target-*"):
        _, info = AutoModelForQuestionAnswering.from_pretrained(stage_dir / "checkpoint",
                                                                output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"]


@pytest.mark.slow
def test_zero2_resumes_from_its_own_checkpoint(demo_tokenizer, qa_features, tmp_path):
    """A ZeRO-2 stage stopped after its step-4 state resumes through DeepSpeed's sharded
    checkpoint to the same loss curve and weights as an uninterrupted run."""
    from xstilts_tui.compute.kinds.multitask import single_task_job
    from xstilts_tui.compute.kinds.qa import pad_batch
    from xstilts_tui.compute.engines.registry import get_backend
    from xstilts_tui.compute.engines.training import find_state

    def run(state_dir, crash_at=None):
        hp = HParams(**{**asdict(HParams()), "lr": 1e-3, "batch_size": 8, "grad_accum": 2, "max_steps": 8,
              "log_every": 1, "eval_every": 0, "save_every": 4, "precision": "fp32"})
        losses = []
        job = single_task_job(_qa_model(demo_tokenizer), qa_features,
                              lambda b: pad_batch(b, demo_tokenizer.pad_token_id, True), hp, seed=3,
                              report=lambda step, total, loss, lr, rate: losses.append((step, loss)),
                              state_dir=state_dir)
        inner = job.batch

        def batch(i):
            if i == crash_at:
                raise RuntimeError("stopped")
            return inner(i)

        job.batch = batch
        backend = get_backend("deepspeed", {"zero_stage": 2})
        try:
            stats = backend.train(job)
        except RuntimeError:
            return None, losses, None
        return {k: v.detach().clone() for k, v in backend.engine.module.state_dict().items()}, losses, stats

    clean_dir, stopped_dir = tmp_path / "clean", tmp_path / "stopped"
    clean_dir.mkdir(), stopped_dir.mkdir()
    clean, clean_losses, _ = run(clean_dir)
    _, first_losses, _ = run(stopped_dir, crash_at=2 * 6)  # inside step 7, after the step-4 state
    assert find_state(stopped_dir) is not None
    resumed, resumed_losses, stats = run(stopped_dir)
    assert stats.resumed_from == 4 and [s for s, _ in resumed_losses] == [5, 6, 7, 8]
    torch.testing.assert_close(torch.tensor([l for _, l in resumed_losses]),
                               torch.tensor([l for _, l in clean_losses[4:]]), rtol=1e-5, atol=1e-6)
    for key, value in clean.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-5, atol=1e-6, msg=key)


# --- DeepSpeed JSON files written for the Hugging Face Trainer ("auto" values) -------------

HF_STYLE = {
    "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
    "train_batch_size": "auto", "gradient_clipping": "auto",
    "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"},
    "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto",
                                              "weight_decay": "auto"}},
    "scheduler": {"type": "WarmupDecayLR", "params": {"warmup_min_lr": "auto", "warmup_max_lr": "auto",
                                                      "warmup_num_steps": "auto", "total_num_steps": "auto"}},
    "zero_optimization": {"stage": 3, "reduce_bucket_size": "auto",
                          "stage3_prefetch_bucket_size": "auto",
                          "stage3_param_persistence_threshold": "auto"},
}


def test_hf_auto_values_are_filled_from_the_recipe():
    from xstilts_tui.compute.engines.deepspeed_engine import build_config

    hp = HParams(**{**asdict(HParams()), "lr": 3e-5, "batch_size": 4, "grad_accum": 8, "max_grad_norm": 0.5,
          "adam_eps": 1e-7, "weight_decay": 0.02, "warmup_ratio": 0.1})
    import json as _json
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        _json.dump(HF_STYLE, handle)
    config = build_config(hp, {"zero_stage": 3, "config_file": handle.name}, "bf16", world=2,
                          steps=1000, hidden_size=64)
    assert "auto" not in _json.dumps(config)
    assert config["train_micro_batch_size_per_gpu"] == 4 and config["gradient_accumulation_steps"] == 8
    assert config["train_batch_size"] == 64 and config["gradient_clipping"] == 0.5
    assert config["bf16"] == {"enabled": True} and config["fp16"] == {"enabled": False}
    assert config["optimizer"]["params"] == {"lr": 3e-5, "betas": [0.9, 0.999], "eps": 1e-7,
                                             "weight_decay": 0.02}
    assert config["scheduler"]["params"] == {"warmup_min_lr": 0, "warmup_max_lr": 3e-5,
                                             "warmup_num_steps": 100, "total_num_steps": 1000}
    zero = config["zero_optimization"]
    assert zero["reduce_bucket_size"] == 4096 and zero["stage3_prefetch_bucket_size"] == 3686
    assert zero["stage3_param_persistence_threshold"] == 640


def test_an_auto_value_we_cannot_fill_is_refused_at_validation(tmp_path, capsys):
    import json as _json

    (tmp_path / "ds.json").write_text(_json.dumps({"zero_optimization": {"sub_group_size": "auto"}}))
    recipe = tmp_path / "r.toml"
    recipe.write_text(_with_profile('kind = "deepspeed"\nconfig_file = "ds.json"'), encoding="utf-8")
    code, out, err = run_cli(["validate", recipe], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "backends.big.config_file: " in err and "zero_optimization.sub_group_size" in err
    assert '"auto"' in err


@pytest.mark.slow
def test_a_stage_trains_with_an_hf_style_deepspeed_file(demo_tokenizer, qa_features, tmp_path):
    import json as _json

    from xstilts_tui.compute.engines.registry import get_backend

    path = tmp_path / "ds.json"
    config = {k: v for k, v in HF_STYLE.items() if k not in ("optimizer", "scheduler")}
    config["zero_optimization"] = {"stage": 2, "reduce_bucket_size": "auto"}
    path.write_text(_json.dumps(config))
    backend = get_backend("deepspeed", {"zero_stage": 2, "config_file": str(path)})
    _, losses, stats = _train(backend, demo_tokenizer, qa_features, steps=4)
    assert stats.steps == 4 and len(losses) == 4
    assert backend.config["train_micro_batch_size_per_gpu"] == 8
    assert backend.config["zero_optimization"]["reduce_bucket_size"] == 32 * 32


@pytest.mark.slow
def test_a_deepspeed_file_naming_its_own_optimizer_and_schedule_trains(demo_tokenizer, qa_features,
                                                                        tmp_path):
    """A Trainer-style file with DeepSpeed's own optimizer and schedule: the loop reads the
    learning rate from the engine (there is no schedule of ours to ask)."""
    import json as _json

    from xstilts_tui.compute.engines.registry import get_backend

    path = tmp_path / "ds.json"
    config = dict(HF_STYLE)
    config["zero_optimization"] = {"stage": 2, "reduce_bucket_size": "auto"}
    path.write_text(_json.dumps(config))
    backend = get_backend("deepspeed", {"zero_stage": 2, "config_file": str(path)})
    _, losses, stats = _train(backend, demo_tokenizer, qa_features, steps=4)
    assert stats.steps == 4 and len(losses) == 4
    assert backend.config["scheduler"]["type"] == "WarmupDecayLR"
