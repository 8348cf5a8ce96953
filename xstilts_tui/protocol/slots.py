"""Where stages run side by side: slots of devices (or of CPU cores), found without torch.

A slot is what one stage's worker gets: a set of GPUs (through ``CUDA_VISIBLE_DEVICES``)
or, on a machine without GPUs, a share of the cores (through the thread-count
variables). The scheduler starts a stage when its inputs are done and a slot is free.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field

# The variables the math libraries read for their thread counts.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class Slot:
    name: str  # "gpu 0,1" or "cpu 1/2 (4 threads)"
    env: dict[str, str] = field(default_factory=dict)


def visible_gpus() -> list[str]:
    """The GPUs this machine offers: ``CUDA_VISIBLE_DEVICES`` where it is set, else the
    indices ``nvidia-smi`` lists, else none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip().isdigit()]


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def make_slots(devices: list[str] | None, gpus_per_stage: int, parallel: int,
               cores: int | None = None) -> list[Slot]:
    """Slots from devices (``gpus_per_stage`` each; leftovers unused) or, without devices,
    ``parallel`` CPU slots sharing the cores (1: one slot and the thread counts left alone)."""
    gpus = visible_gpus() if devices is None else list(devices)
    if gpus:
        per = max(1, gpus_per_stage)
        if per > len(gpus):
            raise ValueError(f"a stage needs {per} GPUs and only {len(gpus)} are given "
                             f"({', '.join(gpus)})")
        groups = [gpus[i:i + per] for i in range(0, len(gpus) - per + 1, per)]
        return [Slot(f"gpu {','.join(g)}", {"CUDA_VISIBLE_DEVICES": ",".join(g)}) for g in groups]
    n = max(1, parallel)
    if n == 1:
        return [Slot("cpu")]
    cores = cores or cpu_count()
    threads = max(1, cores // n)
    env = {name: str(threads) for name in THREAD_VARIABLES}
    return [Slot(f"cpu {i + 1}/{n} ({threads} threads)", dict(env)) for i in range(n)]


def free_port() -> int:
    """A TCP port free now on this machine, for one worker's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
