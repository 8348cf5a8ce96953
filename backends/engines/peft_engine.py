"""PEFT LoRA: low-rank adapters on the encoder's linear layers (XLM-R: query and value by
default), the task heads trained in full and saved with the adapter (``modules_to_save``:
a LoRA model whose QA head is not saved scores at random once reloaded). Saves the
adapter alone (small) beside the hand-off checkpoint, which holds the merged encoder so
that any backend loads it. Trains with the torch backend's loop.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from .torch_engine import TorchBackend
from .training import TrainJob, TrainStats

ADAPTER_DIR = "adapter"


def head_module_names(task_model) -> list[str]:
    """The names (last component) of every task head: trained in full and saved."""
    names: set[str] = set()
    for task, model in task_model.models.items():
        if task == "mlm":
            continue  # continued MLM trains the adapters only; its head stays tied and frozen
        encoder = getattr(model, model.base_model_prefix)
        names.update(name for name, _ in model.named_children() if name != model.base_model_prefix
                     and name != "dropout")
        if getattr(encoder, "pooler", None) is not None:
            names.add("pooler")
    return sorted(names)


def lora_config(options: dict[str, Any], modules_to_save: list[str]):
    from peft import LoraConfig

    return LoraConfig(r=options["r"], lora_alpha=options["alpha"], lora_dropout=options["dropout"],
                      target_modules=list(options["target_modules"]),
                      modules_to_save=modules_to_save, bias="none")


def wrap(task_model, options: dict[str, Any]):
    """The task model with LoRA adapters on its shared encoder and its heads trainable."""
    from peft import get_peft_model

    return get_peft_model(task_model, lora_config(options, head_module_names(task_model)))


class PeftBackend(TorchBackend):
    name = "peft"

    def __init__(self, options: dict[str, Any] | None = None):
        from xstilts_tui.protocol.backend_options import defaults

        super().__init__({**defaults("peft"), **(options or {})})
        self.peft_model = None

    def train(self, job: TrainJob) -> TrainStats:
        task_model, hparams = job.model, job.hparams
        peft_model = wrap(task_model, self.options)
        self.peft_model = peft_model
        job.model = peft_model
        if self.options.get("lr"):
            job.hparams = replace(hparams, lr=self.options["lr"])
        try:
            return super().train(job)
        finally:
            job.model, job.hparams = task_model, hparams

    def save(self, model, tokenizer, out_dir: Path) -> None:
        """The adapter alone in ``out_dir/adapter`` (with the heads), then the merged
        model in ``out_dir``: the next phase loads it like any other checkpoint."""
        from . import distributed

        if self.peft_model is None:
            return super().save(model, tokenizer, out_dir)
        if distributed.rank() == 0:
            self.peft_model.save_pretrained(out_dir / ADAPTER_DIR, safe_serialization=True)
        merged = self.peft_model.merge_and_unload()
        self.peft_model = None
        super().save(merged, tokenizer, out_dir)
