"""Dispatch: run a plan's stages as worker processes and collect their events.

Stages run one after another in plan order. Each worker writes events to its stage's
event file; this process tails that file, records every event in the results store and
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

from . import __version__
from .events import decode
from .plan import Plan, Stage
from .progress import PlainDisplay
from .results import ResultsStore
from .stage_cache import discard, stage_lock, unusable_states, usable_state, verify_done

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


class Runner:
    def __init__(self, plan: Plan, display: PlainDisplay, poll_s: float = 0.2,
                 strict_cache: bool = False):
        self.plan = plan
        self.strict_cache = strict_cache  # a cached stage that does not verify fails instead
        self.display = display
        self.poll_s = poll_s
        self.process: subprocess.Popen | None = None
        self.process_stage: str | None = None  # the stage the running worker serves
        self.cancelled = threading.Event()
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        self.store = ResultsStore(plan.output_dir, self.run_id, plan.recipe.name)

    def _write_manifest(self) -> None:
        manifest = {
            "run": self.run_id,
            "xstilts_tui": __version__,
            "python": sys.version.split()[0],
            "recipe": self.plan.recipe.to_dict(),
            "stages": [{"id": s.id, "key": s.key, "kind": s.kind, "arms": list(s.arms),
                        "seed": s.seed, "task": s.task, "deps": list(s.deps),
                        "command": self.plan.command(s)} for s in self.plan.stages],
        }
        path = self.plan.output_dir / "run.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, path)

    def _forward(self, stage: Stage, event: dict[str, Any], cached: bool) -> dict[str, Any] | None:
        self.store.record(event, stage_key=stage.key, arms=stage.arms, seed=stage.seed, cached=cached)
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

    def _launch(self, stage: Stage) -> tuple[int, dict[str, Any] | None, str]:
        stage_dir = self.plan.stage_dir(stage)
        stage_dir.mkdir(parents=True, exist_ok=True)
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
        spec_path = stage_dir / "stage.json"
        tmp = spec_path.with_name(f"stage.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.plan.worker_spec(stage), indent=2), encoding="utf-8")
        os.replace(tmp, spec_path)
        tail = EventTail(stage_dir / "events.jsonl")
        finished = None
        error = ""
        log_path = stage_dir / "worker.log"
        log_tail = LineTail(log_path)
        log_tail.offset = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"--- {stage.id}: worker started by run {self.run_id} at "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")
            log.flush()
            log_tail.offset = log.tell()
            self.process_stage = stage.id
            self.process = subprocess.Popen(self.plan.command(stage), stdout=log,
                                            stderr=subprocess.STDOUT, env=worker_env(),
                                            start_new_session=True)
            try:
                while True:
                    if self.cancelled.is_set():
                        self.stop_worker()
                    code = self.process.poll()
                    for event in tail.read():
                        if event["type"] == "error":
                            error = event["message"]
                        finished = self._forward(stage, event, cached=False) or finished
                    for line in log_tail.lines():
                        self.display.log_line(stage.id, line)
                    if code is not None:
                        break
                    time.sleep(self.poll_s)
            finally:
                if self.process.poll() is None:
                    self.stop_worker()
                self.process = None
        if code != 0 and not error:
            error = f"worker exited with code {code}; log {log_path}: {_log_tail(log_path)}"
        return code, finished, error

    @property
    def worker(self) -> tuple[str, int] | None:
        """The running worker's stage and process id (None between stages)."""
        process, stage = self.process, self.process_stage
        return (stage, process.pid) if process is not None and process.poll() is None else None

    @property
    def worker_pid(self) -> int | None:
        worker = self.worker
        return worker[1] if worker else None

    def cancel(self) -> None:
        """Stop the run: the running worker is stopped and no further stage starts."""
        self.cancelled.set()

    def stop_worker(self, grace_s: float = 60.0) -> None:
        """Stop the running worker and everything it started: SIGTERM (the worker saves a
        resume state after its current step), then SIGKILL after ``grace_s``."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass

    def _conclude(self, outcome: RunOutcome, stage: Stage, status: str, reason: str = "",
                  finished: dict[str, Any] | None = None, detail: str = "") -> None:
        """Record how a stage ended: in the outcome, the stages table and the display."""
        outcome.status[stage.id] = status
        if reason:
            outcome.reasons[stage.id] = reason
        self.store.stage_result(stage=stage.id, stage_key=stage.key, kind=stage.kind,
                                arms=stage.arms, seed=stage.seed, task=stage.task, status=status,
                                reason=reason, cached=status == "cached", finished=finished)
        self.display.stage_finished(stage.id, status, detail or reason)

    def _acquire(self, stage: Stage):
        """The stage's lock: at once, or after waiting for the run that holds it (another
        process training the same stage into a shared cache). None when cancelled."""
        lock = stage_lock(self.plan.stage_dir(stage))
        waited = False
        while not self.cancelled.is_set():
            try:
                lock.acquire(timeout=self.poll_s)
                if waited:
                    self.display.message(stage.id, "the other run let go of this stage")
                return lock
            except TimeoutError:
                if not waited:
                    self.display.message(stage.id, "another run is writing this stage in the "
                                                   "shared cache; waiting for it")
                    waited = True
        return None

    def _run_stage(self, outcome: RunOutcome, stage: Stage) -> None:
        """One stage, its lock held: replay it when its cache verifies, else train it."""
        stage_dir = self.plan.stage_dir(stage)
        problem = verify_done(stage_dir)
        if problem is None:
            self._conclude(outcome, stage, "cached", finished=self._replay(stage),
                           detail=f"key {stage.key[:12]}")
            return
        if problem != "not done":
            if self.strict_cache:
                self._conclude(outcome, stage, "failed", f"the cached stage in {stage_dir} does not "
                                                         f"verify: {problem} (--strict-cache)")
                return
            self.display.message(stage.id, f"warning: the cached stage does not verify ({problem}); "
                                           "training it again")
            discard(stage_dir)
        code, finished, error = self._launch(stage)
        if code == 0 and finished is not None and finished.get("status") == "ok" \
                and verify_done(stage_dir) is None:
            self._conclude(outcome, stage, "done", finished=finished, detail=_done_detail(finished))
        elif self.cancelled.is_set():
            self._conclude(outcome, stage, "cancelled", "the run was cancelled", finished)
        else:
            self._conclude(outcome, stage, "failed",
                           error or "worker ended without finishing the stage", finished)

    def run(self) -> RunOutcome:
        outcome = RunOutcome()
        self._write_manifest()
        try:
            for stage in self.plan.stages:
                if self.cancelled.is_set():
                    self._conclude(outcome, stage, "cancelled", "the run was cancelled")
                    continue
                failed_deps = [d for d in stage.deps
                               if outcome.status.get(d) in ("failed", "skipped", "cancelled")]
                if failed_deps:
                    self._conclude(outcome, stage, "skipped",
                                   f"needs {', '.join(failed_deps)}, which did not finish")
                    continue
                lock = self._acquire(stage)
                if lock is None:
                    self._conclude(outcome, stage, "cancelled", "the run was cancelled")
                    continue
                try:
                    self._run_stage(outcome, stage)
                finally:
                    lock.release()
                self.store.compact()
        finally:
            self.stop_worker()
            self.store.compact()
            self.store.close()
            self.display.close()
        return outcome

