"""Plain PyTorch: AdamW, linear warm-up and decay, gradient accumulation and clipping,
bf16 autocast on GPUs that support it (on CPUs with AVX512-BF16 or AMX when asked for);
seeded and deterministic on the CPU; resumable from its last saved state to the same
weights an uninterrupted run reaches.

Fused AdamW (one kernel over all parameters, on the CPU as on a GPU, as the Trainer's
default). On a GPU: batches copied from pinned memory without blocking, and with
``compile = true`` the model compiled by ``torch.compile`` (dynamic shapes: batches are
padded to their own longest member). On a CPU, dropout draws its masks in blocks
(``cpu_dropout``: a MiniLM step here 1.12 to 1.25 times as fast; ``cpu_dropout = false`` keeps
torch's), and glibc keeps the memory a step frees for the next (``host_memory``)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from . import cpu_dropout
from . import distributed
from . import host_memory
from .registry import Backend
from .training import (Meter, Selection, TrainJob, TrainStats, evaluate_and_select, find_state,
                       load_state, save_state, stop_if_asked)

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


def _cpu_copy(model) -> dict[str, Any]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


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
        cpu = self._device.type == "cpu"
        if cpu and job.hparams.get("cpu_dropout", True) and cpu_dropout.enable(job.model):
            self.dropout = "cpu"
        try:
            with host_memory.reuse_freed_memory() if cpu else contextlib.nullcontext():
                return self._train(job)
        finally:  # the model leaves as it came (its config names sdpa again)
            if self.dropout == "cpu":
                cpu_dropout.disable(job.model)

    def _train(self, job: TrainJob) -> TrainStats:
        from transformers import get_linear_schedule_with_warmup

        hp = job.hparams
        model = job.model
        self.precision = self._choose_precision(hp["precision"])
        if self._device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        model.to(self._device)
        world, rank = distributed.world_size(), distributed.rank()
        forward = model
        if world > 1:  # data parallel under torchrun: every rank its share of the batches
            distributed.init_process_group()
            forward = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self._device.index] if self._device.type == "cuda" else None,
                find_unused_parameters=len(getattr(model, "models", ())) > 1)
        if hp.get("compile"):
            forward = torch.compile(forward, dynamic=True)
            self.compiled = True
        scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        steps = job.steps
        cuda = self._device.type == "cuda"
        # the device is the CPU or a GPU and trained parameters are floats: fused always applies
        optimizer = torch.optim.AdamW(optimizer_groups(model, hp["weight_decay"]),
                                      lr=hp["lr"], eps=hp["adam_eps"], fused=True)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(hp["warmup_ratio"] * steps), steps)
        selection = Selection(patience=hp["patience"])
        best: dict[str, Any] | None = None
        step = 0
        found = find_state(job.state_dir) if job.state_dir else None
        if found is not None:
            state = load_state(found)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            if self._device.type == "cuda" and state.get("rng_cuda") is not None:
                torch.cuda.set_rng_state(state["rng_cuda"])
            selection.load(state["selection"])
            best = state.get("best")
            step = state["step"]
            job.log(f"resumed from the state saved at step {step}")
        resumed_from = step
        accum = hp["grad_accum"]
        meter = Meter(job, world)
        stopped_early = False
        model.train()
        while step < steps and not selection.should_stop:
            for m in range(accum):
                task, batch = job.batch((step * accum + m) * world + rank)
                batch = {k: (v.pin_memory() if cuda else v).to(self._device, non_blocking=cuda)
                         for k, v in batch.items()}
                sync = contextlib.nullcontext() if world == 1 or m == accum - 1 else forward.no_sync()
                with sync:
                    with self.autocast():
                        loss = forward(task, **batch)
                    scaled = loss / accum
                    (scaler.scale(scaled) if scaler else scaled).backward()
                meter.micro_batch(batch, loss)
            if scaler:
                scaler.unscale_(optimizer)
            if hp["max_grad_norm"] > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), hp["max_grad_norm"])
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            meter.step_done(step, scheduler.get_last_lr()[0])
            improved, stopped_early = evaluate_and_select(job, step, selection)
            if improved:  # kept in memory; nothing to keep when the last step is the best
                best = _cpu_copy(model) if step < steps else None
            model.train()
            if stopped_early:
                break
            def save() -> None:
                if rank == 0:
                    save_state(job.state_dir, {
                        "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(),
                        "rng_cuda": torch.cuda.get_rng_state() if self._device.type == "cuda" else None,
                        "selection": selection.to_dict(), "best": best,
                    }, {"step": step, "events_offset": job.events_offset()})

            if job.state_dir and hp["save_every"] and step % hp["save_every"] == 0 and step < steps:
                save()
            stop_if_asked(job, step, save)
        optimizer.zero_grad(set_to_none=True)
        if selection.best_step is not None and selection.best_step != step and best is not None:
            model.load_state_dict(best)
            job.log(f"kept the weights of step {selection.best_step} "
                    f"(validation {selection.best_score:.2f})")
        distributed.barrier()
        return meter.stats(step, selection, stopped_early=stopped_early, resumed_from=resumed_from,
                           trainable_params=trainable)
