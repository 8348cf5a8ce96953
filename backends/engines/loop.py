"""The training loop every engine runs: micro-batches with gradient accumulation, an
optimiser step, progress, checkpoint selection with early stopping, resume states every
``save_every`` steps and on SIGTERM, and the kept weights put back at the end.

An engine provides what differs (``Backend``'s loop hooks): how the model is wrapped
and its optimiser built (``begin``), how a micro-batch is moved, run and backpropagated
(``to_device``, ``forward_backward``), how the optimiser steps, how the best weights are
kept and restored, and how a resume state is written.
"""

from __future__ import annotations

from . import distributed
from .training import Meter, Selection, TrainJob, TrainStats, evaluate_and_select, stop_if_asked


def train_loop(job: TrainJob, engine) -> TrainStats:
    """Train ``job.model`` with ``engine``'s hooks; on return it holds the kept weights."""
    hp = job.hparams
    world, rank = distributed.world_size(), distributed.rank()
    selection = Selection(patience=hp.patience)
    step = engine.begin(job, selection)  # 0, or the step of the resume state it loaded
    resumed_from, steps, accum = step, job.steps, hp.grad_accum
    meter = Meter(job, world)
    stopped_early = False
    engine.train_mode()
    while step < steps and not selection.should_stop:
        for m in range(accum):
            task, batch = job.batch((step * accum + m) * world + rank)
            batch = engine.to_device(batch)
            loss = engine.forward_backward(task, batch, last=m == accum - 1)
            meter.micro_batch(batch, loss)
        engine.optimizer_step()
        step += 1
        meter.step_done(step, engine.lr())
        improved, stopped_early = evaluate_and_select(job, step, selection)
        if improved:
            engine.keep_best(job, step)
        engine.train_mode()
        if stopped_early:
            break
        if job.state_dir and hp.save_every and step % hp.save_every == 0 and step < steps:
            engine.save_state(job, step, selection)
        stop_if_asked(job, step, lambda: engine.save_state(job, step, selection))
    if engine.restore_best(job, step, selection):
        job.log(f"kept the weights of step {selection.best_step} "
                f"(validation {selection.best_score:.2f})")
    engine.end()
    return meter.stats(step, selection, stopped_early=stopped_early, resumed_from=resumed_from,
                       trainable_params=engine.trainable)
