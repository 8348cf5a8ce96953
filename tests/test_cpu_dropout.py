"""The CPU dropout: the right share dropped in every lane, the expectation kept, a pure
function of torch's seed, attention equal to sdpa's when nothing is dropped, and the model
handed back as it came."""

import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering

from xstilts_tui.compute.engines import cpu_dropout


def test_drops_p_of_every_lane_and_keeps_the_expectation():
    torch.manual_seed(0)
    m = cpu_dropout.mask((1000, 1003), 0.1)  # not a multiple of 4: the last draw is cut
    dropped = (m == 0)
    # the four 16-bit lanes of each 64-bit draw are separate elements: each drops p
    flat = dropped.flatten()
    for lane in range(4):
        assert abs(flat[lane::4].float().mean().item() - 0.1) < 0.003, lane
    kept = m[m != 0]
    assert torch.all(kept == kept[0]) and abs(kept[0].item() - 1 / 0.9) < 1e-4
    assert abs(m.mean().item() - 1.0) < 0.005
    # neighbouring elements are not correlated (a lane reused would show here)
    a, b = flat[:-1].float(), flat[1:].float()
    assert abs((a * b).mean().item() - 0.01) < 0.002


@pytest.mark.parametrize("p", [0.5, 0.9])
def test_other_rates(p):
    torch.manual_seed(1)
    m = cpu_dropout.mask((200_000,), p)
    assert abs((m == 0).float().mean().item() - p) < 0.01
    assert abs(m.mean().item() - 1.0) < 0.03


def test_rates_at_the_ends():
    assert torch.equal(cpu_dropout.mask((7, 5), 1 - 1e-7), torch.zeros(7, 5))  # as torch at p = 1
    assert torch.equal(cpu_dropout.mask((7, 5), 1e-7), torch.ones(7, 5))  # quantised to none
    x = torch.randn(4, 3)
    assert torch.equal(cpu_dropout.dropout(x, 1.0), torch.zeros(4, 3))


def test_a_pure_function_of_torchs_seed():
    torch.manual_seed(3)
    first = [cpu_dropout.mask((64, 33), 0.1) for _ in range(2)]
    torch.manual_seed(3)
    again = [cpu_dropout.mask((64, 33), 0.1) for _ in range(2)]
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not torch.equal(first[0], first[1])  # each call draws afresh


def test_dropout_gradient_uses_the_forward_mask():
    torch.manual_seed(0)
    x = torch.randn(50, 40, requires_grad=True)
    y = cpu_dropout.dropout(x, 0.3)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.equal(x.grad != 0, kept)
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.7), atol=1e-3)
    assert cpu_dropout.dropout(x, 0.3, training=False) is x


def _tiny_bert():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    config._attn_implementation = "sdpa"
    return BertForQuestionAnswering(config)


def _padded_batch():
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(5, 120, (3, 20), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    mask[2, 7:] = 0
    return {"input_ids": ids * mask, "attention_mask": mask}


def test_training_attention_equals_sdpa_when_nothing_is_dropped():
    """In train mode with every probability ~0 (quantised to no drop at all), the written-out
    attention and the swapped dropout modules give sdpa's logits, padding included."""
    model = _tiny_bert()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 1e-9
    model.train()
    batch = _padded_batch()
    reference = model(**batch).start_logits
    assert cpu_dropout.enable(model)
    assert model.config._attn_implementation == cpu_dropout.ATTENTION
    assert any(type(m) is cpu_dropout.Dropout for m in model.modules())
    written_out = model(**batch).start_logits
    assert torch.allclose(reference, written_out, atol=1e-5)
    kept = batch["attention_mask"].bool()
    assert torch.allclose(reference[kept], written_out[kept], atol=1e-5)


def test_enable_then_disable_hands_the_model_back():
    model = _tiny_bert()
    before = {name: type(m) for name, m in model.named_modules()}
    cpu_dropout.enable(model)
    model.eval()
    batch = _padded_batch()
    evaluated = model(**batch).start_logits  # evaluation: sdpa itself, nothing dropped
    cpu_dropout.disable(model)
    assert {name: type(m) for name, m in model.named_modules()} == before
    assert model.config._attn_implementation == "sdpa"
    assert torch.equal(evaluated, model(**batch).start_logits)


def test_training_with_it_drops_and_is_reproducible():
    model = _tiny_bert()
    cpu_dropout.enable(model)
    model.train()
    batch = _padded_batch()
    torch.manual_seed(7)
    a = model(**batch).start_logits
    torch.manual_seed(7)
    b = model(**batch).start_logits
    c = model(**batch).start_logits
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_training_attention_gradients_equal_sdpas_with_padding():
    """Nothing dropped: the written-out attention's gradients are sdpa's, padded keys
    included (they get none through either)."""
    batch = _padded_batch()
    grads = []
    for ours in (False, True):
        model = _tiny_bert()
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 1e-9
        if ours:
            cpu_dropout.enable(model)
        model.train()
        out = model(**batch, start_positions=torch.tensor([1, 2, 3]), end_positions=torch.tensor([4, 5, 6]))
        out.loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, reference in grads[0].items():
        assert torch.allclose(reference, grads[1][name], atol=1e-6), name


def test_attention_drops_the_probabilities_its_mask_says():
    """With dropout, the attention is softmax(q k^T / sqrt(d) + padding) times this module's
    mask (the same draw from torch's seed), times v; padded keys get no weight."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 4) for _ in range(3))
    padding = torch.ones(2, 1, 6, 6, dtype=torch.bool)
    padding[1, ..., 4:] = False

    class Module:
        is_causal = False

    torch.manual_seed(11)
    out, _ = cpu_dropout.cpu_sdpa(Module(), q, k, v, padding, dropout=0.3, scaling=0.5)
    torch.manual_seed(11)
    drop = cpu_dropout.mask((2, 3, 6, 6), 0.3)
    probs = torch.softmax((q @ k.transpose(2, 3) * 0.5).masked_fill(~padding, float("-inf")), -1)
    expected = ((probs * drop) @ v).transpose(1, 2)
    assert (drop == 0).any() and torch.allclose(out, expected, atol=1e-6)
