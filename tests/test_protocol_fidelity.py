"""The paper's protocol where the numbers depend on a detail: what the code does is checked
against what the reference implementations do."""

import contextlib
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")


class _Bf16Encoder:
    """An encoder whose hidden states come out in bf16, as under bf16 autocast."""

    def __init__(self, hidden: torch.Tensor):
        self.hidden = hidden
        self.config = SimpleNamespace(hidden_size=hidden.shape[-1])

    def eval(self):
        return self

    def __call__(self, input_ids, attention_mask, output_hidden_states):
        n = input_ids.shape[0]
        return SimpleNamespace(hidden_states=(None, self.hidden[:n].to(torch.bfloat16)))


class _Tokenizer:
    def __call__(self, texts, truncation, max_length, padding, return_tensors):
        n, length = len(texts), 300
        return {"input_ids": torch.ones(n, length, dtype=torch.long),
                "attention_mask": torch.ones(n, length, dtype=torch.long)}


def test_retrieval_pools_in_fp32_under_bf16_autocast():
    """XTREME pools fp32 hidden states; under bf16 autocast the mean over 300 tokens
    summed in bf16 loses about two digits: sentence vectors are pooled in fp32 from
    whatever dtype the layer returns."""
    from xstilts_tui.compute.kinds.retrieval import sentence_vectors

    generator = torch.Generator().manual_seed(0)
    hidden = 1 + torch.rand(4, 300, 8, generator=generator)
    backend = SimpleNamespace(device=torch.device("cpu"), autocast=contextlib.nullcontext)
    vectors = sentence_vectors(_Bf16Encoder(hidden), _Tokenizer(), ["a", "b", "c", "d"], 1, 512, 4, backend)
    expected = hidden.to(torch.bfloat16).float().mean(1).numpy()  # the layer's values, averaged in fp32
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)


def _xquad_en():
    import json

    from conftest import XQUAD_DIR

    doc = json.loads((XQUAD_DIR / "xquad.en.json").read_text(encoding="utf-8"))
    return [{"id": q["id"], "question": q["question"], "context": p["context"],
             "answers": {"text": [a["text"] for a in q["answers"]],
                         "answer_start": [a["answer_start"] for a in q["answers"]]}}
            for article in doc["data"] for p in article["paragraphs"] for q in p["qas"]]


def _scoring(task_name: str, settings: dict, eval_examples: int, test_sets=None):
    from xstilts_tui.compute.training_stage import Scoring, TaskPart
    from xstilts_tui.protocol.hparams import HParams
    from xstilts_tui.tasks.registry import TASKS

    part = TaskPart(task={"name": task_name, "settings": {"max_train_examples": 0, "max_eval_examples": 0,
                                                          **settings}},
                    spec=TASKS[task_name], kind=None, head={}, train_rows=0, features=[],
                    hp=HParams(eval_examples=eval_examples))
    scoring = Scoring({}, None, part.hp, {task_name: part}, None, None, None, None)
    scoring.test_sets = test_sets or {}
    return scoring, part


def test_selection_on_squad_dev_is_a_seeded_sample_without_xquads_questions(monkeypatch):
    """SQuAD v1.1 dev holds XQuAD's 1190 questions (the first 500 rows about 30 of them):
    checkpoints are never chosen on a question later scored in translation, and the rows
    are a seeded sample (the same for every arm and seed), not the first ones."""
    from xstilts_tui.compute.inputs import data

    xquad = _xquad_en()
    dev = [dict(row, id=f"dev{i:05d}") for i, row in enumerate(xquad)]
    rows = [r for pair in zip(dev, xquad) for r in pair]  # XQuAD's questions every other row
    monkeypatch.setattr(data, "load_rows", lambda task, split, lang="en": rows)
    for task in ("squad", "xquad", "mlqa"):  # SQuAD as an intermediate task, the targets trained on it
        scoring, part = _scoring(task, {}, 500)
        chosen = scoring.selection_rows(part)
        assert len(chosen) == 500 and not {r["id"] for r in chosen} & {r["id"] for r in xquad}, task
        assert [r["id"] for r in chosen] != [r["id"] for r in dev[:500]]
        assert chosen == scoring.selection_rows(part)


def test_a_target_never_selects_on_a_question_it_is_tested_on(monkeypatch):
    from xstilts_tui.compute.inputs import data

    rows = _xquad_en()
    monkeypatch.setattr(data, "load_rows", lambda task, split, lang="en": rows)
    scoring, part = _scoring("xquad", {"validation_file": "dev.json"}, 2000,
                             test_sets={"de": rows[:700]})
    chosen = scoring.selection_rows(part)
    assert [r["id"] for r in chosen] == [r["id"] for r in rows[700:]]


def test_tydiqa_selects_on_english_training_rows_held_out_of_training(tmp_path):
    """TyDiQA-GoldP is tested on its validation split, English included: its selection
    rows are held out of English training, and training leaves them out."""
    from conftest import XQUAD_DIR
    from xstilts_tui.compute.inputs.data import load_rows

    task = {"name": "tydiqa", "settings": {"max_train_examples": 0, "max_eval_examples": 0,
                                           "train_file": str(XQUAD_DIR / "xquad.en.json"),
                                           "eval_files": str(XQUAD_DIR / "xquad.{lang}.json")}}
    train = {r["id"] for r in load_rows(task, "train", "en")}
    selection = {r["id"] for r in load_rows(task, "validation", "en")}
    assert len(selection) == 1190 // 5 and len(train) == 1190 - 1190 // 5 and not train & selection
    assert len(selection) == len(load_rows(task, "validation", "en"))


def test_a_multi_task_stage_builds_each_tasks_features_with_its_own_settings(demo_tokenizer):
    """[tasks.X.hparams] apply inside a multi-task stage too: the all-nine arm builds
    SQuAD's features at 384 tokens, not at the phase's 256 (here: demo-jobs QA at 64 with
    a 32-token stride, beside demo-nli at the phase's 128, where alone it would be at 128)."""
    from dataclasses import asdict

    from xstilts_tui.compute.training_stage import task_streams
    from xstilts_tui.protocol.hparams import HParams
    from xstilts_tui.recipe.schema import TaskSettings

    def task(name, **hparams):
        settings = asdict(TaskSettings(languages=("en",), generated_train_examples=40))
        return {"name": name, "settings": {**settings, "hparams": hparams or None}}

    hp = HParams(max_length=128, doc_stride=64, max_query_length=32)
    spec = {"tasks": [task("demo-jobs", max_length=64, doc_stride=32, max_query_length=16),
                      task("demo-nli")], "seed": 1}
    streams = task_streams(spec, hp, demo_tokenizer, target=False)
    jobs, nli = streams.parts["demo-jobs"], streams.parts["demo-nli"]
    alone = task_streams({"tasks": [task("demo-jobs")], "seed": 1}, hp, demo_tokenizer, target=False)
    assert max(jobs.features[0].lengths) <= 64 < max(alone.parts["demo-jobs"].features[0].lengths) <= 128
    assert (jobs.hp.max_length, jobs.hp.doc_stride, jobs.hp.max_query_length) == (64, 32, 16)
    assert nli.hp.max_length == 128 and jobs.hp.lr == hp.lr  # the loop's settings stay the phase's


def test_anli_plus_is_anli_then_mnli_then_snli_without_snlis_unlabelled_rows(monkeypatch):
    """The paper's ANLI+ (1,104,934 training examples) is ANLI R1-R3 (162,865) + MNLI
    (392,702) + SNLI (549,367 once its "-" rows, label -1, are dropped); plain ANLI stays."""
    from xstilts_tui.compute.inputs import data
    from xstilts_tui.tasks.registry import TASKS

    spec = TASKS["anli-plus"]
    sources = [(s.path, s.split, s.config) for s in (spec.train, *spec.train_also)]
    assert sources == [("facebook/anli", "train_r1+train_r2+train_r3", "plain_text"),
                       ("nyu-mll/glue", "train", "mnli"), ("stanfordnlp/snli", "train", "plain_text")]
    assert spec.validation == TASKS["anli"].validation and TASKS["anli"].train_also == ()
    assert 162_865 + 392_702 + 549_367 == 1_104_934
    fixture = {"facebook/anli": [("a", "b", 0), ("c", "d", 1), ("e", "f", 2)],
               "nyu-mll/glue": [("g", "h", 2), ("i", "j", 0)],
               "stanfordnlp/snli": [("k", "l", 1), ("m", "n", -1), ("o", "p", 0)]}

    class Split(list):
        features = {}

    def hub_dataset(source, lang, lang_name, hint):
        return Split({"premise": p, "hypothesis": h, "label": y} for p, h, y in fixture[source.path]), None

    monkeypatch.setattr(data, "_hub_dataset", hub_dataset)
    task = {"name": "anli-plus", "settings": {"max_train_examples": 0, "max_eval_examples": 0}}
    rows = data.load_rows(task, "train", "en")
    assert [(r["text"], r["label"]) for r in rows] == [("a", 0), ("c", 1), ("e", 2), ("g", 2), ("i", 0),
                                                      ("k", 1), ("o", 0)]


def test_anli_plus_needs_and_keys_name_all_three_sources(tmp_path):
    from xstilts_tui.plan.stages import build_plan
    from xstilts_tui.recipe.inputs import recipe_needs
    from xstilts_tui.recipe.parse import parse_recipe

    recipe = parse_recipe('seeds = [1]\ntargets = ["xnli"]\n[model]\nhub = "FacebookAI/xlm-roberta-large"\n'
                          '[[arms]]\nname = "anli-plus"\nintermediate = ["anli-plus"]\n', str(tmp_path / "r.toml"))
    plan = build_plan(recipe, tmp_path / "out")
    needs = {n.label for n in recipe_needs(plan)}
    assert {"anli-plus train (en)", "anli-plus train (en): nyu-mll/glue",
            "anli-plus train (en): stanfordnlp/snli"} <= needs
    stage = next(s for s in plan.stages if s.kind == "intermediate")
    assert {"anli-plus train (en): nyu-mll/glue", "anli-plus train (en): stanfordnlp/snli"} <= \
        set(stage.provenance["data"]["anli-plus"])


def test_generated_splits_are_not_mistaken_for_each_other():
    """The demo's generated splits number their questions alike ("demo-qa-en-00000" in
    validation and test, other questions): a demo target selects on its own validation rows."""
    from xstilts_tui.data import demo

    settings = {"generated_train_examples": 50, "generated_eval_examples": 40}
    scoring, part = _scoring("demo-qa", settings, 30,
                             test_sets={"en": demo.generate("demo-qa", "test", "en", 40)})
    assert len(scoring.selection_rows(part)) == 30
