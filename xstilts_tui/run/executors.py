"""Where a stage's worker process runs: here (a child process, the default), or as a job
of a cluster through submitit (SLURM), or through submitit's local executor (the same
path on one machine, to try a cluster setup).

Whatever runs it, the worker writes its events to the stage's folder; the control plane
follows that file on the shared file system, exactly as for a local worker. A submitted
stage's job is recorded in its folder (``job.json``), so a rerun finds a job still
queued or running and follows it instead of submitting the stage again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from xstilts_tui.protocol.processes import process_alive
from xstilts_tui.recipe.schema import SlurmSettings

JOB_FILE = "job.json"
EXECUTORS = ("local", "slurm", "submitit-local")
# SLURM states of a job that may still run (squeue/sacct words).
ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING",
                 "SUSPENDED", "REQUEUE_HOLD", "REQUEUE_FED"}


class ChildProcess:
    """A worker started here."""

    def __init__(self, command: list[str], env: dict[str, str], log) -> None:
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        self.pid: int | None = self.process.pid
        self.job_id = ""

    def poll(self) -> int | None:
        return self.process.poll()

    def signal(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float | None) -> None:
        self.process.wait(timeout=timeout)


class SubmittedJob:
    """A worker running as a submitit job (SLURM, or submitit's local executor)."""

    def __init__(self, job: Any) -> None:
        self.job = job
        self.job_id = str(job.job_id)
        self.pid = None

    def poll(self) -> int | None:
        try:
            if not self.job.done():
                return None
        except Exception:  # the scheduler could not be asked this time: ask again later
            return None
        try:
            self.job.result()
            return 0
        except Exception:
            return 1

    def signal(self, signum: int) -> None:
        # scancel sends SIGTERM then SIGKILL after the cluster's grace time; the worker
        # saves a resume state on SIGTERM.
        try:
            self.job.cancel(check=False)
        except Exception:
            pass

    def wait(self, timeout: float | None) -> None:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("job", timeout or 0)
            time.sleep(0.5)


class SubmititExecutor:
    """Stages as submitit jobs; ``kind`` "slurm" or "local" (submitit's LocalExecutor)."""

    def __init__(self, kind: str, folder: Path, slurm: SlurmSettings | None = None,
                 gpus_per_stage: int = 0) -> None:
        self.kind, self.folder = kind, folder
        self.slurm = slurm or SlurmSettings()
        self.gpus_per_stage = gpus_per_stage
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def chains_jobs(self) -> bool:
        """A stage may be submitted before its inputs are done (afterok dependencies)."""
        return self.kind == "slurm"

    def slurm_parameters(self, name: str, after: list[str]) -> dict[str, Any]:
        """submitit's SlurmExecutor parameters of one stage's job (sbatch options)."""
        params: dict[str, Any] = {"job_name": name, "time": self.slurm.time_min,
                                  "cpus_per_task": self.slurm.cpus_per_task,
                                  "gpus_per_node": self.slurm.gpus_per_node or self.gpus_per_stage,
                                  "additional_parameters": dict(self.slurm.sbatch)}
        if after:
            params["dependency"] = "afterok:" + ":".join(after)
            params["additional_parameters"]["kill-on-invalid-dep"] = "yes"
        if self.slurm.partition:
            params["partition"] = self.slurm.partition
        if self.slurm.account:
            params["account"] = self.slurm.account
        if self.slurm.mem_gb:
            params["mem"] = f"{self.slurm.mem_gb}GB"
        return params

    def _executor(self, name: str, after: list[str]):
        import submitit

        if self.kind == "local":
            executor = submitit.LocalExecutor(folder=str(self.folder))
            executor.update_parameters(timeout_min=self.slurm.time_min)
            return executor
        executor = submitit.SlurmExecutor(folder=str(self.folder))
        executor.update_parameters(**self.slurm_parameters(name, after))
        return executor

    def submit(self, stage_dir: Path, name: str, command: list[str], env: dict[str, str],
               after: list[str]) -> SubmittedJob:
        from submitit.helpers import CommandFunction

        # The job runs where the control plane may not be: it must not watch for it.
        env = {k: v for k, v in env.items() if k != "XSTILTS_CONTROL_PID"}
        job = self._executor(name, after).submit(
            CommandFunction(["bash", "-c", 'exec "$@" >> "$0" 2>&1', str(stage_dir / "worker.log"),
                             *command], env=env, verbose=False))
        record = {"executor": self.kind, "folder": str(self.folder), "job_id": str(job.job_id),
                  "stage": name}
        tmp = stage_dir / f"{JOB_FILE}.tmp"
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, stage_dir / JOB_FILE)
        return SubmittedJob(job)

    def find_active(self, stage_dir: Path) -> SubmittedJob | None:
        """The job a previous run submitted for this stage, if it is still queued or
        running (a rerun follows it instead of submitting the stage again)."""
        try:
            record = json.loads((stage_dir / JOB_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if record.get("executor") != self.kind:
            return None
        import submitit

        folder, job_id = record["folder"], record["job_id"]
        if self.kind == "local":
            if not job_id.isdigit() or not process_alive(int(job_id)):  # its job id is its pid
                return None
            job = submitit.local.local.LocalJob(folder=folder, job_id=job_id)
            return _AttachedLocalJob(job, int(job_id))
        job = submitit.SlurmJob(folder=folder, job_id=job_id)
        try:
            state = job.state
        except Exception:
            return None
        return SubmittedJob(job) if state.split(" ")[0] in ACTIVE_STATES else None


class _AttachedLocalJob(SubmittedJob):
    """A local job started by an earlier control process: followed through its pid."""

    def __init__(self, job: Any, pid: int) -> None:
        super().__init__(job)
        self.local_pid = pid

    def poll(self) -> int | None:
        if process_alive(self.local_pid):
            return None
        result = Path(self.job.paths.result_pickle)
        if not result.exists():
            return 1
        return super().poll()

    def signal(self, signum: int) -> None:
        try:
            os.kill(self.local_pid, signal.SIGTERM)
        except OSError:
            pass


def executor_for(kind: str, plan: Any) -> SubmititExecutor | None:
    """``--executor``: None for local workers; else submitit's, its job files beside the
    stage cache (on the shared file system a cluster's nodes see)."""
    if kind == "local":
        return None
    if kind not in EXECUTORS:
        raise ValueError(f"unknown executor {kind!r}; expected one of {', '.join(EXECUTORS)}")
    return SubmititExecutor("slurm" if kind == "slurm" else "local", plan.cache_dir / "jobs",
                            plan.recipe.slurm, plan.launch.stage_gpus)
