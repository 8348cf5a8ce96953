"""The process group a worker runs in: one process, or many started by torchrun or the
deepspeed launcher (their environment variables say which rank this process is).

Data parallelism is by micro-batch: of the stage's global sequence of micro-batches,
rank ``r`` of ``w`` takes those whose index is ``r`` modulo ``w``, so any number of
processes walks the same batch plan.
"""

from __future__ import annotations

import os
import socket


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_rendezvous_env() -> None:
    """A single process started without a launcher still needs an address for a process
    group of one (DeepSpeed always makes one)."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))


def device():
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        return torch.device("cuda", local_rank())
    return torch.device("cpu")


def init_process_group() -> None:
    """Join the launcher's process group (NCCL on GPUs, gloo on the CPU) if there is more
    than one process and it is not joined yet."""
    import torch
    import torch.distributed as dist

    if world_size() > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
