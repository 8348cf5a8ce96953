#!/usr/bin/env python
"""Sentence vectors for retrieval on a real encoder: the forward pass that stops at the
layer retrieval reads (``xstilts_tui.compute.kinds.retrieval.sentence_vectors``) against a
full pass with every hidden state (the baseline, the same batching), on one language pair
of LASER's Tatoeba files (both sides, as a Tatoeba stage encodes them). Runs alternate,
both variants in this one process; prints seconds for each run, the median ratio, and
whether the vectors are equal to the bit.

    python scripts/bench_sentence_vectors.py --model DIR --tatoeba DIR [--lang deu] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def full_pass(model, tokenizer, texts, layer, max_length, batch_size):
    """The baseline: sentence_vectors' batching, every layer run, hidden_states[layer] read."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in chunk], truncation=True, max_length=max_length,
                            padding=True, return_tensors="pt")
            enc = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            hidden = model(**enc, output_hidden_states=True).hidden_states[layer].float()
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out[chunk] = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--tatoeba", required=True, help="LASER's Tatoeba folder")
    parser.add_argument("--lang", default="deu", help="LASER's three-letter code")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    import torch
    from transformers import AutoModel, AutoTokenizer

    from xstilts_tui.compute.kinds.retrieval import default_layer, sentence_vectors

    folder = Path(args.tatoeba)
    texts = []
    for side in (args.lang, "eng"):
        path = folder / f"tatoeba.{args.lang}-eng.{side}"
        texts += [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()]
    model = AutoModel.from_pretrained(args.model, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    layers = model.config.num_hidden_layers
    layer = default_layer(layers)
    backend = SimpleNamespace(device=torch.device("cpu"), autocast=contextlib.nullcontext)
    print(f"{args.model}: layer {layer} of {layers}; {len(texts)} sentences ({args.lang} and eng); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    times = {"full pass (baseline)": [], "stop at the layer": []}
    same = True
    for _ in range(args.repeats):
        started = time.perf_counter()
        base = full_pass(model, tokenizer, texts, layer, 512, args.batch)
        times["full pass (baseline)"].append(time.perf_counter() - started)
        started = time.perf_counter()
        ours = sentence_vectors(model, tokenizer, texts, layer, 512, args.batch, backend)
        times["stop at the layer"].append(time.perf_counter() - started)
        same = same and np.array_equal(base, ours)
    for name, runs in times.items():
        print(f"{name:22} " + "  ".join(f"{t:6.1f} s" for t in runs))
    ratios = [b / o for b, o in zip(times["full pass (baseline)"], times["stop at the layer"])]
    print(f"speed-up (baseline / ours), per pair: {', '.join(f'{r:.2f}' for r in ratios)}; "
          f"median {statistics.median(ratios):.2f}; vectors equal to the bit: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
