"""The worker entry point: ``python -m backends.worker STAGE_JSON`` runs one stage.

It reads the stage spec the control plane wrote, trains and evaluates, writes the
checkpoint and, last, a ``DONE`` marker, all under the stage's folder. Its only channel
back is the stage's event file (one JSON object a line, rank 0 only); its own output goes
to the log the control plane keeps.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from xstilts_tui.events import encode, make_event
from xstilts_tui.metrics import score_qa
from xstilts_tui.squad_format import DataFileError
from xstilts_tui.tasks import TASKS


class Events:
    """Appends events to the stage's event file; silent on every rank but 0."""

    def __init__(self, path: Path, stage: str):
        self.stage = stage
        self.rank = int(os.environ.get("RANK", "0"))
        self.handle = open(path, "a", encoding="utf-8") if self.rank == 0 else None

    def emit(self, kind: str, **fields: Any) -> None:
        if self.handle is None:
            return
        self.handle.write(encode(make_event(kind, stage=self.stage, **fields)))
        self.handle.flush()


def _quiet_libraries() -> None:
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _peak_memory(device) -> tuple[int, str]:
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "cpu_rss"


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_checkpoint(stage_dir: Path, write) -> Path:
    """Let ``write(folder)`` fill a temporary folder, then rename it to ``checkpoint``:
    a stopped stage never leaves a half-written checkpoint under the final name."""
    tmp = stage_dir / "checkpoint.tmp"
    if tmp.exists():  # left by a stopped attempt
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write(tmp)
    final = stage_dir / "checkpoint"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def evaluate_qa(model, tokenizer, backend, rows: list[dict], hp: dict[str, Any],
                metric: str, lang: str) -> dict[str, float]:
    """F1 and EM of ``model`` on ``rows``, with the task's published metric."""
    import torch

    from .qa import best_spans, build_features, pad_batch

    features = build_features(tokenizer, rows, hp["max_length"], hp["doc_stride"],
                              hp["max_query_length"])
    order = sorted(range(len(features)), key=lambda i: len(features[i].input_ids))
    starts: list[Any] = [None] * len(features)
    ends: list[Any] = [None] * len(features)
    model.eval()
    with torch.inference_mode():
        for b in range(0, len(order), hp["eval_batch_size"]):
            chunk = order[b: b + hp["eval_batch_size"]]
            batch = pad_batch([features[i] for i in chunk], tokenizer.pad_token_id, False)
            batch = {k: v.to(backend.device) for k, v in batch.items()}
            with backend.autocast():
                out = model(**batch)
            s = out.start_logits.float().cpu().numpy()
            e = out.end_logits.float().cpu().numpy()
            for j, i in enumerate(chunk):
                n = len(features[i].input_ids)
                starts[i], ends[i] = s[j, :n], e[j, :n]
    predictions = best_spans(rows, features, starts, ends, hp["n_best"], hp["max_answer_length"])
    gold = {r["id"]: r["answers"]["text"] for r in rows}
    return score_qa(gold, predictions, metric, lang if metric == "mlqa" else None)


def run_base(spec: dict[str, Any], stage_dir: Path, events: Events) -> dict[str, Any]:
    from .models import build_base_model

    info: dict[str, int] = {}
    checkpoint = write_checkpoint(
        stage_dir, lambda folder: info.update(build_base_model(spec["model"], spec["corpus"], folder)))
    events.emit("log", message=f"built the base model: vocabulary {info['vocab_size']}, "
                               f"{info['total_params']:,} parameters")
    return {"total_params": info["total_params"], "checkpoint_bytes": _dir_bytes(checkpoint)}


def run_qa_stage(spec: dict[str, Any], stage_dir: Path, events: Events) -> dict[str, Any]:
    """Intermediate or target training on extractive QA, then its evaluation."""
    import torch
    from transformers import AutoModelForQuestionAnswering

    from .data import load_rows
    from .models import load_for_task, load_tokenizer, resolve_source
    from .qa import build_features, pad_batch
    from .registry import get_backend, total_steps

    hp = spec["hparams"]
    seed = spec["seed"]
    task = spec["tasks"][0] if spec["kind"] == "intermediate" else spec["task"]
    if TASKS[task["name"]].kind != "extractive_qa":
        raise RuntimeError(f"task kind {TASKS[task['name']].kind} has no trainer yet")
    source, kwargs = resolve_source(spec["model"], spec["inputs"])
    backend = get_backend(spec["backend"])
    tokenizer = load_tokenizer(source, kwargs)
    _seed_everything(seed)
    model, report = load_for_task(AutoModelForQuestionAnswering, source, kwargs)
    events.emit("log", message=f"loaded encoder from {source}; fresh head {', '.join(report['head_modules'])}; "
                               f"dropped {len(report['unexpected_keys'])} checkpoint key(s) outside the encoder")
    model.to(backend.device)

    train_rows = load_rows(task, "train", "en")
    features = build_features(tokenizer, train_rows, hp["max_length"], hp["doc_stride"],
                              hp["max_query_length"])
    steps = total_steps(len(features), hp)
    events.emit("stage_started", total_steps=steps, train_examples=len(train_rows),
                train_features=len(features))
    metric = TASKS[task["name"]].metric
    split = "test" if spec["kind"] == "target" else "validation"

    def score(lang: str, rows: list[dict], step: int) -> None:
        scores = evaluate_qa(model, tokenizer, backend, rows, hp, metric, lang)
        for name in ("f1", "exact_match"):
            events.emit("score", task=task["name"], language=lang, split=split, metric=name,
                        value=scores[name], step=step)

    if spec["kind"] == "target":
        languages = task["settings"]["languages"]
        eval_sets = {lang: load_rows(task, "test", lang) for lang in languages}
        if hp.get("eval_before_training") and "en" in eval_sets:
            score("en", eval_sets["en"], 0)
    else:
        eval_sets = {"en": load_rows(task, "validation", "en")}

    def progress(step, total, loss, lr, rate):
        events.emit("progress", step=step, total_steps=total, loss=loss, lr=lr,
                    examples_per_s=rate)

    collate = lambda batch: pad_batch(batch, tokenizer.pad_token_id, True)  # noqa: E731
    if backend.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(backend.device)
    stats = backend.train(model, features, collate, hp, seed, progress)

    checkpoint = write_checkpoint(stage_dir, lambda folder: backend.save(model, tokenizer, folder))
    for lang, rows in eval_sets.items():
        score(lang, rows, stats.steps)
    peak, kind = _peak_memory(backend.device)
    return {
        "steps": stats.steps, "train_examples": stats.examples,
        "examples_per_s": stats.examples_per_s, "final_loss": stats.final_loss,
        "peak_memory_bytes": peak, "memory_kind": kind, "precision": backend.precision,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "checkpoint_bytes": _dir_bytes(checkpoint),
    }


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "tokenizers", "datasets", "xstilts-tui"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m backends.worker STAGE_JSON", file=sys.stderr)
        return 2
    spec_path = Path(argv[0])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    stage_dir = Path(spec["stage_dir"])
    events = Events(stage_dir / "events.jsonl", spec["id"])
    started = time.perf_counter()
    try:
        _quiet_libraries()
        if spec["kind"] == "base":
            events.emit("stage_started", total_steps=0)
            cost = run_base(spec, stage_dir, events)
        else:
            cost = run_qa_stage(spec, stage_dir, events)
    except Exception as exc:  # every failure becomes an event and a non-zero exit
        from .data import DataError
        from .models import ModelLoadError

        known = (DataError, ModelLoadError, DataFileError)
        message = str(exc) if isinstance(exc, known) else f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        events.emit("error", message=message.splitlines()[0] if message else type(exc).__name__)
        events.emit("stage_finished", status="failed", wall_s=time.perf_counter() - started)
        return 1
    events.emit("stage_finished", status="ok", wall_s=time.perf_counter() - started,
                versions=_versions(), **cost)
    if events.rank == 0:
        _write_atomically(stage_dir / "DONE", json.dumps({"key": spec["key"], "id": spec["id"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
