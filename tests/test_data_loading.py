"""Task data: hub ids through `datasets` (exercised on a local dataset in the hub's
schema), local SQuAD JSON, generated demo data, and clear errors when a source fails."""

import json

import pytest

from xstilts_tui.compute.inputs.data import DataError, _from_hub, load_rows
from xstilts_tui.data import demo as demo_data
from xstilts_tui.recipe.schema import TaskSettings
from xstilts_tui.tasks.registry import TASKS, HubSplit


def _settings(**kw):
    from dataclasses import asdict

    return asdict(TaskSettings(languages=("en",), **kw))


@pytest.fixture
def hub_like_dir(tmp_path, xquad_dir):
    """The first XQuAD rows in the hub's SQuAD schema, as a local dataset folder."""
    from xstilts_tui.tasks.squad import read_squad_json

    rows = read_squad_json(xquad_dir / "xquad.en.json")[:30]
    for i, row in enumerate(rows):
        row["id"] = ("english-" if i % 3 else "arabic-") + row["id"]
    folder = tmp_path / "hub-squad"
    folder.mkdir()
    with open(folder / "train.jsonl", "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return folder, rows


def test_hub_loader_reads_the_squad_schema(hub_like_dir):
    folder, rows = hub_like_dir
    loaded = _from_hub(HubSplit(str(folder), "train"), "en", "english", "tasks.squad.train_file")
    assert loaded == rows


def test_hub_loader_filters_languages_by_id_prefix(hub_like_dir):
    folder, rows = hub_like_dir
    loaded = _from_hub(HubSplit(str(folder), "train", id_prefix="{lang_name}-"), "ar", "arabic", "x")
    assert [r["id"] for r in loaded] == [r["id"] for r in rows if r["id"].startswith("arabic-")]


def test_task_table_routes_to_the_hub_without_local_files(hub_like_dir, monkeypatch):
    folder, rows = hub_like_dir
    spec = TASKS["squad"]
    from dataclasses import replace

    monkeypatch.setitem(TASKS, "squad", replace(spec, train=HubSplit(str(folder), "train")))
    loaded = load_rows({"name": "squad", "settings": _settings(max_train_examples=7)}, "train")
    assert loaded == rows[:7]


def test_unreachable_hub_names_the_local_file_setting():
    with pytest.raises(DataError) as info:
        load_rows({"name": "squad", "settings": _settings()}, "train")
    message = str(info.value)
    assert "rajpurkar/squad" in message and "tasks.squad.train_file" in message
    assert "\n" not in message


def test_local_files_per_language(xquad_dir):
    settings = _settings(eval_files=str(xquad_dir / "xquad.{lang}.json"), max_eval_examples=5)
    rows = load_rows({"name": "xquad", "settings": settings}, "test", "th")
    assert len(rows) == 5 and all("\u0e00" <= ch <= "\u0e7f" for ch in rows[0]["question"][:3])


def test_generated_demo_data_is_parallel_and_deterministic():
    en = demo_data.generate("demo-qa", "test", "en", 20)
    zh = demo_data.generate("demo-qa", "test", "zh", 20)
    assert en == demo_data.generate("demo-qa", "test", "en", 20)
    assert [r["answers"]["text"] for r in en] == [r["answers"]["text"] for r in zh]
    assert en != demo_data.generate("demo-qa", "train", "en", 20)
    for row in en + zh + demo_data.generate("demo-jobs", "train", "en", 50):
        start = row["answers"]["answer_start"][0]
        text = row["answers"]["text"][0]
        assert row["context"][start:start + len(text)] == text
    assert set(demo_data.DEMO_QA_LANGUAGES) == set(TASKS["demo-qa"].languages)
