"""Dropout for training on a CPU, without torch's per-element mask draws.

On a CPU, ``torch.nn.functional.dropout`` draws its mask one element at a time from the
Mersenne Twister: in attention that is batch x heads x length x length draws a step, and
dropout there also moves attention off sdpa's fused kernel (what it costs, measured:
``docs/benchmarks.md``). Used only where a recipe asks (``cpu_dropout = true``); by default
every device runs torch's own dropout and attention. Here the random bits come from
numpy's SFC64 generator (64 bits a draw, four 16-bit lanes an element each), seeded by one
draw from torch's default generator, so a run is still a pure function of torch's seed and
resumes where torch's state was saved. An element is dropped when its 16 bits fall under
round(p * 65536); the kept ones are scaled by 1 / (1 - that quantised p), so every
output's expectation equals its input.

``enable(model)`` swaps the model's ``nn.Dropout`` modules for ``Dropout`` (a subclass, so
code reading ``.p`` still works) and points its attention at ``cpu_sdpa``: sdpa as before
when there is nothing to drop (evaluation), otherwise the same arithmetic written out with
this dropout on the probabilities. ``disable(model)`` undoes both."""

from __future__ import annotations

import math

import numpy as np
import torch

ATTENTION = "xstilts_cpu_sdpa"
_LANES = 65536


def keep(shape: torch.Size | tuple[int, ...], p: float) -> tuple[torch.Tensor, float]:
    """Which elements of a tensor of ``shape`` dropout keeps (a bool tensor; each dropped
    with probability p, quantised to 1/65536), and the scale the kept ones take, 1 / (1 -
    that p). One draw from torch's default generator seeds the bits."""
    n = math.prod(shape)
    seed = int(torch.randint(0, 2 ** 62, (1,)))
    dropped = round(p * _LANES)
    if dropped >= _LANES:  # p within 1/131072 of 1: everything dropped, as torch at p = 1
        return torch.zeros(shape, dtype=torch.bool), 0.0
    bits = np.random.SFC64(seed).random_raw((n + 3) // 4).view(np.int16)[:n]
    # 16-bit lanes read as signed numbers (torch compares int16, not uint16): a lane is
    # dropped when it is among the lowest `dropped` of the 65536 values
    kept = torch.from_numpy(bits) >= dropped - _LANES // 2
    return kept.view(shape), _LANES / (_LANES - dropped)


def mask(shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A tensor of ``shape``: 0 where an element is dropped, 1 / (1 - p) where it is kept
    (``keep``). Kept as a float, as torch's own CPU dropout keeps its mask: multiplying by
    a bool tensor is several times slower on a CPU."""
    kept, scale = keep(shape, p)
    return kept.to(dtype).mul_(scale)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return torch.nn.functional.dropout(x, p, training)
    return x * mask(x.shape, p, x.dtype)


class Dropout(torch.nn.Dropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)


def cpu_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0,
             scaling: float | None = None, is_causal: bool | None = None, **kwargs):
    """transformers' sdpa attention, with this module's dropout on the probabilities when
    training on a CPU. Query, key and value are (batch, heads, length, head size); the
    result is (batch, length, heads, head size), as sdpa's."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plain = (dropout == 0.0 or query.device.type != "cpu" or kwargs.get("position_bias") is not None
             or getattr(module, "num_key_value_groups", 1) > 1 or kwargs.get("softcap") is not None)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", False)
    if plain or (causal and query.shape[2] > 1):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    # the scale on the queries: head size elements a row instead of length
    scores = torch.matmul(query * scaling, key.transpose(2, 3))
    # In place on the product (its backward does not need it), and padding added rather
    # than filled in: an addition's backward is the identity, so backward makes no pass over
    # these (batch x heads x length x length) scores for it; softmax's own backward already
    # gives the padded keys, whose probabilities are exactly 0, no gradient.
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            attention_mask = torch.zeros(attention_mask.shape, dtype=scores.dtype).masked_fill_(
                ~attention_mask, torch.finfo(scores.dtype).min)
        scores.add_(attention_mask)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    kept, scale = keep(probs.shape, dropout)
    # the keep rate's scale on the values (length x head size) rather than the probabilities
    out = torch.matmul(probs * kept.to(probs.dtype), value * scale)
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

    if ATTENTION not in ALL_MASK_ATTENTION_FUNCTIONS:
        AttentionInterface.register(ATTENTION, cpu_sdpa)
        AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def _configs(model) -> list:
    seen, configs = set(), []
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and id(config) not in seen and hasattr(config, "_attn_implementation"):
            seen.add(id(config))
            configs.append(config)
    return configs


def _swap(model, old: type, new: type) -> int:
    swapped = 0
    for module in model.modules():
        for name, child in module.named_children():
            if type(child) is old:
                replacement = new(child.p, child.inplace)
                replacement.train(child.training)
                setattr(module, name, replacement)
                swapped += 1
    return swapped


def enable(model) -> bool:
    """Use this dropout in ``model``: its nn.Dropout modules, and its attention where that is
    sdpa. True when anything changed."""
    _register()
    swapped = _swap(model, torch.nn.Dropout, Dropout)
    attention = 0
    for config in _configs(model):
        if config._attn_implementation == "sdpa":
            config._attn_implementation = ATTENTION
            attention += 1
    return bool(swapped or attention)


def disable(model) -> None:
    _swap(model, Dropout, torch.nn.Dropout)
    for config in _configs(model):
        if config._attn_implementation == ATTENTION:
            config._attn_implementation = "sdpa"
