"""The worker entry point: ``python -m xstilts_tui.compute.worker STAGE_JSON`` runs one stage.

It reads the stage spec the control plane wrote, trains and evaluates, writes the
checkpoint and, last, a ``DONE`` marker, all under the stage's folder. Its only channel
back is the stage's event file (one JSON object a line, rank 0 only); its own output goes
to the log the control plane keeps.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
import threading
from pathlib import Path
from typing import Any

from xstilts_tui.protocol.events import encode, make_event
from xstilts_tui.protocol.processes import process_alive
from xstilts_tui.tasks.squad import DataFileError
from xstilts_tui.protocol.stage_cache import seal

from .inputs.data import DataError


class Events:
    """Appends events to the stage's event file; silent on every rank but 0."""

    def __init__(self, path: Path, stage: str):
        self.stage = stage
        self.rank = int(os.environ.get("RANK", "0"))
        self.handle = open(path, "a", encoding="utf-8") if self.rank == 0 else None

    def emit(self, kind: str, **fields: Any) -> None:
        if self.handle is None:
            return
        self.handle.write(encode(make_event(kind, stage=self.stage, **fields)))
        self.handle.flush()

    def offset(self) -> int:
        """How far the event file has been written (a resume state records it)."""
        return self.handle.tell() if self.handle is not None else 0


def watch_control_process(pid: int, interval_s: float = 1.0) -> None:
    """End this worker when the process that dispatched it is gone (killed with -9, a
    crashed dashboard): no orphan keeps training and writing into the stage folder."""

    def watch() -> None:
        while process_alive(pid):
            time.sleep(interval_s)
        os._exit(3)

    threading.Thread(target=watch, name="control-watchdog", daemon=True).start()


def _quiet_libraries() -> None:
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "tokenizers", "datasets", "deepspeed", "peft", "xstilts-tui"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _hardware() -> str:
    """The GPUs this worker computes on (count and name), else the CPU's model."""
    import torch

    from xstilts_tui.protocol.provenance import cpu_model

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return cpu_model()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m xstilts_tui.compute.worker STAGE_JSON", file=sys.stderr)
        return 2
    spec_path = Path(argv[0])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    if os.environ.get("XSTILTS_CONTROL_PID", "").isdigit():
        watch_control_process(int(os.environ["XSTILTS_CONTROL_PID"]))
    stage_dir = Path(spec["stage_dir"])
    events = Events(stage_dir / "events.jsonl", spec["id"])
    started = time.perf_counter()
    from .engines.training import STOP, StageStopped

    # SIGTERM (a cancel, a cluster's time limit, a preemption): the training loop saves a
    # resume state after its current step (an evaluation stops at its next batch) and the
    # stage ends as stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: STOP.set())
    try:
        from .planned import check_code_and_libraries

        check_code_and_libraries(spec)
        _quiet_libraries()
        if spec["kind"] == "base":
            events.emit("stage_started", total_steps=0)
            from .other_stages import run_base

            cost = run_base(spec, stage_dir, events)
        else:
            from .training_stage import run_training_stage

            cost = run_training_stage(spec, stage_dir, events)
    except StageStopped as exc:
        events.emit("log", message=str(exc))
        events.emit("stage_finished", status="stopped", wall_s=time.perf_counter() - started)
        return 143
    except Exception as exc:  # every failure becomes an event and a non-zero exit
        from .inputs.models import ModelLoadError
        from .planned import NotAsPlanned
        from .engines.training import TrainingDiverged

        known = (DataError, ModelLoadError, DataFileError, TrainingDiverged, NotAsPlanned)
        message = str(exc) if isinstance(exc, known) else f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        events.emit("error", message=message.splitlines()[0] if message else type(exc).__name__)
        events.emit("stage_finished", status="failed", wall_s=time.perf_counter() - started)
        return 1
    events.emit("stage_finished", status="ok", wall_s=time.perf_counter() - started,
                versions=_versions(), hardware=_hardware(), **cost)
    if events.rank == 0:
        seal(stage_dir, spec["key"], spec["id"])
        from .engines.training import drop_states

        drop_states(stage_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
