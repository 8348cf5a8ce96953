"""``"auto"`` in a DeepSpeed JSON file, as the Hugging Face Trainer fills it
(``transformers.integrations.deepspeed``, ``trainer_config_process`` and
``trainer_config_finalize``), from the recipe instead of TrainingArguments. Any other
``"auto"`` is refused when the recipe is validated (no torch here)."""

from __future__ import annotations

import copy
from typing import Any

from xstilts_tui.protocol.hparams import HParams

# The fields the Trainer fills, by dotted path.
AUTO_FIELDS = (
    "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size",
    "gradient_clipping", "fp16.enabled", "bf16.enabled",
    "optimizer.params.lr", "optimizer.params.betas", "optimizer.params.eps",
    "optimizer.params.weight_decay",
    "scheduler.params.warmup_min_lr", "scheduler.params.warmup_max_lr",
    "scheduler.params.warmup_num_steps", "scheduler.params.total_num_steps",
    "zero_optimization.reduce_bucket_size", "zero_optimization.stage3_prefetch_bucket_size",
    "zero_optimization.stage3_param_persistence_threshold",
)


def auto_paths(config: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every ``"auto"`` value."""
    out: list[str] = []
    if isinstance(config, dict):
        for key, value in config.items():
            out += auto_paths(value, f"{prefix}{key}.")
    elif isinstance(config, str) and config == "auto":
        out.append(prefix[:-1])
    return out


def unfillable(config: dict) -> str | None:
    """The first ``"auto"`` the Trainer's rules do not fill, or None."""
    return next((p for p in auto_paths(config) if p not in AUTO_FIELDS), None)


def fill_auto(config: dict, hparams: HParams, precision: str, world: int, steps: int | None,
              hidden_size: int | None) -> dict:
    """``config`` with its ``"auto"`` values filled (a copy)."""
    warmup = max(1, int(hparams.warmup_ratio * steps)) if steps else None
    stage = config.get("zero_optimization", {}).get("stage", 0)
    hidden = hidden_size or 0
    values = {
        "train_micro_batch_size_per_gpu": hparams.batch_size,
        "gradient_accumulation_steps": hparams.grad_accum,
        "train_batch_size": hparams.batch_size * hparams.grad_accum * world,
        "gradient_clipping": hparams.max_grad_norm,
        "fp16.enabled": precision == "fp16",
        "bf16.enabled": precision == "bf16",
        "optimizer.params.lr": hparams.lr,
        "optimizer.params.betas": [0.9, 0.999],  # torch's AdamW defaults, which we train with
        "optimizer.params.eps": hparams.adam_eps,
        "optimizer.params.weight_decay": hparams.weight_decay,
        "scheduler.params.warmup_min_lr": 0,
        "scheduler.params.warmup_max_lr": hparams.lr,
        "scheduler.params.warmup_num_steps": warmup,
        "scheduler.params.total_num_steps": steps,
        "zero_optimization.reduce_bucket_size": hidden * hidden if hidden else None,
        "zero_optimization.stage3_prefetch_bucket_size":
            int(0.9 * hidden * hidden) if hidden and stage == 3 else None,
        "zero_optimization.stage3_param_persistence_threshold":
            10 * hidden if hidden and stage == 3 else None,
    }
    out = copy.deepcopy(config)
    for path in auto_paths(out):
        value = values.get(path)
        keys = path.split(".")
        holder = out
        for key in keys[:-1]:
            holder = holder[key]
        if value is None:  # hidden-size fields outside ZeRO-3, or nothing known: DeepSpeed's default
            del holder[keys[-1]]
        else:
            holder[keys[-1]] = value
    return out
