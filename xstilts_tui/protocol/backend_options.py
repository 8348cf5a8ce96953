"""The training backends and their options, declared as data (no torch here).

A recipe names a backend kind (``torch``, ``deepspeed``, ``peft``) or a profile of its own
(``[backends.NAME]`` with ``kind`` and options); options are checked against this table
when the recipe is validated, so a bad one is a one-line error before anything runs.
``xstilts_tui.compute.engines.registry`` must implement the same kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# DeepSpeed configuration presets: deepspeed_presets/<name>.json beside this module.
PRESETS_DIR = Path(__file__).resolve().parent / "deepspeed_presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.json"))


@dataclass(frozen=True)
class Option:
    name: str
    kind: type  # int, float, bool, str or list (of strings)
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None


BACKEND_KINDS: dict[str, str] = {
    "torch": "plain PyTorch: AdamW, linear warm-up and decay, bf16 autocast on GPUs with it; "
             "DistributedDataParallel under torchrun",
    "deepspeed": "DeepSpeed ZeRO stage 2 or 3, optimizer and parameter offload to CPU, bf16/fp16; "
                 "one process or many under torchrun or the deepspeed launcher",
    "peft": "PEFT LoRA adapters on the encoder; the task heads trained in full; saves the "
            "adapter alone and the merged encoder for the next phase",
}

# An adapter's learning rate unless its profile names one: LoRA's own RoBERTa-base MNLI
# setting (Hu et al. 2021, Table 9); the field uses 1e-4 to 5e-4. Full fine-tuning's 1e-5
# barely moves adapters that start at zero.
ADAPTER_LR = 5e-4

BACKEND_OPTIONS: dict[str, tuple[Option, ...]] = {
    "torch": (),
    "deepspeed": (
        Option("zero_stage", int, 2, "ZeRO stage: 2 shards optimizer states and gradients, "
                                     "3 parameters too", choices=(0, 1, 2, 3)),
        Option("offload_optimizer", bool, False, "keep optimizer states in CPU memory"),
        Option("offload_params", bool, False, "keep parameters in CPU memory (ZeRO-3 only)"),
        Option("preset", str, "", "a preset in backends/presets (its file name without .json) "
                                  "whose fields override the generated configuration"),
        Option("config_file", str, "", "a DeepSpeed JSON file whose fields override the generated "
                                       "configuration and the preset (relative to the recipe)"),
    ),
    "peft": (
        Option("r", int, 8, "LoRA rank", minimum=1),
        Option("alpha", int, 16, "LoRA alpha (the update is scaled by alpha / r)", minimum=1),
        Option("dropout", float, 0.1, "dropout on the LoRA path", minimum=0.0, maximum=0.99),
        Option("target_modules", list, ["query", "value"],
               "the encoder's linear layers that get adapters (XLM-R: query, key, value, dense)"),
        Option("lr", float, ADAPTER_LR, "learning rate while training adapters, whatever the "
                                        "phase's (0: the phase's lr); LoRA wants a larger one than "
                                        "full fine-tuning's 1e-5", minimum=0.0),
    ),
}


# PEFT's LoraConfig names (and the Trainer's learning_rate) of our options.
OPTION_ALIASES: dict[str, dict[str, str]] = {
    "peft": {"lora_alpha": "alpha", "lora_dropout": "dropout", "learning_rate": "lr"},
}


def defaults(kind: str) -> dict[str, Any]:
    return {o.name: (list(o.default) if isinstance(o.default, list) else o.default)
            for o in BACKEND_OPTIONS[kind]}


def check_option(kind: str, name: str, value: Any) -> tuple[Any, str | None]:
    """The value as the backend takes it, or an error message for people."""
    options = {o.name: o for o in BACKEND_OPTIONS[kind]}
    if name not in options:
        known = ", ".join(sorted(options)) or "none"
        return None, f"unknown option for backend kind {kind}; known: {known}"
    option = options[name]
    if option.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if option.kind is list:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            return None, f"expected a non-empty list of names, got {value!r}"
    elif not isinstance(value, option.kind) or (option.kind is int and isinstance(value, bool)):
        names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
        return None, f"expected {names[option.kind]}, got {value!r}"
    if option.choices is not None and value not in option.choices:
        return None, f"must be one of {', '.join(map(str, option.choices))}, got {value!r}"
    if option.minimum is not None and value < option.minimum:
        return None, f"must be at least {option.minimum:g}, got {value!r}"
    if option.maximum is not None and value > option.maximum:
        return None, f"must be at most {option.maximum:g}, got {value!r}"
    return value, None
