#!/usr/bin/env python
"""What training the 250k-row word-embedding matrix costs on a real multilingual encoder:
multilingual-e5-small (118M parameters, 96M of them the embedding matrix) fine-tuned for
extractive QA on English XQuAD articles, 16 sequences of 256 tokens an update, through
the product's own pipeline (``xstilts-tui --recipe``, one target stage a run, fresh stage
cache). Three variants: every parameter trained, batches of 16 (the baseline);
``freeze_embeddings``; and frozen embeddings with micro-batches of 8 accumulated twice
(the same update, half the activations). Prints each run's examples per second, the
worker's peak memory and the trainable parameters, and each variant's ratios to the
baseline (same machine, same invocation).

    python scripts/bench_embeddings.py --model DIR --xquad DIR [--steps 30] [--repeats 1]

``--xquad`` is a folder written by scripts/prepare_small_study.py (train.en.json,
selection.en.json, heldout.en.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

RECIPE = """
name = "bench-embeddings"
seeds = [1]
targets = ["xquad"]

[model]
path = "{model}"

[hparams]
lr = 1e-4
batch_size = {batch}
grad_accum = {accum}
max_length = 256
doc_stride = 128
max_steps = {steps}
eval_every = 0
eval_batch_size = 64
save_every = 0
freeze_embeddings = {freeze}

[[arms]]
name = "baseline"

[tasks.xquad]
languages = ["en"]
train_file = "{xquad}/train.en.json"
validation_file = "{xquad}/selection.en.json"
eval_files = "{xquad}/heldout.{{lang}}.json"
max_eval_examples = 32
"""


VARIANTS = {"trained, 16 x 1": (False, 16, 1), "frozen, 16 x 1": (True, 16, 1),
            "frozen, 8 x 2": (True, 8, 2)}
BASELINE = "trained, 16 x 1"


def run(model: Path, xquad: Path, steps: int, variant: str) -> dict:
    freeze, batch, accum = VARIANTS[variant]
    import polars as pl

    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "r.toml"
        recipe.write_text(RECIPE.format(model=model, xquad=xquad, steps=steps, batch=batch, accum=accum,
                                        freeze=str(freeze).lower()), encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "xstilts_tui", "--recipe", str(recipe), "--output",
                               f"{tmp}/out", "--cache", f"{tmp}/cache"], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:])
        row = pl.read_parquet(f"{tmp}/out/stages.parquet").row(0, named=True)
    return {"variant": variant, "examples_per_s": row["examples_per_s"],
            "peak_memory_mib": row["peak_memory_bytes"] / 2**20,
            "trainable_params": row["trainable_params"], "total_params": row["total_params"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--xquad", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeats):  # interleaved, so that drift hits every variant alike
        for variant in VARIANTS:
            runs.append(run(args.model.resolve(), args.xquad.resolve(), args.steps, variant))
            print(json.dumps(runs[-1]), flush=True)

    def median(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["variant"] == variant)

    summary = {variant: {f"{key} ratio to '{BASELINE}'": median(variant, key) / median(BASELINE, key)
                         for key in ("examples_per_s", "peak_memory_mib", "trainable_params")}
               for variant in VARIANTS if variant != BASELINE}
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"runs": runs, "summary": summary}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
