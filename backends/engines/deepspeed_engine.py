"""DeepSpeed ZeRO: stages 2 and 3, optimizer and parameter offload to CPU, bf16 or fp16,
gradient accumulation; one process or many under torchrun or the deepspeed launcher.

The configuration is generated from the recipe (batch size, accumulation, clipping,
precision, ZeRO stage and offload), then a preset from ``backends/presets`` and a
user's JSON file override its fields. The optimiser and schedule are the torch
backend's (AdamW without decay on biases and norms, linear warm-up and decay), handed to
DeepSpeed, so the two backends train the same model the same way. Saving under ZeRO-3
gathers the 16-bit weights to rank 0, so the hand-off checkpoint is complete.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

from xstilts_tui.protocol.backend_options import PRESETS_DIR, defaults
from xstilts_tui.protocol.deepspeed_auto import fill_auto
from xstilts_tui.protocol.hparams import HParams

from . import distributed
from .base import Backend
from .torch_engine import optimizer_groups
from .loop import train_loop
from .training import STATE, Selection, TrainJob, TrainStats, find_state, fresh_state_folder, install_state

BEST_PREFIX = "best-step"


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def build_config(hparams: HParams, options: dict[str, Any], precision: str,
                 world: int = 1, steps: int | None = None,
                 hidden_size: int | None = None) -> dict[str, Any]:
    """The DeepSpeed configuration of a stage: generated, then preset, then user file,
    whose ``"auto"`` values are filled from the recipe as the HF Trainer fills them."""
    options = {**defaults("deepspeed"), **options}
    stage = options["zero_stage"]
    zero: dict[str, Any] = {"stage": stage}
    if options.get("offload_optimizer"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if options.get("offload_params"):
        zero["offload_param"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    config = {
        "train_micro_batch_size_per_gpu": hparams.batch_size,
        "gradient_accumulation_steps": hparams.grad_accum,
        "train_batch_size": hparams.batch_size * hparams.grad_accum * world,
        "gradient_clipping": hparams.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16"},
        # Our own AdamW (the torch backend's), also when the optimizer states are offloaded.
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if options.get("preset"):
        config = _merge(config, json.loads((PRESETS_DIR / f"{options['preset']}.json").read_text()))
    if options.get("config_file"):
        config = _merge(config, json.loads(Path(options["config_file"]).read_text()))
    return fill_auto(config, hparams, precision, world, steps, hidden_size)


class DeepSpeedBackend(Backend):
    name = "deepspeed"

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        distributed.ensure_rendezvous_env()
        self._device = distributed.device()
        self.precision = "fp32"
        self.engine = None
        self.config: dict[str, Any] = {}

    @property
    def device(self):
        return self._device

    def _choose_precision(self, requested: str) -> str:
        cuda = self._device.type == "cuda"
        if requested == "fp32":
            return "fp32"
        if requested == "fp16":
            if not cuda:
                raise RuntimeError("precision fp16 asked for, but fp16 training needs a CUDA GPU")
            return "fp16"
        has_bf16 = cuda and torch.cuda.is_bf16_supported()
        if requested == "bf16" and not has_bf16:
            raise RuntimeError("precision bf16 asked for, but this device has no bf16 support")
        return "bf16" if has_bf16 else "fp32"

    # --- saving ---------------------------------------------------------------------------

    def _gathered_state_dict(self, out_dir: Path, name: str) -> dict[str, Any] | None:
        """The full model weights on rank 0 (None on the others): under ZeRO-3 the 16-bit
        weights are gathered from every rank. Every rank must call this."""
        if distributed.rank() == 0:
            out_dir.mkdir(parents=True, exist_ok=True)
        distributed.barrier()
        self.engine.save_16bit_model(str(out_dir), name)
        distributed.barrier()
        if distributed.rank() != 0:
            return None
        return torch.load(out_dir / name, map_location="cpu", weights_only=True)

    def _fp32_masters(self) -> dict[str, Any]:
        """Each trained parameter's fp32 master weights on rank 0, as DeepSpeed's
        ``zero_to_fp32`` would give them (empty elsewhere). Every rank must call this
        (under ZeRO-3 each parameter is gathered)."""
        from deepspeed.utils import safe_get_full_fp32_param

        out = {}
        for name, param in self.engine.module.named_parameters():
            if not param.requires_grad:
                continue
            full = safe_get_full_fp32_param(param)
            if full is not None and distributed.rank() == 0:
                out[name] = full.detach().to("cpu", torch.float32).clone()
        return out

    def save(self, model, tokenizer, out_dir: Path) -> None:
        """Every rank calls this (the weights are gathered); rank 0 writes the primary
        task model in the transformers layout, as safetensors, its trained parameters from
        the fp32 master weights (a bf16 stage hands on full precision, as torch's does)."""
        if self.engine is None:
            return super().save(model, tokenizer, out_dir)
        state = self._gathered_state_dict(out_dir, "gathered.pt")
        masters = self._fp32_masters()
        if state is None:
            return
        (out_dir / "gathered.pt").unlink()
        state.update(masters)  # trained parameters in full precision, not their 16-bit rounding
        primary = next(name for name in model.models if name != "mlm")
        prefix = f"models.{primary}."
        weights = {k[len(prefix):]: v.float().contiguous() for k, v in state.items()
                   if k.startswith(prefix)}
        model.primary.save_pretrained(out_dir, state_dict=weights, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)

    # --- training ---------------------------------------------------------------------------

    def train(self, job: TrainJob) -> TrainStats:
        return train_loop(job, self)

    def begin(self, job: TrainJob, selection: Selection) -> int:
        """The configuration, the optimiser and schedule (ours unless the user's file names
        DeepSpeed's own), the engine, and a resume state loaded when there is one."""
        import deepspeed
        from transformers import get_linear_schedule_with_warmup

        hp, model, steps = job.hparams, job.model, job.steps
        self.precision = self._choose_precision(hp.precision)
        world = distributed.world_size()
        deepspeed.init_distributed(dist_backend="nccl" if self._device.type == "cuda" else "gloo",
                                   verbose=False)
        hidden = next((m.config.hidden_size for m in model.modules()
                       if hasattr(getattr(m, "config", None), "hidden_size")), None)
        self.config = build_config(hp, self.options, self.precision, world, steps, hidden)
        warmup = int(hp.warmup_ratio * steps)
        optimizer = None if "optimizer" in self.config else torch.optim.AdamW(
            optimizer_groups(model, hp.weight_decay), lr=hp.lr, eps=hp.adam_eps)
        if "scheduler" in self.config:
            scheduler = None
        elif optimizer is None:
            def scheduler(opt):
                return get_linear_schedule_with_warmup(opt, warmup, steps)
        else:
            scheduler = get_linear_schedule_with_warmup(optimizer, warmup, steps)
        self._scheduler = scheduler
        self.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer,
                                                    lr_scheduler=scheduler, config=self.config)
        found = find_state(job.state_dir) if job.state_dir else None
        if found is None:
            return 0
        _, client = self.engine.load_checkpoint(str(found), tag="state")
        selection.load(client["selection"])
        torch.set_rng_state(client["rng"])
        if self._device.type == "cuda" and client.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(client["rng_cuda"])
        job.log(f"resumed from the state saved at step {client['step']}")
        return client["step"]

    def train_mode(self) -> None:
        self.engine.train()

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self._device) for k, v in batch.items()}

    def forward_backward(self, task: str, batch: dict[str, Any], last: bool):
        """The engine accumulates, and steps the optimiser at the accumulation boundary."""
        loss = self.engine(task, **batch)
        self.engine.backward(loss)
        self.engine.step()
        return loss

    def optimizer_step(self) -> None:
        """Done by the engine in ``forward_backward``."""

    def lr(self) -> float:
        """Our schedule's rate; where the user's file names DeepSpeed's own optimizer or
        schedule, the engine's (its optimizer's first group)."""
        last = getattr(self._scheduler, "get_last_lr", None)
        return last()[0] if last is not None else self.engine.get_lr()[0]

    def keep_best(self, job: TrainJob, step: int) -> None:
        """The gathered weights and the fp32 master weights on disk (nothing to keep when
        the last step is the best)."""
        if step < job.steps and job.state_dir:
            self._gathered_state_dict(job.state_dir, f"{BEST_PREFIX}{step}.pt")
            masters = self._fp32_masters()
            if distributed.rank() == 0:
                torch.save(masters, job.state_dir / f"{BEST_PREFIX}{step}.fp32.pt")
            distributed.barrier()

    def save_state(self, job: TrainJob, step: int, selection: Selection) -> None:
        self._save_state(job, step, selection)

    def restore_best(self, job: TrainJob, step: int, selection: Selection) -> bool:
        if selection.best_step is None or selection.best_step == step or not job.state_dir:
            return False
        self._restore(job.state_dir / f"{BEST_PREFIX}{selection.best_step}.pt")
        return True

    def end(self) -> None:
        """Nothing: every rank left the last save or restore together."""

    def _save_state(self, job: TrainJob, step: int, selection: Selection) -> None:
        """A resume state through DeepSpeed's own checkpoint (every rank writes its
        shards), then put in place by rank 0."""
        tmp = fresh_state_folder(job.state_dir) if distributed.rank() == 0 else job.state_dir / (STATE + ".tmp")
        distributed.barrier()
        self.engine.save_checkpoint(str(tmp), tag="state", client_state={
            "step": step, "selection": selection.to_dict(), "rng": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state() if self._device.type == "cuda" else None})
        distributed.barrier()
        if distributed.rank() == 0:
            install_state(job.state_dir, tmp, {"step": step, "events_offset": job.events_offset()})
        distributed.barrier()

    def _restore(self, path: Path) -> None:
        """Load kept weights (a gathered state dict) back into the engine's module."""
        import deepspeed

        module = self.engine.module
        if self.config["zero_optimization"]["stage"] == 3:
            with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=0):
                if distributed.rank() == 0:
                    module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True),
                                           strict=False)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            module.load_state_dict(state, strict=False)
        distributed.barrier()
        self._restore_masters(path.with_name(path.name.replace(".pt", ".fp32.pt")))

    def _restore_masters(self, path: Path) -> None:
        """The kept step's fp32 master weights back into the optimizer's partitions, so
        that the hand-off (``_fp32_masters``) is that step's. Every rank calls this."""
        from deepspeed.utils import safe_set_full_fp32_param

        masters = torch.load(path, map_location="cpu", weights_only=True)
        for name, param in self.engine.module.named_parameters():
            if param.requires_grad and name in masters:
                safe_set_full_fp32_param(param, masters[name].to(self._device))
        distributed.barrier()
