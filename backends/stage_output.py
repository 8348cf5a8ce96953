"""What a stage leaves in its folder: the hand-off checkpoint (written under a temporary
name, then renamed), per-example predictions, and the sizes and memory its cost table
reports."""

from __future__ import annotations

import os
import random
import resource
import shutil
from pathlib import Path
from typing import Any


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def peak_memory(device) -> tuple[int, str]:
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "cpu_rss"


def write_checkpoint(stage_dir: Path, write) -> Path:
    """Let ``write(folder)`` fill a temporary folder, then rename it to ``checkpoint``:
    a stopped stage never leaves a half-written checkpoint under the final name. Every
    rank calls ``write`` (gathering sharded weights takes them all); rank 0 writes."""
    from .engines import distributed

    tmp = stage_dir / "checkpoint.tmp"
    final = stage_dir / "checkpoint"
    if distributed.rank() == 0:
        if tmp.exists():  # left by a stopped attempt
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    distributed.barrier()
    write(tmp)
    distributed.barrier()
    if distributed.rank() == 0:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    return final


def write_predictions(stage_dir: Path, records: list[dict[str, Any]], **columns: Any) -> Path:
    """One language's per-example predictions (``predictions/<task>.<lang>.parquet``):
    example id, prediction, gold and what each example adds to the metrics, with the stage
    key, seed, task, language and step in every row; written to a temporary name and
    renamed. A later evaluation of the same language replaces an earlier one."""
    import polars as pl

    folder = stage_dir / "predictions"
    folder.mkdir(exist_ok=True)
    path = folder / f"{columns['task']}.{columns['language']}.parquet"
    frame = pl.DataFrame(records, infer_schema_length=None) if records else pl.DataFrame(
        {"example_id": [], "prediction": [], "gold": []}, schema={"example_id": pl.String,
                                                                  "prediction": pl.String,
                                                                  "gold": pl.String})
    frame = frame.with_columns(**{k: pl.lit(v) for k, v in columns.items()})
    tmp = path.with_name(path.name + ".tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)
    return path
