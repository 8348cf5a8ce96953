#!/usr/bin/env python
"""Training throughput and memory of each backend on the same model and data.

The backends - torch (the baseline), DeepSpeed ZeRO-2, ZeRO-3, ZeRO-3 with optimizer and
parameter offload, and LoRA (PEFT) - each train the same XLM-R model (same initial
weights) on the same extractive-QA features with the same batch size and step count.
Each runs in its own child process, so its peak memory is its own; the parent prints one
table: examples/s, ratio to the torch backend, peak memory (accelerator memory on a GPU,
resident set size on the CPU) and trainable parameters. On a GPU it also prints model FLOP
utilisation against the card's bf16 dense peak.

    python scripts/bench_backends.py                       # tiny model, CPU-sized
    python scripts/bench_backends.py --model xlmr-large --length 384 --precision bf16 \
        --batch-size 8 --steps 30                           # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BACKENDS = {
    "torch": ("torch", {}),
    "zero2": ("deepspeed", {"zero_stage": 2}),
    "zero3": ("deepspeed", {"zero_stage": 3}),
    "zero3-offload": ("deepspeed", {"zero_stage": 3, "offload_optimizer": True, "offload_params": True}),
    "lora": ("peft", {}),
}
# XLM-R Large's configuration (random weights: the hub is not needed to time it).
XLMR_LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096, vocab_size=250002, max_position_embeddings=514)
# bf16 dense peak FLOP/s by card name.
PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}


def _features(args, vocab_size: int):
    """Random-token QA features of one length (tiny model: real demo-qa features)."""
    import torch

    from xstilts_tui.compute.kinds.qa import QAFeature

    if args.model == "tiny":
        from xstilts_tui.compute.inputs.models import corpus_texts, train_tokenizer
        from xstilts_tui.compute.kinds.qa import build_features
        from xstilts_tui.data import demo as demo_data

        tokenizer = train_tokenizer(corpus_texts(["demo"]), 2000)
        rows = demo_data.generate("demo-qa", "train", "en", args.examples)
        return build_features(tokenizer, rows, args.length, args.length // 2, 32), len(tokenizer)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab_size, (args.examples, args.length), generator=generator).tolist()
    return [QAFeature(i, [0, *row[2:], 2], [None] * args.length, 5, 9) for i, row in enumerate(ids)], vocab_size


def run_one(args) -> dict:
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForQuestionAnswering

    from xstilts_tui.compute.engines import distributed
    from xstilts_tui.compute.kinds.multitask import single_task_job
    from xstilts_tui.compute.kinds.qa import pad_batch
    from xstilts_tui.compute.engines.registry import get_backend
    from xstilts_tui.protocol.backend_options import defaults
    from xstilts_tui.protocol.hparams import HParams

    kind, options = BACKENDS[args.one]
    distributed.ensure_rendezvous_env()
    size = XLMR_LARGE if args.model == "xlmr-large" else dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
        max_position_embeddings=514)
    features, vocab = _features(args, size.get("vocab_size", 0))
    config = XLMRobertaConfig(**{**size, "vocab_size": vocab}, type_vocab_size=1, pad_token_id=1)
    torch.manual_seed(0)
    model = XLMRobertaForQuestionAnswering(config)
    hp = HParams(**{**vars(HParams()), "lr": 1e-4, "batch_size": args.batch_size, "grad_accum": 1,
          "max_steps": args.steps, "log_every": args.steps, "precision": args.precision,
          "eval_every": 0, "save_every": 0})
    backend = get_backend(kind, {**defaults(kind), **options})
    job = single_task_job(model, features, lambda b: pad_batch(b, 1, True), hp, seed=1)
    if backend.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    stats = backend.train(job)
    if backend.device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - started
    on_gpu = backend.device.type == "cuda"
    return {
        "backend": args.one, "examples_per_s": stats.examples / wall,
        "tokens_per_s": stats.tokens / wall,
        "peak_bytes": torch.cuda.max_memory_allocated() if on_gpu
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "memory_kind": "GPU allocated" if on_gpu else "CPU peak RSS",
        "trainable": stats.trainable_params or sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total": sum(p.numel() for p in model.parameters()),
        "layers": config.num_hidden_layers, "hidden": config.hidden_size, "length": args.length,
        "precision": backend.precision,
        "device": torch.cuda.get_device_name() if on_gpu else f"cpu ({torch.get_num_threads()} threads)",
    }


def model_flops_per_token(r: dict) -> float:
    """Training FLOPs a token: 6 x the non-embedding parameters, plus attention scores."""
    h, layers, s = r["hidden"], r["layers"], r["length"]
    dense = 12 * layers * h * h + 2 * h * h  # attention, FFN (4h) per layer
    return 6 * dense + 12 * layers * h * s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("tiny", "xlmr-large"), default="tiny")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.one:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        print("RESULT " + json.dumps(run_one(args)))
        return 0
    results = []
    for name in args.backends.split(","):
        cmd = [sys.executable, __file__, "--one", name, "--model", args.model, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--length", str(args.length),
               "--examples", str(args.examples), "--precision", args.precision]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"{name}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(line[len("RESULT "):]))
    if not results:
        return 1
    base = next((r for r in results if r["backend"] == "torch"), None)
    first = results[0]
    print(f"device {first['device']}; model {args.model} ({first['layers']} layers, hidden "
          f"{first['hidden']}, {first['total']:,} parameters); length {args.length}, batch "
          f"{args.batch_size}, {args.steps} steps, precision {first['precision']}")
    peak = next((v for k, v in PEAKS.items() if k in first["device"]), None)
    header = f"{'backend':15} {'examples/s':>11} {'vs torch':>9} {first['memory_kind']:>15} {'trainable':>13}"
    print(header + ("  MFU" if peak else ""))
    for r in results:
        ratio = r["examples_per_s"] / base["examples_per_s"] if base else float("nan")
        line = (f"{r['backend']:15} {r['examples_per_s']:11.1f} {ratio:9.2f} "
                f"{r['peak_bytes'] / 2**20:12.0f} MiB {r['trainable']:13,}")
        if peak:
            line += f"  {r['tokens_per_s'] * model_flops_per_token(r) / peak:.1%}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
