"""The worker entry point: ``python -m xstilts_tui.compute.worker STAGE_JSON`` runs one stage.

It reads the stage spec the control plane wrote, trains and evaluates, writes the
checkpoint and, last, a ``DONE`` marker, all under the stage's folder. Its only channel
back is the stage's event file (one JSON object a line, rank 0 only); its own output goes
to the log the control plane keeps.
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import shutil
import signal
import sys
import time
import traceback
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstilts_tui.protocol.events import encode, make_event
from xstilts_tui.protocol.processes import process_alive
from xstilts_tui.tasks.squad import DataFileError
from xstilts_tui.protocol.stage_cache import seal
from xstilts_tui.tasks.registry import TASKS, TaskSpec

from .inputs.data import DataError


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

    def offset(self) -> int:
        """How far the event file has been written (a resume state records it)."""
        return self.handle.tell() if self.handle is not None else 0


def watch_control_process(pid: int, interval_s: float = 1.0) -> None:
    """End this worker when the process that dispatched it is gone (killed with -9, a
    crashed dashboard): no orphan keeps training and writing into the stage folder."""

    def watch() -> None:
        while process_alive(pid):
            time.sleep(interval_s)
        os._exit(3)

    threading.Thread(target=watch, name="control-watchdog", daemon=True).start()


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


def write_checkpoint(stage_dir: Path, write) -> Path:
    """Let ``write(folder)`` fill a temporary folder, then rename it to ``checkpoint``:
    a stopped stage never leaves a half-written checkpoint under the final name. Every
    rank calls ``write`` (gathering sharded weights takes them all); rank 0 writes."""
    from .engines import distributed

    tmp = stage_dir / "checkpoint.tmp"
    final = stage_dir / "checkpoint"
    if distributed.rank() == 0:
        if tmp.exists():  # left by a stopped attempt
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    distributed.barrier()
    write(tmp)
    distributed.barrier()
    if distributed.rank() == 0:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    return final


def write_predictions(stage_dir: Path, records: list[dict[str, Any]], **columns: Any) -> Path:
    """One language's per-example predictions (``predictions/<task>.<lang>.parquet``):
    example id, prediction, gold and what each example adds to the metrics, with the stage
    key, seed, task, language and step in every row; written to a temporary name and
    renamed. A later evaluation of the same language replaces an earlier one."""
    import polars as pl

    folder = stage_dir / "predictions"
    folder.mkdir(exist_ok=True)
    path = folder / f"{columns['task']}.{columns['language']}.parquet"
    frame = pl.DataFrame(records, infer_schema_length=None) if records else pl.DataFrame(
        {"example_id": [], "prediction": [], "gold": []}, schema={"example_id": pl.String,
                                                                  "prediction": pl.String,
                                                                  "gold": pl.String})
    frame = frame.with_columns(**{k: pl.lit(v) for k, v in columns.items()})
    tmp = path.with_name(path.name + ".tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)
    return path


def run_base(spec: dict[str, Any], stage_dir: Path, events: Events) -> dict[str, Any]:
    from .inputs.models import build_base_model

    info: dict[str, int] = {}
    checkpoint = write_checkpoint(
        stage_dir, lambda folder: info.update(build_base_model(spec["model"], spec["corpus"], folder)))
    events.emit("log", message=f"built the base model: vocabulary {info['vocab_size']}, "
                               f"{info['total_params']:,} parameters")
    return {"total_params": info["total_params"], "checkpoint_bytes": _dir_bytes(checkpoint)}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


@dataclass
class TaskPart:
    """One task of a stage: its table entry, kind, head and training features."""

    task: dict[str, Any]
    spec: TaskSpec
    kind: Any
    head: dict[str, Any]
    train_rows: int
    features: list  # FeatureTables, one a training language


def run_training_stage(spec: dict[str, Any], stage_dir: Path, events: Events) -> dict[str, Any]:
    """Intermediate (one or several tasks, optionally with masked-LM batches) or target
    training, checkpoint selection on English validation data, the hand-off checkpoint,
    and for a target stage its evaluation in every language."""
    import torch

    from .inputs.data import load_rows
    from .inputs.features import load_features, use_cache
    from .kinds.registry import KINDS
    from .inputs.models import corpus_texts, load_tokenizer, resolve_source
    from .kinds.multitask import (MLM, BatchPlan, build_task_model, language_weights, mask_batch,
                            mlm_features)
    from .engines import distributed
    from .engines.base import total_steps
    from .engines.registry import get_backend
    from .engines.training import TrainJob, find_state

    hp = spec["hparams"]
    seed = spec["seed"]
    target = spec["kind"] == "target"
    from .planned import apply_runtime, check_precision, planned_commit

    backend = get_backend(spec["backend"]["kind"], spec["backend"]["options"])
    apply_runtime(spec, backend.device)
    if not (target and TASKS[spec["task"]["name"]].kind == "retrieval"):
        check_precision(spec, backend.resolve_precision(hp["precision"]))
    source, kwargs = resolve_source(spec["model"], spec["inputs"], planned_commit(spec))
    world = distributed.world_size()
    tokenizer = load_tokenizer(source, kwargs)
    _seed_everything(seed)
    use_cache(stage_dir.parent / "features")  # shared by the cache's stages and seeds

    if target and TASKS[spec["task"]["name"]].kind == "retrieval":
        return run_retrieval_stage(spec, events, backend, tokenizer, source, kwargs)

    parts: dict[str, TaskPart] = {}
    streams: dict[str, tuple[str, list]] = {}  # stream -> (task, features): a task in a language
    weights: dict[str, float] = {}
    cap = 0 if target else hp["sampling_cap"]
    for task in ([spec["task"]] if target else spec["tasks"]):
        task_spec = TASKS[task["name"]]
        kind = KINDS[task_spec.kind]
        settings = task["settings"]
        languages = tuple(settings.get("train_languages") or ("en",))
        rows_by_lang = {lang: load_rows(task, "train", lang) for lang in languages}
        head = kind.head(task_spec, [r for rows in rows_by_lang.values() for r in rows])
        features_by_lang = {}
        for lang, rows in rows_by_lang.items():
            try:
                features_by_lang[lang] = load_features(kind, tokenizer, rows, hp, head)
            except ValueError as exc:
                raise DataError(f"{task['name']} training data ({lang}): {exc}") from None
        name = task["name"]
        parts[name] = TaskPart(task, task_spec, kind, head,
                               sum(len(r) for r in rows_by_lang.values()),
                               list(features_by_lang.values()))
        # The task's share follows its (capped) size; its languages split it by the policy.
        size = sum(len(f) for f in features_by_lang.values())
        share = min(size, cap) if cap else size
        by_lang = language_weights({lang: len(f) for lang, f in features_by_lang.items()},
                                   settings.get("language_sampling", "proportional"),
                                   settings.get("sampling_temperature", 5.0))
        for lang, feats in features_by_lang.items():
            stream = name if len(languages) == 1 else f"{name}@{lang}"
            streams[stream] = (name, feats)
            weights[stream] = share * by_lang[lang]
    mlm = spec.get("mlm")
    mlm_data = mlm_features(tokenizer, list(corpus_texts(mlm["corpus"])), hp["max_length"]) if mlm else []
    if mlm and not mlm_data:
        raise DataError("continued MLM: the corpus has no text")

    model, report = build_task_model([(n, p.kind, p.head) for n, p in parts.items()], source,
                                     kwargs, mlm=bool(mlm))
    events.emit("log", message=f"loaded encoder from {source}; fresh head(s) {', '.join(report['head_modules'])}"
                               f"{' for ' + ', '.join(parts) if len(parts) > 1 else ''}; dropped "
                               f"{len(report['unexpected_keys'])} checkpoint key(s) outside the encoder")

    sizes = {stream: len(feats) for stream, (_, feats) in streams.items()}
    ratio = mlm["ratio"] if mlm else 0.0
    examples = sum(min(n, cap) if cap else n
                   for n in (sum(len(t) for t in p.features) for p in parts.values()))
    steps = total_steps(math.ceil(examples / (1 - ratio)), hp, world)
    lengths = ({stream: feats.lengths for stream, (_, feats) in streams.items()}
               if hp.get("group_by_length", True) else None)
    plan = BatchPlan(sizes, hp["batch_size"], seed, steps * hp["grad_accum"] * world, cap,
                     len(mlm_data), ratio, weights=weights, lengths=lengths)
    if len(plan.streams) > 1:
        events.emit("log", message="batches drawn from " + ", ".join(
            f"{name} {share:.1%}" for name, share in plan.proportions.items()))

    def batch(i: int) -> tuple[str, dict[str, Any]]:
        stream, indices = plan.batch(i)
        if stream == MLM:
            generator = torch.Generator().manual_seed(seed * 1_000_003 + i)
            return stream, mask_batch([mlm_data[j] for j in indices], tokenizer,
                                      hp["mlm_probability"], generator)
        task, feats = streams[stream]
        part = parts[task]
        return task, part.kind.collate(feats.rows(indices), tokenizer.pad_token_id)

    validation: dict[str, list[dict]] = {}

    def evaluate(step: int) -> float:
        """Every task on its first ``eval_examples`` English validation rows; the
        selection score is the mean of the tasks' selection metrics."""
        values = []
        for name, part in parts.items():
            if name not in validation:
                validation[name] = load_rows(part.task, "validation", "en")[: hp["eval_examples"]]
            scores = part.kind.evaluate(model.models[name], tokenizer, backend, validation[name], hp,
                                        part.spec, "en", part.head)
            for metric, value in scores.items():
                events.emit("score", task=name, language="en", split="validation", metric=metric,
                            value=value, step=step)
            values.append(scores[part.spec.selection_metric])
        return _mean(values)

    resuming = find_state(stage_dir) is not None
    events.emit("stage_started", total_steps=steps, train_examples=sum(p.train_rows for p in parts.values()),
                train_features=sum(sizes.values()), resuming=resuming)
    primary_name = next(iter(parts))
    primary = parts[primary_name]
    if target:
        languages = primary.task["settings"]["languages"]
        test_sets = {lang: load_rows(primary.task, "test", lang) for lang in languages}

    def score_test(lang: str, step: int) -> None:
        records: list[dict[str, Any]] = []
        scores = primary.kind.evaluate(model.primary, tokenizer, backend, test_sets[lang], hp,
                                       primary.spec, lang, primary.head, keep=records)
        if distributed.rank() == 0:
            write_predictions(stage_dir, records, stage_key=spec["key"], seed=seed,
                              task=primary_name, language=lang, step=step)
        for metric, value in scores.items():
            events.emit("score", task=primary_name, language=lang, split="test", metric=metric,
                        value=value, step=step)

    if target and hp.get("eval_before_training") and "en" in test_sets and not resuming:
        model.to(backend.device)
        score_test("en", 0)

    def progress(step, total, loss, lr, rate):
        events.emit("progress", step=step, total_steps=total, loss=loss, lr=lr, examples_per_s=rate)

    if backend.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(backend.device)
    job = TrainJob(model=model, batch=batch, steps=steps, hparams=hp, seed=seed, report=progress,
                   evaluate=evaluate, final_eval=not target, state_dir=stage_dir,
                   events_offset=events.offset, log=lambda message: events.emit("log", message=message))
    stats = backend.train(job)

    checkpoint = write_checkpoint(stage_dir, lambda folder: backend.save(model, tokenizer, folder))
    if target:  # every rank evaluates (sharded weights need them all); rank 0 reports
        for lang in test_sets:
            score_test(lang, stats.steps)
    if distributed.rank() != 0:
        return {}
    peak, memory_kind = _peak_memory(backend.device)
    return {
        "steps": stats.steps, "train_examples": stats.examples,
        "examples_per_s": stats.examples_per_s, "tokens_per_s": stats.tokens / max(stats.wall_s, 1e-9),
        "final_loss": stats.final_loss, "best_step": stats.best_step,
        "stopped_early": stats.stopped_early, "resumed_from": stats.resumed_from,
        "peak_memory_bytes": peak, "memory_kind": memory_kind, "precision": backend.precision,
        "attention": getattr(model.primary.config, "_attn_implementation", None),
        "compiled": bool(getattr(backend, "compiled", False)),
        "dropout": getattr(backend, "dropout", "torch"),
        "trainable_params": stats.trainable_params,
        # ZeRO-3 leaves each rank a shard; ds_numel is the whole parameter's size.
        "total_params": sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters()),
        "checkpoint_bytes": _dir_bytes(checkpoint),
        "adapter_bytes": _dir_bytes(checkpoint / "adapter") if (checkpoint / "adapter").is_dir() else None,
        "backend": spec["backend"]["name"], "backend_kind": spec["backend"]["kind"],
        "world_size": world,
    }


def run_retrieval_stage(spec: dict[str, Any], events: Events, backend, tokenizer, source: str,
                        kwargs: dict[str, Any]) -> dict[str, Any]:
    """A retrieval target (Tatoeba, BUCC): no training; the encoder's sentence vectors,
    scored in every language. The encoder loads strictly, like every hand-off."""
    from transformers import AutoModel

    from .engines import distributed
    from .inputs.data import load_retrieval
    from .inputs.models import load_for_task
    from .kinds.retrieval import default_layer, evaluate_retrieval

    task = spec["task"]
    hp = spec["hparams"]
    model, report = load_for_task(AutoModel, source, kwargs)
    model.to(backend.device)
    layer = hp.get("retrieval_layer") or default_layer(model.config.num_hidden_layers)
    events.emit("log", message=f"loaded encoder from {source}; sentence vectors from hidden "
                               f"states {layer} of {model.config.num_hidden_layers} layers")
    languages = task["settings"]["languages"]
    events.emit("stage_started", total_steps=0, languages=len(languages))
    started = time.perf_counter()
    for lang in languages:
        scores = evaluate_retrieval(model, tokenizer, backend, task["name"], load_retrieval(task, lang), hp)
        for metric in TASKS[task["name"]].metric_names:
            events.emit("score", task=task["name"], language=lang, split="test", metric=metric,
                        value=scores[metric], step=0)
        if "threshold" in scores:
            events.emit("log", message=f"{lang}: margin threshold {scores['threshold']:.4f} "
                                       f"(F1 {scores['sample_f1']:.2f} on the sample split)")
    if distributed.rank() != 0:
        return {}
    peak, memory_kind = _peak_memory(backend.device)
    events.emit("log", message=f"scored {len(languages)} languages in {time.perf_counter() - started:.1f} s")
    return {"steps": 0, "peak_memory_bytes": peak,
            "memory_kind": memory_kind, "trainable_params": 0,
            "total_params": sum(p.numel() for p in model.parameters()), "checkpoint_bytes": 0,
            "backend": spec["backend"]["name"], "backend_kind": spec["backend"]["kind"],
            "world_size": distributed.world_size()}


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "tokenizers", "datasets", "deepspeed", "peft", "xstilts-tui"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _hardware() -> str:
    """The GPUs this worker computes on (count and name), else the CPU's model."""
    import torch

    from xstilts_tui.protocol.provenance import cpu_model

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return cpu_model()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m xstilts_tui.compute.worker STAGE_JSON", file=sys.stderr)
        return 2
    spec_path = Path(argv[0])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    if os.environ.get("XSTILTS_CONTROL_PID", "").isdigit():
        watch_control_process(int(os.environ["XSTILTS_CONTROL_PID"]))
    stage_dir = Path(spec["stage_dir"])
    events = Events(stage_dir / "events.jsonl", spec["id"])
    started = time.perf_counter()
    from .engines.training import STOP, StageStopped

    # SIGTERM (a cancel, a cluster's time limit, a preemption): the training loop saves a
    # resume state after its current step and the stage ends as stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: STOP.set())
    try:
        from .planned import check_code_and_libraries

        check_code_and_libraries(spec)
        _quiet_libraries()
        if spec["kind"] == "base":
            events.emit("stage_started", total_steps=0)
            cost = run_base(spec, stage_dir, events)
        else:
            cost = run_training_stage(spec, stage_dir, events)
    except StageStopped as exc:
        events.emit("log", message=str(exc))
        events.emit("stage_finished", status="stopped", wall_s=time.perf_counter() - started)
        return 143
    except Exception as exc:  # every failure becomes an event and a non-zero exit
        from .inputs.models import ModelLoadError
        from .planned import NotAsPlanned
        from .engines.training import TrainingDiverged

        known = (DataError, ModelLoadError, DataFileError, TrainingDiverged, NotAsPlanned)
        message = str(exc) if isinstance(exc, known) else f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        events.emit("error", message=message.splitlines()[0] if message else type(exc).__name__)
        events.emit("stage_finished", status="failed", wall_s=time.perf_counter() - started)
        return 1
    events.emit("stage_finished", status="ok", wall_s=time.perf_counter() - started,
                versions=_versions(), hardware=_hardware(), **cost)
    if events.rank == 0:
        seal(stage_dir, spec["key"], spec["id"])
        from .engines.training import drop_states

        drop_states(stage_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
