"""Experiment trackers, opt in: each read back with its own library's reader after a run
of the fake worker (the same event stream a real worker writes)."""

import io
import json
import struct
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from conftest import SMALL_DEMO, run_cli
from xstilts_tui.plan.stages import build_plan
from xstilts_tui.run.progress import PlainDisplay
from xstilts_tui.recipe.parse import parse_recipe
from xstilts_tui.recipe.schema import RecipeError
from xstilts_tui.run.runner import Runner
from xstilts_tui.run.tracking import flatten, metrics_of

def run_with(tmp_path, tracking: str):
    text = SMALL_DEMO + "\n[tracking]\n" + tracking
    recipe = parse_recipe(text, str(tmp_path / "r.toml"), tmp_path)
    plan = build_plan(recipe, tmp_path / "out", tmp_path / "cache")
    out = io.StringIO()
    outcome = Runner(plan, PlainDisplay(out)).run()
    return plan, outcome, out.getvalue()


def final_scores(plan) -> dict[tuple[str, str], float]:
    """(stage id, language) -> the test F1 the run recorded."""
    frame = pl.read_parquet(plan.output_dir / "results.parquet").filter(pl.col("split") == "test")
    ids = {s.key: s.id for s in plan.stages}
    return {(ids[r["stage_key"]], r["language"]): r["value"] for r in frame.iter_rows(named=True)}


def test_mlflow_file_store_holds_a_run_per_stage_under_the_recipe_run(tmp_path, fake, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    plan, outcome, printed = run_with(tmp_path, 'use = ["mlflow"]\nexperiment = "xs"\n')
    assert outcome.ok, printed
    assert "warning" not in printed
    client = MlflowClient(tracking_uri=(plan.output_dir / "tracking" / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("xs")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["name"] == "small-demo"
    assert parent.data.params["hparams_target.lr"] == "0.002"
    assert parent.data.params["arms.1.intermediate"] == "demo-jobs"
    children = {r.info.run_name: r for r in runs if r is not parent}
    assert sorted(children) == sorted(s.id for s in plan.stages)
    assert {r.data.tags["mlflow.parentRunId"] for r in children.values()} == {parent.info.run_id}
    scores = final_scores(plan)
    for (stage, lang), value in scores.items():
        assert children[stage].data.metrics[f"demo-qa/{lang}/f1"] == pytest.approx(value)
    losses = client.get_metric_history(children[plan.stages[0].id].info.run_id, "train/loss")
    assert [(m.step, m.value) for m in losses] == [(2, 1.0), (4, 0.5)]
    assert children[plan.stages[0].id].data.metrics["cost/examples_per_s"] == 100.0
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.md", "report.csv", "plots"} <= artifacts
    plots = client.list_artifacts(parent.info.run_id, "plots")
    assert any(p.path.endswith(".png") and p.file_size > 1000 for p in plots)


def wandb_records(path: Path):
    """The records of a W&B run file, parsed with W&B's own protobuf messages: a 7-byte
    header (':W&B', magic, version), then LevelDB-log framed records in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # the block's tail is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def test_wandb_offline_runs_carry_each_stage_s_metrics(tmp_path, fake, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    plan, outcome, printed = run_with(tmp_path, 'use = ["wandb"]\nwandb_mode = "offline"\n')
    assert outcome.ok, printed
    assert "warning" not in printed
    files = sorted((plan.output_dir / "tracking" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == len(plan.stages) + 1
    # W&B's own service process writes the files; the last run's lands a moment after
    # finish() returns (bounded wait)
    deadline = time.monotonic() + 60
    while not all(any(r.WhichOneof("record_type") == "exit" for r in wandb_records(f))
                  for f in files):
        assert time.monotonic() < deadline, "W&B did not write its run files within 60 s"
        time.sleep(0.2)
    runs = {}
    for path in files:
        name, group, history = None, None, {}
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                name, group = record.run.display_name, record.run.run_group
            elif kind == "history":
                for item in record.history.item:
                    history.setdefault(item.key or "/".join(item.nested_key), []).append(
                        json.loads(item.value_json))
        runs[name] = (group, history)
    stage_ids = [s.id for s in plan.stages]
    assert set(stage_ids) <= set(runs) and len(runs) == len(stage_ids) + 1
    parent = (set(runs) - set(stage_ids)).pop()
    assert parent.startswith("small-demo-") and runs[parent][0] == parent
    assert len({group for group, _ in runs.values()}) == 1  # one group: the recipe run
    for (stage, lang), value in final_scores(plan).items():
        assert runs[stage][1][f"demo-qa/{lang}/f1"] == [pytest.approx(value)]
    assert runs[stage_ids[0]][1]["train/loss"] == [1.0, 0.5]


def test_tensorboard_event_files_read_back_with_tensorboard(tmp_path, fake):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    plan, outcome, printed = run_with(tmp_path, 'use = ["tensorboard"]\n')
    assert outcome.ok, printed
    root = next((plan.output_dir / "tracking" / "tensorboard").iterdir())
    scores = final_scores(plan)
    for stage in plan.stages:
        events = EventAccumulator(str(root / stage.id))
        events.Reload()
        tags = events.Tags()["scalars"]
        assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(2, 1.0), (4, 0.5)]
        langs = [lang for (sid, lang) in scores if sid == stage.id]
        assert bool(langs) == (stage.kind == "target")
        for lang in langs:
            assert [e.value for e in events.Scalars(f"demo-qa/{lang}/f1")] == \
                [pytest.approx(scores[(stage.id, lang)])], tags
    parent = EventAccumulator(str(root))
    parent.Reload()
    assert any(tag.startswith("plots/") for tag in parent.Tags()["images"])
    assert "recipe" in parent.Tags()["tensors"] or "recipe/text_summary" in parent.Tags()["tensors"]


def test_a_tracker_that_cannot_start_is_one_warning_and_the_run_stays_green(tmp_path, fake,
                                                                            monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    plan, outcome, printed = run_with(
        tmp_path, f'use = ["wandb", "mlflow", "tensorboard"]\nmlflow_uri = "{(blocker / "m").as_uri()}"\n')
    assert outcome.ok
    warnings = [line for line in printed.splitlines() if "warning: tracker" in line]
    assert len(warnings) == 2, printed
    assert "wandb is not installed (pip install wandb)" in warnings[0]
    assert "tracker mlflow did not start" in warnings[1]
    assert "\n" not in warnings[1]
    assert (plan.output_dir / "tracking" / "tensorboard").is_dir()  # the third still works
    assert pl.read_parquet(plan.output_dir / "results.parquet").height > 0


def test_a_headless_run_with_track_on_the_command_line(tmp_path, fake, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(SMALL_DEMO, encoding="utf-8")
    code, out, err = run_cli(["--recipe", recipe, "--output", tmp_path / "out",
                              "--cache", tmp_path / "cache", "--track", "tensorboard"], capsys)
    assert code == 0, err
    assert "tracking: tensorboard in" in out
    assert list((tmp_path / "out" / "tracking" / "tensorboard").iterdir())
    with pytest.raises(SystemExit) as exit:
        run_cli(["--recipe", recipe, "--track", "neptune"], capsys)
    assert exit.value.code == 2
    assert "unknown tracker 'neptune'" in capsys.readouterr().err


def test_tracking_section_is_checked():
    with pytest.raises(RecipeError, match=r"tracking.use: unknown tracker 'mlfow' \(did you mean 'mlflow'"):
        parse_recipe(SMALL_DEMO + '[tracking]\nuse = ["mlfow"]\n', "r.toml")
    with pytest.raises(RecipeError, match="tracking.wandb_mode"):
        parse_recipe(SMALL_DEMO + '[tracking]\nuse = ["wandb"]\nwandb_mode = "sometimes"\n', "r.toml")
    with pytest.raises(RecipeError, match="tracking.colour"):
        parse_recipe(SMALL_DEMO + '[tracking]\ncolour = "red"\n', "r.toml")
    assert parse_recipe(SMALL_DEMO, "r.toml").tracking.use == ()


def test_flat_keys():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "arms": [{"name": "x", "i": ["p", "q"]}]}) == \
        {"a.b": "1", "a.c": "1,2", "arms.0.name": "x", "arms.0.i": "p,q"}
    metrics, step = metrics_of({"type": "score", "task": "xquad", "language": "de", "split": "test",
                                "metric": "f1", "value": 71.5, "step": 9})
    assert (metrics, step) == ({"xquad/de/f1": 71.5}, 9)
    metrics, _ = metrics_of({"type": "score", "task": "xquad", "language": "en",
                             "split": "validation", "metric": "em", "value": 50, "step": 3})
    assert metrics == {"validation/xquad/en/em": 50.0}


def test_an_mlflow_server_that_refuses_or_keeps_silent_costs_one_warning_and_no_time(tmp_path, fake):
    """A refused port and a server that accepts and never answers: the tracker does not
    start (one warning naming the server) and the run takes no longer than without it."""
    import socket
    import threading

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        refused = probe.getsockname()[1]
    try:
        for port, words in ((refused, "Connection refused"), (silent.getsockname()[1], "no answer within 3 s")):
            folder = tmp_path / str(port)
            folder.mkdir()
            started = time.monotonic()
            plan, outcome, printed = run_with(folder, f'use = ["mlflow"]\nmlflow_uri = "http://127.0.0.1:{port}"\n')
            took = time.monotonic() - started
            assert outcome.ok and took < 30, took
            warnings = [line for line in printed.splitlines() if "mlflow" in line]
            assert len(warnings) == 1, warnings
            assert f"the server at http://127.0.0.1:{port} does not answer" in warnings[0]
            assert words in warnings[0] and "the run goes on without it" in warnings[0]
    finally:
        stop.set()
        for conn in held:
            conn.close()
        silent.close()
