"""A stage's worker as the runner starts and follows it: a child process here or a job
submitted through submitit (or an earlier run's job, still running, followed as it is),
its environment, and the files it is followed by (its event file and log)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstilts_tui.plan.stages import Stage
from xstilts_tui.protocol.slots import Slot, free_port
from xstilts_tui.run.executors import ChildProcess
from xstilts_tui.run.stage_io import EventTail, LineTail, prepare_stage

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    # The workers import `backends` and `xstilts_tui` from this checkout too when the
    # project runs from source rather than from an installed copy.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Workers end themselves when this process is gone (see xstilts_tui.compute.worker).
    env["XSTILTS_CONTROL_PID"] = str(os.getpid())
    return env


def log_tail(path: Path, lines: int = 3) -> str:
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


def start_worker(runner, stage: Stage, slot: Slot, lock: Any) -> Worker:
    """Start (or follow) ``stage``'s worker on ``slot`` under ``lock``: its folder made and
    prepared, a line in its log saying which run started it, and its process or job."""
    stage_dir = runner.plan.stage_dir(stage)
    stage_dir.mkdir(parents=True, exist_ok=True)
    # A job an earlier run submitted that still runs is followed as it is: its event
    # log, marker and spec are its own (cutting the log under it loses what it wrote).
    followed = runner.executor.find_active(stage_dir) if runner.executor is not None else None
    if followed is None:
        prepare_stage(runner.plan, stage, runner.display)
    log_path = stage_dir / "worker.log"
    tail = LineTail(log_path)
    log = open(log_path, "a", encoding="utf-8")
    where = f" on {slot.name}" if len(runner.slots) > 1 or slot.env else ""
    if followed is None:
        log.write(f"--- {stage.id}: worker started by run {runner.run_id}{where} at "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")
        log.flush()
    tail.offset = log.tell()
    port = free_port()
    env = {**worker_env(), **slot.env, "MASTER_PORT": str(port)}
    command = runner.plan.command(stage, master_port=port)
    try:
        if runner.executor is None:
            process: Any = ChildProcess(command, env, log)
        elif followed is not None:
            process = followed
            runner.display.message(stage.id, f"following job {process.job_id}, submitted "
                                           "by an earlier run")
        else:
            after = [runner.workers[d].process.job_id for d in stage.deps if d in runner.workers]
            process = runner.executor.submit(stage_dir, stage.id, command, env, after)
            runner.display.message(stage.id, f"submitted as job {process.job_id}"
                                 + (f" after {', '.join(after)}" if after else ""))
    except OSError:
        log.close()
        raise
    if len(runner.slots) > 1 and runner.executor is None:
        runner.display.message(stage.id, f"started on {slot.name}")
    return Worker(stage, slot, process, lock, EventTail(stage_dir / "events.jsonl"), tail, log)
