"""SIGTERM (a cancel, a cluster's time limit) while a stage evaluates: the worker stops at
the next batch, not when the 12 languages of a test set or the 36 of Tatoeba are done -
the control process kills a worker that has not stopped 60 seconds after asking."""

import contextlib
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture
def stop():
    from xstilts_tui.compute.engines.training import STOP

    STOP.clear()
    yield STOP
    STOP.clear()


def _backend():
    return SimpleNamespace(device=torch.device("cpu"), autocast=contextlib.nullcontext)


def _model(vocab: int):
    from transformers import XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(0)
    return XLMRobertaModel(XLMRobertaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                                            num_attention_heads=4, intermediate_size=64,
                                            max_position_embeddings=514, type_vocab_size=1,
                                            pad_token_id=1, bos_token_id=0, eos_token_id=2)).eval()


def test_a_stop_asked_during_an_evaluation_ends_it_at_the_next_batch(stop, demo_tokenizer):
    from xstilts_tui.compute.engines.training import StageStopped
    from xstilts_tui.compute.kinds.base import run_model

    model = _model(len(demo_tokenizer))
    features = [demo_tokenizer(f"sentence number {i} of the test set")["input_ids"] for i in range(8)]
    batches = []

    def outputs(out):
        batches.append(1)
        stop.set()  # SIGTERM arrives while the first batch runs
        return out.last_hidden_state[:, 0].numpy()

    collate = lambda rows: {"input_ids": torch.tensor([r + [1] * (16 - len(r)) for r in rows])}  # noqa: E731
    with pytest.raises(StageStopped, match="during evaluation"):
        run_model(model, _backend(), features, collate, 2, len, outputs)
    assert len(batches) == 1


def test_a_stop_asked_during_retrieval_ends_it_at_the_next_batch(stop, demo_tokenizer):
    from xstilts_tui.compute.engines.training import StageStopped
    from xstilts_tui.compute.kinds.retrieval import sentence_vectors

    model = _model(len(demo_tokenizer))
    batches = []

    def sigterm(*args):  # SIGTERM arrives while the first batch runs
        batches.append(1)
        stop.set()

    model.encoder.layer[0].register_forward_hook(sigterm)
    texts = [f"sentence {i}" for i in range(10)]
    with pytest.raises(StageStopped, match="during evaluation"):
        sentence_vectors(model, demo_tokenizer, texts, 1, 32, 2, _backend())
    assert len(batches) == 1


def test_without_a_stop_both_run_to_the_end(stop, demo_tokenizer):
    from xstilts_tui.compute.kinds.retrieval import sentence_vectors

    vectors = sentence_vectors(_model(len(demo_tokenizer)), demo_tokenizer,
                               [f"sentence {i}" for i in range(10)], 1, 32, 2, _backend())
    assert vectors.shape == (10, 32) and not stop.is_set()
