"""The CPU dropout path: dropout's law (share dropped, scale, gradient), reproducible from
torch's seed, attention equal to eager attention under the same mask and to torch's sdpa
without dropout, and a model restored exactly after training."""

import math

import pytest
import torch
from torch import nn

from backends.cpu_dropout import (NAME, CPUDropout, attention, cpu_dropout, drop_mask, dropout,
                                  keep_scale, threshold)


def test_the_dropped_share_is_p_and_every_bit_position_is_uniform():
    torch.manual_seed(0)
    n = 4_000_000
    for p in (0.1, 0.5, 0.02):
        mask = drop_mask((n,), p)
        share = mask.double().mean().item()
        assert threshold(p) / 2**15 == pytest.approx(p, abs=2**-16)
        # a binomial share: 5 standard deviations
        assert abs(share - p) < 5 * math.sqrt(p * (1 - p) / n), (p, share)
        # each of the four 16-bit parts of a 64-bit word is a fair source
        parts = mask.view(-1, 4).double().mean(0)
        assert (parts - p).abs().max() < 5 * math.sqrt(p * (1 - p) / (n / 4)), parts


def test_neighbouring_elements_are_dropped_independently():
    torch.manual_seed(1)
    mask = drop_mask((2_000_000,), 0.5).double()
    both = (mask[:-1] * mask[1:]).mean().item()
    assert both == pytest.approx(0.25, abs=5 * math.sqrt(0.25 * 0.75 / 2e6))


def test_seeded_masks_repeat_and_another_seed_differs():
    torch.manual_seed(7)
    a = drop_mask((64, 33), 0.1)
    torch.manual_seed(7)
    b = drop_mask((64, 33), 0.1)
    torch.manual_seed(8)
    c = drop_mask((64, 33), 0.1)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_dropout_keeps_the_expectation_and_its_gradient_is_the_mask_scaled():
    torch.manual_seed(2)
    x = torch.rand(500, 400, dtype=torch.float64) + 0.5
    x.requires_grad_(True)
    y = dropout(x, 0.1)
    kept = y != 0
    scale = keep_scale(0.1)
    torch.testing.assert_close(y[kept], x[kept] * scale)
    assert (y.sum() / (x.sum() * 1.0)).item() == pytest.approx(1.0, abs=0.01)
    grad = torch.randn_like(x)
    y.backward(grad)
    torch.testing.assert_close(x.grad, grad * kept * scale)


def test_module_is_identity_in_evaluation_and_at_p_zero():
    x = torch.randn(8, 5)
    module = CPUDropout(0.3).eval()
    assert module(x) is x
    assert CPUDropout(0.0).train()(x) is x


def _qkv(seed=3, batch=2, heads=4, length=9, dim=8):
    torch.manual_seed(seed)
    return [torch.randn(batch, heads, length, dim, requires_grad=True) for _ in range(3)]


class _Module(nn.Module):
    is_causal = False


def test_attention_without_dropout_is_torchs_sdpa():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    q, k, v = _qkv()
    mask = torch.ones(2, 1, 9, 9, dtype=torch.bool)
    mask[0, :, :, 6:] = False
    module = _Module().train()
    ours, _ = attention(module, q, k, v, mask, scaling=0.3, dropout=0.0)
    theirs, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.3, dropout=0.0)
    assert torch.equal(ours, theirs)
    module.eval()  # evaluation: whatever is asked goes to torch's function as it is
    torch.manual_seed(1)
    ours, _ = attention(module, q, k, v, mask, scaling=0.3, dropout=0.1)
    torch.manual_seed(1)
    theirs, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.3, dropout=0.1)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("boolean", [True, False])
def test_attention_with_dropout_is_eager_attention_under_the_same_mask(boolean):
    q, k, v = _qkv()
    allowed = torch.ones(2, 1, 9, 9, dtype=torch.bool)
    allowed[1, :, :, 4:] = False
    mask = allowed if boolean else torch.zeros(2, 1, 9, 9).masked_fill(~allowed, torch.finfo(torch.float32).min)
    torch.manual_seed(11)
    ours, weights = attention(_Module().train(), q, k, v, mask, scaling=0.25, dropout=0.2)
    assert weights is None and ours.shape == (2, 9, 4, 8)
    torch.manual_seed(11)
    dropped = drop_mask((2, 4, 9, 9), 0.2)
    probs = (torch.matmul(q, k.transpose(2, 3)) * 0.25).masked_fill(~allowed, -1e30).softmax(-1)
    expected = torch.matmul(probs.masked_fill(dropped, 0) * keep_scale(0.2), v).transpose(1, 2)
    torch.testing.assert_close(ours, expected)
    assert not torch.any(ours[1].isnan())
    ours.sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


def _bert(attention_dropout=0.1, hidden_dropout=0.1):
    from transformers import BertConfig, BertForQuestionAnswering

    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, hidden_dropout_prob=hidden_dropout,
                        attention_probs_dropout_prob=attention_dropout, attn_implementation="sdpa")
    torch.manual_seed(0)
    return BertForQuestionAnswering(config)


def _batch():
    torch.manual_seed(5)
    ids = torch.randint(5, 99, (4, 12))
    mask = torch.ones(4, 12, dtype=torch.long)
    mask[1, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask,
            "start_positions": torch.tensor([1, 2, 3, 4]), "end_positions": torch.tensor([2, 3, 5, 6])}


def test_the_model_is_unchanged_in_evaluation_and_restored_after_training(tmp_path):
    model = _bert()
    before = {n: type(m) for n, m in model.named_modules()}
    model.eval()
    with torch.no_grad():
        reference = model(**_batch()).start_logits
    with cpu_dropout(model) as (modules, configs):
        assert modules == 1 + 2 * 3 and configs == 1  # embeddings, then 3 a layer (attention, 2 outputs)
        assert model.config._attn_implementation == NAME
        with torch.no_grad():
            torch.testing.assert_close(model(**_batch()).start_logits, reference, rtol=0, atol=0)
        model.train()
        torch.manual_seed(9)
        loss = model(**_batch()).loss
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is not None for n, p in model.named_parameters() if "pooler" not in n)
    assert model.training  # the train/eval state it had inside is kept
    assert {n: type(m) for n, m in model.named_modules()} == before
    assert model.config._attn_implementation == "sdpa"
    model.save_pretrained(tmp_path)
    assert NAME not in (tmp_path / "config.json").read_text()


def test_training_with_it_is_reproducible_and_differs_from_no_dropout():
    def losses(**kw):
        model = _bert(**kw).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        out = []
        torch.manual_seed(4)
        with cpu_dropout(model):
            for _ in range(5):
                loss = model(**_batch()).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                out.append(loss.item())
        return out

    first, again, none = losses(), losses(), losses(attention_dropout=0.0, hidden_dropout=0.0)
    assert first == again
    assert first != none
    assert first[-1] < first[0]
