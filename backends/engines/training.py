"""What every backend's training loop shares: the job it is given, checkpoint
selection with early stopping, and the resume state saved every few steps.

A resume state is one folder written under a temporary name and renamed (``state``),
holding the model, optimiser, schedule and random-number states (``train_state.pt``,
loaded with ``weights_only``) and ``resume.json`` (step, and how far the stage's event
file had got, so the control plane can cut events written after it).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xstilts_tui.protocol.stage_cache import RESUME_FILE, STATE, records, usable_state
from xstilts_tui.protocol.hparams import HParams


@dataclass
class TrainStats:
    steps: int  # the optimiser steps taken (the last one, when training stopped early)
    examples: int  # training examples (features) consumed in this process
    wall_s: float
    examples_per_s: float
    final_loss: float
    tokens: int = 0  # non-padding training tokens consumed in this process
    best_step: int | None = None  # the step whose weights were kept
    best_score: float | None = None
    stopped_early: bool = False
    resumed_from: int = 0
    trainable_params: int = 0  # parameters the optimiser updated


# report(step, total_steps, loss, lr, examples_per_s)
ProgressFn = Callable[[int, int, float, float, float], None]


@dataclass
class TrainJob:
    """One stage's training, as the worker hands it to a backend.

    ``model(task, **batch)`` returns the loss; ``batch(i)`` is micro-batch ``i``'s task
    and tensors (a pure function of ``i``); ``evaluate(step)`` scores the model on
    validation data and returns the number checkpoint selection maximises."""

    model: Any
    batch: Callable[[int], tuple[str, dict[str, Any]]]
    steps: int
    hparams: HParams
    seed: int
    report: ProgressFn
    evaluate: Callable[[int], float] | None = None
    final_eval: bool = True  # evaluate at the last step even off the eval_every grid
    state_dir: Path | None = None  # resume states live here; None: none saved
    events_offset: Callable[[], int] = lambda: 0
    log: Callable[[str], None] = lambda message: None

    def due_for_eval(self, step: int) -> bool:
        every = self.hparams.eval_every
        if self.evaluate is None:
            return False
        if every and step % every == 0:
            return True
        return step == self.steps and (self.final_eval or (every and self.steps >= every))


@dataclass
class Selection:
    """Keeps the best evaluation; counts evaluations without improvement."""

    patience: int = 0  # stop after this many evaluations without improvement; 0: never
    best_score: float | None = None
    best_step: int | None = None
    bad: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)

    def update(self, step: int, score: float) -> bool:
        """Record a score; True when it is the best so far."""
        self.history.append((step, score))
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_step, self.bad = score, step, 0
            return True
        self.bad += 1
        return False

    @property
    def should_stop(self) -> bool:
        return bool(self.patience) and self.bad >= self.patience

    def to_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_step": self.best_step, "bad": self.bad,
                "history": [list(h) for h in self.history]}

    def load(self, data: dict[str, Any]) -> None:
        self.best_score, self.best_step, self.bad = data["best_score"], data["best_step"], data["bad"]
        self.history = [tuple(h) for h in data["history"]]


def find_state(stage_dir: Path) -> Path | None:
    """The stage's resume state, if a whole one verifies (``state``, or ``state.old`` when
    a stop came between the two renames of a save, or when ``state`` is damaged): the
    control process decides the same way (``xstilts_tui.protocol.stage_cache.usable_state``)."""
    found = usable_state(stage_dir)
    return found[0] if found else None


def fresh_state_folder(stage_dir: Path) -> Path:
    """The temporary folder a resume state is written into (emptied first)."""
    tmp = stage_dir / (STATE + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    return tmp


def install_state(stage_dir: Path, tmp: Path, info: dict[str, Any]) -> None:
    """Finish a resume state written into ``tmp``: its ``resume.json`` last, then two
    renames, so a stop at any moment leaves a whole state (``state`` or ``state.old``)."""
    info = {**info, "files": records(tmp, tmp, skip=(RESUME_FILE,))}
    (tmp / RESUME_FILE).write_text(json.dumps(info), encoding="utf-8")
    current, old = stage_dir / STATE, stage_dir / (STATE + ".old")
    if old.exists():
        shutil.rmtree(old)
    if current.exists():
        os.replace(current, old)
    os.replace(tmp, current)
    if old.exists():
        shutil.rmtree(old)


def save_state(stage_dir: Path, payload: dict[str, Any], info: dict[str, Any]) -> None:
    """Write a resume state atomically: a temporary folder, then two renames."""
    import torch

    tmp = fresh_state_folder(stage_dir)
    tmp.mkdir(parents=True)
    torch.save(payload, tmp / "train_state.pt")
    install_state(stage_dir, tmp, info)


def evaluate_and_select(job: TrainJob, step: int, selection: Selection) -> tuple[bool, bool]:
    """Evaluate when due: (this step is the best so far, stop early now)."""
    if not job.due_for_eval(step):
        return False, False
    improved = selection.update(step, job.evaluate(step))
    stop = selection.should_stop and step < job.steps
    if stop:
        job.log(f"stopped early at step {step}: {selection.bad} evaluations without improvement "
                f"on {selection.best_score:.2f} (step {selection.best_step})")
    return improved, stop


class StageStopped(RuntimeError):
    """The worker was asked to stop (SIGTERM: a cancel, a cluster's time limit or a
    preemption); it saved a resume state first where it could."""


# Set by the worker's SIGTERM handler; training loops look at it after every step.
STOP = threading.Event()


def stop_if_asked(job: "TrainJob", step: int, save) -> None:
    """After a step: when a stop was asked, save a resume state (``save()``, where the
    stage keeps states) and end the stage with StageStopped."""
    if not STOP.is_set():
        return
    if job.state_dir is not None and job.hparams.save_every and step < job.steps:
        save()
        raise StageStopped(f"stopped by SIGTERM at step {step} of {job.steps}; a resume state "
                           "was saved, run again to continue")
    raise StageStopped(f"stopped by SIGTERM at step {step} of {job.steps}; no resume state "
                       "(save_every = 0), the stage will start over")


def stop_if_asked_during_evaluation() -> None:
    """Between evaluation batches (a selection evaluation, a test set, retrieval): when a
    stop was asked, end the stage now rather than after every language. No state is saved
    here: the last resume state stands, and a rerun continues from it."""
    if STOP.is_set():
        raise StageStopped("stopped by SIGTERM during evaluation; a rerun continues from the "
                           "last saved resume state, if any")


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number: the stage fails at that step."""


class Meter:
    """What a training loop consumed, and its progress reports every ``log_every`` steps
    (loss averaged over the micro-batches since the last report)."""

    def __init__(self, job: TrainJob, world: int):
        import time

        self.job, self.world = job, world
        self.examples = self.tokens = 0
        self._loss, self._batches, self._window_examples = 0.0, 0, 0
        self.started = self._window_start = time.perf_counter()
        self.last_loss = float("nan")

    def micro_batch(self, batch: dict[str, Any], loss) -> None:
        n = batch["input_ids"].shape[0]
        self.examples += n
        self.tokens += int(batch["attention_mask"].sum())
        self._window_examples += n
        self._loss += loss.detach().float()
        self._batches += 1

    def step_done(self, step: int, lr: float) -> None:
        """After each optimiser step: a loss that is not finite ends the stage here (one
        device sync a step); every ``log_every`` steps a progress report."""
        import math
        import time

        if self._batches and not math.isfinite(float(self._loss)):
            raise TrainingDiverged(f"the loss is not finite ({float(self._loss) / self._batches}) at "
                                   f"step {step} (lr {lr:g}): training diverged; lower lr or "
                                   "check the data")
        if step % self.job.hparams.log_every and step != self.job.steps:
            return
        now = time.perf_counter()
        self.last_loss = float(self._loss) / self._batches
        self.job.report(step, self.job.steps, self.last_loss, lr,
                        self._window_examples * self.world / max(now - self._window_start, 1e-9))
        self._loss, self._batches, self._window_examples = 0.0, 0, 0
        self._window_start = now

    def stats(self, step: int, selection: Selection, **fields: Any) -> TrainStats:
        import time

        wall = time.perf_counter() - self.started
        examples = self.examples * self.world
        return TrainStats(steps=step, examples=examples, wall_s=wall,
                          examples_per_s=examples / max(wall, 1e-9), final_loss=self.last_loss,
                          tokens=self.tokens * self.world, best_step=selection.best_step,
                          best_score=selection.best_score, **fields)


def load_state(folder: Path) -> dict[str, Any]:
    import torch

    return torch.load(folder / "train_state.pt", map_location="cpu", weights_only=True)


def drop_states(stage_dir: Path) -> None:
    """Once a stage is done: its resume states and kept-weights files go."""
    for name in (STATE, STATE + ".old", STATE + ".tmp"):
        if (stage_dir / name).exists():
            shutil.rmtree(stage_dir / name)
    for kept in stage_dir.glob("best-step*.pt"):
        kept.unlink()
