"""Recipes: TOML files validated into typed objects.

Every problem is reported as one ``RecipeError`` line naming the file, the field and
what would be right. Paths inside a recipe (model folders, data files, corpora) are
relative to the recipe file; ``output_dir`` is relative to the working directory.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from xstilts_tui.protocol.backend_options import BACKEND_KINDS, OPTION_ALIASES, check_option, defaults, preset_names
from xstilts_tui.protocol.deepspeed_auto import AUTO_FIELDS, unfillable
from xstilts_tui.run.executors import SlurmSettings
from xstilts_tui.data.sources import unset_variable  # noqa: F401  (recipes' data paths)
from xstilts_tui.tasks.registry import DEFAULT_MAX_POSITIONS, RETRIEVAL, TASKS, TaskSpec
from xstilts_tui.run.tracking import TRACKERS, WANDB_MODES, TrackingSettings

# Training backend kinds known to the workers (``xstilts_tui.compute.engines.registry`` lists the same names);
# each is also a backend a recipe may name with its default options.
BACKENDS = BACKEND_KINDS
LAUNCHERS = ("python", "torchrun", "deepspeed")
LANGUAGE_SAMPLING = ("proportional", "uniform", "temperature")

# The XLM-R configuration fields a built-from-config model may set, with their types.
MODEL_CONFIG_FIELDS = {
    "hidden_size": int, "num_hidden_layers": int, "num_attention_heads": int,
    "intermediate_size": int, "max_position_embeddings": int, "hidden_act": str,
    "hidden_dropout_prob": float, "attention_probs_dropout_prob": float,
    "initializer_range": float, "layer_norm_eps": float,
}
# transformers' activation names (ACT2FN) a model built from a configuration may use.
ACTIVATIONS = {"gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "gelu_python", "quick_gelu",
               "relu", "relu6", "leaky_relu", "silu", "swish", "mish", "tanh", "sigmoid", "linear"}
MAX_VOCAB = 1_000_000  # a tokenizer trained on the spot: beyond this, a typo
# A hub model id: "name" or "owner/name".
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")

TOKENIZER_CORPORA = {"demo": "the generated text of the demo tasks, in all their languages"}


# A recipe's name names its output folder: no separators, no leading dot.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class RecipeError(ValueError):
    """A recipe problem, already phrased for people: ``FILE: FIELD: what is wrong``."""


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
    eval_batch_size: int = 0  # 0: the largest that fits (GPU: from 512, halved on out-of-memory; CPU: 64)
    # auto: bf16 where the GPU supports it, else fp32; bf16 (asked for) also on CPUs with
    # AVX512-BF16 or AMX (torch backend); fp16: GPUs only
    precision: str = "auto"
    log_every: int = 10
    eval_before_training: bool = False  # target phase: also score English before training
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
    # On a CPU, dropout masks drawn in blocks from numpy's SFC64, seeded from torch's
    # generator (a MiniLM step here 1.12 to 1.25 times as fast); false: torch's own dropout.
    cpu_dropout: bool = True


PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_POSITIVE = {"lr", "batch_size", "grad_accum", "epochs", "max_length", "doc_stride",
             "max_query_length", "n_best", "max_answer_length", "log_every",
             "eval_examples", "mlm_probability"}
_NON_NEGATIVE = {"eval_batch_size", "weight_decay", "adam_eps", "max_grad_norm", "max_steps", "warmup_ratio",
                 "eval_every", "patience", "save_every", "sampling_cap", "retrieval_layer"}


@dataclass(frozen=True)
class TokenizerSpec:
    vocab_size: int = 4000
    corpus: tuple[str, ...] = ("demo",)  # "demo" or text files, one sentence a line


@dataclass(frozen=True)
class ModelSpec:
    """Exactly one of ``hub``, ``path`` or ``config`` says where the encoder comes from."""

    hub: str | None = None
    revision: str | None = None
    path: str | None = None
    config: dict[str, Any] | None = None
    tokenizer: TokenizerSpec | None = None
    init_seed: int = 0
    trust_remote_code: bool = False

    @property
    def source(self) -> str:
        return "hub" if self.hub else "path" if self.path else "config"


@dataclass(frozen=True)
class MLMSpec:
    """Continued multilingual masked-LM batches mixed into intermediate training."""

    ratio: float  # the share of micro-batches that are masked-LM batches
    corpus: tuple[str, ...] = ("demo",)  # "demo" or text files, one sentence a line


@dataclass(frozen=True)
class BackendProfile:
    """A backend as the recipe names it: a kind and its options (defaults filled in)."""

    name: str
    kind: str
    options: dict[str, Any]


MAX_SLOTS = 1024  # stages at once, or GPUs a stage: more is a typo, not a machine


@dataclass(frozen=True)
class Launch:
    """How each stage's worker is started: one process, torchrun, or the deepspeed launcher."""

    launcher: str = "python"
    nproc_per_node: int = 1  # torchrun: processes per node
    nnodes: int = 1  # torchrun: nodes
    rdzv_endpoint: str = ""  # torchrun with several nodes: host:port of the rendezvous
    num_gpus: int = 0  # deepspeed launcher: GPUs per node (0: all it finds)
    hostfile: str = ""  # deepspeed launcher: "host slots=N" lines, for several nodes
    master_addr: str = ""  # deepspeed launcher with a hostfile
    master_port: int = 0  # 0: the launcher's default
    wrapper: tuple[str, ...] = ()  # put before the command, e.g. srun on a cluster
    # Stages side by side: the GPUs to share out (empty: those CUDA_VISIBLE_DEVICES or
    # nvidia-smi shows), how many each stage gets (0: its process count), and on a machine
    # without GPUs how many stages run at once, sharing the cores.
    devices: tuple[str, ...] = ()
    gpus_per_stage: int = 0
    parallel_stages: int = 1

    @property
    def stage_gpus(self) -> int:
        """GPUs one stage's slot gets: gpus_per_stage, else its process count (1 when
        the launcher finds it at run time)."""
        return self.gpus_per_stage or self.world_size or 1

    @property
    def world_size(self) -> int | None:
        """Processes a stage runs in, where the recipe fixes it (None: found at run time)."""
        if self.launcher == "python":
            return 1
        if self.launcher == "torchrun":
            return self.nproc_per_node * self.nnodes
        return self.num_gpus if self.num_gpus and not self.hostfile else None


@dataclass(frozen=True)
class Arm:
    name: str
    intermediate: tuple[str, ...] = ()
    backend: str = "torch"  # the intermediate phase's backend
    mlm: MLMSpec | None = None
    target_backend: str = "torch"


@dataclass(frozen=True)
class TaskSettings:
    """Per-task choices: languages and where the data comes from."""

    languages: tuple[str, ...]
    train_file: str | None = None
    validation_file: str | None = None
    eval_files: str | None = None  # a path with "{lang}", one SQuAD JSON file a language
    max_train_examples: int = 0  # 0: all
    max_eval_examples: int = 0  # 0: all, per language
    generated_train_examples: int = 2000  # generated tasks only
    generated_eval_examples: int = 200
    # Training languages (translate-train where the task has it) and how batches are
    # drawn across them: proportional to their sizes, uniform, or by temperature T
    # (shares proportional to size^(1/T)).
    train_languages: tuple[str, ...] = ("en",)
    language_sampling: str = "proportional"
    sampling_temperature: float = 5.0
    data_dir: str | None = None  # retrieval tasks: the folder of their native files
    # Hyper-parameters for this task only (its target stage, or an intermediate stage
    # that trains it alone), over the phase's: [tasks.NAME.hparams].
    hparams: dict[str, Any] | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    path: str
    model: ModelSpec
    arms: tuple[Arm, ...]
    targets: tuple[str, ...]
    seeds: tuple[int, ...]
    tasks: dict[str, TaskSettings]
    hparams_intermediate: HParams
    hparams_target: HParams
    description: str = ""
    output_dir: str | None = None
    backends: dict[str, BackendProfile] | None = None
    launch: Launch = Launch()
    slurm: SlurmSettings = SlurmSettings()
    tracking: TrackingSettings = TrackingSettings()

    def task_hparams(self, phase: str, tasks: tuple[str, ...]) -> HParams:
        """A stage's hyper-parameters: the phase's, with a task's own overrides when the
        stage trains that one task."""
        base = self.hparams_target if phase == "target" else self.hparams_intermediate
        if len(tasks) == 1 and self.tasks[tasks[0]].hparams:
            return HParams(**{**asdict(base), **self.tasks[tasks[0]].hparams})
        return base

    def backend(self, name: str) -> BackendProfile:
        if self.backends and name in self.backends:
            return self.backends[name]
        return BackendProfile(name=name, kind=name, options=defaults(name))

    @property
    def baseline(self) -> Arm:
        """The arm deltas are measured against: the first without intermediate tasks."""
        for arm in self.arms:
            if not arm.intermediate:
                return arm
        return self.arms[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- validation helpers ----------------------------------------------------------


def _type_name(t: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            list: "a list", dict: "a table"}.get(t, str(t))


class _Table:
    """Reads one TOML table, field by field, and complains in one line."""

    def __init__(self, file: str, where: str, data: Any):
        self.file = file
        self.where = where
        if not isinstance(data, dict):
            self.fail("", f"expected a table, got {type(data).__name__}")
        self.data = dict(data)
        self.seen: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, message: str) -> None:
        field_name = self.name(key) if key else (self.where or "recipe")
        raise RecipeError(f"{self.file}: {field_name}: {message}")

    def get(self, key: str, kind: type, default: Any = None, required: bool = False,
            aliases: tuple[str, ...] = ()) -> Any:
        """``key``'s value, checked; ``aliases`` are other names of the same setting (the
        Hugging Face Trainer's or PEFT's), reported under the name the recipe used."""
        self.seen.add(key)
        given = [a for a in aliases if a in self.data]
        for alias in given:
            self.seen.add(alias)
        if len(given) + (key in self.data) > 1:
            names = [n for n in (key, *aliases) if n in self.data]
            self.fail(names[1], f"the same setting as {names[0]!r}; give one of them")
        if given:
            key = given[0]
        if key not in self.data:
            if required:
                self.fail(key, f"missing; expected {_type_name(kind)}")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(key, f"expected {_type_name(kind)}, got {value!r}")
        if kind is float and not math.isfinite(value):
            self.fail(key, f"must be a finite number, got {value!r}")
        if kind is int and abs(value) >= 2**63:
            self.fail(key, f"must be below 2**63, got {value!r}")
        return value

    def get_str_list(self, key: str, default: tuple[str, ...] = (), required: bool = False):
        value = self.get(key, list, None, required)
        if value is None:
            return default
        for item in value:
            if not isinstance(item, str):
                self.fail(key, f"expected a list of strings, got {item!r} in it")
        return tuple(value)

    def finish(self, known: list[str] | None = None) -> None:
        unknown = [k for k in self.data if k not in self.seen]
        if unknown:
            key = unknown[0]
            choices = sorted(known if known is not None else self.seen)
            close = difflib.get_close_matches(key, choices, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(choices)}"
            self.fail(key, f"unknown key; {hint}")


def _choice_error(kind: str, value: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(value, choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {kind} {value!r}{hint}; expected one of: {', '.join(choices)}"


# --- the sections ----------------------------------------------------------------

_HPARAM_FIELDS = {f.name: f for f in fields(HParams)}

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


def _hparam_values(table: _Table) -> dict[str, Any]:
    """The hyper-parameters a table sets, under our names, each checked."""
    values = {}
    for name, f in _HPARAM_FIELDS.items():
        kind = {"float": float, "int": int, "str": str, "bool": bool}[f.type]
        aliases = hparam_aliases(name)
        value = table.get(name, kind, aliases=aliases)
        if value is None:
            continue
        shown = next((a for a in aliases if a in table.data), name)
        if name in _POSITIVE and value <= 0:
            table.fail(shown, f"must be greater than 0, got {value!r}")
        if name in _NON_NEGATIVE and value < 0:
            table.fail(shown, f"must be 0 or more, got {value!r}")
        values[name] = value
    flags = {k: table.get(k, bool) for k in HF_PRECISION_FLAGS if k in table.data}
    if flags:
        if "precision" in values:
            table.fail(next(iter(flags)), "the same setting as 'precision'; give one of them")
        if flags.get("bf16") and flags.get("fp16"):
            table.fail("fp16", "bf16 and fp16 are both true; choose one")
        values["precision"] = next((k for k, on in flags.items() if on), "fp32")
    return values


def _fit_qa_defaults(merged: HParams, given: dict[str, Any]) -> HParams:
    """QA windows' stride and query length left at their defaults (128 and 64, for
    XLM-R's 384 tokens) that do not fit a shorter ``max_length``: half and a quarter of it
    instead (a value the user gave is checked as given)."""
    defaults = HParams()
    changes: dict[str, int] = {}
    if "doc_stride" not in given and merged.doc_stride == defaults.doc_stride \
            and merged.doc_stride >= merged.max_length:
        changes["doc_stride"] = max(1, merged.max_length // 2)
    if "max_query_length" not in given and merged.max_query_length == defaults.max_query_length \
            and merged.max_query_length >= merged.max_length - 3:
        changes["max_query_length"] = max(1, merged.max_length // 4)
    return HParams(**{**asdict(merged), **changes}) if changes else merged


def _hparams(file: str, where: str, data: dict, base: HParams) -> HParams:
    table = _Table(file, where, data)
    values = _hparam_values(table)
    table.finish([*_HPARAM_FIELDS, *HF_HPARAM_NAMES, *HF_PRECISION_FLAGS])
    merged = HParams(**{**asdict(base), **values})
    merged = _fit_qa_defaults(merged, values)
    if merged.precision not in PRECISIONS:
        table.fail("precision", _choice_error("precision", merged.precision, list(PRECISIONS)))
    if merged.mlm_probability >= 1:
        table.fail("mlm_probability", f"must be below 1, got {merged.mlm_probability}")
    if merged.warmup_ratio >= 1:
        table.fail("warmup_ratio", f"must be below 1, got {merged.warmup_ratio}")
    if merged.doc_stride >= merged.max_length:
        table.fail("doc_stride", f"must be below max_length ({merged.max_length}), got {merged.doc_stride}")
    if merged.max_query_length >= merged.max_length - 3:
        table.fail("max_query_length",
                   f"must leave room for context below max_length ({merged.max_length}), "
                   f"got {merged.max_query_length}")
    return merged


DATA_PATH_KEYS = ("train_file", "validation_file", "eval_files", "data_dir")


def unset_paths(settings: dict[str, Any]) -> list[tuple[str, str]]:
    """(setting, variable) for each data path of a task's settings that names an unset
    environment variable."""
    out = []
    for key in DATA_PATH_KEYS:
        value = settings.get(key)
        variable = unset_variable(value) if isinstance(value, str) else None
        if variable:
            out.append((key, variable))
    return out


def _resolve(base: Path, value: str) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _corpus(table: _Table, key: str, base: Path, items: tuple[str, ...]) -> tuple[str, ...]:
    """Corpus names ("demo") kept, file paths resolved and checked."""
    resolved = []
    for item in items:
        if item in TOKENIZER_CORPORA:
            resolved.append(item)
            continue
        p = _resolve(base, item)
        if not Path(p).is_file():
            table.fail(key, f"{item!r} is neither a known corpus ({', '.join(TOKENIZER_CORPORA)}) "
                            f"nor a file (looked at {p})")
        resolved.append(p)
    return tuple(resolved)


def _mlm(file: str, base: Path, where: str, data: Any) -> MLMSpec:
    table = _Table(file, where, data)
    ratio = table.get("ratio", float, required=True)
    if not 0 < ratio < 1:
        table.fail("ratio", f"must be between 0 and 1 (the share of masked-LM batches), got {ratio}")
    corpus = table.get_str_list("corpus", MLMSpec.corpus)
    if not corpus:
        table.fail("corpus", "must name at least one corpus")
    table.finish()
    return MLMSpec(ratio=ratio, corpus=_corpus(table, "corpus", base, corpus))


def _model(file: str, base: Path, data: dict) -> ModelSpec:
    table = _Table(file, "model", data)
    hub = table.get("hub", str)
    revision = table.get("revision", str)
    path = table.get("path", str)
    config = table.get("config", dict)
    tok_data = table.get("tokenizer", dict)
    init_seed = table.get("init_seed", int, 0)
    trust = table.get("trust_remote_code", bool, False)
    table.finish()
    if hub is not None and not _HUB_ID.fullmatch(hub):
        table.fail("hub", f"must be a model id such as 'FacebookAI/xlm-roberta-large'; got {hub!r}")
    given = [k for k, v in (("hub", hub), ("path", path), ("config", config)) if v is not None]
    if len(given) != 1:
        table.fail("", "give exactly one of hub (a model id), path (a local folder) or "
                       f"config (built from a configuration); got {', '.join(given) or 'none'}")
    if path is not None:
        path = _resolve(base, path)
        if not (Path(path) / "config.json").is_file():
            table.fail("path", f"no model folder with config.json at {path}")
    tokenizer = None
    if config is not None:
        for key, value in config.items():
            if key == "vocab_size":
                table.fail("config.vocab_size", "set by the trained tokenizer; give model.tokenizer.vocab_size")
            if key not in MODEL_CONFIG_FIELDS:
                table.fail(f"config.{key}", _choice_error("XLM-R configuration field", key,
                                                          sorted(MODEL_CONFIG_FIELDS)))
            kind = MODEL_CONFIG_FIELDS[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = config[key] = float(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                table.fail(f"config.{key}", f"expected {_type_name(kind)}, got {value!r}")
            if kind is int and value <= 0:
                table.fail(f"config.{key}", f"must be greater than 0, got {value!r}")
            if kind is float and value < 0:
                table.fail(f"config.{key}", f"must be 0 or more, got {value!r}")
            if key.endswith("_prob") and value >= 1:
                table.fail(f"config.{key}", f"a probability: must be below 1, got {value!r}")
            if key == "hidden_act" and value not in ACTIVATIONS:
                table.fail(f"config.{key}", _choice_error("activation", value, sorted(ACTIVATIONS)))
        if config.get("hidden_size", 768) % config.get("num_attention_heads", 12):
            table.fail("config.num_attention_heads", "must divide hidden_size")
        tok = _Table(file, "model.tokenizer", tok_data or {})
        vocab = tok.get("vocab_size", int, TokenizerSpec.vocab_size)
        if vocab < 100 or vocab > MAX_VOCAB:
            tok.fail("vocab_size", f"must be at least 100 and at most {MAX_VOCAB:,}, got {vocab}")
        corpus = tok.get_str_list("corpus", TokenizerSpec.corpus)
        if not corpus:
            tok.fail("corpus", "must name at least one corpus")
        tok.finish()
        tokenizer = TokenizerSpec(vocab_size=vocab, corpus=_corpus(tok, "corpus", base, corpus))
    elif tok_data is not None:
        table.fail("tokenizer", "only a model built from config trains a tokenizer; "
                                "hub and path models bring their own")
    return ModelSpec(hub=hub, revision=revision, path=path, config=config, tokenizer=tokenizer,
                     init_seed=init_seed, trust_remote_code=trust)


def _task_name(table: _Table, key: str, name: str) -> TaskSpec:
    if name not in TASKS:
        table.fail(key, _choice_error("task", name, sorted(TASKS)))
    return TASKS[name]


def _task_settings(file: str, base: Path, name: str, spec: TaskSpec, data: dict) -> TaskSettings:
    table = _Table(file, f"tasks.{name}", data)
    languages = table.get_str_list("languages", spec.languages)
    if not languages:
        table.fail("languages", "must name at least one language")
    for lang in languages:
        if lang not in spec.all_languages:
            table.fail("languages", _choice_error(f"language for {name}", lang, list(spec.all_languages)))
    if len(set(languages)) != len(languages):
        table.fail("languages", "lists a language twice")
    values: dict[str, Any] = {"languages": languages}
    for key in ("train_file", "validation_file", "eval_files"):
        value = table.get(key, str)
        if value is None:
            continue
        if spec.generated:
            table.fail(key, f"{name} is generated offline and reads no files")
        value = _resolve(base, os.path.expandvars(value))
        if unset_variable(value):
            values[key] = value  # checked when the stage runs, with the variable set
            continue
        if key == "eval_files":
            if "{lang}" not in value:
                table.fail(key, "must contain {lang}, filled with each evaluation language")
            for lang in languages:
                if not Path(value.replace("{lang}", lang)).is_file():
                    table.fail(key, f"no file for language {lang!r} at " + value.replace("{lang}", lang))
        elif key == "train_file" and "{lang}" in value:
            pass  # checked per training language below
        elif not Path(value).is_file():
            table.fail(key, f"no file at {value}")
        values[key] = value
    for key in ("max_train_examples", "max_eval_examples"):
        value = table.get(key, int)
        if value is not None:
            if value < 0:
                table.fail(key, f"must be 0 (all) or more, got {value}")
            values[key] = value
    for key in ("generated_train_examples", "generated_eval_examples"):
        value = table.get(key, int)
        if value is not None:
            if not spec.generated:
                table.fail(key, f"only generated tasks take it; {name} loads its data")
            if value <= 0:
                table.fail(key, f"must be greater than 0, got {value}")
            values[key] = value
    train_languages = table.get_str_list("train_languages")
    if train_languages:
        for lang in train_languages:
            if lang not in spec.train_languages:
                table.fail("train_languages", _choice_error(
                    f"training language for {name}", lang, list(spec.train_languages)))
        if len(set(train_languages)) != len(train_languages):
            table.fail("train_languages", "lists a language twice")
        train_file = values.get("train_file")
        if train_file and len(train_languages) > 1 and "{lang}" not in train_file:
            table.fail("train_file", "must contain {lang} to train in several languages")
        values["train_languages"] = train_languages
    sampling = table.get("language_sampling", str)
    if sampling is not None:
        if sampling not in LANGUAGE_SAMPLING:
            table.fail("language_sampling", _choice_error("language sampling", sampling,
                                                          list(LANGUAGE_SAMPLING)))
        values["language_sampling"] = sampling
    temperature = table.get("sampling_temperature", float)
    if temperature is not None:
        if temperature <= 0:
            table.fail("sampling_temperature", f"must be greater than 0, got {temperature}")
        values["sampling_temperature"] = temperature
    train_file = values.get("train_file")
    if train_file and "{lang}" in train_file and not unset_variable(train_file):
        for lang in values.get("train_languages", ("en",)):
            if not Path(train_file.replace("{lang}", lang)).is_file():
                table.fail("train_file", f"no file for language {lang!r} at " + train_file.replace("{lang}", lang))
    data_dir = table.get("data_dir", str)
    if data_dir is not None:
        if spec.kind != RETRIEVAL:
            table.fail("data_dir", f"only retrieval tasks read a data folder; {name} reads "
                                   "train_file, validation_file and eval_files")
        data_dir = _resolve(base, os.path.expandvars(data_dir))
        if not unset_variable(data_dir) and not Path(data_dir).is_dir():
            table.fail("data_dir", f"no folder at {data_dir}")
        values["data_dir"] = data_dir
    overrides = table.get("hparams", dict)
    if overrides is not None:
        checked = _hparams(file, f"tasks.{name}.hparams", overrides, HParams())
        given = _hparam_values(_Table(file, f"tasks.{name}.hparams", overrides))
        values["hparams"] = {k: getattr(checked, k) for k in given}
    table.finish([f.name for f in fields(TaskSettings)])
    return TaskSettings(**values)


def _backend_profiles(file: str, base: Path, data: Any) -> dict[str, BackendProfile]:
    """``[backends.NAME]`` tables: a kind and its options, checked against the kind's table."""
    table = _Table(file, "backends", data)
    profiles = {}
    for name, raw in table.data.items():
        table.seen.add(name)
        where = f"backends.{name}"
        if name in BACKEND_KINDS:
            table.fail(name, f"{name!r} is a backend kind; give the profile another name")
        if not name.strip() or "/" in name:
            table.fail(name, "must be a name without '/'")
        entry = _Table(file, where, raw)
        kind = entry.get("kind", str, required=True)
        if kind not in BACKEND_KINDS:
            entry.fail("kind", _choice_error("backend kind", kind, sorted(BACKEND_KINDS)))
        options = defaults(kind)
        aliases = OPTION_ALIASES.get(kind, {})
        given: dict[str, str] = {}
        for key, value in entry.data.items():
            if key == "kind":
                continue
            entry.seen.add(key)
            ours = aliases.get(key, key)
            if ours in given:
                entry.fail(key, f"the same setting as {given[ours]!r}; give one of them")
            given[ours] = key
            checked, problem = check_option(kind, ours, value)
            if problem:
                entry.fail(key, problem)
            options[ours] = checked
        if kind == "deepspeed":
            if options["offload_params"] and options["zero_stage"] != 3:
                entry.fail("offload_params", "parameter offload needs zero_stage = 3")
            if options["preset"]:
                presets = preset_names()
                if options["preset"] not in presets:
                    entry.fail("preset", _choice_error("preset", options["preset"], presets))
            if options["config_file"]:
                path = _resolve(base, options["config_file"])
                if not Path(path).is_file():
                    entry.fail("config_file", f"no DeepSpeed JSON file at {path}")
                try:
                    import json

                    ds_config = json.loads(Path(path).read_text(encoding="utf-8"))
                    if not isinstance(ds_config, dict):
                        raise ValueError("not an object")
                except ValueError as exc:
                    entry.fail("config_file", f"{path} is not a JSON object ({exc})")
                auto = unfillable(ds_config)
                if auto:
                    entry.fail("config_file", f'{path}: {auto} is "auto", which only the Hugging '
                               f"Face Trainer's own fields can be ({', '.join(AUTO_FIELDS[:4])}, ...); "
                               "give it a value")
                options["config_file"] = path
        profiles[name] = BackendProfile(name=name, kind=kind, options=options)
    return profiles


def _launch(file: str, base: Path, data: Any) -> Launch:
    table = _Table(file, "launch", data)
    launcher = table.get("launcher", str, "python")
    if launcher not in LAUNCHERS:
        table.fail("launcher", _choice_error("launcher", launcher, list(LAUNCHERS)))
    values: dict[str, Any] = {"launcher": launcher}
    for key in ("nproc_per_node", "nnodes", "num_gpus", "master_port"):
        value = table.get(key, int)
        if value is not None:
            if value < (0 if key in ("num_gpus", "master_port") else 1):
                table.fail(key, f"must be {'0 or more' if key in ('num_gpus', 'master_port') else 'at least 1'}, "
                                f"got {value}")
            values[key] = value
    for key in ("rdzv_endpoint", "hostfile", "master_addr"):
        value = table.get(key, str)
        if value is not None:
            values[key] = value
    wrapper = table.get_str_list("wrapper")
    if wrapper:
        values["wrapper"] = wrapper
    devices = table.get("devices", list)
    if devices is not None:
        if not devices or not all(isinstance(d, (int, str)) and not isinstance(d, bool)
                                  and str(d).strip().isdigit() for d in devices):
            table.fail("devices", f"expected a non-empty list of GPU indices, got {devices!r}")
        if len({str(d) for d in devices}) != len(devices):
            table.fail("devices", "lists a device twice")
        values["devices"] = tuple(str(d).strip() for d in devices)
    for key in ("gpus_per_stage", "parallel_stages"):
        value = table.get(key, int)
        if value is not None:
            if value < (0 if key == "gpus_per_stage" else 1):
                table.fail(key, f"must be {'0 or more' if key == 'gpus_per_stage' else 'at least 1'}, "
                                f"got {value}")
            if value > MAX_SLOTS:
                table.fail(key, f"must be at most {MAX_SLOTS}, got {value}")
            values[key] = value
    table.finish([f.name for f in fields(Launch)])
    only = {"torchrun": ("nproc_per_node", "nnodes", "rdzv_endpoint"),
            "deepspeed": ("num_gpus", "hostfile", "master_addr", "master_port")}
    for other, keys in only.items():
        for key in keys:
            if key in values and launcher != other:
                table.fail(key, f"only the {other} launcher takes it (launcher is {launcher!r})")
    launch = Launch(**values)
    if launcher == "torchrun" and launch.nnodes > 1 and not launch.rdzv_endpoint:
        table.fail("rdzv_endpoint", f"{launch.nnodes} nodes need a rendezvous endpoint (host:port)")
    if launch.rdzv_endpoint and ":" not in launch.rdzv_endpoint:
        table.fail("rdzv_endpoint", f"expected host:port, got {launch.rdzv_endpoint!r}")
    if launch.hostfile:
        path = _resolve(base, launch.hostfile)
        if not Path(path).is_file():
            table.fail("hostfile", f"no hostfile at {path}")
        launch = Launch(**{**values, "hostfile": path})
    return launch


def _slurm(file: str, data: Any) -> SlurmSettings:
    """``[slurm]``: what each stage's job asks the cluster for (``--executor slurm``)."""
    table = _Table(file, "slurm", data)
    values: dict[str, Any] = {}
    for key in ("partition", "account"):
        value = table.get(key, str)
        if value is not None:
            values[key] = value
    for key, low in (("gpus_per_node", 0), ("cpus_per_task", 1), ("mem_gb", 0), ("time_min", 1)):
        value = table.get(key, int)
        if value is not None:
            if value < low:
                table.fail(key, f"must be at least {low}, got {value}")
            values[key] = value
    sbatch = table.get("sbatch", dict)
    if sbatch is not None:
        for key, value in sbatch.items():
            if not isinstance(value, (str, int)) or isinstance(value, bool) or not key.strip():
                table.fail(f"sbatch.{key}", f"expected a string or an integer, got {value!r}")
        values["sbatch"] = dict(sbatch)
    table.finish([f.name for f in fields(SlurmSettings)])
    return SlurmSettings(**values)


def _tracking(file: str, base: Path, data: Any) -> TrackingSettings:
    """``[tracking]``: the experiment trackers a run reports to (none unless named)."""
    table = _Table(file, "tracking", data)
    use = table.get_str_list("use")
    for name in use:
        if name not in TRACKERS:
            table.fail("use", _choice_error("tracker", name, list(TRACKERS)))
    if len(set(use)) != len(use):
        table.fail("use", "names a tracker twice")
    values: dict[str, Any] = {"use": use}
    for key in ("experiment", "dir", "mlflow_uri", "wandb_mode", "wandb_entity"):
        value = table.get(key, str)
        if value is not None:
            if not value.strip():
                table.fail(key, "must not be empty")
            values[key] = value
    if values.get("wandb_mode") not in (None, *WANDB_MODES):
        table.fail("wandb_mode", _choice_error("W&B mode", values["wandb_mode"], list(WANDB_MODES)))
    if "dir" in values:
        values["dir"] = _resolve(base, values["dir"])
    table.finish([f.name for f in fields(TrackingSettings)])
    return TrackingSettings(**values)


def load_launch(path: str | Path) -> Launch:
    """A ``[launch]`` section from its own file (``--launch``), replacing the recipe's."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such launch file") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: TOML syntax: {exc}") from None
    top = _Table(str(path), "", data)
    launch = _launch(str(path), path.resolve().parent, top.get("launch", dict, required=True))
    top.finish(["launch"])
    return launch


def _has_file(tasks_data: Any, task: str, key: str) -> bool:
    settings = tasks_data.get(task) if isinstance(tasks_data, dict) else None
    return isinstance(settings, dict) and isinstance(settings.get(key), str)


def parse_recipe(text: str, file: str, base: Path | None = None) -> Recipe:
    """Validate recipe text; ``base`` is the folder relative paths start from."""
    base = base or Path(file).resolve().parent
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{file}: TOML syntax: {exc}") from None
    except RecursionError:
        raise RecipeError(f"{file}: TOML nested too deeply to be a recipe") from None
    top = _Table(file, "", data)
    name = top.get("name", str) or Path(file).stem
    if not _NAME.fullmatch(name) or name in (".", ".."):
        top.fail("name", "must be a name, not a path: letters, digits, '.', '_' and '-', "
                         f"starting with a letter or digit; got {name!r}")
    description = top.get("description", str, "")
    output_dir = top.get("output_dir", str)
    seeds = top.get("seeds", list, [0])
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        top.fail("seeds", f"expected a non-empty list of integers 0 or more, got {seeds!r}")
    if any(s >= 2**32 for s in seeds):
        top.fail("seeds", f"each seed must be below 2**32 (what random generators take), got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        top.fail("seeds", "lists a seed twice")
    model = _model(file, base, top.get("model", dict, required=True))

    hp_data = top.get("hparams", dict, {})
    shared = _hparams(file, "hparams", {k: v for k, v in hp_data.items()
                                        if k not in ("intermediate", "target")}, HParams())
    hp_inter = _hparams(file, "hparams.intermediate", hp_data.get("intermediate", {}), shared)
    hp_target = _hparams(file, "hparams.target", hp_data.get("target", {}), shared)

    if model.config is not None:
        positions = model.config.get("max_position_embeddings", DEFAULT_MAX_POSITIONS)
        for phase, hp in (("intermediate", hp_inter), ("target", hp_target)):
            if hp.max_length > positions - 2:
                top.fail(f"hparams.{phase}.max_length" if phase in hp_data else "hparams.max_length",
                         f"{hp.max_length} exceeds what model.config.max_position_embeddings "
                         f"({positions}) allows: at most {positions - 2}")

    targets = top.get_str_list("targets", required=True)
    if not targets:
        top.fail("targets", "must name at least one target task")
    tasks_data = top.get("tasks", dict, {})
    for t in targets:
        spec = _task_name(top, "targets", t)
        if spec.kind == RETRIEVAL:
            if spec.evaluation is None and not _has_file(tasks_data, t, "data_dir"):
                top.fail("targets", f"{t} has no data on the hub; give tasks.{t}.data_dir "
                                    f"({spec.local_files})")
            continue
        if spec.train is None and not spec.generated and not _has_file(tasks_data, t, "train_file"):
            top.fail("targets", f"{t} has no English training data on the hub; give "
                                f"tasks.{t}.train_file ({spec.local_files})")
        if (spec.evaluation or spec.validation) is None and not spec.generated \
                and not _has_file(tasks_data, t, "eval_files") \
                and not _has_file(tasks_data, t, "validation_file"):
            top.fail("targets", f"{t} has no evaluation data on the hub; give "
                                f"tasks.{t}.validation_file ({spec.local_files})")
    if len(set(targets)) != len(targets):
        top.fail("targets", "lists a task twice")

    profiles = _backend_profiles(file, base, top.get("backends", dict, {}))
    launch = _launch(file, base, top.get("launch", dict, {}))
    slurm = _slurm(file, top.get("slurm", dict, {}))
    tracking = _tracking(file, base, top.get("tracking", dict, {}))
    arms_data = top.get("arms", list, required=True)
    if not arms_data:
        top.fail("arms", "must define at least one arm ([[arms]])")
    arms = []
    for i, arm_data in enumerate(arms_data):
        table = _Table(file, f"arms[{i}]", arm_data)
        arm_name = table.get("name", str, required=True)
        if not arm_name.strip() or "/" in arm_name:
            table.fail("name", f"must be a non-empty name without '/', got {arm_name!r}")
        intermediate = table.get_str_list("intermediate")
        for t in intermediate:
            spec = _task_name(table, "intermediate", t)
            if spec.kind == RETRIEVAL:
                table.fail("intermediate", f"{t} is a retrieval task with no training data; "
                                           "name it in targets")
            if spec.train is None and not spec.generated and not _has_file(tasks_data, t, "train_file"):
                table.fail("intermediate", f"{t} has no training data on the hub; give "
                                           f"tasks.{t}.train_file ({spec.local_files})")
            if spec.validation is None and not spec.generated \
                    and not _has_file(tasks_data, t, "validation_file"):
                table.fail("intermediate", f"{t} has no validation data on the hub; give "
                                           f"tasks.{t}.validation_file ({spec.local_files})")
        if len(set(intermediate)) != len(intermediate):
            table.fail("intermediate", "lists a task twice")
        mlm_data = table.get("mlm", dict)
        mlm = _mlm(file, base, f"arms[{i}].mlm", mlm_data) if mlm_data is not None else None
        if mlm is not None and not intermediate:
            table.fail("mlm", "continued MLM is mixed into intermediate training; "
                              "name at least one intermediate task")
        backend = table.get("backend", str, "torch")
        phase_backends = {}
        for key in ("backend", "intermediate_backend", "target_backend"):
            value = table.get(key, str)
            if value is not None and value not in BACKENDS and value not in profiles:
                table.fail(key, _choice_error("backend", value, sorted(BACKENDS) + sorted(profiles)))
            phase_backends[key] = value
        if phase_backends["intermediate_backend"] and not intermediate:
            table.fail("intermediate_backend", "this arm has no intermediate task")
        table.finish()
        if any(a.name == arm_name for a in arms):
            table.fail("name", f"another arm is already called {arm_name!r}")
        arms.append(Arm(name=arm_name, intermediate=intermediate, mlm=mlm,
                        backend=phase_backends["intermediate_backend"] or backend,
                        target_backend=phase_backends["target_backend"] or backend))

    used = set(targets) | {t for a in arms for t in a.intermediate}
    tasks: dict[str, TaskSettings] = {}
    tasks_table = _Table(file, "tasks", tasks_data)
    for task_name, settings in tasks_data.items():
        _task_name(tasks_table, task_name, task_name)
        if task_name not in used:
            tasks_table.fail(task_name, "settings for a task no arm or target uses")
        tasks_table.seen.add(task_name)
    for task_name in sorted(used):
        tasks[task_name] = _task_settings(file, base, task_name, TASKS[task_name],
                                          tasks_data.get(task_name, {}))
        own = (tasks[task_name].hparams or {}).get("max_length")
        if model.config is not None and own is not None:
            positions = model.config.get("max_position_embeddings", DEFAULT_MAX_POSITIONS)
            if own > positions - 2:
                top.fail(f"tasks.{task_name}.hparams.max_length",
                         f"{own} exceeds what model.config.max_position_embeddings ({positions}) "
                         f"allows: at most {positions - 2}")
    top.finish(["name", "description", "output_dir", "seeds", "model", "hparams", "targets",
                "arms", "tasks", "backends", "launch", "slurm", "tracking"])
    return Recipe(name=name, path=str(Path(file)), model=model, arms=tuple(arms),
                  targets=targets, seeds=tuple(seeds), tasks=tasks,
                  hparams_intermediate=hp_inter, hparams_target=hp_target,
                  description=description, output_dir=output_dir, backends=profiles,
                  launch=launch, slurm=slurm, tracking=tracking)


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: is a folder; expected a recipe .toml file") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not UTF-8 text; expected a TOML recipe") from None
    return parse_recipe(text, str(path), path.resolve().parent)
