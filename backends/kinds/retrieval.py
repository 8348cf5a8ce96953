"""Sentence vectors for retrieval (XTREME's protocol): the hidden states of one layer,
mean-pooled over the non-padding tokens. The default layer sits at the same fraction of
depth as layer 14 of XLM-R Large's 24 (``retrieval_layer`` 0); evaluation only, no head."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from xstilts_tui.protocol.hparams import HParams


def default_layer(num_layers: int) -> int:
    """Layer 14 of 24 (hidden_states[14]: the output of the 14th layer), scaled to depth."""
    return max(1, min(num_layers, round(14 * num_layers / 24)))


class _LayerRead(Exception):
    """Raised by the hook on the layer retrieval reads: the layers above it are not run."""

    def __init__(self, hidden):
        super().__init__()
        self.hidden = hidden


@contextlib.contextmanager
def _stop_after(model, layer: int):
    """A function of a batch giving ``hidden_states[layer]``. Where the encoder's blocks
    are a list (BERT, XLM-R) and the layer is not the last, the forward pass stops at the
    output of block ``layer`` - the same tensor, without running the blocks above it (5
    of 12 for multilingual-e5-small's layer 7). The last layer, or another layout: a full
    pass with every hidden state."""
    import torch

    blocks = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(blocks, torch.nn.ModuleList) or not 1 <= layer < len(blocks):
        yield lambda enc: model(**enc, output_hidden_states=True).hidden_states[layer]
        return

    def hook(module, args, output):
        raise _LayerRead(output[0] if isinstance(output, tuple) else output)

    def read(enc):
        try:
            model(**enc)
        except _LayerRead as done:
            return done.hidden
        raise RuntimeError(f"the encoder never ran block {layer} of {len(blocks)}")

    handle = blocks[layer - 1].register_forward_hook(hook)
    try:
        yield read
    finally:
        handle.remove()


def sentence_vectors(model, tokenizer, texts: list[str], layer: int, max_length: int,
                     batch_size: int, backend) -> np.ndarray:
    """One vector a sentence: the mean over its tokens (not padding) of ``layer``'s
    hidden states, in fp32 (under bf16 autocast too), in batches of similar length."""
    import torch

    from ..engines.training import stop_if_asked_during_evaluation

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    model.eval()
    with torch.inference_mode(), _stop_after(model, layer) as read:
        for start in range(0, len(order), batch_size):
            stop_if_asked_during_evaluation()
            chunk = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in chunk], truncation=True, max_length=max_length,
                            padding=True, return_tensors="pt")
            enc = {k: v.to(backend.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            with backend.autocast():
                hidden = read(enc)
            hidden = hidden.float()  # pooled in fp32, as XTREME does, whatever autocast returned
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[chunk] = pooled.cpu().numpy()
    return out


def evaluate_retrieval(model, tokenizer, backend, task: str, data: dict[str, Any],
                       hp: HParams) -> dict[str, float]:
    """Tatoeba accuracy or BUCC F1 (with the threshold chosen on the sample split)."""
    from xstilts_tui.scoring.retrieval import best_threshold, bucc_candidates, f1_of, mine, tatoeba_accuracy

    layer = hp.retrieval_layer or default_layer(model.config.num_hidden_layers)

    from .base import eval_batch_size

    def vectors(texts: list[str]) -> np.ndarray:
        return sentence_vectors(model, tokenizer, texts, layer, hp.max_length,
                                eval_batch_size(hp, backend.device), backend)

    if task == "tatoeba":
        return {"accuracy": tatoeba_accuracy(vectors(data["source"]), vectors(data["english"]))}

    def candidates(split: dict[str, Any]) -> list[tuple[str, str, float]]:
        return bucc_candidates(split["source"], split["source_ids"], split["english"],
                               split["english_ids"], vectors, k=4)

    threshold, sample_f1 = best_threshold(candidates(data["sample"]), data["sample"]["gold"])
    precision, recall, f1 = f1_of(mine(candidates(data["test"]), threshold), data["test"]["gold"])
    return {"f1": f1, "precision": precision, "recall": recall, "threshold": threshold,
            "sample_f1": sample_f1}
