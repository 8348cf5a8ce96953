"""Dispatch: run a plan's stages as worker processes and collect their events.

Stages run on slots (GPUs, or shares of the cores; one slot: one after another): a stage
starts once its inputs are done and a slot is free. Each worker writes events to its
stage's event file; this process tails those files, records every event in the results store and
updates the display. A failed stage fails the stages that need its output; the others
go on. Stages already done (their ``DONE`` marker verifies, ``stage_cache``) are not run
again: their recorded events are replayed into this run's results. Each stage is handled
under its folder's lock, so runs sharing a cache never write a stage at the same time.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xstilts_tui.protocol import provenance
from xstilts_tui.plan.stages import Plan, Stage
from xstilts_tui.run.progress import PlainDisplay, Shape, stage_shape, time_left_estimate
from xstilts_tui.results.store import ResultsStore, archive_previous
from xstilts_tui.results.manifest import write_manifest
from xstilts_tui.run.stage_io import EventTail, stop_processes
from xstilts_tui.run.workers import Worker, log_tail, start_worker
from xstilts_tui.run.executors import SubmititExecutor
from xstilts_tui.protocol.slots import Slot
from xstilts_tui.run.tracking import Tracking
from xstilts_tui.protocol.stage_cache import LAST_USED, discard, stage_lock, verify_done
from xstilts_tui.plan.index import read_entry



@dataclass
class RunOutcome:
    # stage id -> done | cached | failed | skipped | cancelled
    status: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s in ("done", "cached") for s in self.status.values())


def _done_detail(finished: dict[str, Any]) -> str:
    detail = f"{finished['wall_s']:.1f} s"
    best, steps = finished.get("best_step"), finished.get("steps")
    if best is not None and best != steps:
        detail += f"; kept step {best} of {steps}" + (" (stopped early)" if finished.get("stopped_early") else "")
    if finished.get("resumed_from"):
        detail += f"; resumed at step {finished['resumed_from']}"
    return detail


def made_by_cache(plan: Plan, stage: Stage) -> dict[str, Any] | None:
    """What made a stage taken from the cache, as its DONE marker records it (None where
    it records nothing); the stage's last use is noted (``cache ls``)."""
    entry = read_entry(plan.stage_dir(stage))
    try:
        (plan.stage_dir(stage) / LAST_USED).touch()
    except OSError:
        pass
    if entry is None or not entry.made_by:
        return None
    return provenance.made_of(stage, entry.provenance or stage.provenance, entry.made_by)


def stage_priorities(plan: Plan) -> dict[str, int]:
    """Each stage's longest chain of stages still to run after it, itself included: a
    stage that many others wait for starts first."""
    dependents: dict[str, list[str]] = {s.id: [] for s in plan.stages}
    for stage in plan.stages:
        for dep in stage.deps:
            dependents[dep].append(stage.id)
    chain: dict[str, int] = {}
    for stage in reversed(plan.stages):  # plan order puts dependencies first
        chain[stage.id] = 1 + max((chain[d] for d in dependents[stage.id]), default=0)
    return chain


class Runner:
    """Runs a plan's stages on slots (``slots``): a stage starts once its inputs are done
    and a slot is free, the stage with the longest chain after it first (ties in plan
    order, so the order is the same on every run). One slot runs stages one by one."""

    def __init__(self, plan: Plan, display: PlainDisplay, poll_s: float = 0.2,
                 strict_cache: bool = False, slots: list[Slot] | None = None,
                 executor: SubmititExecutor | None = None):
        self.plan = plan
        self.executor = executor  # None: workers are child processes of this one
        self.strict_cache = strict_cache  # a cached stage that does not verify fails instead
        self.display = display
        self.poll_s = poll_s
        self.slots = slots or [Slot("cpu")]
        self.workers: dict[str, Worker] = {}
        self.walls: dict[Shape, list[float]] = {}  # wall times of the stages this run trained
        self.cancelled = threading.Event()
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        self.store = ResultsStore(plan.output_dir, self.run_id, plan.recipe.name)
        self.started_at = time.monotonic()
        # What made each stage's numbers: this run's code and environment, or for a stage
        # taken from the cache what its DONE marker records.
        self.made = {s.id: provenance.made_of(s, s.provenance, plan.made_by) for s in plan.stages}
        self.tracking = Tracking(plan.recipe.tracking, plan.recipe, plan.output_dir, self.run_id,
                                 display.print, provenance=provenance.of_run(plan),
                                 stage_provenance=lambda stage: self.made[stage.id])

    def _made_from_cache(self, stage: Stage) -> None:
        self.made[stage.id] = made_by_cache(self.plan, stage) or self.made[stage.id]

    def _write_manifest(self) -> None:
        write_manifest(self.plan, self.run_id, [slot.name for slot in self.slots], self.made)

    def _forward(self, stage: Stage, event: dict[str, Any], cached: bool) -> dict[str, Any] | None:
        self.store.record(event, stage_key=stage.key, arms=stage.arms, seed=stage.seed, cached=cached,
                          made=self.made[stage.id])
        self.tracking.event(stage, event, cached)
        kind = event["type"]
        if kind == "progress":
            self.display.progress(event)
        elif kind == "score":
            self.display.score(event)
        elif kind in ("log", "error"):
            self.display.message(stage.id, ("error: " if kind == "error" else "") + event["message"])
        elif kind == "stage_started" and not cached:
            self.display.stage_started(stage.id, event["total_steps"])
        return event if kind == "stage_finished" else None

    def _replay(self, stage: Stage) -> dict[str, Any] | None:
        finished = None
        for event in EventTail(self.plan.stage_dir(stage) / "events.jsonl").read():
            if event["type"] in ("score", "stage_finished"):
                finished = self._forward(stage, event, cached=True) or finished
        return finished

    # -- starting and following workers --

    def _start(self, stage: Stage, slot: Slot, lock: Any) -> Worker:
        return start_worker(self, stage, slot, lock)

    def _follow(self, worker: Worker) -> int | None:
        """Read what the worker wrote since the last look; its exit code once it ended."""
        code = worker.process.poll()
        for event in worker.events.read():
            if event["type"] == "error":
                worker.error = event["message"]
            worker.finished = self._forward(worker.stage, event, cached=False) or worker.finished
        for line in worker.log.lines():
            self.display.log_line(worker.stage.id, line)
        return code

    def _end(self, outcome: RunOutcome, worker: Worker, code: int) -> None:
        """A worker exited: conclude its stage and free its slot and lock."""
        worker.log_file.close()
        stage, finished = worker.stage, worker.finished
        stage_dir = self.plan.stage_dir(stage)
        error = worker.error
        if code != 0 and not error:
            log_path = stage_dir / "worker.log"
            error = f"worker exited with code {code}; log {log_path}: {log_tail(log_path)}"
        try:
            if code == 0 and finished is not None and finished.get("status") == "ok" \
                    and verify_done(stage_dir) is None:
                self._conclude(outcome, stage, "done", finished=finished, detail=_done_detail(finished))
            elif self.cancelled.is_set():
                self._conclude(outcome, stage, "cancelled", "the run was cancelled", finished)
            else:
                self._conclude(outcome, stage, "failed",
                               error or "worker ended without finishing the stage", finished)
        finally:
            worker.lock.release()
            self.store.compact()

    @property
    def worker(self) -> tuple[str, int] | None:
        """A running worker's stage and process id (None between stages)."""
        for stage_id, worker in list(self.workers.items()):
            if worker.process.pid is not None and worker.process.poll() is None:
                return stage_id, worker.process.pid
        return None

    @property
    def worker_pid(self) -> int | None:
        worker = self.worker
        return worker[1] if worker else None

    def cancel(self) -> None:
        """Stop the run: the running workers are stopped and no further stage starts."""
        self.cancelled.set()

    def stop_workers(self, grace_s: float = 60.0) -> None:
        """Stop every running worker (``stop_processes``)."""
        stop_processes([w.process for w in list(self.workers.values()) if w.process.poll() is None],
                       grace_s)

    def _conclude(self, outcome: RunOutcome, stage: Stage, status: str, reason: str = "",
                  finished: dict[str, Any] | None = None, detail: str = "") -> None:
        """Record how a stage ended: in the outcome, the stages table and the display."""
        outcome.status[stage.id] = status
        if reason:
            outcome.reasons[stage.id] = reason
        self.store.stage_result(stage=stage.id, stage_key=stage.key, kind=stage.kind,
                                arms=stage.arms, seed=stage.seed, task=stage.task, status=status,
                                reason=reason, cached=status == "cached", finished=finished,
                                made=self.made[stage.id])
        self.display.stage_finished(stage.id, status, detail or reason)
        self.tracking.stage_end(stage, status)
        if status == "done" and finished and finished.get("wall_s"):
            self.walls.setdefault(stage_shape(stage), []).append(float(finished["wall_s"]))
        self._overall(outcome)

    def _overall(self, outcome: RunOutcome) -> None:
        """The overall progress: stages done of all, those running, and the time left, each
        stage at the pace of the stages of its kind this run trained (``time_left_estimate``)."""
        done = sum(1 for v in outcome.status.values() if v in ("done", "cached"))
        pending = [stage_shape(s) for s in self.plan.stages
                   if s.id not in outcome.status and s.id not in self.workers]
        running = [stage_shape(s) for s in self.plan.stages if s.id in self.workers]
        estimate, untimed = time_left_estimate(self.walls, pending, running, len(self.slots))
        self.display.run_progress(done, len(self.plan.stages), len(self.workers),
                                  time.monotonic() - self.started_at, estimate, untimed=untimed)

    def _try_lock(self, stage: Stage, told: set[str]):
        """The stage's lock if it is free now; None while another run holds it (a run on
        a shared cache training the same stage: this one waits for it and then replays)."""
        lock = stage_lock(self.plan.stage_dir(stage))
        try:
            lock.acquire(timeout=0)
        except TimeoutError:
            if stage.id not in told:
                told.add(stage.id)
                self.display.message(stage.id, "another run is writing this stage in the "
                                               "shared cache; waiting for it")
            return None
        if stage.id in told:
            self.display.message(stage.id, "the other run let go of this stage")
        return lock

    def _cached_or_ready(self, outcome: RunOutcome, stage: Stage) -> bool:
        """Under the stage's lock: conclude it from the cache (True), or leave it to train
        (False; a damaged cache is discarded, or fails it under --strict-cache: True)."""
        stage_dir = self.plan.stage_dir(stage)
        problem = verify_done(stage_dir)
        if problem is None:
            self._made_from_cache(stage)
            reused = f"; reused from {stage.reused['from']}" if stage.reused else ""
            self._conclude(outcome, stage, "cached", finished=self._replay(stage),
                           detail=f"key {stage.key[:12]}{reused}")
            return True
        if problem != "not done":
            if self.strict_cache:
                self._conclude(outcome, stage, "failed", f"the cached stage in {stage_dir} does not "
                                                         f"verify: {problem} (--strict-cache)")
                return True
            self.display.message(stage.id, f"warning: the cached stage does not verify ({problem}); "
                                           "training it again")
            discard(stage_dir)
        return False

    def run(self) -> RunOutcome:
        outcome = RunOutcome()
        kept = archive_previous(self.plan.output_dir, self.run_id)
        if kept is not None:
            self.display.print(f"the previous run's tables are kept in {kept}")
        self._write_manifest()
        self.tracking.start()
        self.started_at = time.monotonic()
        priority = stage_priorities(self.plan)
        index = {s.id: i for i, s in enumerate(self.plan.stages)}
        waiting = sorted(self.plan.stages, key=lambda s: (-priority[s.id], index[s.id]))
        free = list(self.slots)
        told: set[str] = set()
        needs_slot: set[str] = set()  # ready, not in the cache, waiting for a slot
        try:
            while waiting or self.workers:
                if self.cancelled.is_set():
                    waiting = self._cancel(outcome, waiting)
                moved = False
                for stage in list(waiting):
                    moved = self._schedule(outcome, stage, waiting, free, told, needs_slot) or moved
                moved = self._follow_all(outcome, free) or moved
                if not moved:
                    time.sleep(self.poll_s)
        finally:
            self._shut_down(outcome)
        return outcome

    def _schedule(self, outcome: RunOutcome, stage: Stage, waiting: list[Stage], free: list[Slot],
                  told: set[str], needs_slot: set[str]) -> bool:
        """One waiting stage: skipped when an input failed; once its inputs are done,
        concluded from the cache or started on a free slot. True when it moved."""
        states = [outcome.status.get(d) for d in stage.deps]
        failed = [d for d, st in zip(stage.deps, states) if st in ("failed", "skipped", "cancelled")]
        if failed:
            waiting.remove(stage)
            self._conclude(outcome, stage, "skipped", f"needs {', '.join(failed)}, which did not finish")
            return True
        chained = self.executor is not None and self.executor.chains_jobs
        if not all(st in ("done", "cached") or (chained and d in self.workers)
                   for d, st in zip(stage.deps, states)):
            return False
        if not free and stage.id in needs_slot:
            return False  # known not cached; looked at again when a slot frees
        lock = self._try_lock(stage, told)
        if lock is None:
            return False
        try:
            if self._cached_or_ready(outcome, stage):
                lock.release()
                waiting.remove(stage)
                return True
        except BaseException:
            lock.release()
            raise
        if not free:
            lock.release()
            needs_slot.add(stage.id)
            return False
        waiting.remove(stage)
        try:
            self.workers[stage.id] = self._start(stage, free.pop(0), lock)
        except BaseException:
            lock.release()
            raise
        self._overall(outcome)
        return True

    def _shut_down(self, outcome: RunOutcome) -> None:
        """However the run ends: its workers stopped, their locks released, the tables
        written and closed, the trackers finished."""
        for worker in self.workers.values():
            worker.stopping = True
        self.stop_workers()
        for worker in self.workers.values():
            worker.log_file.close()
            worker.lock.release()
        self.workers.clear()
        self.store.compact()
        self.store.close()
        self._finish_tracking(outcome)
        self.display.close()

    def _cancel(self, outcome: RunOutcome, waiting: list[Stage]) -> list[Stage]:
        """Cancelled: the waiting stages conclude as cancelled, the running ones are
        stopped (once, in a thread); nothing waits any more."""
        for stage in waiting:
            self._conclude(outcome, stage, "cancelled", "the run was cancelled")
        if any(not w.stopping for w in self.workers.values()):
            for w in self.workers.values():
                w.stopping = True
            threading.Thread(target=self.stop_workers, daemon=True).start()
        return []

    def _follow_all(self, outcome: RunOutcome, free: list[Slot]) -> bool:
        """Read what every running worker wrote; conclude those that exited and free
        their slots (in the slots' order). True when one ended."""
        ended = False
        for stage_id, worker in list(self.workers.items()):
            code = self._follow(worker)
            if code is not None:
                self._follow(worker)  # what it wrote while exiting
                del self.workers[stage_id]
                free.append(worker.slot)
                free.sort(key=self.slots.index)
                self._end(outcome, worker, code)
                ended = True
        return ended

    def _finish_tracking(self, outcome: RunOutcome) -> None:
        """The trackers' parent runs get the report (tables and plots) and the run's status."""
        if not self.tracking.active:
            return
        artifacts: list[Path] = []
        try:
            from xstilts_tui.results.report import write_report

            artifacts = write_report(self.plan.output_dir, self.plan.output_dir / "report")
        except Exception as exc:  # a report that cannot be made is no reason to lose the rest
            self.display.print(f"warning: no report for the trackers ({exc})")
        self.tracking.finish(outcome.ok and not self.cancelled.is_set(), artifacts)
