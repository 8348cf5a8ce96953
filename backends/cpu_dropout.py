"""Dropout for training on the CPU without torch's slow paths.

On a CPU, torch draws a dropout mask element by element (``bernoulli_``), and
``scaled_dot_product_attention`` with ``dropout_p > 0`` leaves its fused kernel for the
unfused one: measured on a 2-core machine with all-MiniLM-L6-v2 (batch 16 x 192 tokens),
dropout was about 45% of a training step. Here the mask of each element comes from 15
random bits, drawn 64 at a time by ``random_`` on ``int64`` words from torch's default
generator (so ``torch.manual_seed`` and a saved ``torch.get_rng_state`` make it
reproducible, resume included), and attention with dropout is computed as eager
attention: scores, softmax, the mask, the product with the values.

The distribution is dropout's: each element is dropped independently with probability
``p`` rounded to a multiple of 1/32768 (0.1 -> 0.100006), and kept elements are scaled by
1 / (1 - that probability), so the expectation is the input's. What differs from torch's
is the random stream, not the law. In evaluation, and for attention without dropout,
everything goes to torch's own functions unchanged.

``cpu_dropout(model)`` applies it for the length of a ``with`` block and restores the
model afterwards (dropout modules and attention implementation), so a saved checkpoint
carries nothing of it.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

NAME = "xstilts_cpu_dropout"  # the attention implementation registered with transformers
LEVELS = 1 << 15  # a mask element's resolution: 15 random bits


def threshold(p: float) -> int:
    """How many of the 2**15 values of an element's random bits drop it."""
    return min(LEVELS, max(0, round(p * LEVELS)))


def drop_mask(shape, p: float) -> torch.Tensor:
    """A boolean tensor of ``shape``, each element True (dropped) with probability
    ``threshold(p) / 2**15``, independently."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_()  # 63 random bits each
    bits = words.view(torch.int16)[:n].view(shape)  # four 16-bit parts per word
    # the low 15 bits of every part are uniform (the top part's sign bit is always 0)
    return bits.bitwise_and_(LEVELS - 1) < threshold(p)


def keep_scale(p: float) -> float:
    """1 / the probability of keeping an element, as drop_mask draws it."""
    return LEVELS / (LEVELS - threshold(p))


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p):
        drop = drop_mask(x.shape, p)
        ctx.save_for_backward(drop)
        ctx.scale = keep_scale(p)
        return x.masked_fill(drop, 0).mul_(ctx.scale)

    @staticmethod
    def backward(ctx, grad):
        (drop,) = ctx.saved_tensors
        return grad.masked_fill(drop, 0).mul_(ctx.scale), None


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout of ``x`` with the fast mask."""
    if p <= 0:
        return x
    if p >= 1:
        return torch.zeros_like(x)
    return _Dropout.apply(x, p)


class CPUDropout(nn.Dropout):
    """``nn.Dropout`` (same ``p``, same ``inplace`` flag) drawing its mask with ``drop_mask``."""

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        return dropout(x, self.p)


def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' attention interface. With dropout while training, eager attention
    with the fast mask (scaled values instead of scaled probabilities: the same product);
    otherwise torch's fused ``scaled_dot_product_attention`` through transformers' own
    function. Causal, grouped-query and head-masked attention always go to the latter."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if (not dropout or not module.training or getattr(module, "is_causal", False)
            or key.shape[1] != query.shape[1] or kwargs.get("head_mask") is not None):
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      scaling=scaling, dropout=dropout, **kwargs)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query * scaling, key.transpose(2, 3))
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # sdpa's mask: True where attention goes
            scores.masked_fill_(~attention_mask, torch.finfo(scores.dtype).min)
        else:  # an additive mask
            scores.add_(attention_mask)
    weights = scores.softmax(-1)
    weights = weights.masked_fill(drop_mask(weights.shape, dropout), 0)
    out = torch.matmul(weights, value * keep_scale(dropout))
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


@contextlib.contextmanager
def cpu_dropout(model: nn.Module):
    """For the ``with`` block: every ``nn.Dropout`` of ``model`` draws the fast mask and
    attention that uses sdpa goes through ``attention``; both restored afterwards. Yields
    what it changed: (dropout modules replaced, configurations whose attention moved)."""
    _register()
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                fast = CPUDropout(child.p, child.inplace)
                fast.train(child.training)
                setattr(parent, name, fast)
                swapped.append((parent, name, child))
    configs = {id(c): c for c in (getattr(m, "config", None) for m in model.modules())
               if c is not None and getattr(c, "_attn_implementation", None) == "sdpa"}
    for config in configs.values():
        config._attn_implementation = NAME
    try:
        yield len(swapped), len(configs)
    finally:
        for config in configs.values():
            config._attn_implementation = "sdpa"
        for parent, name, original in swapped:
            original.train(getattr(parent, name).training)
            setattr(parent, name, original)
