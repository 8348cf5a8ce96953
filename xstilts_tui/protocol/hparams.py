"""Hyper-parameters, typed, with every default in one place: the recipe validates them
into ``HParams``, the plan writes them into each stage's file, and the worker reads them
back into ``HParams`` (``from_spec``) before it trains.

Recipes may also use the Hugging Face Trainer's names of the same settings
(``HF_HPARAM_NAMES``) and its ``bf16``/``fp16`` switches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class HParams:
    """Training and evaluation settings; defaults are the authors' QA settings."""

    lr: float = 1e-5
    weight_decay: float = 0.01
    adam_eps: float = 1e-8
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    batch_size: int = 4
    grad_accum: int = 4
    epochs: float = 2.0
    max_steps: int = 0  # 0: train for `epochs`; otherwise this many optimiser steps
    max_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    n_best: int = 20
    max_answer_length: int = 30
    # SQuAD v2.0: predict no answer where the null score beats the best span by more than
    # this (HF utils_qa.py's null_score_diff_threshold)
    null_score_diff_threshold: float = 0.0
    eval_batch_size: int = 0  # 0: the largest that fits (GPU: from 512, halved on out-of-memory; CPU: 64)
    # auto: bf16 where the GPU supports it, else fp32; bf16 (asked for) also on CPUs with
    # AVX512-BF16 or AMX (torch backend); fp16: GPUs only
    precision: str = "auto"
    log_every: int = 10
    eval_before_training: bool = False  # target phase: also score every language before training
    # Checkpoint selection: every eval_every steps score eval_examples English validation
    # examples, keep the best weights, stop after `patience` evaluations without
    # improvement (0: never stop early). Intermediate stages also evaluate at their end.
    eval_every: int = 1000  # 0: intermediate stages at their end only, target stages never
    eval_examples: int = 500
    patience: int = 0
    save_every: int = 1000  # steps between resume states (0: none; a stopped stage restarts)
    sampling_cap: int = 0  # multi-task: cap each task's share at this many examples (0: none)
    mlm_probability: float = 0.15  # continued MLM: share of tokens masked
    retrieval_layer: int = 0  # retrieval: hidden_states index; 0: 14 of 24, scaled to depth
    # Training batches of similar length (sorted within shuffled windows of 50 batches,
    # batches in random order): less padding; false draws batches at random.
    group_by_length: bool = True
    compile: bool = False  # torch.compile the model for training (measure before relying on it)
    # On a CPU, only where asked: dropout masks drawn in blocks from numpy's SFC64, seeded
    # from torch's generator, through an attention of our own (docs/benchmarks.md measures
    # it); false, the default: torch's own dropout and attention, as on a GPU.
    cpu_dropout: bool = False
    # The input word-embedding matrix left as it is (not trained: no gradient, no AdamW
    # state). XLM-R's 250k-row vocabulary is most of a small model (96M of
    # multilingual-e5-small's 118M parameters); freezing it is the field's usual saving
    # (docs/benchmarks.md measures it). The cost table counts what was trained.
    freeze_embeddings: bool = False


PRECISIONS = ("auto", "bf16", "fp16", "fp32")
POSITIVE = {"lr", "batch_size", "grad_accum", "epochs", "max_length", "doc_stride",
             "max_query_length", "n_best", "max_answer_length", "log_every",
             "eval_examples", "mlm_probability"}
NON_NEGATIVE = {"eval_batch_size", "weight_decay", "adam_eps", "max_grad_norm", "max_steps", "warmup_ratio",
                 "eval_every", "patience", "save_every", "sampling_cap", "retrieval_layer"}

HPARAM_FIELDS = {f.name: f for f in fields(HParams)}

# The Hugging Face Trainer's names (TrainingArguments, run_qa.py's data arguments) of our
# settings: accepted in recipes, read under our names.
HF_HPARAM_NAMES = {
    "learning_rate": "lr", "num_train_epochs": "epochs", "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum", "per_device_eval_batch_size": "eval_batch_size",
    "adam_epsilon": "adam_eps", "max_seq_length": "max_length", "n_best_size": "n_best",
    "logging_steps": "log_every", "eval_steps": "eval_every", "save_steps": "save_every",
    "early_stopping_patience": "patience",
}
# The Trainer's precision switches: bf16 = true or fp16 = true, both false: fp32.
HF_PRECISION_FLAGS = ("bf16", "fp16")


def hparam_aliases(name: str) -> tuple[str, ...]:
    """The other names a recipe may give one of our hyper-parameters."""
    return tuple(alias for alias, ours in HF_HPARAM_NAMES.items() if ours == name)


def normalise_hparams(data: dict[str, Any]) -> dict[str, Any]:
    """A hyper-parameter table under our names (the Trainer's names and its bf16/fp16
    switches translated); sub-tables and unknown keys are kept as they are. Unchecked:
    parse_recipe reports what is wrong."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in HF_PRECISION_FLAGS:
            if value is True:
                out["precision"] = key
            elif value is False and "precision" not in out and not data.get(
                    "fp16" if key == "bf16" else "bf16"):
                out.setdefault("precision", "fp32")
            continue
        out[HF_HPARAM_NAMES.get(key, key)] = value
    return out


def from_spec(values: dict[str, Any]) -> HParams:
    """A stage file's hyper-parameters as ``HParams``: every field it names (a field it
    does not name keeps its default; a name that is no field is an error)."""
    unknown = sorted(set(values) - set(HPARAM_FIELDS))
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) in the stage file: {', '.join(unknown)}")
    return HParams(**values)


def as_dict(hparams: HParams) -> dict[str, Any]:
    return asdict(hparams)
