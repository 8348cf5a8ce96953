"""An intermediate or target stage: its tasks' features (one stream a task and training
language, with the sampling weights of the recipe's policy), batches drawn by one plan
(continued masked-LM batches mixed in), checkpoint selection on English validation data,
the hand-off checkpoint, and for a target stage its evaluation in every language."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstilts_tui.protocol.hparams import HParams, from_spec
from xstilts_tui.tasks.registry import EXTRACTIVE_QA, TASKS, TaskSpec

from .inputs.data import DataError
from .stage_output import dir_bytes, peak_memory, seed_everything, write_checkpoint, write_predictions


@dataclass
class TaskPart:
    """One task of a stage: its table entry, kind, head and training features."""

    task: dict[str, Any]
    spec: TaskSpec
    kind: Any
    head: dict[str, Any]
    train_rows: int
    features: list  # FeatureTables, one a training language
    hp: HParams  # the stage's, with the task's own feature and evaluation settings


# A task's own [tasks.X.hparams] that apply inside a stage training several tasks: how its
# examples become features and how its predictions are read. The loop's settings (rate,
# batch, epochs, selection) are the stage's.
TASK_OWN_HPARAMS = ("max_length", "doc_stride", "max_query_length", "n_best", "max_answer_length",
                    "null_score_diff_threshold", "eval_batch_size")


def own_hparams(hp: HParams, task: dict[str, Any]) -> HParams:
    """The stage's hyper-parameters with a task's own feature and evaluation settings."""
    from dataclasses import replace

    own = {k: v for k, v in (task["settings"].get("hparams") or {}).items() if k in TASK_OWN_HPARAMS}
    return replace(hp, **own) if own else hp


@dataclass
class Streams:
    """What batches are drawn from: each task's part, and its streams (a task in a
    language) with their features and sampling weights."""

    parts: dict[str, TaskPart]
    features: dict[str, tuple[str, Any]]  # stream -> (task, features)
    weights: dict[str, float]


def task_streams(spec: dict[str, Any], hp: HParams, tokenizer, target: bool) -> Streams:
    """Every task's training rows and features; a task's share of the batches follows its
    (capped) size, and its languages split that share by the task's sampling policy."""
    from .inputs.data import load_rows
    from .inputs.features import load_features
    from .kinds.multitask import language_weights
    from .kinds.registry import KINDS

    out = Streams({}, {}, {})
    cap = 0 if target else hp.sampling_cap
    for task in ([spec["task"]] if target else spec["tasks"]):
        task_spec = TASKS[task["name"]]
        kind = KINDS[task_spec.kind]
        settings = task["settings"]
        languages = tuple(settings["train_languages"])
        rows_by_lang = {lang: load_rows(task, "train", lang) for lang in languages}
        head = kind.head(task_spec, [r for rows in rows_by_lang.values() for r in rows])
        task_hp = own_hparams(hp, task)
        features_by_lang = {}
        for lang, rows in rows_by_lang.items():
            try:
                features_by_lang[lang] = load_features(kind, tokenizer, rows, task_hp, head)
            except ValueError as exc:
                raise DataError(f"{task['name']} training data ({lang}): {exc}") from None
        name = task["name"]
        out.parts[name] = TaskPart(task, task_spec, kind, head,
                                   sum(len(r) for r in rows_by_lang.values()),
                                   list(features_by_lang.values()), task_hp)
        size = sum(len(f) for f in features_by_lang.values())
        share = min(size, cap) if cap else size
        by_lang = language_weights({lang: len(f) for lang, f in features_by_lang.items()},
                                   settings["language_sampling"],
                                   settings["sampling_temperature"])
        for lang, feats in features_by_lang.items():
            stream = name if len(languages) == 1 else f"{name}@{lang}"
            out.features[stream] = (name, feats)
            out.weights[stream] = share * by_lang[lang]
    return out


def mlm_examples(spec: dict[str, Any], hp: HParams, tokenizer) -> list:
    """Continued masked-LM: the corpus as features (none without ``mlm``)."""
    from .inputs.models import corpus_texts
    from .kinds.multitask import mlm_features

    mlm = spec.get("mlm")
    mlm_data = mlm_features(tokenizer, list(corpus_texts(mlm["corpus"])), hp.max_length) if mlm else []
    if mlm and not mlm_data:
        raise DataError("continued MLM: the corpus has no text")
    return mlm_data


def batch_source(streams: Streams, mlm_data: list, spec: dict[str, Any], hp: HParams, tokenizer,
                 world: int, events, target: bool):
    """(optimiser steps, ``batch(i)``, training features): micro-batch ``i``'s task and
    tensors, a pure function of ``i`` (a resumed stage draws the same batches)."""
    import torch

    from .engines.base import total_steps
    from .kinds.multitask import MLM, BatchPlan, mask_batch

    seed, cap = spec["seed"], 0 if target else hp.sampling_cap
    mlm = spec.get("mlm")
    sizes = {stream: len(feats) for stream, (_, feats) in streams.features.items()}
    ratio = mlm["ratio"] if mlm else 0.0
    examples = sum(min(n, cap) if cap else n
                   for n in (sum(len(t) for t in p.features) for p in streams.parts.values()))
    steps = total_steps(math.ceil(examples / (1 - ratio)), hp, world)
    lengths = ({stream: feats.lengths for stream, (_, feats) in streams.features.items()}
               if hp.group_by_length else None)
    plan = BatchPlan(sizes, hp.batch_size, seed, steps * hp.grad_accum * world, cap,
                     len(mlm_data), ratio, weights=streams.weights, lengths=lengths)
    if len(plan.streams) > 1:
        events.emit("log", message="batches drawn from " + ", ".join(
            f"{name} {share:.1%}" for name, share in plan.proportions.items()))

    def batch(i: int) -> tuple[str, dict[str, Any]]:
        stream, indices = plan.batch(i)
        if stream == MLM:
            generator = torch.Generator().manual_seed(seed * 1_000_003 + i)
            return stream, mask_batch([mlm_data[j] for j in indices], tokenizer,
                                      hp.mlm_probability, generator)
        task, feats = streams.features[stream]
        return task, streams.parts[task].kind.collate(feats.rows(indices), tokenizer.pad_token_id)

    return steps, batch, sum(sizes.values())


class Scoring:
    """Validation scores for checkpoint selection, and a target's test scores with their
    per-example predictions; every score is an event."""

    def __init__(self, spec: dict[str, Any], stage_dir: Path, hp: HParams, parts: dict[str, TaskPart],
                 model, tokenizer, backend, events):
        self.spec, self.stage_dir, self.hp, self.parts = spec, stage_dir, hp, parts
        self.model, self.tokenizer, self.backend, self.events = model, tokenizer, backend, events
        self.validation: dict[str, list[dict]] = {}
        self.primary_name = next(iter(parts))
        self.primary = parts[self.primary_name]
        self.test_sets: dict[str, list[dict]] = {}

    def selection_rows(self, part: TaskPart) -> list[dict]:
        """``eval_examples`` English validation rows drawn with a fixed seed (the same for
        every arm and seed), none the study tests on: not XQuAD's questions where they come
        from SQuAD v1.1 dev, not a question of this stage's own test sets (tasks/selection.py)."""
        from xstilts_tui.tasks.selection import sample, xquad_ids

        from .inputs.data import DataError, load_rows

        # QA ids name a question across a data set's splits (elsewhere, and in the demo's
        # generated splits, ids are row numbers)
        exclude = {row["id"] for rows in self.test_sets.values() for row in rows} \
            if part.spec.kind == EXTRACTIVE_QA and not part.spec.generated else set()
        if part.spec.selects_on_squad_dev and not part.task["settings"].get("validation_file"):
            exclude |= xquad_ids()
        rows = sample(load_rows(part.task, "validation", "en"), self.hp.eval_examples, exclude)
        if not rows:
            raise DataError(f"{part.spec.name}: no English validation rows left to select checkpoints on "
                            "once the rows it is tested on are left out; give tasks."
                            f"{part.spec.name}.validation_file")
        return rows

    def evaluate(self, step: int) -> float:
        """Every task on its selection rows (``selection_rows``); the selection score is the
        mean of the tasks' selection metrics."""
        values = []
        for name, part in self.parts.items():
            if name not in self.validation:
                self.validation[name] = self.selection_rows(part)
            scores = part.kind.evaluate(self.model.models[name], self.tokenizer, self.backend,
                                        self.validation[name], part.hp, part.spec, "en", part.head)
            for metric, value in scores.items():
                self.events.emit("score", task=name, language="en", split="validation", metric=metric,
                                 value=value, step=step)
            values.append(scores[part.spec.selection_metric])
        return sum(values) / len(values)

    def load_test_sets(self) -> None:
        from .inputs.data import load_rows

        languages = self.primary.task["settings"]["languages"]
        self.test_sets = {lang: load_rows(self.primary.task, "test", lang) for lang in languages}

    def score_test(self, lang: str, step: int) -> None:
        from .engines import distributed

        records: list[dict[str, Any]] = []
        primary = self.primary
        scores = primary.kind.evaluate(self.model.primary, self.tokenizer, self.backend,
                                       self.test_sets[lang], primary.hp, primary.spec, lang, primary.head,
                                       keep=records)
        if distributed.rank() == 0:
            write_predictions(self.stage_dir, records, stage_key=self.spec["key"], seed=self.spec["seed"],
                              task=self.primary_name, language=lang, step=step)
        for metric, value in scores.items():
            self.events.emit("score", task=self.primary_name, language=lang, split="test",
                             metric=metric, value=value, step=step)


def _prepare(spec: dict[str, Any], stage_dir: Path, hp: HParams, target: bool):
    """The engine (its runtime and precision checked against the plan), the tokenizer and
    where the encoder comes from; the feature cache shared by the cache's stages."""
    from .engines.registry import get_backend
    from .inputs.features import use_cache
    from .inputs.models import load_tokenizer, resolve_source
    from .planned import apply_runtime, check_precision, planned_commit

    backend = get_backend(spec["backend"]["kind"], spec["backend"]["options"])
    apply_runtime(spec, backend.device)
    if not (target and TASKS[spec["task"]["name"]].kind == "retrieval"):
        check_precision(spec, backend.resolve_precision(hp.precision))
    source, kwargs = resolve_source(spec["model"], spec["inputs"], planned_commit(spec))
    tokenizer = load_tokenizer(source, kwargs)
    seed_everything(spec["seed"])
    use_cache(stage_dir.parent / "features")  # shared by the cache's stages and seeds
    return backend, tokenizer, source, kwargs


def run_training_stage(spec: dict[str, Any], stage_dir: Path, events) -> dict[str, Any]:
    """Intermediate (one or several tasks, optionally with masked-LM batches) or target
    training, checkpoint selection on English validation data, the hand-off checkpoint,
    and for a target stage its evaluation in every language."""
    import torch

    from .engines import distributed
    from .engines.training import TrainJob, find_state
    from .kinds.multitask import build_task_model
    from .other_stages import run_retrieval_stage

    hp = from_spec(spec["hparams"])
    target = spec["kind"] == "target"
    backend, tokenizer, source, kwargs = _prepare(spec, stage_dir, hp, target)
    world = distributed.world_size()
    if target and TASKS[spec["task"]["name"]].kind == "retrieval":
        return run_retrieval_stage(spec, events, backend, tokenizer, source, kwargs)
    streams = task_streams(spec, hp, tokenizer, target)
    parts = streams.parts
    mlm_data = mlm_examples(spec, hp, tokenizer)
    model, report = build_task_model([(n, p.kind, p.head) for n, p in parts.items()], source,
                                     kwargs, mlm=bool(spec.get("mlm")))
    events.emit("log", message=f"loaded encoder from {source}; fresh head(s) {', '.join(report['head_modules'])}"
                               f"{' for ' + ', '.join(parts) if len(parts) > 1 else ''}; dropped "
                               f"{len(report['unexpected_keys'])} checkpoint key(s) outside the encoder")
    if hp.freeze_embeddings:
        frozen = freeze_word_embeddings(model.primary)
        events.emit("log", message=f"word embeddings frozen (freeze_embeddings): {frozen:,} parameters "
                                   "not trained")
    steps, batch, train_features = batch_source(streams, mlm_data, spec, hp, tokenizer, world, events,
                                                target)
    scoring = Scoring(spec, stage_dir, hp, parts, model, tokenizer, backend, events)
    resuming = find_state(stage_dir) is not None
    events.emit("stage_started", total_steps=steps, train_examples=sum(p.train_rows for p in parts.values()),
                train_features=train_features, resuming=resuming)
    if target:
        scoring.load_test_sets()
    if target and hp.eval_before_training and not resuming:  # the fresh head's scores: the floor
        model.to(backend.device)
        for lang in scoring.test_sets:
            scoring.score_test(lang, 0)

    def progress(step, total, loss, lr, rate):
        events.emit("progress", step=step, total_steps=total, loss=loss, lr=lr, examples_per_s=rate)

    if backend.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(backend.device)
    job = TrainJob(model=model, batch=batch, steps=steps, hparams=hp, seed=spec["seed"], report=progress,
                   evaluate=scoring.evaluate, final_eval=not target, state_dir=stage_dir,
                   events_offset=events.offset, log=lambda message: events.emit("log", message=message))
    stats = backend.train(job)
    checkpoint = write_checkpoint(stage_dir, lambda folder: backend.save(model, tokenizer, folder))
    if target:  # every rank evaluates (sharded weights need them all); rank 0 reports
        # The scores name the step whose weights they scored: the kept one, where selection kept one.
        scored = stats.steps if stats.best_step is None else stats.best_step
        for lang in scoring.test_sets:
            scoring.score_test(lang, scored)
    if distributed.rank() != 0:
        return {}
    return stage_cost(spec, stats, backend, model, checkpoint, world)


def freeze_word_embeddings(model) -> int:
    """The input word-embedding matrix out of training (shared by every task head and a
    tied masked-LM decoder); how many parameters that leaves untrained."""
    weight = model.get_input_embeddings().weight
    weight.requires_grad_(False)
    return weight.numel()


def stage_cost(spec: dict[str, Any], stats, backend, model, checkpoint: Path, world: int) -> dict[str, Any]:
    """What the stage cost, for its ``stage_finished`` event and the cost table."""
    peak, memory_kind = peak_memory(backend.device)
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
        "checkpoint_bytes": dir_bytes(checkpoint),
        "adapter_bytes": dir_bytes(checkpoint / "adapter") if (checkpoint / "adapter").is_dir() else None,
        "backend": spec["backend"]["name"], "backend_kind": spec["backend"]["kind"],
        "world_size": world,
    }
