#!/usr/bin/env python
"""QA training throughput: our torch backend against transformers' Trainer.

Both train the same tiny XLM-R model (same initial weights) on the same demo-qa
features with the same batch size, accumulation, AdamW settings, linear schedule and
step count, in this one process, alternating runs. Prints examples (features) per
second for each, and the ratio ours / Trainer (higher is better for ours).

    python scripts/bench_train.py [--steps 60] [--batch-size 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--examples", type=int, default=1500)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    import transformers
    from transformers import (PrinterCallback, Trainer, TrainingArguments, XLMRobertaConfig,
                              XLMRobertaForQuestionAnswering)

    from xstilts_tui.compute.inputs.models import corpus_texts, train_tokenizer
    from xstilts_tui.compute.kinds.multitask import single_task_job
    from xstilts_tui.compute.kinds.qa import build_features, pad_batch
    from xstilts_tui.compute.engines.torch_engine import TorchBackend
    from xstilts_tui.data import demo as demo_data
    from xstilts_tui.protocol.hparams import HParams

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    tokenizer = train_tokenizer(corpus_texts(["demo"]), 2000)
    rows = demo_data.generate("demo-qa", "train", "en", args.examples)
    features = build_features(tokenizer, rows, 128, 64, 32)
    config = XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=args.hidden,
                              num_hidden_layers=args.layers, num_attention_heads=4,
                              intermediate_size=4 * args.hidden, type_vocab_size=1,
                              pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    initial = XLMRobertaForQuestionAnswering(config).state_dict()
    hp = HParams(**{**vars(HParams()), "lr": 1e-3, "batch_size": args.batch_size,
          "grad_accum": args.grad_accum, "max_steps": args.steps, "log_every": args.steps,
          "warmup_ratio": 0.1})

    def fresh_model():
        model = XLMRobertaForQuestionAnswering(config)
        model.load_state_dict(initial)
        return model

    def collate(batch):
        return pad_batch(batch, tokenizer.pad_token_id, True)

    # Both timed the same way: the whole training call, set-up of optimiser, schedule and
    # data loader included, on a fresh copy of the same initial model.
    def ours() -> float:
        model = fresh_model()
        started = time.perf_counter()
        stats = TorchBackend().train(single_task_job(model, features, collate, hp, seed=1))
        return stats.examples / (time.perf_counter() - started)

    def trainer() -> float:
        with tempfile.TemporaryDirectory() as out:
            targs = TrainingArguments(
                output_dir=out, per_device_train_batch_size=args.batch_size,
                gradient_accumulation_steps=args.grad_accum, max_steps=args.steps,
                learning_rate=hp["lr"], weight_decay=hp["weight_decay"], adam_epsilon=hp["adam_eps"],
                warmup_steps=int(hp["warmup_ratio"] * args.steps), max_grad_norm=hp["max_grad_norm"],
                lr_scheduler_type="linear", optim="adamw_torch", logging_strategy="no",
                save_strategy="no", report_to="none", seed=1, dataloader_num_workers=0,
                remove_unused_columns=False, disable_tqdm=True, use_cpu=not torch.cuda.is_available())
            run = Trainer(model=fresh_model(), args=targs, train_dataset=features, data_collator=collate)
            run.remove_callback(PrinterCallback)
            started = time.perf_counter()
            run.train()
            wall = time.perf_counter() - started
        return args.steps * args.batch_size * args.grad_accum / wall

    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device {device}; torch {torch.__version__}, transformers {transformers.__version__}; "
          f"{len(features)} features, batch {args.batch_size} x accum {args.grad_accum}, "
          f"{args.steps} steps, hidden {args.hidden}, layers {args.layers}")
    ours(), trainer()  # warm-up, not counted
    rates = {"ours (torch backend)": [], "transformers Trainer": []}
    for _ in range(args.repeats):
        rates["ours (torch backend)"].append(ours())
        rates["transformers Trainer"].append(trainer())
    print(f"{'':24} {'examples/s (median)':>20} {'runs':>30}")
    for name, values in rates.items():
        runs = " ".join(f"{v:.1f}" for v in values)
        print(f"{name:24} {statistics.median(values):>20.1f} {runs:>30}")
    ratio = statistics.median(rates["ours (torch backend)"]) / statistics.median(rates["transformers Trainer"])
    print(f"ratio ours / Trainer: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
