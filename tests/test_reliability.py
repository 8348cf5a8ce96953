"""Nothing lost, nothing silently wrong: bad values refused at validation, names that are
not paths, a verified stage cache, one writer per stage, divergence caught."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SMALL_DEMO, run_cli


def _recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(text, encoding="utf-8")
    return path


BAD_VALUES = [
    ("lr inf", ("lr = 2e-3", "lr = inf"), "hparams.lr", "a finite number"),
    ("weight decay nan", ("lr = 2e-3", "lr = 2e-3\nweight_decay = nan"), "hparams.weight_decay", "a finite number"),
    ("epochs nan", ("lr = 2e-3", "lr = 2e-3\nepochs = nan"), "hparams.epochs", "a finite number"),
    ("warmup inf", ("lr = 2e-3", "lr = 2e-3\nwarmup_ratio = -inf"), "hparams.warmup_ratio", "a finite number"),
    ("max steps huge", ("max_steps = 12", "max_steps = 1e23"), "hparams.max_steps", "expected an integer"),
    ("seed huge", ("seeds = [1]", "seeds = [1180591620717411303424]"), "seeds", "below 2**32"),
    ("name a path", ('name = "small-demo"', 'name = "../../x"'), "name", "a name, not a path"),
    ("name absolute", ('name = "small-demo"', 'name = "/etc"'), "name", "a name, not a path"),
]


@pytest.mark.parametrize("label, change, field, words", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_values_that_would_fail_later_are_refused_at_validation(tmp_path, capsys, label, change, field, words):
    old, new = change
    assert old in SMALL_DEMO
    recipe = _recipe(tmp_path, SMALL_DEMO.replace(old, new, 1))
    code, out, err = run_cli(["validate", recipe], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert f"{recipe}: {field}: " in err and words in err, err
    code, _, err = run_cli(["--recipe", recipe, "--output", tmp_path / "out"], capsys)
    assert code == 2 and not (tmp_path / "out").exists()
    assert not (tmp_path / "x").exists() and not Path("/etc/run.json").exists()


@pytest.mark.slow
def test_a_diverging_stage_fails_and_is_not_cached(tmp_path, capsys):
    recipe = _recipe(tmp_path, SMALL_DEMO.replace("lr = 2e-3", "lr = 1e30"))
    code, out, err = run_cli(["--recipe", recipe, "--output", tmp_path / "out"], capsys)
    assert code == 1
    assert "diverged" in err and "not finite" in err
    cache = tmp_path / "stage-cache"
    trained = [d for d in cache.iterdir() if d.name.startswith(("intermediate-", "target-"))]
    assert trained and not any((d / "DONE").exists() for d in trained)
    assert not any((d / "checkpoint").exists() for d in trained)


# --- a verified stage cache ------------------------------------------------------------------


def _run(tmp_path: Path, name: str, recipe: Path, cache: Path, *extra) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "xstilts_tui", "--recipe", str(recipe), "--output",
                             str(tmp_path / name), "--cache", str(cache), *map(str, extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=900)
    return process.returncode, out, err


def _test_scores(folder: Path):
    import polars as pl

    frame = pl.read_parquet(folder / "results.parquet").filter(pl.col("split") == "test")
    return sorted(zip(frame["stage"], frame["language"], frame["metric"], frame["value"]))


def _launches(cache: Path) -> dict[str, int]:
    return {d.name: (d / "worker.log").read_text().count("worker started by run")
            for d in cache.iterdir() if (d / "worker.log").exists()}


@pytest.fixture(scope="module")
def done_cache(tmp_path_factory):
    """A finished small demo: its output and its stage cache, copied by each test."""
    tmp = tmp_path_factory.mktemp("done")
    recipe = _recipe(tmp, SMALL_DEMO)
    code, out, err = _finish(_run(tmp, "out", recipe, tmp / "cache"))
    assert code == 0, err[-2000:]
    return tmp, recipe


def _copy(done_cache, tmp_path):
    import shutil

    src, recipe = done_cache
    shutil.copytree(src / "cache", tmp_path / "cache")
    return recipe, tmp_path / "cache", _test_scores(src / "out")


def _stage(cache: Path, prefix: str) -> Path:
    return next(d for d in sorted(cache.iterdir()) if d.name.startswith(prefix))


DAMAGES = [
    ("random bytes in the event log", "target-", lambda d: (d / "events.jsonl").write_bytes(os.urandom(400))),
    ("one broken event line", "target-", lambda d: _break_a_score_line(d / "events.jsonl")),
    ("truncated weights", "intermediate-", lambda d: (d / "checkpoint" / "model.safetensors").write_bytes(
        (d / "checkpoint" / "model.safetensors").read_bytes()[:1000])),
    ("deleted checkpoint", "intermediate-", lambda d: __import__("shutil").rmtree(d / "checkpoint")),
    ("same-size damage", "intermediate-", lambda d: _flip_a_byte(d / "checkpoint" / "model.safetensors")),
]


def _break_a_score_line(path: Path) -> None:
    text = path.read_text()
    assert '"type":"score"' in text
    path.write_text(text.replace('"type":"score"', '"type":"sc', 1))


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize("label, prefix, damage", DAMAGES, ids=[d[0] for d in DAMAGES])
def test_a_damaged_cached_stage_is_trained_again(done_cache, tmp_path, label, prefix, damage):
    recipe, cache, expected = _copy(done_cache, tmp_path)
    stage = _stage(cache, prefix)
    damage(stage)
    code, out, err = _finish(_run(tmp_path, "again", recipe, cache))
    assert code == 0, err[-2000:]
    assert "does not verify" in out + err and "training it again" in out + err
    assert _test_scores(tmp_path / "again") == expected  # every row back, the same values
    assert _launches(cache)[stage.name] == 2


@pytest.mark.slow
def test_strict_cache_refuses_a_damaged_stage_by_name(done_cache, tmp_path):
    recipe, cache, _ = _copy(done_cache, tmp_path)
    stage = _stage(cache, "target-")
    (stage / "events.jsonl").write_bytes(b"garbage")
    code, out, err = _finish(_run(tmp_path, "again", recipe, cache, "--strict-cache"))
    assert code == 1
    assert "does not verify" in err and "events.jsonl" in err and "--strict-cache" in err
    assert _launches(cache)[stage.name] == 1  # not trained again


def test_a_damaged_resume_state_falls_back_for_both_processes(tmp_path):
    """The control process and the worker ask one function which state to use: a state
    whose files changed is never loaded (DeepSpeed unpickles its own checkpoints: a
    planted pickle must not run), the previous one or a fresh start is used instead."""
    import pickle

    from xstilts_tui.compute.engines.training import find_state, install_state
    from xstilts_tui.run.stage_io import keep_events_until
    from xstilts_tui.protocol.stage_cache import STATE, usable_state

    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "events.jsonl").write_text("a\nb\nc\n")
    for step, offset in ((4, 2), (8, 4)):
        tmp = stage / "state.tmp"
        (tmp / "state").mkdir(parents=True)
        (tmp / "state" / "mp_rank_00_model_states.pt").write_bytes(pickle.dumps({"step": step}))
        install_state(stage, tmp, {"step": step, "events_offset": offset})
        if step == 4:  # keep a previous state, as a stop between the two renames leaves it
            __import__("shutil").copytree(stage / STATE, stage / "keep")
    (stage / "keep").rename(stage / (STATE + ".old"))
    assert find_state(stage) == stage / STATE and usable_state(stage)[1]["step"] == 8

    class Planted:
        def __reduce__(self):
            return (open, (str(tmp_path / "PWNED"), "w"))

    (stage / STATE / "state" / "mp_rank_00_model_states.pt").write_bytes(pickle.dumps(Planted()))
    assert find_state(stage) == stage / (STATE + ".old")  # the worker's choice
    assert keep_events_until(stage) == 4  # the control process's: the same state
    assert (stage / "events.jsonl").read_text() == "a\n"
    (stage / (STATE + ".old") / "resume.json").write_text("{broken")
    assert find_state(stage) is None and keep_events_until(stage) == 0
    assert not (tmp_path / "PWNED").exists()


# --- one writer per stage -----------------------------------------------------------------


def _two_at_once(tmp_path: Path, first: tuple[str, Path], second: tuple[str, Path], cache: Path) -> None:
    """Two headless runs started a second apart on one cache: both succeed and every
    stage's worker was started once."""
    running = _run(tmp_path, first[0], first[1], cache)
    time.sleep(1.0)
    results = [_finish(_run(tmp_path, second[0], second[1], cache)), _finish(running)]
    assert [r[0] for r in results] == [0, 0], [r[2][-1500:] for r in results]
    assert set(_launches(cache).values()) == {1}


@pytest.mark.slow
def test_two_runs_of_one_recipe_on_one_cache_train_each_stage_once(tmp_path):
    recipe = _recipe(tmp_path, SMALL_DEMO)
    cache = tmp_path / "cache"
    _two_at_once(tmp_path, ("first", recipe), ("second", recipe), cache)
    lone = tmp_path / "lone"
    assert _finish(_run(tmp_path, "lone", recipe, lone))[0] == 0
    assert _test_scores(tmp_path / "first") == _test_scores(tmp_path / "second") == _test_scores(tmp_path / "lone")


@pytest.mark.slow
def test_two_recipes_sharing_a_stage_train_it_once(tmp_path):
    one = _recipe(tmp_path, SMALL_DEMO)
    other = tmp_path / "other.toml"
    other.write_text(SMALL_DEMO.replace('name = "small-demo"', 'name = "other-demo"')
                     .replace('[[arms]]\nname = "baseline"\n\n', ''), encoding="utf-8")
    _two_at_once(tmp_path, ("one", one), ("other", other), tmp_path / "cache")


# --- SIGTERM: what a cluster sends at a time limit ----------------------------------------------


@pytest.mark.slow
def test_sigterm_saves_a_resume_state_says_so_and_the_rerun_resumes(tmp_path):
    import signal

    recipe = _recipe(tmp_path, SMALL_DEMO.replace("max_steps = 12", "max_steps = 400\nsave_every = 5"))
    cache = tmp_path / "cache"
    run = _run(tmp_path, "out", recipe, cache)
    deadline = time.monotonic() + 300
    step = 0
    while time.monotonic() < deadline and step < 12:
        time.sleep(0.5)
        for events in cache.glob("intermediate-*/events.jsonl"):
            for line in events.read_text().splitlines():
                event = json.loads(line)
                if event.get("type") == "progress":
                    step = max(step, event["step"])
    assert step >= 12, "the intermediate stage never got going"
    run.send_signal(signal.SIGTERM)
    code, out, err = _finish(run)
    assert code == 143 and "terminated by SIGTERM" in err
    stage = _stage(cache, "intermediate-")
    assert (stage / "state" / "resume.json").exists() and not (stage / "DONE").exists()
    assert "stopped by SIGTERM at step" in (stage / "events.jsonl").read_text()
    code, out, err = _finish(_run(tmp_path, "out", recipe, cache))
    assert code == 0, err[-2000:]
    assert "resuming from the state saved at step" in out + err


# --- bad data: refused with a line naming the file and the example ------------------------------


def _settings(**overrides):
    base = {"languages": ["en"], "max_train_examples": 0, "max_eval_examples": 0}
    base.update(overrides)
    return base


def _squad_file(path: Path, qas: list[dict], context: str = "Paris is in France.") -> Path:
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}),
                    encoding="utf-8")
    return path


BAD_QA = [
    ("no answers", [{"id": "q1", "question": "Where?", "answers": []}], "q1", "no answers"),
    ("answer outside its context", [{"id": "q2", "question": "Where?",
                                     "answers": [{"text": "France", "answer_start": 99}]}],
     "q2", "not at answer_start 99"),
    ("answer text elsewhere", [{"id": "q3", "question": "Where?",
                                "answers": [{"text": "France", "answer_start": 0}]}],
     "q3", "not at answer_start 0"),
    ("duplicate ids", [{"id": "q4", "question": "A?", "answers": [{"text": "Paris", "answer_start": 0}]},
                       {"id": "q4", "question": "B?", "answers": [{"text": "France", "answer_start": 12}]}],
     "q4", "appears twice"),
]


@pytest.mark.parametrize("label, qas, qid, words", BAD_QA, ids=[b[0] for b in BAD_QA])
def test_bad_qa_data_is_refused_naming_file_and_question(tmp_path, label, qas, qid, words):
    from xstilts_tui.compute.inputs.data import DataError, load_rows

    path = _squad_file(tmp_path / "train.json", qas)
    with pytest.raises(DataError) as info:
        load_rows({"name": "squad", "settings": _settings(train_file=str(path))}, "train")
    message = str(info.value)
    assert "\n" not in message and str(path) in message and qid in message and words in message, message


def test_an_empty_squad_file_names_the_file(tmp_path):
    from xstilts_tui.compute.inputs.data import DataError, load_rows

    path = tmp_path / "empty.json"
    path.write_text('{"data": []}', encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_rows({"name": "squad", "settings": _settings(train_file=str(path))}, "train")
    assert str(path) in str(info.value) and "no examples" in str(info.value)


def test_a_tag_outside_the_task_s_tag_set_is_refused(tmp_path):
    from xstilts_tui.compute.inputs.data import DataError, load_rows

    path = tmp_path / "en.conllu"
    path.write_text("# sent_id = s1\n1\tHello\thello\tINTJ\t_\t_\t0\troot\t_\t_\n"
                    "2\tthere\tthere\tNOUNN\t_\t_\t1\tdep\t_\t_\n\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_rows({"name": "udpos", "settings": _settings(train_file=str(path))}, "train")
    message = str(info.value)
    assert str(path) in message and "s1" in message and "'NOUNN'" in message and "UPOS" in message


def test_score_on_empty_gold_says_so(tmp_path, capsys):
    gold = tmp_path / "empty.conllu"
    gold.write_text("", encoding="utf-8")
    (tmp_path / "p.txt").write_text("", encoding="utf-8")
    code, _, err = run_cli(["score", "--task", "udpos", "--gold", gold, "--pred", tmp_path / "p.txt"], capsys)
    assert code == 2 and "no sentences" in err and err.count("\n") == 1


# --- one line, never a traceback --------------------------------------------------------------

_CONFIG = "config = { hidden_size = 32, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 64 }"

ONE_LINE_AT_VALIDATION = [
    ("empty hub id", (_CONFIG + "\ntokenizer = { vocab_size = 1000, corpus = [\"demo\"] }", 'hub = ""'),
     "model.hub", "a model id"),
    ("unknown activation", (_CONFIG, _CONFIG.replace(" }", ', hidden_act = "nosuch" }')),
     "model.config.hidden_act", "unknown activation"),
    ("dropout above 1", (_CONFIG, _CONFIG.replace(" }", ", hidden_dropout_prob = 5.0 }")),
     "model.config.hidden_dropout_prob", "below 1"),
    ("huge vocabulary", ("vocab_size = 1000", "vocab_size = 1000000000000"),
     "model.tokenizer.vocab_size", "at most"),
    ("task max_length past positions", ("[tasks.demo-qa]", "[tasks.demo-qa.hparams]\nmax_length = 4000\n\n[tasks.demo-qa]"),
     "tasks.demo-qa.hparams.max_length", "max_position_embeddings"),
]


@pytest.mark.parametrize("label, change, field, words", ONE_LINE_AT_VALIDATION,
                         ids=[c[0] for c in ONE_LINE_AT_VALIDATION])
def test_more_values_that_fail_later_are_refused_at_validation(tmp_path, capsys, label, change, field, words):
    old, new = change
    assert old in SMALL_DEMO
    recipe = _recipe(tmp_path, SMALL_DEMO.replace(old, new, 1))
    code, out, err = run_cli(["validate", recipe], capsys)
    assert code == 2 and err.count("\n") == 1 and f": {field}: " in err and words in err, err


def test_a_toml_nested_too_deep_is_one_line(tmp_path, capsys):
    recipe = _recipe(tmp_path, "x = " + "[" * 5000 + "]" * 5000 + "\n")
    code, _, err = run_cli(["validate", recipe], capsys)
    assert code == 2 and err.count("\n") == 1 and "nested too deeply" in err


def test_an_unwritable_output_or_cache_is_one_line_and_writes_nothing(tmp_path, capsys):
    recipe = _recipe(tmp_path, SMALL_DEMO)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = run_cli(["--recipe", recipe, "--output", blocker], capsys)
    assert code == 2 and err.count("\n") == 1 and "--output" in err and str(blocker) in err
    code, _, err = run_cli(["--recipe", recipe, "--output", tmp_path / "out", "--cache", blocker / "c"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--cache" in err
    assert not (tmp_path / "out").exists()


SCORE_INPUTS = [
    ("gold is a folder", lambda t: ["--task", "xquad", "--gold", t, "--pred", t / "p.json", "--lang", "en"],
     "a folder"),
    ("pred is a folder", lambda t: ["--task", "udpos", "--gold", t / "g.conllu", "--pred", t], "a folder"),
    ("deeply nested gold", lambda t: ["--task", "xquad", "--gold", t / "deep.json", "--pred", t / "p.json",
                                      "--lang", "en"], "nested too deeply"),
    ("gold not UTF-8", lambda t: ["--task", "xquad", "--gold", t / "latin1.json", "--pred", t / "p.json",
                                  "--lang", "en"], "not UTF-8"),
]


@pytest.mark.parametrize("label, args, words", SCORE_INPUTS, ids=[c[0] for c in SCORE_INPUTS])
def test_score_inputs_that_cannot_be_read_are_one_line(tmp_path, capsys, label, args, words):
    (tmp_path / "p.json").write_text("{}", encoding="utf-8")
    (tmp_path / "g.conllu").write_text("1\tA\ta\tNOUN\t_\t_\t0\troot\t_\t_\n\n", encoding="utf-8")
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000, encoding="utf-8")
    (tmp_path / "latin1.json").write_bytes('{"data": "caf\xe9"}'.encode("latin-1"))
    code, _, err = run_cli(["score", *args(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1 and words in err, err


def test_a_full_disk_during_a_run_is_one_line(tmp_path, capsys, monkeypatch):
    import errno

    from xstilts_tui.cli import main as cli

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "results.parquet"))

    monkeypatch.setattr(cli, "cmd_run", full)
    code, _, err = run_cli(["--recipe", _recipe(tmp_path, SMALL_DEMO)], capsys)
    assert code == 1 and err.count("\n") == 1
    assert "No space left on device" in err and "results.parquet" in err
