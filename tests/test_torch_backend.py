"""The plain PyTorch backend: seeded and deterministic on CPU, gradient accumulation,
padding to the longest member of a batch, and its schedule."""

import pytest
import torch

from xstilts_tui.compute.kinds.multitask import single_task_job
from xstilts_tui.compute.kinds.qa import QAFeature, build_features, pad_batch
from xstilts_tui.compute.engines.base import total_steps
from xstilts_tui.compute.engines.registry import get_backend, registry
from xstilts_tui.data import demo as demo_data
from xstilts_tui.protocol.hparams import HParams
from xstilts_tui.recipe.schema import BACKENDS


def test_registry_matches_the_control_plane_table():
    assert set(registry()) == set(BACKENDS)  # the control plane's kinds
    with pytest.raises(KeyError, match="unknown backend 'nope'"):
        get_backend("nope")


def test_batches_are_padded_to_their_longest_member():
    features = [QAFeature(0, [0, 5, 6, 2], [None] * 4, 1, 2), QAFeature(1, [0, 7, 2], [None] * 3, 0, 0)]
    batch = pad_batch(features, pad_id=1, with_labels=True)
    assert batch["input_ids"].tolist() == [[0, 5, 6, 2], [0, 7, 2, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["start_positions"].tolist() == [1, 0]


def test_total_steps_from_epochs_or_max_steps():
    hp = HParams(batch_size=4, grad_accum=2, epochs=2.0)
    assert total_steps(100, hp) == 26  # ceil(100 / 8) = 13 per epoch
    hp = HParams(batch_size=4, grad_accum=2, epochs=2.0, max_steps=7)
    assert total_steps(100, hp) == 7


def _model(tokenizer, dropout=0.0):
    from transformers import XLMRobertaConfig, XLMRobertaForQuestionAnswering

    config = XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=64, type_vocab_size=1,
                              pad_token_id=1, hidden_dropout_prob=dropout,
                              attention_probs_dropout_prob=dropout)
    torch.manual_seed(0)
    return XLMRobertaForQuestionAnswering(config)


def _train(tokenizer, features, seed, dropout=0.0, backend=None, **overrides):
    model = _model(tokenizer, dropout)
    hp = HParams(**{**vars(HParams()), "lr": 1e-3, "log_every": 1, **overrides})
    losses = []
    job = single_task_job(model, features, lambda b: pad_batch(b, tokenizer.pad_token_id, True),
                          hp, seed, lambda step, total, loss, lr, rate: losses.append(loss))
    stats = (backend or get_backend("torch")).train(job)
    return model, losses, stats


@pytest.fixture(scope="module")
def features(demo_tokenizer):
    rows = demo_data.generate("demo-qa", "train", "en", 64)
    return build_features(demo_tokenizer, rows, 128, 64, 32)


def test_same_seed_same_model_on_cpu(demo_tokenizer, features):
    a, losses_a, stats = _train(demo_tokenizer, features, seed=3, max_steps=6, batch_size=8, grad_accum=1)
    b, losses_b, _ = _train(demo_tokenizer, features, seed=3, max_steps=6, batch_size=8, grad_accum=1)
    c, losses_c, _ = _train(demo_tokenizer, features, seed=4, max_steps=6, batch_size=8, grad_accum=1)
    assert stats.steps == 6 and stats.examples == 48 and len(losses_a) == 6
    assert losses_a == losses_b
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    assert losses_a != losses_c  # another seed shuffles differently


def test_cpu_dropout_where_asked_reproducible_and_the_model_handed_back(demo_tokenizer, features):
    from xstilts_tui.compute.engines import cpu_dropout

    runs = {}
    for name, flag in (("cpu", True), ("cpu again", True), ("torch", False)):
        backend = get_backend("torch")
        model, losses, _ = _train(demo_tokenizer, features, seed=3, dropout=0.1, backend=backend,
                                  max_steps=4, batch_size=8, grad_accum=1, cpu_dropout=flag)
        runs[name] = losses
        assert backend.dropout == name.split()[0]
        # trained with it, handed back as it came: sdpa, torch's dropout modules
        assert model.config._attn_implementation == "sdpa"
        assert not any(type(m) is cpu_dropout.Dropout for m in model.modules())
    assert runs["cpu"] == runs["cpu again"]
    assert runs["cpu"] != runs["torch"]  # another random stream


def test_a_cpu_trains_with_torchs_own_dropout_unless_asked_and_leaves_the_allocator_alone(
        demo_tokenizer, features):
    """The path a GPU user takes is the default on a CPU too: torch's dropout and attention;
    the block-drawn CPU dropout only where a recipe asks (cpu_dropout = true). No module
    changes the process's malloc settings."""
    import importlib.util

    assert HParams().cpu_dropout is False
    backend = get_backend("torch")
    defaults = {k: v for k, v in vars(HParams()).items() if k != "cpu_dropout"}
    model = _model(demo_tokenizer, 0.1)
    job = single_task_job(model, features, lambda b: pad_batch(b, demo_tokenizer.pad_token_id, True),
                          HParams(**{**defaults, "max_steps": 2, "batch_size": 8, "grad_accum": 1}),
                          3, lambda *a: None)
    backend.train(job)
    assert backend.dropout == "torch"
    assert importlib.util.find_spec("xstilts_tui.compute.engines.host_memory") is None


def test_bf16_on_a_cpu_only_where_asked_and_the_cpu_has_it(demo_tokenizer, features, monkeypatch):
    backend = get_backend("torch")
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
    with pytest.raises(RuntimeError, match="no bf16 support .a CPU needs AVX512-BF16 or AMX"):
        backend._choose_precision("bf16")
    assert backend._choose_precision("auto") == "fp32"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert backend._choose_precision("auto") == "fp32"  # the Trainer's default: fp32 unless asked
    _, losses, _ = _train(demo_tokenizer, features, seed=3, backend=backend, max_steps=2,
                          batch_size=8, grad_accum=1, precision="bf16")
    assert backend.precision == "bf16" and len(losses) == 2
    with backend.autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_gradient_accumulation_matches_a_larger_batch(demo_tokenizer, features):
    # Same data order (same seed), 2 x 4 accumulated vs 1 x 8: the same first update.
    # Features of one length, so padding is the same (QA logits cover padding too), and a
    # large Adam epsilon, so the first update is proportional to the gradient, not its sign.
    from collections import Counter

    length, _ = Counter(len(f.input_ids) for f in features).most_common(1)[0]
    same = [f for f in features if len(f.input_ids) == length][:8]
    assert len(same) == 8
    common = dict(max_steps=1, warmup_ratio=0.0, adam_eps=1.0, weight_decay=0.0)
    a, _, _ = _train(demo_tokenizer, same, seed=5, batch_size=4, grad_accum=2, **common)
    b, _, _ = _train(demo_tokenizer, same, seed=5, batch_size=8, grad_accum=1, **common)
    c = _model(demo_tokenizer)
    moved = 0
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-7, msg=name)
        moved += int(not torch.equal(pa, pc))
    assert moved > 0


def test_training_lowers_the_loss(demo_tokenizer, features):
    _, losses, _ = _train(demo_tokenizer, features, seed=1, max_steps=40, batch_size=16,
                          grad_accum=1, warmup_ratio=0.0)
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_tokenizer_training_gives_the_same_ids_every_time():
    from xstilts_tui.compute.inputs.models import corpus_texts, train_tokenizer

    # The Unigram trainer orders the characters it appends by hash-set order, which
    # differs between trainings, even in one process.
    vocabs = [train_tokenizer(corpus_texts(["demo"]), 2000).get_vocab() for _ in range(3)]
    assert vocabs[0] == vocabs[1] == vocabs[2]


def test_canonical_pieces_reorders_the_appended_characters():
    from xstilts_tui.compute.inputs.models import canonical_pieces

    learned = [("▁Anna", -3.0), ("in", -4.5)]
    run_a = learned + [("Z", -10.0), ("A", -10.0001), ("q", -10.0002)]
    run_b = learned + [("q", -10.0), ("Z", -10.0001), ("A", -10.0002)]
    expected = learned + [("A", -10.0), ("Z", -10.0001), ("q", -10.0002)]
    assert canonical_pieces(run_a) == canonical_pieces(run_b) == expected
