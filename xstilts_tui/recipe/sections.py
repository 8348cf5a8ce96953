"""The recipe's sections, each read and checked into its typed object: hyper-parameters
(with the QA windows fitted to a short ``max_length``), the model, continued MLM,
backend profiles, the launch, SLURM and tracking."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from xstilts_tui.data.sources import unset_variable
from xstilts_tui.protocol.backend_options import BACKEND_KINDS, OPTION_ALIASES, check_option, defaults, preset_names
from xstilts_tui.protocol.deepspeed_auto import AUTO_FIELDS, unfillable
from xstilts_tui.protocol.hparams import (HF_HPARAM_NAMES, HF_PRECISION_FLAGS, HPARAM_FIELDS, NON_NEGATIVE,
                                          POSITIVE, PRECISIONS, HParams, hparam_aliases)
from xstilts_tui.recipe.schema import (ACTIVATIONS, LAUNCHERS, MAX_SLOTS, MAX_VOCAB, MODEL_CONFIG_FIELDS,
                                       TOKENIZER_CORPORA, TRACKERS, WANDB_MODES, _HUB_ID, BackendProfile,
                                       Launch, MLMSpec, ModelSpec, RecipeError, SlurmSettings,
                                       TokenizerSpec, TrackingSettings)
from xstilts_tui.recipe.table import Table, choice_error, type_name

def hparam_values(table: Table) -> dict[str, Any]:
    """The hyper-parameters a table sets, under our names, each checked."""
    values = {}
    for name, f in HPARAM_FIELDS.items():
        kind = {"float": float, "int": int, "str": str, "bool": bool}[f.type]
        aliases = hparam_aliases(name)
        value = table.get(name, kind, aliases=aliases)
        if value is None:
            continue
        shown = next((a for a in aliases if a in table.data), name)
        if name in POSITIVE and value <= 0:
            table.fail(shown, f"must be greater than 0, got {value!r}")
        if name in NON_NEGATIVE and value < 0:
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


def read_hparams(file: str, where: str, data: dict, base: HParams) -> HParams:
    table = Table(file, where, data)
    values = hparam_values(table)
    table.finish([*HPARAM_FIELDS, *HF_HPARAM_NAMES, *HF_PRECISION_FLAGS])
    merged = HParams(**{**asdict(base), **values})
    merged = _fit_qa_defaults(merged, values)
    if merged.precision not in PRECISIONS:
        table.fail("precision", choice_error("precision", merged.precision, list(PRECISIONS)))
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


def resolve_path(base: Path, value: str) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def read_corpus(table: Table, key: str, base: Path, items: tuple[str, ...]) -> tuple[str, ...]:
    """Corpus names ("demo") kept, file paths resolved and checked."""
    resolved = []
    for item in items:
        if item in TOKENIZER_CORPORA:
            resolved.append(item)
            continue
        p = resolve_path(base, item)
        if not Path(p).is_file():
            table.fail(key, f"{item!r} is neither a known corpus ({', '.join(TOKENIZER_CORPORA)}) "
                            f"nor a file (looked at {p})")
        resolved.append(p)
    return tuple(resolved)


def read_mlm(file: str, base: Path, where: str, data: Any) -> MLMSpec:
    table = Table(file, where, data)
    ratio = table.get("ratio", float, required=True)
    if not 0 < ratio < 1:
        table.fail("ratio", f"must be between 0 and 1 (the share of masked-LM batches), got {ratio}")
    corpus = table.get_str_list("corpus", MLMSpec.corpus)
    if not corpus:
        table.fail("corpus", "must name at least one corpus")
    table.finish()
    return MLMSpec(ratio=ratio, corpus=read_corpus(table, "corpus", base, corpus))


def read_model(file: str, base: Path, data: dict) -> ModelSpec:
    table = Table(file, "model", data)
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
        path = resolve_path(base, path)
        if not (Path(path) / "config.json").is_file():
            table.fail("path", f"no model folder with config.json at {path}")
    tokenizer = None
    if config is not None:
        for key, value in config.items():
            if key == "vocab_size":
                table.fail("config.vocab_size", "set by the trained tokenizer; give model.tokenizer.vocab_size")
            if key not in MODEL_CONFIG_FIELDS:
                table.fail(f"config.{key}", choice_error("XLM-R configuration field", key,
                                                          sorted(MODEL_CONFIG_FIELDS)))
            kind = MODEL_CONFIG_FIELDS[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = config[key] = float(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                table.fail(f"config.{key}", f"expected {type_name(kind)}, got {value!r}")
            if kind is int and value <= 0:
                table.fail(f"config.{key}", f"must be greater than 0, got {value!r}")
            if kind is float and value < 0:
                table.fail(f"config.{key}", f"must be 0 or more, got {value!r}")
            if key.endswith("_prob") and value >= 1:
                table.fail(f"config.{key}", f"a probability: must be below 1, got {value!r}")
            if key == "hidden_act" and value not in ACTIVATIONS:
                table.fail(f"config.{key}", choice_error("activation", value, sorted(ACTIVATIONS)))
        if config.get("hidden_size", 768) % config.get("num_attention_heads", 12):
            table.fail("config.num_attention_heads", "must divide hidden_size")
        tok = Table(file, "model.tokenizer", tok_data or {})
        vocab = tok.get("vocab_size", int, TokenizerSpec.vocab_size)
        if vocab < 100 or vocab > MAX_VOCAB:
            tok.fail("vocab_size", f"must be at least 100 and at most {MAX_VOCAB:,}, got {vocab}")
        corpus = tok.get_str_list("corpus", TokenizerSpec.corpus)
        if not corpus:
            tok.fail("corpus", "must name at least one corpus")
        tok.finish()
        tokenizer = TokenizerSpec(vocab_size=vocab, corpus=read_corpus(tok, "corpus", base, corpus))
    elif tok_data is not None:
        table.fail("tokenizer", "only a model built from config trains a tokenizer; "
                                "hub and path models bring their own")
    return ModelSpec(hub=hub, revision=revision, path=path, config=config, tokenizer=tokenizer,
                     init_seed=init_seed, trust_remote_code=trust)


def read_backend_profiles(file: str, base: Path, data: Any) -> dict[str, BackendProfile]:
    """``[backends.NAME]`` tables: a kind and its options, checked against the kind's table."""
    table = Table(file, "backends", data)
    profiles = {}
    for name, raw in table.data.items():
        table.seen.add(name)
        where = f"backends.{name}"
        if name in BACKEND_KINDS:
            table.fail(name, f"{name!r} is a backend kind; give the profile another name")
        if not name.strip() or "/" in name:
            table.fail(name, "must be a name without '/'")
        entry = Table(file, where, raw)
        kind = entry.get("kind", str, required=True)
        if kind not in BACKEND_KINDS:
            entry.fail("kind", choice_error("backend kind", kind, sorted(BACKEND_KINDS)))
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
                    entry.fail("preset", choice_error("preset", options["preset"], presets))
            if options["config_file"]:
                path = resolve_path(base, options["config_file"])
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


def read_launch(file: str, base: Path, data: Any) -> Launch:
    table = Table(file, "launch", data)
    launcher = table.get("launcher", str, "python")
    if launcher not in LAUNCHERS:
        table.fail("launcher", choice_error("launcher", launcher, list(LAUNCHERS)))
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
        path = resolve_path(base, launch.hostfile)
        if not Path(path).is_file():
            table.fail("hostfile", f"no hostfile at {path}")
        launch = Launch(**{**values, "hostfile": path})
    return launch


def read_slurm(file: str, data: Any) -> SlurmSettings:
    """``[slurm]``: what each stage's job asks the cluster for (``--executor slurm``)."""
    table = Table(file, "slurm", data)
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


def read_tracking(file: str, base: Path, data: Any) -> TrackingSettings:
    """``[tracking]``: the experiment trackers a run reports to (none unless named)."""
    table = Table(file, "tracking", data)
    use = table.get_str_list("use")
    for name in use:
        if name not in TRACKERS:
            table.fail("use", choice_error("tracker", name, list(TRACKERS)))
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
        table.fail("wandb_mode", choice_error("W&B mode", values["wandb_mode"], list(WANDB_MODES)))
    if "dir" in values:
        values["dir"] = resolve_path(base, values["dir"])
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
    top = Table(str(path), "", data)
    launch = read_launch(str(path), path.resolve().parent, top.get("launch", dict, required=True))
    top.finish(["launch"])
    return launch
