"""Plain PyTorch: AdamW, linear warm-up and decay, gradient accumulation and clipping,
bf16 autocast on GPUs that support it (on CPUs with AVX512-BF16 or AMX when asked for);
seeded and deterministic on the CPU; resumable from its last saved state to the same
weights an uninterrupted run reaches.

Fused AdamW (one kernel over all parameters, on the CPU as on a GPU, as the Trainer's
default). On a GPU: batches copied from pinned memory without blocking, and with
``compile = true`` the model compiled by ``torch.compile`` (dynamic shapes: batches are
padded to their own longest member). On a CPU, where a recipe asks (``cpu_dropout =
true``), dropout draws its masks in blocks (``cpu_dropout``); by default every device runs
torch's own dropout and attention."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from . import cpu_dropout, distributed
from .base import Backend
from .loop import train_loop
from .training import Selection, TrainJob, TrainStats, find_state, load_state, save_state

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


def cpu_has_bf16() -> bool:
    """A CPU with bf16 arithmetic of its own (AVX512-BF16 or AMX), where autocast to bf16
    pays; elsewhere torch emulates bf16, slower than fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _frozen_names(model) -> set[str]:
    """Every name a parameter that is not trained goes by (tied ones under each name)."""
    return {name for name, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}


def _cpu_copy(model) -> dict[str, Any]:
    """What training can change, copied to the CPU: the trained parameters and the buffers.
    Frozen parameters (the word embeddings under ``freeze_embeddings``, a LoRA model's base
    weights) are the same at every step and are not copied."""
    frozen = _frozen_names(model)
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items() if k not in frozen}


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        self._device = distributed.device()
        self.precision = "fp32"
        self.compiled = False
        self.dropout = "torch"

    @property
    def device(self):
        return self._device

    def _choose_precision(self, requested: str) -> str:
        if requested == "fp32":
            return "fp32"
        if requested == "fp16":
            if self._device.type != "cuda":
                raise RuntimeError("precision fp16 asked for, but fp16 training needs a CUDA GPU")
            return "fp16"
        cuda = self._device.type == "cuda"
        has_bf16 = torch.cuda.is_bf16_supported() if cuda else cpu_has_bf16()
        if requested == "bf16" and not has_bf16:
            raise RuntimeError("precision bf16 asked for, but this device has no bf16 support"
                               + ("" if cuda else " (a CPU needs AVX512-BF16 or AMX)"))
        # auto: bf16 on GPUs that have it; a CPU keeps fp32 unless bf16 is asked for
        return "bf16" if has_bf16 and (cuda or requested == "bf16") else "fp32"

    def autocast(self):
        if self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(device_type=self._device.type, dtype=dtype)
        return contextlib.nullcontext()

    def train(self, job: TrainJob) -> TrainStats:
        self.dropout = "torch"
        if self._device.type == "cpu" and job.hparams.cpu_dropout and cpu_dropout.enable(job.model):
            self.dropout = "cpu"
        try:
            return self._train(job)
        finally:  # the model leaves as it came (its config names sdpa again)
            if self.dropout == "cpu":
                cpu_dropout.disable(job.model)

    def _train(self, job: TrainJob) -> TrainStats:
        return train_loop(job, self)

    # --- the loop's hooks -------------------------------------------------------------------

    def begin(self, job: TrainJob, selection: Selection) -> int:
        """Precision, the model on its device (wrapped for data parallelism, compiled when
        asked), AdamW and the linear schedule; a resume state loaded when there is one."""
        from transformers import get_linear_schedule_with_warmup

        hp, model = job.hparams, job.model
        self.precision = self._choose_precision(hp.precision)
        if self._device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        model.to(self._device)
        self._model, self._world = model, distributed.world_size()
        self._forward = model
        if self._world > 1:  # data parallel under torchrun: every rank its share of the batches
            distributed.init_process_group()
            self._forward = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self._device.index] if self._device.type == "cuda" else None,
                find_unused_parameters=len(getattr(model, "models", ())) > 1)
        if hp.compile:
            self._forward = torch.compile(self._forward, dynamic=True)
            self.compiled = True
        self._scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self._accum, self._clip = hp.grad_accum, hp.max_grad_norm
        # the device is the CPU or a GPU and trained parameters are floats: fused always applies
        self._optimizer = torch.optim.AdamW(optimizer_groups(model, hp.weight_decay),
                                            lr=hp.lr, eps=hp.adam_eps, fused=True)
        self._scheduler = get_linear_schedule_with_warmup(
            self._optimizer, int(hp.warmup_ratio * job.steps), job.steps)
        self._best: dict[str, Any] | None = None
        found = find_state(job.state_dir) if job.state_dir else None
        if found is None:
            return 0
        state = load_state(found)
        model.load_state_dict(state["model"])
        self._optimizer.load_state_dict(state["optimizer"])
        self._scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        if self._device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"])
        selection.load(state["selection"])
        self._best = state.get("best")
        job.log(f"resumed from the state saved at step {state['step']}")
        return state["step"]

    def train_mode(self) -> None:
        self._model.train()

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        cuda = self._device.type == "cuda"
        return {k: (v.pin_memory() if cuda else v).to(self._device, non_blocking=cuda)
                for k, v in batch.items()}

    def forward_backward(self, task: str, batch: dict[str, Any], last: bool):
        sync = contextlib.nullcontext() if self._world == 1 or last else self._forward.no_sync()
        with sync:
            with self.autocast():
                loss = self._forward(task, **batch)
            scaled = loss / self._accum
            (self._scaler.scale(scaled) if self._scaler else scaled).backward()
        return loss

    def optimizer_step(self) -> None:
        scaler, optimizer = self._scaler, self._optimizer
        if scaler:
            scaler.unscale_(optimizer)
        if self._clip > 0:
            torch.nn.utils.clip_grad_norm_(self._model.parameters(), self._clip)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        self._scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    def lr(self) -> float:
        return self._scheduler.get_last_lr()[0]

    def keep_best(self, job: TrainJob, step: int) -> None:
        """Kept in memory; nothing to keep when the last step is the best. The previous
        copy goes first: one copy at a time."""
        self._best = None
        self._best = _cpu_copy(self._model) if step < job.steps else None

    def save_state(self, job: TrainJob, step: int, selection: Selection) -> None:
        if distributed.rank() != 0:
            return
        save_state(job.state_dir, {
            "step": step, "model": self._model.state_dict(), "optimizer": self._optimizer.state_dict(),
            "scheduler": self._scheduler.state_dict(), "rng": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state() if self._device.type == "cuda" else None,
            "selection": selection.to_dict(), "best": self._best,
        }, {"step": step, "events_offset": job.events_offset()})

    def restore_best(self, job: TrainJob, step: int, selection: Selection) -> bool:
        self._optimizer.zero_grad(set_to_none=True)
        if selection.best_step is None or selection.best_step == step or self._best is None:
            return False
        missing, unexpected = self._model.load_state_dict(self._best, strict=False)
        left_out = set(missing) - _frozen_names(self._model)
        if unexpected or left_out:
            raise RuntimeError(f"the kept weights do not fit the model: {sorted(left_out)[:3]} missing, "
                               f"{sorted(unexpected)[:3]} unexpected")
        return True

    def end(self) -> None:
        distributed.barrier()
