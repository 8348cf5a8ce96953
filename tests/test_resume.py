"""Checkpoint selection, early stopping, and resuming a stopped stage: in process (a
crash in the middle of training) and end to end (kill -9 of a headless run)."""

import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest
import torch

from xstilts_tui.compute.kinds.multitask import single_task_job
from xstilts_tui.compute.kinds.qa import build_features, pad_batch
from xstilts_tui.compute.engines.registry import get_backend
from xstilts_tui.compute.engines.training import find_state
from conftest import ROOT, SMALL_DEMO
from xstilts_tui.data import demo as demo_data
from xstilts_tui.protocol.hparams import HParams


def _model(tokenizer):
    from transformers import XLMRobertaConfig, XLMRobertaForQuestionAnswering

    config = XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=64, type_vocab_size=1,
                              pad_token_id=1)  # dropout on: its random state must resume too
    torch.manual_seed(0)
    return XLMRobertaForQuestionAnswering(config)


@pytest.fixture(scope="module")
def features(demo_tokenizer):
    return build_features(demo_tokenizer, demo_data.generate("demo-qa", "train", "en", 96), 96, 48, 24)


class Crash(Exception):
    pass


def _run(tokenizer, features, state_dir=None, crash_at=None, scores=None, freeze=False, backend="torch",
         **overrides):
    """Train 12 steps; ``crash_at`` raises when that micro-batch is asked for;
    ``scores`` scripts what the validation returns at each evaluation; ``freeze``: the
    word embeddings not trained (``freeze_embeddings``)."""
    model = _model(tokenizer)
    if freeze:
        from xstilts_tui.compute.training_stage import freeze_word_embeddings

        freeze_word_embeddings(model)
    hp = HParams(**{**vars(HParams()), "lr": 1e-3, "batch_size": 8, "grad_accum": 2, "max_steps": 12,
          "log_every": 1, "save_every": 4, "eval_every": 0, **overrides})
    evaluated = []

    def evaluate(step):
        evaluated.append(step)
        return scores[len(evaluated) - 1] if scores else 0.0

    job = single_task_job(model, features, lambda b: pad_batch(b, tokenizer.pad_token_id, True),
                          hp, seed=7, state_dir=state_dir, evaluate=evaluate, final_eval=True)
    inner = job.batch

    def batch(i):
        if crash_at is not None and i == crash_at:
            raise Crash(i)
        return inner(i)

    job.batch = batch
    options = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["query", "value"]} if backend == "peft" else {}
    stats = get_backend(backend, options).train(job)
    return model, stats, evaluated


def test_a_crashed_stage_resumes_to_the_same_weights(demo_tokenizer, features, tmp_path):
    clean, clean_stats, _ = _run(demo_tokenizer, features)
    with pytest.raises(Crash):
        _run(demo_tokenizer, features, state_dir=tmp_path, crash_at=2 * 9 + 1)  # in step 10
    assert (find_state(tmp_path) / "resume.json").read_text().startswith('{"step": 8')
    resumed, stats, _ = _run(demo_tokenizer, features, state_dir=tmp_path)
    assert stats.resumed_from == 8 and stats.steps == 12
    for (name, a), b in zip(clean.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name


def test_best_evaluation_is_kept_and_patience_stops_early(demo_tokenizer, features, tmp_path):
    # Evaluations at steps 2, 4, 6, 8: the best is step 4, then two without improvement.
    model, stats, evaluated = _run(demo_tokenizer, features, eval_every=2, patience=2,
                                   scores=[10.0, 30.0, 20.0, 25.0, 99.0])
    assert evaluated == [2, 4, 6, 8] and stats.stopped_early and stats.steps == 8
    assert stats.best_step == 4 and stats.best_score == 30.0
    # The weights kept are those of step 4: the same as a run that stops at step 4 by
    # its schedule... of 12 steps (same learning rates up to there).
    at_four, _, _ = _run(demo_tokenizer, features, eval_every=2, patience=1,
                         scores=[10.0, 30.0, 20.0])
    for (name, a), b in zip(model.named_parameters(), at_four.parameters()):
        assert torch.equal(a, b), name


def test_the_kept_best_weights_are_what_training_changes_one_copy_at_a_time(demo_tokenizer, features,
                                                                           monkeypatch):
    """Keeping the best step's weights copies what training changes (not frozen word
    embeddings: 96M of multilingual-e5-small's 118M parameters), and lets the previous
    copy go before it makes the next (never two copies at once); what is put back at the
    end equals a run that stopped at the best step."""
    import gc
    import weakref

    from xstilts_tui.compute.engines import torch_engine

    real, kept, overlaps = torch_engine._cpu_copy, [], []

    def spy(model):
        gc.collect()
        overlaps.append(any(ref() is not None for ref in kept[-1:]))
        copy = real(model)
        kept.append(weakref.ref(next(iter(copy.values()))))
        spy.keys = set(copy)
        return copy

    monkeypatch.setattr(torch_engine, "_cpu_copy", spy)
    # Evaluations at 2, 4, 6 improve (three copies), then none: step 6 is put back.
    model, stats, _ = _run(demo_tokenizer, features, eval_every=2, freeze=True,
                           scores=[10.0, 30.0, 40.0, 20.0, 15.0, 5.0, 1.0])
    assert stats.best_step == 6 and len(kept) == 3 and overlaps == [False, False, False]
    assert not any(k.endswith("word_embeddings.weight") for k in spy.keys)
    for trained in ("qa_outputs.weight", "roberta.encoder.layer.0.output.dense.weight"):
        assert any(k.endswith(trained) for k in spy.keys), trained
    monkeypatch.setattr(torch_engine, "_cpu_copy", real)
    at_six, _, _ = _run(demo_tokenizer, features, eval_every=2, patience=1, freeze=True,
                        scores=[10.0, 30.0, 40.0, 20.0])
    fresh = _model(demo_tokenizer)
    assert torch.equal(model.roberta.embeddings.word_embeddings.weight,
                       fresh.roberta.embeddings.word_embeddings.weight)
    for (name, a), b in zip(model.state_dict().items(), at_six.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_lora_stage_keeps_its_adapters_and_head_and_puts_back_the_best(demo_tokenizer, features):
    """With LoRA the kept copy is the adapters and the head (the base is frozen); the best
    step's are put back: the same weights as a run that stopped there."""
    scores = [10.0, 30.0, 40.0, 20.0, 15.0, 5.0, 1.0]
    model, stats, _ = _run(demo_tokenizer, features, eval_every=2, backend="peft", scores=scores)
    at_six, _, _ = _run(demo_tokenizer, features, eval_every=2, patience=1, backend="peft", scores=scores[:4])
    assert stats.best_step == 6 and stats.steps == 12
    for (name, a), b in zip(model.state_dict().items(), at_six.state_dict().values()):
        assert torch.equal(a, b), name


def test_selection_survives_a_resume(demo_tokenizer, features, tmp_path):
    scores = [50.0, 40.0, 30.0, 20.0, 10.0, 5.0]  # the best is the first, at step 2
    clean, clean_stats, _ = _run(demo_tokenizer, features, eval_every=2, scores=scores)
    with pytest.raises(Crash):
        _run(demo_tokenizer, features, state_dir=tmp_path, eval_every=2, scores=scores,
             crash_at=2 * 10)
    resumed, stats, evaluated = _run(demo_tokenizer, features, state_dir=tmp_path, eval_every=2,
                                     scores=scores[4:])
    assert evaluated == [10, 12] and stats.best_step == clean_stats.best_step == 2
    for (name, a), b in zip(clean.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name


# --- end to end ------------------------------------------------------------------------------

RESUMABLE = SMALL_DEMO.replace('intermediate = ["demo-jobs"]', 'intermediate = ["demo-jobs", "demo-nli"]') \
    + "\n[hparams.intermediate]\nmax_steps = 300\nsave_every = 10\neval_every = 50\n"


def _headless(recipe, out):
    return subprocess.Popen([sys.executable, "-m", "xstilts_tui", "--recipe", str(recipe),
                             "--output", str(out), "--cache", str(out.parent / f"cache-{out.name}")],
                            cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def _table(out):
    cols = ["arm", "seed", "stage", "task", "language", "split", "metric", "value", "step"]
    return pl.read_parquet(out / "results.parquet").select(cols).sort(cols)


@pytest.mark.slow
def test_kill_9_in_the_middle_of_a_stage_then_rerun_gives_the_clean_table(tmp_path):
    recipe = tmp_path / "resumable.toml"
    recipe.write_text(RESUMABLE, encoding="utf-8")
    clean_out, out = tmp_path / "clean", tmp_path / "killed"
    clean = _headless(recipe, clean_out)
    assert clean.wait(timeout=600) == 0, clean.stdout.read()

    run = _headless(recipe, out)
    deadline = time.monotonic() + 300
    stage_dir = None
    while time.monotonic() < deadline and stage_dir is None:
        for candidate in (tmp_path / "cache-killed").glob("intermediate-*"):
            info = candidate / "state" / "resume.json"
            if info.is_file() and '"step": 10,' not in info.read_text():  # past its first save
                stage_dir = candidate
        time.sleep(0.05)
    assert stage_dir is not None, "the intermediate stage never saved a resume state"
    worker_pid = int(next(line.split()[0] for line in subprocess.run(
        ["pgrep", "-af", "xstilts_tui.compute.worker"], capture_output=True, text=True).stdout.splitlines()
        if str(stage_dir) in line))
    os.kill(run.pid, signal.SIGKILL)  # the whole headless process, no clean-up at all
    run.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # its worker notices and ends too
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(worker_pid, signal.SIGKILL)
        pytest.fail("the worker outlived the killed control process")
    assert not (stage_dir / "DONE").exists()

    again = _headless(recipe, out)
    output = again.communicate(timeout=600)[0]
    assert again.returncode == 0, output
    assert "resuming from the state saved at step" in output
    assert _table(out).equals(_table(clean_out))
    stages = pl.read_parquet(out / "stages.parquet")
    resumed = stages.filter(pl.col("stage").str.starts_with("intermediate"))
    assert 20 <= resumed["resumed_from"][0] < 300
    assert not find_state(stage_dir)  # states are dropped once the stage is done


@pytest.mark.slow
def test_a_done_stage_is_never_trained_again_by_another_recipe(tmp_path, capsys):
    from conftest import run_cli

    first = tmp_path / "first.toml"
    first.write_text(SMALL_DEMO, encoding="utf-8")
    cache = tmp_path / "cache"
    assert run_cli(["--recipe", first, "--output", tmp_path / "a", "--cache", cache], capsys)[0] == 0
    inter = next(cache.glob("intermediate-*"))
    checkpoint_time = (inter / "checkpoint" / "model.safetensors").stat().st_mtime_ns
    log_size = (inter / "worker.log").stat().st_size
    # Another recipe: one arm, the same intermediate task, another output folder.
    second = tmp_path / "second.toml"
    second.write_text(SMALL_DEMO.replace('name = "small-demo"', 'name = "other"').replace(
        '[[arms]]\nname = "baseline"\n\n', ""), encoding="utf-8")
    code, stdout, _ = run_cli(["--recipe", second, "--output", tmp_path / "b", "--cache", cache], capsys)
    assert code == 0
    assert "[intermediate/demo-jobs/torch/seed1] cached" in stdout
    assert "[intermediate/demo-jobs/torch/seed1] started" not in stdout
    assert (inter / "checkpoint" / "model.safetensors").stat().st_mtime_ns == checkpoint_time
    assert (inter / "worker.log").stat().st_size == log_size  # no worker ran for it
    stages = pl.read_parquet(tmp_path / "b" / "stages.parquet")
    assert stages.filter(pl.col("kind") == "intermediate")["status"].to_list() == ["cached"]
