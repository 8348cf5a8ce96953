"""XTREME targets on the real files in ../shared/data: UD-POS loading and label
alignment, Tatoeba in all 36 languages and a retrieval run with known answers; the
metrics checked by hand (seqeval on broken spans, BUCC's threshold); the XTREME score."""

import math

import numpy as np
import pytest

from conftest import SHARED_DATA
from xstilts_tui.protocol.hparams import HParams
from xstilts_tui.tasks.formats import TATOEBA_CODES, read_conllu, read_tatoeba
from xstilts_tui.scoring.retrieval import (best_threshold, cosine_nearest, f1_of, margin_candidates,
                                           mine, tatoeba_accuracy)
from xstilts_tui.scoring.xtreme import task_summary, xtreme_score

UD = SHARED_DATA / "udpos"
TATOEBA = SHARED_DATA / "tatoeba"
UD_FILES = {"en": "en_ewt-ud-test.conllu", "de": "de_gsd-ud-test.conllu", "zh": "zh_gsd-ud-test.conllu"}
UPOS = {"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
        "PUNCT", "SCONJ", "SYM", "VERB", "X"}


@pytest.mark.parametrize("lang", sorted(UD_FILES))
def test_conllu_sentences_words_and_upos(lang):
    path = UD / UD_FILES[lang]
    rows = read_conllu(path)
    text = path.read_text(encoding="utf-8")
    assert len(rows) == text.count("# sent_id = ")
    # XTREME's words: every syntactic word, less the extra words of each multiword token
    words = sum(1 for line in text.splitlines() if line and line.split("\t")[0].isdigit())
    extra = sum(int(b) - int(a) for a, _, b in (line.split("\t")[0].partition("-")
                for line in text.splitlines()
                if line and line[0].isdigit() and "-" in line.split("\t")[0]))
    assert sum(len(r["tokens"]) for r in rows) == words - extra
    assert {t for r in rows for t in r["tags"]} <= UPOS
    if lang == "de":  # the multiword token "im" (lines 19-20) is one word, as XTREME has it
        sentence = rows[1]
        assert "im" in sentence["tokens"] and "dem" not in sentence["tokens"][18:20]


@pytest.mark.parametrize("lang", sorted(UD_FILES))
def test_udpos_labels_align_to_first_sub_tokens(lang, demo_tokenizer):
    from xstilts_tui.compute.kinds.registry import KINDS
    from xstilts_tui.tasks.registry import TASKS

    rows = read_conllu(UD / UD_FILES[lang])[:200]
    kind = KINDS["token_tagging"]
    head = kind.head(TASKS["udpos"], rows)
    features = kind.features(demo_tokenizer, rows, HParams(max_length=512), head)
    split_words = 0
    for row, feature in zip(rows, features):
        enc = demo_tokenizer(row["tokens"], is_split_into_words=True, truncation=True, max_length=512)
        word_ids = enc.word_ids()
        labelled = [(w, lab) for w, lab in zip(word_ids, feature["labels"]) if lab != -100]
        # Every word keeps exactly one label, on its first sub-token, in order.
        assert [w for w, _ in labelled] == list(range(len(row["tokens"])))
        assert [head["id2label"][lab] for _, lab in labelled] == row["tags"]
        for i, (w, lab) in enumerate(zip(word_ids, feature["labels"])):
            if w is not None and i and word_ids[i - 1] == w:
                assert lab == -100
                split_words += 1
    assert split_words > 0  # the test saw words split into several pieces


def test_tatoeba_loads_for_all_36_languages():
    assert len(TATOEBA_CODES) == 36
    for lang in TATOEBA_CODES:
        pairs = read_tatoeba(TATOEBA, lang)
        assert len(pairs["source"]) == len(pairs["english"]) > 0, lang
        assert all(line.strip() for line in pairs["english"][:50])


def test_retrieval_with_known_answers():
    """English against a shuffled copy of itself: each sentence's own copy is the answer
    (duplicates in the file are found at their first copy)."""
    english = read_tatoeba(TATOEBA, "de")["english"]
    rng = np.random.default_rng(0)
    vocab = {w for line in english for w in line.lower().split()}
    index = {w: i for i, w in enumerate(sorted(vocab))}
    vectors = np.zeros((len(english), len(index)), dtype=np.float32)
    for i, line in enumerate(english):
        for w in line.lower().split():
            vectors[i, index[w]] += 1
    perm = rng.permutation(len(english))
    found = cosine_nearest(vectors, vectors[perm])
    assert np.mean(perm[found] == np.arange(len(english))) > 0.97
    # Aligned order: accuracy counts a line right when its own line is nearest.
    first = {}
    for i, line in enumerate(english):
        first.setdefault(" ".join(sorted(line.lower().split())), i)
    expected = 100 * np.mean([first[" ".join(sorted(line.lower().split()))] == i
                              for i, line in enumerate(english)])
    assert tatoeba_accuracy(vectors, vectors) == pytest.approx(expected)


# --- metrics by hand ---------------------------------------------------------------------------


def test_seqeval_entity_f1_with_broken_spans():
    from xstilts_tui.scoring.metrics import tagging_f1

    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "I-ORG"]]
    # An I- without a B- starts an entity (seqeval's default, non-strict mode): "I-PER I-PER"
    # is one PER span and matches the gold one; the ORG span is cut short (a miss).
    pred = [["I-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "O"]]
    scores = tagging_f1(gold, pred)
    # gold 3 entities, predicted 3, correct 2: precision = recall = 2/3
    assert scores["precision"] == pytest.approx(200 / 3)
    assert scores["recall"] == pytest.approx(200 / 3)
    assert scores["f1"] == pytest.approx(200 / 3)
    # A type change inside a span breaks it in two: B-PER I-LOC is PER + LOC.
    scores = tagging_f1([["B-PER", "I-PER"]], [["B-PER", "I-LOC"]])
    assert scores["precision"] == 0.0 and scores["f1"] == 0.0


def test_bucc_threshold_is_the_f1_optimal_one_on_the_sample():
    candidates = [("a", "1", 1.50), ("b", "2", 1.40), ("c", "9", 1.30), ("d", "4", 1.20),
                  ("e", "8", 1.10), ("f", "6", 1.00)]
    gold = {("a", "1"), ("b", "2"), ("d", "4"), ("g", "7")}
    threshold, f1 = best_threshold(candidates, gold)
    # keep >= 1.20: 4 predicted, 3 correct: P 3/4, R 3/4 -> F1 75; >= 1.40: P 1, R 1/2 -> 66.7;
    # XTREME's threshold is the midpoint between the cut-off candidate and the next
    assert threshold == pytest.approx(1.15) and f1 == pytest.approx(75.0)
    assert mine(candidates, threshold) == {("a", "1"), ("b", "2"), ("c", "9"), ("d", "4")}
    assert f1_of(mine(candidates, threshold), gold) == pytest.approx((75.0, 75.0, 75.0))


def test_margin_scoring_prefers_mutual_neighbours():
    rng = np.random.default_rng(1)
    target = rng.normal(size=(30, 16))
    source = target[:10] + 0.05 * rng.normal(size=(10, 16))  # sources 0-9 translate targets 0-9
    pairs = {(i, j) for i, j, _ in margin_candidates(source, target, k=4)}
    assert {(i, i) for i in range(10)} <= pairs
    scores = {(i, j): s for i, j, s in margin_candidates(source, target, k=4)}
    assert min(scores[(i, i)] for i in range(10)) > max((s for (i, j), s in scores.items() if i != j), default=0)


# --- the XTREME score ----------------------------------------------------------------------------


def _full(task: str, **values: float) -> dict[str, dict[str, float]]:
    from xstilts_tui.tasks.registry import TASKS

    return {metric: {lang: value for lang in TASKS[task].languages} for metric, value in values.items()}


def test_xtreme_score_on_a_hand_built_table():
    table = {
        "xnli": _full("xnli", accuracy=85.0), "pawsx": _full("pawsx", accuracy=90.0),
        "udpos": _full("udpos", f1=92.0), "panx": _full("panx", f1=80.0),
        "xquad": _full("xquad", f1=83.0, exact_match=69.0),
        "mlqa": _full("mlqa", f1=77.0, exact_match=63.0),
        "tydiqa": _full("tydiqa", f1=70.0, exact_match=55.0),
        "bucc2018": _full("bucc2018", f1=88.0, precision=89.0),
        "tatoeba": _full("tatoeba", accuracy=92.5),
    }
    table["xnli"]["accuracy"]["en"] = 85.0 + 15 * 2.0  # the average moves by 2
    assert task_summary("xnli", table["xnli"])["avg_metric"] == pytest.approx(87.0)
    assert task_summary("xquad", table["xquad"])["avg_metric"] == pytest.approx((83.0 + 69.0) / 2)
    assert task_summary("bucc2018", table["bucc2018"])["avg_metric"] == 88.0
    scores = xtreme_score(table)
    summaries = {"xnli": 87.0, "pawsx": 90.0, "udpos": 92.0, "panx": 80.0, "xquad": 76.0,
                 "mlqa": 70.0, "tydiqa": 62.5, "bucc2018": 88.0, "tatoeba": 92.5}
    assert scores["all_task"] == pytest.approx(sum(summaries.values()) / 9)
    assert scores["classification"] == pytest.approx(88.5)
    assert scores["structured prediction"] == pytest.approx(86.0)
    assert scores["question answering"] == pytest.approx((76.0 + 70.0 + 62.5) / 3)
    assert scores["retrieval"] == pytest.approx(90.25)
    del table["tatoeba"]
    partial = xtreme_score(table)
    assert "all_task" not in partial and "retrieval" not in partial and "classification" in partial
    assert math.isclose(partial["classification"], 88.5)


# --- xstilts-tui score for every kind ---------------------------------------------------------------


def _score(capsys, *args):
    from conftest import run_cli

    code, out, err = run_cli(["score", *args], capsys)
    assert code == 0, err
    import json

    return json.loads(out)


def test_score_udpos_on_real_conllu(tmp_path, capsys):
    gold = UD / UD_FILES["de"]
    rows = read_conllu(gold)
    lines = []
    for i, row in enumerate(rows):  # every tag right, except NOUN -> PROPN in odd sentences
        lines += [("PROPN" if t == "NOUN" and i % 2 else t) for t in row["tags"]] + [""]
    pred = tmp_path / "pred.txt"
    pred.write_text("\n".join(lines), encoding="utf-8")
    result = _score(capsys, "--task", "udpos", "--gold", gold, "--pred", pred, "--lang", "de")
    from xstilts_tui.scoring.metrics import tagging_f1

    expected = tagging_f1([r["tags"] for r in rows],
                          [[("PROPN" if t == "NOUN" and i % 2 else t) for t in r["tags"]]
                           for i, r in enumerate(rows)])
    assert result["f1"] == pytest.approx(expected["f1"]) and 80 < result["f1"] < 100
    assert result["sentences"] == 977


def test_score_tatoeba_bucc_and_classification(tmp_path, capsys):
    n = len(read_tatoeba(TATOEBA, "fr")["source"])
    pred = tmp_path / "tatoeba.txt"
    pred.write_text("\n".join(str(i if i % 4 else 0) for i in range(n)), encoding="utf-8")
    result = _score(capsys, "--task", "tatoeba", "--gold", TATOEBA, "--pred", pred, "--lang", "fr")
    # i % 4 == 0 lines point at line 0: right only for line 0 itself.
    assert result["accuracy"] == pytest.approx(100 * (n - (n + 3) // 4 + 1) / n)

    gold = tmp_path / "de-en.test.gold"
    gold.write_text("de-1\ten-7\nde-2\ten-3\nde-5\ten-5\n", encoding="utf-8")
    mined = tmp_path / "mined.txt"
    mined.write_text("de-1\ten-7\nde-2\ten-4\n", encoding="utf-8")
    result = _score(capsys, "--task", "bucc2018", "--gold", gold, "--pred", mined)
    assert result["precision"] == 50.0 and result["recall"] == pytest.approx(100 / 3)
    assert result["f1"] == pytest.approx(40.0)

    xnli = tmp_path / "xnli.de.tsv"
    xnli.write_text("premise\thypothesis\tlabel\nA\tB\t0\nC\tD\t2\nE\tF\t1\nG\tH\t2\n", encoding="utf-8")
    labels = tmp_path / "labels.txt"
    labels.write_text("entailment\ncontradiction\n0\n2\n", encoding="utf-8")
    assert _score(capsys, "--task", "xnli", "--gold", xnli, "--pred", labels)["accuracy"] == 75.0


def test_score_errors_name_the_problem(tmp_path, capsys):
    from conftest import run_cli

    labels = tmp_path / "labels.txt"
    labels.write_text("entailment\n", encoding="utf-8")
    xnli = tmp_path / "x.tsv"
    xnli.write_text("premise\thypothesis\tlabel\nA\tB\t0\nC\tD\t2\n", encoding="utf-8")
    code, _, err = run_cli(["score", "--task", "xnli", "--gold", xnli, "--pred", labels], capsys)
    assert code == 2 and "1 lines for 2 gold examples" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["score", "--task", "tatoeba", "--gold", TATOEBA, "--pred", labels], capsys)
    assert code == 2 and "give --lang" in err


# --- multilingual intermediate training ----------------------------------------------------------


def test_language_sampling_policies():
    from xstilts_tui.compute.kinds.multitask import language_weights

    sizes = {"en": 8000, "de": 1000, "sw": 125}
    prop = language_weights(sizes, "proportional", 5.0)
    assert prop["en"] == pytest.approx(8000 / 9125)
    assert language_weights(sizes, "uniform", 5.0) == pytest.approx({k: 1 / 3 for k in sizes})
    temp = language_weights(sizes, "temperature", 3.0)  # size^(1/3): 20, 10, 5
    assert temp == pytest.approx({"en": 20 / 35, "de": 10 / 35, "sw": 5 / 35})
    assert language_weights(sizes, "temperature", 1.0) == pytest.approx(prop)


@pytest.mark.slow
def test_multilingual_intermediate_task_from_local_translate_train_files(tmp_path, capsys):
    """XNLI as an intermediate task in three languages (local files in the hub's columns),
    drawn by temperature: every language trains, in the stated shares."""
    import json

    from conftest import SMALL_DEMO, run_cli
    from xstilts_tui.data import demo as demo_data

    rows = demo_data.generate("demo-nli", "train", "en", 120)
    for lang, count in (("en", 120), ("de", 60), ("sw", 15)):
        with open(tmp_path / f"xnli.{lang}.jsonl", "w", encoding="utf-8") as handle:
            for row in rows[:count]:
                handle.write(json.dumps(row) + "\n")
    recipe = tmp_path / "multi.toml"
    text = SMALL_DEMO.replace('intermediate = ["demo-jobs"]', 'intermediate = ["xnli"]')
    text = text.replace("[tasks.demo-jobs]\ngenerated_train_examples = 200\ngenerated_eval_examples = 30\n", "")
    recipe.write_text(text + f"""
[tasks.xnli]
train_languages = ["en", "de", "sw"]
train_file = "{tmp_path}/xnli.{{lang}}.jsonl"
validation_file = "{tmp_path}/xnli.en.jsonl"
language_sampling = "temperature"
sampling_temperature = 2.0
max_eval_examples = 20
""", encoding="utf-8")
    code, out, err = run_cli(["--recipe", recipe, "--output", tmp_path / "out"], capsys)
    assert code == 0, out + err
    # sizes 120, 60, 15 -> size^(1/2) shares 10.95 : 7.75 : 3.87
    line = next(x for x in out.splitlines() if "batches drawn from" in x)
    total = 120 ** 0.5 + 60 ** 0.5 + 15 ** 0.5
    for lang, n in (("en", 120), ("de", 60), ("sw", 15)):
        assert f"xnli@{lang} {100 * n ** 0.5 / total:.1f}%" in line, line
    assert "xnli en validation accuracy" in out


@pytest.mark.slow
def test_udpos_and_tatoeba_targets_end_to_end(tmp_path, capsys):
    """UD-POS trained on real English EWT sentences and scored (seqeval F1) on the real
    German and Chinese treebanks; Tatoeba scored on the real files; the XTREME table."""
    from conftest import SMALL_DEMO, run_cli

    for lang, name in UD_FILES.items():
        (tmp_path / f"udpos.{lang}.conllu").symlink_to(UD / name)
    text = SMALL_DEMO.replace('targets = ["demo-qa"]', 'targets = ["udpos", "tatoeba"]')
    text = text.replace('[[arms]]\nname = "jobs"\nintermediate = ["demo-jobs"]\n', "")
    text = text.split("[tasks.demo-qa]")[0] + f"""
[tasks.udpos]
languages = ["en", "de", "zh"]
train_file = "{tmp_path}/udpos.en.conllu"
eval_files = "{tmp_path}/udpos.{{lang}}.conllu"
max_train_examples = 300
max_eval_examples = 40

[tasks.udpos.hparams]
max_steps = 100
lr = 5e-3
eval_before_training = true

[tasks.tatoeba]
languages = ["de", "zh"]
data_dir = "{TATOEBA}"
max_eval_examples = 100
"""
    recipe = tmp_path / "x.toml"
    recipe.write_text(text, encoding="utf-8")
    code, out, err = run_cli(["--recipe", recipe, "--output", tmp_path / "out"], capsys)
    assert code == 0, out + err
    import polars as pl

    results = pl.read_parquet(tmp_path / "out" / "results.parquet").filter(pl.col("split") == "test")
    udpos = results.filter(pl.col("task") == "udpos")
    assert set(udpos["metric"]) == {"f1", "precision", "recall"}
    assert set(udpos["language"]) == {"en", "de", "zh"}
    f1 = {(r["language"], r["step"]): r["value"]
          for r in udpos.filter(pl.col("metric") == "f1").iter_rows(named=True)}
    assert f1[("en", 100)] > f1[("en", 0)] + 10  # it learned (100 steps from random weights)
    tatoeba = results.filter(pl.col("task") == "tatoeba")
    assert set(tatoeba["language"]) == {"de", "zh"} and set(tatoeba["step"]) == {0}
    assert "udpos f1" in out and "tatoeba accuracy" in out
    header = next(line for line in out.splitlines() if line.startswith("XTREME"))
    assert header.split() == ["XTREME", "udpos", "tatoeba"]


def test_knn_numpy_and_faiss_agree():
    from xstilts_tui.scoring.retrieval import knn, normalize

    rng = np.random.default_rng(2)
    x, y = normalize(rng.normal(size=(300, 48))), normalize(rng.normal(size=(500, 48)))
    sims, idx = knn(x, y, 4, block=64, use_faiss=False)
    full = x @ y.T
    assert np.array_equal(idx[:, 0], full.argmax(axis=1))
    assert np.allclose(sims, -np.sort(-full, axis=1)[:, :4], atol=1e-6)
    try:
        import faiss  # noqa: F401
    except ImportError:
        return
    f_sims, f_idx = knn(x, y, 4, use_faiss=True)
    assert np.array_equal(f_idx, idx) and np.allclose(f_sims, sims, atol=1e-5)


def test_panx_files(tmp_path):
    from xstilts_tui.compute.inputs.data import load_rows

    path = tmp_path / "panx.de.txt"
    path.write_text("de:Angela\tB-PER\nde:Merkel\tI-PER\nde:besucht\tO\nde:Paris\tB-LOC\n\n"
                    "de:Die\tO\nde:UNO\tB-ORG\n", encoding="utf-8")
    from dataclasses import asdict

    from xstilts_tui.recipe.schema import TaskSettings

    task = {"name": "panx", "settings": asdict(TaskSettings(languages=("de",), eval_files=str(
        tmp_path / "panx.{lang}.txt")))}
    rows = load_rows(task, "test", "de")
    assert [(r["tokens"], r["tags"]) for r in rows] == [
        (["Angela", "Merkel", "besucht", "Paris"], ["B-PER", "I-PER", "O", "B-LOC"]),
        (["Die", "UNO"], ["O", "B-ORG"])]


@pytest.mark.slow
def test_bucc_mining_finds_known_pairs_with_a_real_encoder(tmp_path, tiny_model_dir):
    """BUCC files built from real Tatoeba English sentences: each "source" sentence is an
    English sentence whose pair is its identical copy among English distractors, so the
    encoder (random, but deterministic) gives the pairs cosine 1; margin mining with the
    threshold chosen on the sample split must find them on the test split."""
    from xstilts_tui.compute.inputs.data import load_retrieval
    from xstilts_tui.compute.inputs.models import load_tokenizer
    from xstilts_tui.compute.engines.registry import get_backend
    from xstilts_tui.compute.kinds.retrieval import evaluate_retrieval
    from transformers import AutoModel

    english = list(dict.fromkeys(read_tatoeba(TATOEBA, "de")["english"]))  # unique lines
    for split, start in (("sample", 0), ("test", 300)):
        pairs = english[start:start + 100]
        distractors = english[start + 100:start + 300]
        base = tmp_path / f"de-en.{split}"
        (tmp_path / f"{base.name}.de").write_text(
            "".join(f"de-{split}-{i}\t{s}\n" for i, s in enumerate(pairs)), encoding="utf-8")
        (tmp_path / f"{base.name}.en").write_text(
            "".join(f"en-{split}-{i}\t{s}\n" for i, s in enumerate(pairs + distractors)), encoding="utf-8")
        (tmp_path / f"{base.name}.gold").write_text(
            "".join(f"de-{split}-{i}\ten-{split}-{i}\n" for i in range(len(pairs))), encoding="utf-8")
    task = {"name": "bucc2018", "settings": {"data_dir": str(tmp_path), "max_eval_examples": 0}}
    data = load_retrieval(task, "de")
    assert len(data["test"]["gold"]) == 100 and len(data["test"]["english"]) == 300
    model = AutoModel.from_pretrained(tiny_model_dir)
    scores = evaluate_retrieval(model, load_tokenizer(str(tiny_model_dir), {}), get_backend("torch"),
                                "bucc2018", data, HParams(max_length=128, eval_batch_size=64))
    assert scores["sample_f1"] > 95 and scores["f1"] > 95, scores
