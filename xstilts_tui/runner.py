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

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__, provenance
from .events import decode
from .plan import Plan, Stage
from .progress import PlainDisplay
from .results import ResultsStore, archive_previous
from .executors import ChildProcess, SubmititExecutor
from .slots import Slot, free_port
from .tracking import Tracking
from .stage_cache import (LAST_USED, discard, stage_lock, unusable_states, usable_state,
                          verify_done)
from .stage_index import read_entry

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunOutcome:
    # stage id -> done | cached | failed | skipped | cancelled
    status: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s in ("done", "cached") for s in self.status.values())


class LineTail:
    """Reads the whole lines appended to a file since the last read."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.partial = ""

    def lines(self) -> list[str]:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
                self.offset = handle.tell()
        except FileNotFoundError:
            return []
        lines = (self.partial + chunk).split("\n")
        self.partial = lines.pop()
        return lines


class EventTail(LineTail):
    """Reads the whole events appended to an event file since the last read."""

    def read(self) -> list[dict[str, Any]]:
        return [e for e in (decode(line) for line in self.lines()) if e is not None]


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    # The workers import `backends` and `xstilts_tui` from this checkout too when the
    # project runs from source rather than from an installed copy.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Workers end themselves when this process is gone (see backends.worker).
    env["XSTILTS_CONTROL_PID"] = str(os.getpid())
    return env


def _resume_info(stage_dir: Path) -> dict[str, Any] | None:
    """What the stage's usable resume state says (the step and the event-file offset it
    was saved at): the same state the worker will resume from (``stage_cache``)."""
    found = usable_state(stage_dir)
    return found[1] if found else None


def keep_events_until(stage_dir: Path) -> int:
    """Before a stage's worker starts: keep the events written up to its resume state
    (they will not be written again) and drop the rest; without a state drop them all.
    Returns the step the worker will resume from (0: from the start)."""
    info = _resume_info(stage_dir)
    events = stage_dir / "events.jsonl"
    if info is None:
        events.unlink(missing_ok=True)
        return 0
    if events.exists():
        with open(events, "r+b") as handle:
            handle.truncate(min(info["events_offset"], events.stat().st_size))
    return int(info.get("step", 0))


def _done_detail(finished: dict[str, Any]) -> str:
    detail = f"{finished['wall_s']:.1f} s"
    best, steps = finished.get("best_step"), finished.get("steps")
    if best is not None and best != steps:
        detail += f"; kept step {best} of {steps}" + (" (stopped early)" if finished.get("stopped_early") else "")
    if finished.get("resumed_from"):
        detail += f"; resumed at step {finished['resumed_from']}"
    return detail


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except FileNotFoundError:
        return ""
    return " | ".join(text[-lines:])


@dataclass
class Worker:
    """One running stage: its process, the slot it holds, and the files it is followed by."""

    stage: Stage
    slot: Slot
    process: Any  # executors.ChildProcess or SubmittedJob: poll(), signal(), wait()
    lock: Any
    events: EventTail
    log: LineTail
    log_file: Any
    finished: dict[str, Any] | None = None
    error: str = ""
    stopping: bool = False


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
        self.walls: list[float] = []  # wall times of the stages this run trained
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
        entry = read_entry(self.plan.stage_dir(stage))
        if entry is not None and entry.made_by:
            self.made[stage.id] = provenance.made_of(stage, entry.provenance or stage.provenance,
                                                     entry.made_by)
        try:
            (self.plan.stage_dir(stage) / LAST_USED).touch()
        except OSError:
            pass

    def _write_manifest(self) -> None:
        manifest = {
            "run": self.run_id,
            "xstilts_tui": __version__,
            "python": sys.version.split()[0],
            "recipe": self.plan.recipe.to_dict(),
            "slots": [slot.name for slot in self.slots],
            "provenance": provenance.of_run(self.plan),
            "stages": [{"id": s.id, "key": s.key, "kind": s.kind, "arms": list(s.arms),
                        "seed": s.seed, "task": s.task, "deps": list(s.deps),
                        "dir": str(self.plan.stage_dir(s)), "reused": s.reused,
                        "provenance": self.made[s.id],
                        "command": self.plan.command(s)} for s in self.plan.stages],
        }
        path = self.plan.output_dir / "run.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, path)

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

    def _prepare(self, stage: Stage) -> None:
        """Before a worker starts on a stage: drop its marker, keep the events up to its
        resume state (or none), write its spec."""
        stage_dir = self.plan.stage_dir(stage)
        (stage_dir / "DONE").unlink(missing_ok=True)
        damaged = unusable_states(stage_dir)
        resume_at = keep_events_until(stage_dir)
        if damaged:
            self.display.message(stage.id, f"warning: resume state {', '.join(damaged)} does not "
                                           "verify and is not used; " + (
                                               f"resuming from step {resume_at}" if resume_at
                                               else "starting the stage over"))
        elif resume_at:
            self.display.message(stage.id, f"resuming from the state saved at step {resume_at}")
        self.plan.write_spec(stage)

    def _start(self, stage: Stage, slot: Slot, lock: Any) -> Worker:
        stage_dir = self.plan.stage_dir(stage)
        stage_dir.mkdir(parents=True, exist_ok=True)
        # A job an earlier run submitted that still runs is followed as it is: its event
        # log, marker and spec are its own (cutting the log under it loses what it wrote).
        followed = self.executor.find_active(stage_dir) if self.executor is not None else None
        if followed is None:
            self._prepare(stage)
        log_path = stage_dir / "worker.log"
        log_tail = LineTail(log_path)
        log = open(log_path, "a", encoding="utf-8")
        where = f" on {slot.name}" if len(self.slots) > 1 or slot.env else ""
        if followed is None:
            log.write(f"--- {stage.id}: worker started by run {self.run_id}{where} at "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")
            log.flush()
        log_tail.offset = log.tell()
        port = free_port()
        env = {**worker_env(), **slot.env, "MASTER_PORT": str(port)}
        command = self.plan.command(stage, master_port=port)
        try:
            if self.executor is None:
                process: Any = ChildProcess(command, env, log)
            elif followed is not None:
                process = followed
                self.display.message(stage.id, f"following job {process.job_id}, submitted "
                                               "by an earlier run")
            else:
                after = [self.workers[d].process.job_id for d in stage.deps if d in self.workers]
                process = self.executor.submit(stage_dir, stage.id, command, env, after)
                self.display.message(stage.id, f"submitted as job {process.job_id}"
                                     + (f" after {', '.join(after)}" if after else ""))
        except OSError:
            log.close()
            raise
        if len(self.slots) > 1 and self.executor is None:
            self.display.message(stage.id, f"started on {slot.name}")
        return Worker(stage, slot, process, lock, EventTail(stage_dir / "events.jsonl"), log_tail, log)

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
            error = f"worker exited with code {code}; log {log_path}: {_log_tail(log_path)}"
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
        """Stop every running worker and everything it started: SIGTERM (a worker saves a
        resume state after its current step), then SIGKILL after ``grace_s``; a job is
        cancelled (scancel)."""
        running = [w.process for w in list(self.workers.values()) if w.process.poll() is None]
        for process in running:
            process.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.signal(signal.SIGKILL)
                process.wait(timeout=None)


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
            self.walls.append(float(finished["wall_s"]))
        self._overall(outcome)

    def _overall(self, outcome: RunOutcome) -> None:
        """The overall progress: stages done of all, those running, and the time left at
        the mean wall time of the stages this run trained (None before the first)."""
        done = sum(1 for v in outcome.status.values() if v in ("done", "cached"))
        left = len(self.plan.stages) - len(outcome.status) - len(self.workers)
        estimate = (sum(self.walls) / len(self.walls) * (left + len(self.workers) / 2)
                    / max(1, len(self.slots))) if self.walls else None
        self.display.run_progress(done, len(self.plan.stages), len(self.workers),
                                  time.monotonic() - self.started_at, estimate)

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
                    for stage in waiting:
                        self._conclude(outcome, stage, "cancelled", "the run was cancelled")
                    waiting = []
                    if any(not w.stopping for w in self.workers.values()):
                        for w in self.workers.values():
                            w.stopping = True
                        threading.Thread(target=self.stop_workers, daemon=True).start()
                moved = False
                for stage in list(waiting):
                    states = [outcome.status.get(d) for d in stage.deps]
                    failed = [d for d, st in zip(stage.deps, states)
                              if st in ("failed", "skipped", "cancelled")]
                    if failed:
                        waiting.remove(stage)
                        self._conclude(outcome, stage, "skipped",
                                       f"needs {', '.join(failed)}, which did not finish")
                        moved = True
                        continue
                    chained = self.executor is not None and self.executor.chains_jobs
                    if not all(st in ("done", "cached") or (chained and d in self.workers)
                               for d, st in zip(stage.deps, states)):
                        continue
                    if not free and stage.id in needs_slot:
                        continue  # known not cached; looked at again when a slot frees
                    lock = self._try_lock(stage, told)
                    if lock is None:
                        continue
                    try:
                        if self._cached_or_ready(outcome, stage):
                            lock.release()
                            waiting.remove(stage)
                            moved = True
                            continue
                    except BaseException:
                        lock.release()
                        raise
                    if not free:
                        lock.release()
                        needs_slot.add(stage.id)
                        continue
                    waiting.remove(stage)
                    try:
                        self.workers[stage.id] = self._start(stage, free.pop(0), lock)
                    except BaseException:
                        lock.release()
                        raise
                    self._overall(outcome)
                    moved = True
                for stage_id, worker in list(self.workers.items()):
                    code = self._follow(worker)
                    if code is not None:
                        self._follow(worker)  # what it wrote while exiting
                        del self.workers[stage_id]
                        free.append(worker.slot)
                        free.sort(key=self.slots.index)
                        self._end(outcome, worker, code)
                        moved = True
                if not moved:
                    time.sleep(self.poll_s)
        finally:
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
        return outcome

    def _finish_tracking(self, outcome: RunOutcome) -> None:
        """The trackers' parent runs get the report (tables and plots) and the run's status."""
        if not self.tracking.active:
            return
        artifacts: list[Path] = []
        try:
            from .report import write_report

            artifacts = write_report(self.plan.output_dir, self.plan.output_dir / "report")
        except Exception as exc:  # a report that cannot be made is no reason to lose the rest
            self.display.print(f"warning: no report for the trackers ({exc})")
        self.tracking.finish(outcome.ok and not self.cancelled.is_set(), artifacts)
