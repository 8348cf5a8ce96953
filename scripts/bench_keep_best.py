#!/usr/bin/env python
"""What keeping the best step's weights costs in memory, on a real encoder with frozen word
embeddings (multilingual-e5-small: 96M of its 118M parameters): the kept copy as the torch
engine makes it now (trained parameters and buffers, the previous copy let go first)
against the baseline it replaced (the whole state dict, made while the previous copy is
still held). Each variant keeps three copies in a row, in its own process; prints the
process's peak RSS above the loaded model and the ratio.

    python scripts/bench_keep_best.py --model DIR
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(model_dir: str, variant: str) -> dict:
    import torch
    from transformers import AutoModelForQuestionAnswering

    from xstilts_tui.compute.engines.torch_engine import _cpu_copy
    from xstilts_tui.compute.training_stage import freeze_word_embeddings

    model = AutoModelForQuestionAnswering.from_pretrained(model_dir, use_safetensors=True)
    freeze_word_embeddings(model)
    loaded = _peak_mib()
    best = None
    for _ in range(3):
        with torch.no_grad():  # a training step's change, so that each copy is new
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(1e-3)
        if variant == "baseline":
            best = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            best = None
            best = _cpu_copy(model)
    return {"variant": variant, "kept_mib": sum(t.numel() * t.element_size() for t in best.values()) / 2**20,
            "peak_above_loaded_mib": _peak_mib() - loaded}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.model, args.one)))
        return 0
    results = {}
    for variant in ("baseline", "ours"):
        done = subprocess.run([sys.executable, __file__, "--model", args.model, "--one", variant],
                              capture_output=True, text=True, check=True)
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{'variant':28} {'kept copy':>10} {'peak above the loaded model':>28}")
    names = {"baseline": "whole state dict, two held", "ours": "trained only, one held"}
    for variant, r in results.items():
        print(f"{names[variant]:28} {r['kept_mib']:7.0f} MiB {r['peak_above_loaded_mib']:25.0f} MiB")
    ratio = results["ours"]["peak_above_loaded_mib"] / results["baseline"]["peak_above_loaded_mib"]
    print(f"ours / baseline: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
