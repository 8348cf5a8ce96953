"""Experiment trackers, opt in: MLflow, Weights & Biases, TensorBoard.

A recipe names them in ``[tracking]`` (or the command line in ``--track``); none is used
otherwise, and none is a core dependency (``pip install 'xstilts-tui[tracking]'``). They are
fed from the control plane's event stream, the same events the dashboard and the headless
display see, so every backend and launcher is covered once:

- one parent run per recipe run, with the resolved recipe as flat parameters
  (``hparams_target.lr``, ``arms.1.intermediate``...);
- one run per stage under it (MLflow: a nested run; W&B: a run in the recipe run's group;
  TensorBoard: a folder per stage), with the stage's progress (``train/loss``, ``train/lr``),
  scores (``xquad/de/f1`` for a test score, ``validation/xquad/en/f1`` otherwise) and costs
  (``cost/wall_s``...);
- the final tables and plots as the parent's artifacts.

A tracker that cannot start, or fails later, costs one warning line and is dropped; the run
goes on and its status is its stages'.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Callable

from xstilts_tui.recipe.schema import TrackingSettings

def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A nested recipe as flat ``a.b.0.c`` keys and string values (tracker parameters)."""
    out: dict[str, str] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in value):
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{i}" if prefix else str(i)))
    elif prefix:
        out[prefix] = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return out


def metrics_of(event: dict[str, Any]) -> tuple[dict[str, float], int | None]:
    """An event's metrics under flat keys, and the step they belong to."""
    kind = event["type"]
    if kind == "progress":
        return ({f"train/{k}": float(event[k]) for k in ("loss", "lr", "examples_per_s")
                 if isinstance(event.get(k), (int, float))}, int(event["step"]))
    if kind == "score":
        split = "" if event["split"] == "test" else f"{event['split']}/"
        key = f"{split}{event['task']}/{event['language']}/{event['metric']}"
        return {key: float(event["value"])}, int(event["step"])
    if kind == "stage_finished":
        costs = {f"cost/{k}": float(v) for k, v in event.items()
                 if k not in ("type", "time", "stage", "status") and isinstance(v, (int, float))
                 and not isinstance(v, bool)}
        return costs, None
    return {}, None


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


def _answers(uri: str, timeout_s: float = 3.0) -> None:
    """Raise ConnectionError unless the server at ``uri`` answers one short request (any
    HTTP status counts as an answer)."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        text = f"no answer within {timeout_s:g} s" if "timed out" in str(reason) else str(reason)
        raise ConnectionError(f"the server at {uri} does not answer ({text})") from None


class _MLflow:
    name = "mlflow"

    def __init__(self, settings: TrackingSettings, folder: Path, experiment: str, run_name: str,
                 params: dict[str, str], tags: dict[str, str]):
        from mlflow.entities import Param, RunTag
        from mlflow.tracking import MlflowClient

        uri = settings.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            # MLflow keeps its file store for those who ask for it by name; a local store
            # beside the run's results is what a researcher without a server wants.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (folder / "mlruns").resolve().as_uri()
        self.uri = uri
        if uri.startswith(("http://", "https://")):
            _answers(uri)  # a server that refuses or keeps silent: no tracker, one warning
            # MLflow's own default is 120 s a request and 7 retries: minutes a call.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (found.experiment_id if found is not None
                              else self.client.create_experiment(experiment))
        self.parent = self.client.create_run(self.experiment_id, run_name=run_name,
                                             tags=tags).info.run_id
        self._Param, self._RunTag = Param, RunTag
        items = [Param(k[:250], v[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes 100 parameters a batch
            self.client.log_batch(self.parent, params=items[i:i + 100])

    def start_stage(self, stage: str, params: dict[str, str], tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=stage,
                                     tags={**tags, "mlflow.parentRunId": self.parent})
        self.client.log_batch(run.info.run_id,
                              params=[self._Param(k, v) for k, v in params.items()])
        return run.info.run_id

    def log(self, handle: str, metrics: dict[str, float], step: int | None, time_s: float) -> None:
        from mlflow.entities import Metric

        stamp = int(time_s * 1000)
        self.client.log_batch(handle, metrics=[Metric(k, v, stamp, step or 0)
                                               for k, v in metrics.items()])

    def end_stage(self, handle: str, status: str) -> None:
        self.client.set_tag(handle, "status", status)
        self.client.set_terminated(handle, "FAILED" if status == "failed" else "FINISHED")

    def finish(self, ok: bool, artifacts: list[Path]) -> None:
        for path in artifacts:
            if path.is_dir():
                self.client.log_artifacts(self.parent, str(path), artifact_path=path.name)
            else:
                self.client.log_artifact(self.parent, str(path))
        self.client.set_terminated(self.parent, "FINISHED" if ok else "FAILED")

    def where(self) -> str:
        return self.uri


class _WandB:
    name = "wandb"

    def __init__(self, settings: TrackingSettings, folder: Path, experiment: str, run_name: str,
                 params: dict[str, str], tags: dict[str, str]):
        import wandb

        self.wandb = wandb
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.common = {"project": experiment, "group": run_name, "dir": str(folder),
                       "mode": settings.wandb_mode, "entity": settings.wandb_entity,
                       "reinit": "create_new",
                       # no console capture: the dashboard owns the terminal
                       "settings": wandb.Settings(silent=True, console="off",
                                                  x_disable_stats=True)}
        self.parent = wandb.init(name=run_name, job_type="recipe", config=params,
                                 tags=list(tags.values()), **self.common)

    def start_stage(self, stage: str, params: dict[str, str], tags: dict[str, str]) -> Any:
        run = self.wandb.init(name=stage, job_type="stage", config=params, **self.common)
        run.define_metric("*", step_metric="step")
        return run

    def log(self, handle: Any, metrics: dict[str, float], step: int | None, time_s: float) -> None:
        if step is None:
            handle.summary.update(metrics)
        else:
            # stage steps arrive in order per stage, but a score of step 0 can follow
            # progress: W&B refuses steps going back, so the step is a metric here
            handle.log({**metrics, "step": step})

    def end_stage(self, handle: Any, status: str) -> None:
        handle.summary["status"] = status
        handle.finish(exit_code=1 if status == "failed" else 0)

    def finish(self, ok: bool, artifacts: list[Path]) -> None:
        if artifacts:
            artifact = self.wandb.Artifact(f"{self.common['group']}-report", type="report")
            for path in artifacts:
                if path.is_dir():
                    artifact.add_dir(str(path), name=path.name)
                else:
                    artifact.add_file(str(path))
            self.parent.log_artifact(artifact)
        self.parent.finish(exit_code=0 if ok else 1)

    def where(self) -> str:
        return str(self.folder / "wandb")


class _TensorBoard:
    """Event files written with TensorBoard's own writer and protos (no TensorFlow, no torch
    in the control plane): a folder per recipe run, a subfolder per stage."""
    name = "tensorboard"

    def __init__(self, settings: TrackingSettings, folder: Path, experiment: str, run_name: str,
                 params: dict[str, str], tags: dict[str, str]):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.text.summary_v2 import text_pb
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.Writer, self.event_pb2, self.summary_pb2, self.text_pb = (
            EventFileWriter, event_pb2, summary_pb2, text_pb)
        self.root = folder / "tensorboard" / run_name
        self.parent = self._open(self.root)
        self._text(self.parent, "recipe", params)

    def _open(self, folder: Path) -> Any:
        folder.mkdir(parents=True, exist_ok=True)
        return self.Writer(str(folder))

    def _write(self, writer: Any, summary: Any, step: int, time_s: float) -> None:
        writer.add_event(self.event_pb2.Event(wall_time=time_s, step=step, summary=summary))

    def _text(self, writer: Any, tag: str, values: dict[str, str] | str) -> None:
        text = values if isinstance(values, str) else \
            "\n".join(f"    {k} = {v}" for k, v in values.items())
        import time

        self._write(writer, self.text_pb(tag, text), 0, time.time())

    def start_stage(self, stage: str, params: dict[str, str], tags: dict[str, str]) -> Any:
        writer = self._open(self.root / stage)
        self._text(writer, "stage", params)
        return writer

    def log(self, handle: Any, metrics: dict[str, float], step: int | None, time_s: float) -> None:
        summary = self.summary_pb2.Summary(value=[
            self.summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in metrics.items()])
        self._write(handle, summary, step or 0, time_s)

    def end_stage(self, handle: Any, status: str) -> None:
        self._text(handle, "status", status)
        handle.close()

    def finish(self, ok: bool, artifacts: list[Path]) -> None:
        import time

        for path in artifacts:  # the report's tables as text, its PNG plots as images
            files = sorted(path.rglob("*")) if path.is_dir() else [path]
            for file in files:
                if file.suffix == ".md":
                    self._text(self.parent, file.stem, file.read_text(encoding="utf-8"))
                elif file.suffix == ".png":
                    from PIL import Image

                    with Image.open(file) as image:
                        width, height = image.size
                    picture = self.summary_pb2.Summary.Image(
                        height=height, width=width, colorspace=4,
                        encoded_image_string=file.read_bytes())
                    self._write(self.parent, self.summary_pb2.Summary(value=[
                        self.summary_pb2.Summary.Value(tag=f"plots/{file.stem}", image=picture)]),
                        0, time.time())
        self._text(self.parent, "status", "ok" if ok else "failed")
        self.parent.close()

    def where(self) -> str:
        return str(self.root)


_CLASSES = {"mlflow": _MLflow, "wandb": _WandB, "tensorboard": _TensorBoard}
_EXTRA = {"mlflow": "mlflow-skinny", "wandb": "wandb", "tensorboard": "tensorboard"}


class Tracking:
    """The trackers of one recipe run. Every call is safe: a tracker that raises is named in
    one warning line (``warn``) and dropped; the others go on."""

    def __init__(self, settings: TrackingSettings, recipe: Any, output_dir: Path, run_id: str,
                 warn: Callable[[str], None], provenance: dict[str, Any] | None = None,
                 stage_provenance: Callable[[Any], dict[str, Any]] | None = None):
        self.settings = settings
        # What the run and each stage computed with: parameters and tags of their runs.
        self.provenance = provenance or {}
        self.stage_provenance = stage_provenance
        self.recipe = recipe
        self.folder = Path(settings.dir) if settings.dir else output_dir / "tracking"
        self.run_id = run_id
        self.warn = warn
        self.trackers: list[Any] = []
        self.stages: dict[str, dict[str, Any]] = {}  # stage id -> tracker name -> handle

    @property
    def active(self) -> bool:
        return bool(self.trackers)

    def _drop(self, tracker: Any, exc: BaseException, doing: str) -> None:
        if tracker in self.trackers:
            self.trackers.remove(tracker)
        self.warn(f"warning: tracker {tracker.name} failed {doing} ({_one_line(exc)}); "
                  "the run goes on without it")

    def start(self) -> None:
        if not self.settings.use:
            return
        params = {**flatten(self.recipe.to_dict()), **flatten(self.provenance, "provenance")}
        run_name = f"{self.recipe.name}-{self.run_id}"
        experiment = self.settings.experiment or self.recipe.name
        tags = {"xstilts.recipe": self.recipe.name,
                "xstilts.version": str(self.provenance.get("version", ""))}
        for name in self.settings.use:
            try:
                tracker = _CLASSES[name](self.settings, self.folder, experiment, run_name, params, tags)
            except ImportError as exc:
                self.warn(f"warning: tracker {name} did not start: {exc.name or name} is not "
                          f"installed (pip install {_EXTRA[name]}); the run goes on without it")
                continue
            except Exception as exc:  # any library's own failure to start
                self.warn(f"warning: tracker {name} did not start ({_one_line(exc)}); "
                          "the run goes on without it")
                continue
            self.trackers.append(tracker)
            self.warn(f"tracking: {name} in {tracker.where()}")

    def _handles(self, stage: Any, cached: bool) -> dict[str, Any]:
        handles = self.stages.get(stage.id)
        if handles is None:
            handles = self.stages[stage.id] = {}
            params = {"stage": stage.id, "kind": stage.kind, "arms": ",".join(stage.arms),
                      "seed": str(stage.seed), "task": str(stage.task), "key": stage.key}
            made = self.stage_provenance(stage) if self.stage_provenance else {}
            params.update(flatten(made, "provenance"))
            tags = {"xstilts.stage": stage.id, "xstilts.cached": str(cached).lower(),
                    "xstilts.version": str(made.get("version", ""))}
            if made.get("reused_from"):
                tags["xstilts.reused_from"] = str(made["reused_from"])
            for tracker in list(self.trackers):
                try:
                    handles[tracker.name] = tracker.start_stage(stage.id, params, tags)
                except Exception as exc:
                    self._drop(tracker, exc, f"to open stage {stage.id}")
        return handles

    def event(self, stage: Any, event: dict[str, Any], cached: bool) -> None:
        if not self.trackers:
            return
        metrics, step = metrics_of(event)
        metrics = _finite(metrics)
        if not metrics:
            return
        handles = self._handles(stage, cached)
        for tracker in list(self.trackers):
            if tracker.name in handles:
                try:
                    tracker.log(handles[tracker.name], metrics, step, event.get("time", 0.0))
                except Exception as exc:
                    self._drop(tracker, exc, f"to log {stage.id}")

    def stage_end(self, stage: Any, status: str) -> None:
        if not self.trackers:
            return
        handles = self._handles(stage, status == "cached")
        for tracker in list(self.trackers):
            if tracker.name in handles:
                try:
                    tracker.end_stage(handles.pop(tracker.name), status)
                except Exception as exc:
                    self._drop(tracker, exc, f"to close {stage.id}")

    def finish(self, ok: bool, artifacts: list[Path]) -> None:
        for stage_id, handles in self.stages.items():  # stages a cancel left open
            for tracker in list(self.trackers):
                if tracker.name in handles:
                    try:
                        tracker.end_stage(handles.pop(tracker.name), "cancelled")
                    except Exception as exc:
                        self._drop(tracker, exc, f"to close {stage_id}")
        for tracker in list(self.trackers):
            try:
                tracker.finish(ok, [p for p in artifacts if p.exists()])
            except Exception as exc:
                self._drop(tracker, exc, "to finish")
        self.trackers.clear()


def _one_line(exc: BaseException) -> str:
    text = re.sub(r"\s+", " ", str(exc)).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
