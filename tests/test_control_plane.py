"""The control plane on its own: no compute stack imported, events, results tables."""

import subprocess
import sys

import polars as pl
import pytest

from conftest import ROOT
from xstilts_tui.protocol.events import EventError, decode, encode, make_event
from xstilts_tui.results.store import RESULT_COLUMNS, final_scores
from xstilts_tui.results.summary import summary_tables
from xstilts_tui.run.stage_io import EventTail


def test_control_plane_never_imports_the_compute_stack():
    code = (
        "import importlib, pkgutil, sys, xstilts_tui\n"
        "for m in pkgutil.walk_packages(xstilts_tui.__path__, 'xstilts_tui.'):\n"
        "    importlib.import_module(m.name)\n"
        "from xstilts_tui.cli.main import main\n"
        "main(['plan', 'recipes/demo.toml', '--output', sys.argv[1]])\n"
        "heavy = [n for n in ('torch', 'transformers', 'datasets', 'deepspeed', 'peft', 'tokenizers')"
        " if n in sys.modules]\n"
        "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code, "/tmp/xstilts-plan-probe"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_events_round_trip_and_reject_incomplete_ones():
    event = make_event("score", stage="s", task="xquad", language="de", split="test",
                       metric="f1", value=81.5, step=10)
    assert decode(encode(event)) == event
    with pytest.raises(EventError, match="lacks value"):
        make_event("score", stage="s", task="xquad", language="de", split="test", metric="f1", step=1)
    assert decode('{"type": "score", "stage": "s"}') is None
    assert decode("not json") is None and decode('{"type": "nope"}') is None


def test_event_tail_returns_only_whole_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.read() == []  # no file yet
    first = encode(make_event("log", stage="s", message="one"))
    second = encode(make_event("log", stage="s", message="two"))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(first + second[:10])
        handle.flush()
        assert [e["message"] for e in tail.read()] == ["one"]
        handle.write(second[10:])
        handle.flush()
        assert [e["message"] for e in tail.read()] == ["two"]
        assert tail.read() == []


def _results(rows):
    full = []
    for arm, seed, lang, value in rows:
        full.append({"run": "r", "recipe": "t", "arm": arm, "seed": seed, "stage": f"target/{arm}",
                     "stage_key": "k", "task": "xquad", "language": lang, "split": "test",
                     "metric": "f1", "value": value, "step": 100, "cached": False})
    return pl.DataFrame(full, schema=RESULT_COLUMNS)


def test_summary_table_by_hand():
    results = _results([
        ("baseline", 1, "en", 80.0), ("baseline", 1, "de", 70.0),
        ("squad", 1, "en", 84.0), ("squad", 1, "de", 71.0),
    ])
    text = summary_tables(results, ["baseline", "squad"], "baseline", ["xquad"], {"xquad": ["en", "de"]})
    lines = text.splitlines()
    assert lines[0] == "xquad f1: 1 seed; trained on en, zero-shot in the other languages; Δ to baseline"
    assert lines[1].split() == ["arm", "en", "de", "avg"]
    assert lines[3].split() == ["baseline", "80.0", "70.0", "75.0"]
    assert lines[4].split() == ["squad", "84.0", "71.0", "77.5"]
    assert lines[5].split() == ["Δ", "+4.0", "+1.0", "+2.5"]


def test_summary_table_mean_and_std_over_seeds():
    results = _results([
        ("baseline", 1, "en", 80.0), ("baseline", 2, "en", 82.0),
        ("squad", 1, "en", 83.0), ("squad", 2, "en", 87.0),
    ])
    text = summary_tables(results, ["baseline", "squad"], "baseline", ["xquad"], {"xquad": ["en"]})
    lines = text.splitlines()
    squad = next(i for i, line in enumerate(lines) if line.startswith("squad"))
    # mean 85, sample std of (83, 87) = 2.83; delta 85 - 81 = +4
    assert lines[squad].split()[1] == "85.0±2.8" and lines[squad + 1].split()[1] == "+4.0"
    assert lines[0].startswith("xquad f1: 2 seeds, mean±std; trained on en")


def test_final_scores_take_the_last_step():
    early = _results([("baseline", 1, "en", 5.0)]).with_columns(pl.lit(0).cast(pl.Int64).alias("step"))
    late = _results([("baseline", 1, "en", 60.0)])
    final = final_scores(pl.concat([late, early]))
    assert final["value"].to_list() == [60.0]


def test_average_needs_every_language():
    results = _results([("baseline", 1, "en", 80.0)])
    text = summary_tables(results, ["baseline"], "baseline", ["xquad"], {"xquad": ["en", "de"]})
    assert text.splitlines()[3].split() == ["baseline", "80.0", "-", "-"]


def test_summary_tables_fit_100_columns_in_groups_of_languages():
    from xstilts_tui.tasks.registry import TASKS
    from xstilts_tui.results.significance import Delta

    langs = list(TASKS["xnli"].languages)
    rows = [(arm, 1, lang, 50.0 + i + (3.0 if arm == "mnli" else 0.0))
            for arm in ("baseline", "mnli") for i, lang in enumerate(langs)]
    results = _results(rows).with_columns(pl.lit("xnli").alias("task"), pl.lit("accuracy").alias("metric"))
    found = {("mnli", c): Delta(3.0, 1.25, 4.75, 0.01, 1, 100) for c in langs + ["avg"]}
    text = summary_tables(results, ["baseline", "mnli"], "baseline", ["xnli"], {"xnli": langs},
                          {"xnli": found})
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    headers = [line.split() for line in lines if line.startswith("arm ")]
    assert len(headers) >= 2 and sum(len(h) - 1 for h in headers) == len(langs) + 1  # every column once
    assert sum(line.count("+3.0*") for line in lines) == len(langs) + 1
    assert "(1 seed)" not in text and "(baseline)" not in text


def test_every_help_page_prints():
    import subprocess, sys
    from xstilts_tui.cli.main import _parser as build_parser
    parser = build_parser()
    commands = [[]] + [[name] for name in parser._subparsers._group_actions[0].choices]
    for command in commands:
        out = subprocess.run([sys.executable, "-m", "xstilts_tui", *command, "--help"],
                             capture_output=True, text=True)
        assert out.returncode == 0, (command, out.stderr[-300:])
        assert "usage:" in out.stdout
