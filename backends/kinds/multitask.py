"""One shared encoder with a head per task, the batch plan that mixes tasks, and
continued masked-LM batches.

* ``TaskModel``: a transformers model per task (and one masked-LM model when continued
  MLM is on), all holding the same encoder module; ``forward(task, **batch)`` is the
  loss of one task's batch. With one task it is that task's model.
* ``BatchPlan``: micro-batch ``i`` of a stage is a pure function of the seed and ``i``:
  which task it comes from (drawn in proportion to the tasks' training-set sizes,
  optionally capped per task, as the authors' toolkit did; masked-LM batches at their
  own ratio), and which examples (each task's own shuffled epochs; with the examples'
  lengths, batches of similar length: sorted within shuffled windows of 50 batches,
  then all the epoch's batches in random order, the longest first). So a stage that
  resumes from step ``s`` sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xstilts_tui.protocol.hparams import HParams

MLM = "mlm"  # the name of the continued masked-LM "task" inside a stage


class TaskModel(torch.nn.Module):
    def __init__(self, models: dict[str, Any]):
        super().__init__()
        self.models = torch.nn.ModuleDict(models)

    @property
    def primary(self):
        """The model saved for the hand-off: the first task's (encoder and its head)."""
        return next(m for name, m in self.models.items() if name != MLM)

    def forward(self, task: str, **batch):
        return self.models[task](**batch).loss


def _encoder(model):
    return getattr(model, model.base_model_prefix)


def _head_on_shared_encoder(auto_class, config, encoder, head_kwargs: dict[str, Any]):
    """A task model whose encoder is ``encoder``; its head is built and initialised anew."""
    from ..inputs.models import init_head

    config = config.__class__.from_dict({**config.to_dict(), **head_kwargs})
    with torch.device("meta"):
        model = auto_class.from_config(config)
    setattr(model, model.base_model_prefix, encoder)
    for name, child in model.named_children():
        if name != model.base_model_prefix:
            child.to_empty(device=encoder.device)
            init_head(child, config)
    return model


def build_task_model(tasks: list[tuple[str, Any, dict[str, Any]]], source: str,
                     kwargs: dict[str, Any], mlm: bool = False) -> tuple[TaskModel, dict[str, Any]]:
    """Load the encoder once, strictly, and give every task ``(name, kind, head)`` its head.

    A multiple-choice task, if any, loads the encoder, because its head reads the
    encoder's pooler. The masked-LM head, for continued MLM, comes from the checkpoint
    (a pretrained model has one); a checkpoint without it is refused.
    """
    from ..inputs.models import ModelLoadError, load_for_task

    ordered = sorted(tasks, key=lambda t: t[1].name != "multiple_choice")
    first_name, first_kind, first_head = ordered[0]
    first, report = load_for_task(first_kind.auto_class(), source, kwargs, first_head)
    encoder = _encoder(first)
    models = {first_name: first}
    for name, kind, head in ordered[1:]:
        models[name] = _head_on_shared_encoder(kind.auto_class(), first.config, encoder, head)
    if mlm:
        from transformers import AutoModelForMaskedLM

        donor, info = AutoModelForMaskedLM.from_pretrained(
            source, output_loading_info=True, weights_only=True, dtype=torch.float32, **kwargs)
        missing = [k for k in info["missing_keys"] if not k.startswith(donor.base_model_prefix + ".")]
        if missing:
            raise ModelLoadError(f"{source}: continued MLM needs the checkpoint's masked-LM head; "
                                 f"{missing[0]} is missing")
        setattr(donor, donor.base_model_prefix, encoder)
        donor.lm_head.decoder.weight = encoder.embeddings.word_embeddings.weight
        models[MLM] = donor
    # Keep the recipe's task order (the first task's model is the one handed off).
    order = [name for name, _, _ in tasks] + ([MLM] if mlm else [])
    return TaskModel({name: models[name] for name in order}), report


# --- masked-LM batches ----------------------------------------------------------------


def mlm_features(tokenizer, texts: list[str], max_length: int) -> list[dict[str, Any]]:
    if not texts:
        return []
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return [{"input_ids": ids} for ids in enc["input_ids"] if len(ids) > 2]


def mask_batch(features: list[dict[str, Any]], tokenizer, probability: float,
               generator: torch.Generator) -> dict[str, Any]:
    """BERT masking of non-special tokens: of the ``probability`` chosen, 80% become
    <mask>, 10% a random token, 10% stay; the loss sees only the chosen ones. The
    generator is the batch's own, so a batch is masked the same way on every run."""
    from .base import IGNORE, _ids_and_mask

    batch = _ids_and_mask([f["input_ids"] for f in features], tokenizer.pad_token_id)
    ids = batch["input_ids"]
    special = torch.zeros_like(ids, dtype=torch.bool)
    for token in tokenizer.all_special_ids:
        special |= ids == token
    chosen = (torch.rand(ids.shape, generator=generator) < probability) & ~special
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    roll = torch.rand(ids.shape, generator=generator)
    random_ids = torch.randint(len(tokenizer), ids.shape, generator=generator)
    masked = ids.clone()
    masked[chosen & (roll < 0.8)] = tokenizer.mask_token_id
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    masked[swap] = random_ids[swap]
    batch["input_ids"] = masked
    batch["labels"] = labels
    return batch


# --- the batch plan ---------------------------------------------------------------------


@dataclass
class TaskStream:
    name: str
    size: int  # examples (features) it has
    weight: float  # its share of the draws


GROUP_WINDOW = 50  # batches per window sorted by length (the Trainer's megabatch, too)


def grouped_order(perm: np.ndarray, lengths: np.ndarray, batch_size: int,
                  rng: np.random.Generator) -> np.ndarray:
    """``perm`` reordered so that consecutive ``batch_size`` slices hold examples of similar
    length: each window of ``GROUP_WINDOW`` batches of the shuffled order is sorted by
    length (longest first) and cut into batches; the batches of the whole epoch are then
    put in random order, except that the one holding the epoch's longest example goes
    first (as the Trainer's sampler does: a batch too large for memory fails at once, and
    the allocator sizes itself once). Only the last batch of the epoch can be short."""
    window = batch_size * GROUP_WINDOW
    batches = []
    for start in range(0, len(perm), window):
        chunk = perm[start:start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    short = [b for b in batches if len(b) < batch_size]
    order = list(rng.permutation(len(full)))
    if full:
        longest = max(order, key=lambda i: lengths[full[i]].max())
        order.remove(longest)
        order.insert(0, longest)
    return np.concatenate([full[i] for i in order] + short) if batches else perm


class BatchPlan:
    """Which task and which examples each micro-batch of a stage takes."""

    def __init__(self, sizes: dict[str, int], batch_size: int, seed: int, micro_batches: int,
                 cap: int = 0, mlm_size: int = 0, mlm_ratio: float = 0.0,
                 weights: dict[str, float] | None = None,
                 lengths: dict[str, np.ndarray] | None = None):
        """``sizes``: examples per stream (a task, or a task in one language); their shares
        are ``weights`` when given, else proportional to the (capped) sizes. ``lengths``:
        per stream, each example's length; a stream with them gets length-grouped batches."""
        if not sizes:
            raise ValueError("a batch plan needs at least one task")
        for name, size in sizes.items():
            if size <= 0:
                raise ValueError(f"task {name} has no training examples")
        self.batch_size = batch_size
        self.seed = seed
        shares = dict(weights) if weights else {n: min(s, cap) if cap else s for n, s in sizes.items()}
        total = sum(shares.values())
        self.streams = [TaskStream(n, sizes[n], (1 - mlm_ratio) * shares[n] / total) for n in sizes]
        if mlm_ratio > 0:
            if mlm_size <= 0:
                raise ValueError("continued MLM has no text")
            self.streams.append(TaskStream(MLM, mlm_size, mlm_ratio))
        probs = np.array([s.weight for s in self.streams], dtype=np.float64)
        rng = np.random.default_rng([seed, 0x5EED])
        self.draws = rng.choice(len(self.streams), size=micro_batches, p=probs / probs.sum())
        # The k-th draw of a task takes that task's k-th batch.
        self.ordinal = np.zeros(micro_batches, dtype=np.int64)
        counts = np.zeros(len(self.streams), dtype=np.int64)
        for i, t in enumerate(self.draws):
            self.ordinal[i] = counts[t]
            counts[t] += 1
        self._perms: dict[tuple[int, int], np.ndarray] = {}
        self.lengths = {i: np.asarray(lengths[s.name]) for i, s in enumerate(self.streams)
                        if lengths and s.name in lengths}
        for i, found in self.lengths.items():
            if len(found) != self.streams[i].size:
                raise ValueError(f"{self.streams[i].name}: {len(found)} lengths for "
                                 f"{self.streams[i].size} examples")

    @property
    def proportions(self) -> dict[str, float]:
        total = sum(s.weight for s in self.streams)
        return {s.name: s.weight / total for s in self.streams}

    def __len__(self) -> int:
        return len(self.draws)

    def _perm(self, task: int, epoch: int) -> np.ndarray:
        key = (task, epoch)
        if key not in self._perms:
            rng = np.random.default_rng([self.seed, task, epoch])
            self._perms = {k: v for k, v in self._perms.items() if k[0] != task}  # one epoch a task
            perm = rng.permutation(self.streams[task].size)
            if task in self.lengths:
                perm = grouped_order(perm, self.lengths[task], self.batch_size, rng)
            self._perms[key] = perm
        return self._perms[key]

    def batch(self, i: int) -> tuple[str, list[int]]:
        """Micro-batch ``i``: its task and the indices of its examples."""
        t = int(self.draws[i])
        stream = self.streams[t]
        per_epoch = math.ceil(stream.size / self.batch_size)
        k = int(self.ordinal[i])
        epoch, j = divmod(k, per_epoch)
        perm = self._perm(t, epoch)
        return stream.name, perm[j * self.batch_size:(j + 1) * self.batch_size].tolist()


def single_task_job(model, features, collate, hparams: HParams, seed: int,
                    report=lambda *args: None, lengths=None, **job_fields):
    """A training job for one plain transformers model on one list of features, or a
    ``FeatureTable`` (the benchmarks and tests train this way; stages go through the
    worker). With ``lengths`` (or a FeatureTable's) and ``group_by_length`` on, batches
    of similar length."""
    from ..engines.base import total_steps
    from ..engines.training import TrainJob

    steps = total_steps(len(features), hparams)
    if lengths is None:
        lengths = getattr(features, "lengths", None)
    grouped = lengths is not None and hparams.group_by_length
    plan = BatchPlan({"task": len(features)}, hparams.batch_size, seed,
                     steps * hparams.grad_accum, lengths={"task": lengths} if grouped else None)
    take = features.rows if hasattr(features, "rows") else (lambda idx: [features[j] for j in idx])

    def batch(i: int):
        task, indices = plan.batch(i)
        return task, collate(take(indices))

    return TrainJob(model=TaskModel({"task": model}), batch=batch, steps=steps, hparams=hparams,
                    seed=seed, report=report, **job_fields)


def language_weights(sizes: dict[str, int], policy: str, temperature: float) -> dict[str, float]:
    """Shares of a task's training languages (summing to 1): proportional to their sizes,
    uniform, or proportional to size^(1/T) (T = 1 proportional, large T near uniform)."""
    if policy == "uniform":
        raw = {lang: 1.0 for lang in sizes}
    elif policy == "temperature":
        raw = {lang: float(n) ** (1.0 / temperature) for lang, n in sizes.items()}
    else:
        raw = {lang: float(n) for lang, n in sizes.items()}
    total = sum(raw.values())
    return {lang: w / total for lang, w in raw.items()}
