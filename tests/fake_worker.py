"""A stand-in worker for scheduler tests: it writes the events a real worker writes and
seals its stage, without torch. What it saw (its stage, devices, threads, port, pid, start
and end) goes to $FAKE_LOG, one JSON object a line."""

import json
import os
import sys
import time
import zlib
from pathlib import Path

from xstilts_tui.events import encode, make_event
from xstilts_tui.stage_cache import seal


def note(**fields) -> None:
    with open(os.environ["FAKE_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(fields) + "\n")


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
    emit("stage_finished", status="ok", wall_s=hold, examples_per_s=100.0)
    handle.close()
    seal(stage_dir, spec["key"], stage)
    note(event="end", stage=stage, t=time.monotonic())
    return 0


if __name__ == "__main__":
    sys.exit(main())
