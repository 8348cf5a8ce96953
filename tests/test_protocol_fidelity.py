"""The paper's protocol where the numbers depend on a detail: what the code does is checked
against what the reference implementations do."""

import contextlib
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")


class _Bf16Encoder:
    """An encoder whose hidden states come out in bf16, as under bf16 autocast."""

    def __init__(self, hidden: torch.Tensor):
        self.hidden = hidden
        self.config = SimpleNamespace(hidden_size=hidden.shape[-1])

    def eval(self):
        return self

    def __call__(self, input_ids, attention_mask, output_hidden_states):
        n = input_ids.shape[0]
        return SimpleNamespace(hidden_states=(None, self.hidden[:n].to(torch.bfloat16)))


class _Tokenizer:
    def __call__(self, texts, truncation, max_length, padding, return_tensors):
        n, length = len(texts), 300
        return {"input_ids": torch.ones(n, length, dtype=torch.long),
                "attention_mask": torch.ones(n, length, dtype=torch.long)}


def test_retrieval_pools_in_fp32_under_bf16_autocast():
    """XTREME pools fp32 hidden states; under bf16 autocast the mean over 300 tokens
    summed in bf16 loses about two digits: sentence vectors are pooled in fp32 from
    whatever dtype the layer returns."""
    from xstilts_tui.compute.kinds.retrieval import sentence_vectors

    generator = torch.Generator().manual_seed(0)
    hidden = 1 + torch.rand(4, 300, 8, generator=generator)
    backend = SimpleNamespace(device=torch.device("cpu"), autocast=contextlib.nullcontext)
    vectors = sentence_vectors(_Bf16Encoder(hidden), _Tokenizer(), ["a", "b", "c", "d"], 1, 512, 4, backend)
    expected = hidden.to(torch.bfloat16).float().mean(1).numpy()  # the layer's values, averaged in fp32
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)
