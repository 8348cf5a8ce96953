"""A stand-in worker for scheduler tests: it writes the events a real worker writes and
seals its stage, without torch. What it saw (its stage, devices, threads, port, pid, start
and end) goes to $FAKE_LOG, one JSON object a line."""

import json
import os
import sys
import time
import zlib
from pathlib import Path

from xstilts_tui.protocol.events import encode, make_event
from xstilts_tui.protocol.stage_cache import seal


def note(**fields) -> None:
    with open(os.environ["FAKE_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(fields) + "\n")


def predictions(stage_dir: Path, spec: dict, lang: str, value: float, n: int = 40) -> None:
    """Per-example predictions as the real worker keeps them (``predictions/``): an
    example's f1 is 100 or 0, as many 100s as the score says."""
    import polars as pl

    hits = round(value / 100 * n)
    folder = stage_dir / "predictions"
    folder.mkdir(exist_ok=True)
    pl.DataFrame({"example_id": [f"q{i}" for i in range(n)], "prediction": ["yes"] * n,
                  "gold": [json.dumps(["yes"] if i < hits else ["no"]) for i in range(n)],
                  "f1": [100.0 if i < hits else 0.0 for i in range(n)]}).with_columns(
        stage_key=pl.lit(spec["key"]), seed=pl.lit(spec["seed"]), task=pl.lit(spec["task"]["name"]),
        language=pl.lit(lang), step=pl.lit(4)).write_parquet(folder / f"{spec['task']['name']}.{lang}.parquet")


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    stage, stage_dir = spec["id"], Path(spec["stage_dir"])
    note(event="start", stage=stage, t=time.monotonic(), pid=os.getpid(),
         cuda=os.environ.get("CUDA_VISIBLE_DEVICES"), omp=os.environ.get("OMP_NUM_THREADS"),
         port=os.environ.get("MASTER_PORT"))
    hold = float(os.environ.get("FAKE_HOLD", "0.4"))
    if stage == os.environ.get("FAKE_LONG_STAGE"):
        hold = 120.0
    # One handle for the whole stage, as the real worker keeps it.
    handle = open(stage_dir / "events.jsonl", "a", encoding="utf-8")

    def emit(kind, **fields):
        handle.write(encode(make_event(kind, stage=stage, **fields)))
        handle.flush()

    emit("stage_started", total_steps=4)
    if spec["kind"] == "target" and os.environ.get("FAKE_EARLY_SCORE"):  # eval_before_training
        emit("score", task=spec["task"]["name"], language="en", split="test", metric="f1",
             value=1.5, step=0)
    time.sleep(hold)
    for step in (2, 4):
        emit("progress", step=step, total_steps=4, loss=2.0 / step, lr=1e-3, examples_per_s=50.0)
    if spec["kind"] == "target":
        for lang in spec["task"]["settings"]["languages"]:
            value = zlib.crc32(f"{spec['key']}/{lang}".encode()) % 1000 / 10
            emit("score", task=spec["task"]["name"], language=lang, split="test", metric="f1",
                 value=value, step=4)
            if os.environ.get("FAKE_PREDICTIONS"):
                predictions(stage_dir, spec, lang, value)
    emit("stage_finished", status="ok", wall_s=hold, examples_per_s=100.0)
    handle.close()
    seal(stage_dir, spec["key"], stage)
    note(event="end", stage=stage, t=time.monotonic())
    return 0


if __name__ == "__main__":
    sys.exit(main())
