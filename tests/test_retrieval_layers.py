"""Retrieval reads one layer's hidden states (layer 7 of 12 for a 12-layer encoder): the
layers above it are not run, and the sentence vectors are the same, to the bit, as those of
a full forward pass."""

import contextlib
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

TEXTS = ["a short one", "a somewhat longer sentence than the first", "mid length here", "x",
         "the fifth sentence, with a comma", "and a sixth"]


def _model(kind: str, vocab: int):
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(0)
    common = dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=6, num_attention_heads=4,
                  intermediate_size=64)
    if kind == "bert":
        return BertModel(BertConfig(**common)).eval()
    return XLMRobertaModel(XLMRobertaConfig(**common, max_position_embeddings=514, type_vocab_size=1,
                                            pad_token_id=1, bos_token_id=0, eos_token_id=2)).eval()


def _full_pass(model, tokenizer, layer):
    enc = tokenizer(TEXTS, truncation=True, max_length=64, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                       output_hidden_states=True).hidden_states[layer].float()
    mask = enc["attention_mask"].unsqueeze(-1).float()
    return ((hidden * mask).sum(1) / mask.sum(1)).numpy()


@pytest.mark.parametrize("kind", ["bert", "xlmr"])
@pytest.mark.parametrize("layer", [1, 4, 6])
def test_sentence_vectors_run_only_the_layers_they_read(kind, layer, demo_tokenizer):
    from xstilts_tui.compute.kinds.retrieval import sentence_vectors

    model = _model(kind, len(demo_tokenizer))
    ran = []
    for i, block in enumerate(model.encoder.layer):
        block.register_forward_hook(lambda module, args, out, i=i: ran.append(i))
    backend = SimpleNamespace(device=torch.device("cpu"), autocast=contextlib.nullcontext)
    # One batch holding every sentence, in the order sentence_vectors sorts them to.
    vectors = sentence_vectors(model, demo_tokenizer, TEXTS, layer, 64, len(TEXTS), backend)
    assert sorted(set(ran)) == list(range(layer))
    ran.clear()
    np.testing.assert_array_equal(vectors, _full_pass(model, demo_tokenizer, layer))
    assert len(ran) == 6  # the full pass afterwards: the model is left as it was
