"""Plain PyTorch: AdamW, linear warm-up and decay, gradient accumulation and clipping,
bf16 autocast on GPUs that support it; seeded and deterministic on the CPU."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .registry import Backend, ProgressFn, TrainStats, total_steps

_NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "LayerNorm.bias")


def optimizer_groups(model, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: no weight decay on biases and layer norms."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name.endswith(_NO_DECAY) else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        self._device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.precision = "fp32"

    @property
    def device(self):
        return self._device

    def _choose_precision(self, requested: str) -> str:
        if requested == "fp32":
            return "fp32"
        has_bf16 = self._device.type == "cuda" and torch.cuda.is_bf16_supported()
        if requested == "bf16" and not has_bf16:
            raise RuntimeError("precision bf16 asked for, but this device has no bf16 support")
        return "bf16" if has_bf16 else "fp32"

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(device_type=self._device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train(self, model, dataset: Sequence[Any], collate: Callable[[list[Any]], dict],
              hparams: dict[str, Any], seed: int, report: ProgressFn) -> TrainStats:
        from transformers import get_linear_schedule_with_warmup

        self.precision = self._choose_precision(hparams["precision"])
        if self._device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        model.to(self._device)
        model.train()
        steps = total_steps(len(dataset), hparams)
        optimizer = torch.optim.AdamW(optimizer_groups(model, hparams["weight_decay"]),
                                      lr=hparams["lr"], eps=hparams["adam_eps"])
        scheduler = get_linear_schedule_with_warmup(
            optimizer, int(hparams["warmup_ratio"] * steps), steps)
        generator = torch.Generator().manual_seed(seed)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=hparams["batch_size"], shuffle=True, collate_fn=collate,
            generator=generator, drop_last=False)
        accum = hparams["grad_accum"]
        step = micro = examples = 0
        window_loss, window_batches, window_examples = 0.0, 0, 0
        started = window_start = time.perf_counter()
        last_loss = float("nan")
        while step < steps:
            for batch in loader:
                batch = {k: v.to(self._device, non_blocking=True) for k, v in batch.items()}
                with self.autocast():
                    loss = model(**batch).loss
                (loss / accum).backward()
                n = batch["input_ids"].shape[0]
                examples += n
                window_examples += n
                window_loss += loss.detach().float()
                window_batches += 1
                micro += 1
                if micro % accum:
                    continue
                if hparams["max_grad_norm"] > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), hparams["max_grad_norm"])
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if step % hparams["log_every"] == 0 or step == steps:
                    now = time.perf_counter()
                    last_loss = float(window_loss) / window_batches
                    report(step, steps, last_loss, scheduler.get_last_lr()[0],
                           window_examples / max(now - window_start, 1e-9))
                    window_loss, window_batches, window_examples = 0.0, 0, 0
                    window_start = now
                if step >= steps:
                    break
        optimizer.zero_grad(set_to_none=True)
        wall = time.perf_counter() - started
        return TrainStats(steps=step, examples=examples, wall_s=wall,
                          examples_per_s=examples / max(wall, 1e-9), final_loss=last_loss)
