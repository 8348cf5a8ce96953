"""SQuAD v2.0: unanswerable questions trained on the first token, the null answer chosen as
HF's ``utils_qa.py`` chooses it (``version_2_with_negative``), and the official v2.0
metric (overall, HasAns and NoAns F1 and exact match)."""

import collections
import json
import re
import string

import numpy as np
import pytest

from conftest import XQUAD_DIR, run_cli

# --- the official evaluate-v2.0.py, written out here from its text, as the reference ---


def _official_normalize(s):
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(re.compile(r"\b(a|an|the)\b", re.UNICODE), " ", s)
    return " ".join(s.split())


def _official_f1(gold, pred):
    gold_toks = _official_normalize(gold).split() if gold else []
    pred_toks = _official_normalize(pred).split() if pred else []
    same = sum((collections.Counter(gold_toks) & collections.Counter(pred_toks)).values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if same == 0:
        return 0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def _official(rows, preds):
    exact, f1, has_ans = {}, {}, {}
    for row in rows:
        qid = row["id"]
        has_ans[qid] = bool(row["answers"]["text"])
        gold = [a for a in row["answers"]["text"] if _official_normalize(a)] or [""]
        exact[qid] = max(int(_official_normalize(a) == _official_normalize(preds[qid])) for a in gold)
        f1[qid] = max(_official_f1(a, preds[qid]) for a in gold)

    def block(ids):
        return {"exact": 100.0 * sum(exact[k] for k in ids) / len(ids),
                "f1": 100.0 * sum(f1[k] for k in ids) / len(ids), "total": len(ids)}

    out = block(list(exact))
    for name, ids in (("HasAns", [k for k in exact if has_ans[k]]),
                      ("NoAns", [k for k in exact if not has_ans[k]])):
        if ids:
            out.update({f"{name}_{k}": v for k, v in block(ids).items()})
    return out


def _xquad_rows(n):
    doc = json.loads((XQUAD_DIR / "xquad.en.json").read_text(encoding="utf-8"))
    rows = [{"id": q["id"], "question": q["question"], "context": p["context"],
             "answers": {"text": [a["text"] for a in q["answers"]],
                         "answer_start": [a["answer_start"] for a in q["answers"]]}}
            for article in doc["data"] for p in article["paragraphs"] for q in p["qas"]]
    return rows[:n]


def _unanswerable(row):
    return {**row, "answers": {"text": [], "answer_start": []}}


def test_squad_v2_metric_equals_the_official_script():
    """Real XQuAD questions, a third made unanswerable; predictions right, partly right,
    empty where an answer exists and not empty where none does; one gold answer that
    normalises to nothing (the official script reads it as the empty answer)."""
    from xstilts_tui.scoring.metrics import qa_example_scores, score_qa

    rows = _xquad_rows(30)
    rows = [_unanswerable(r) if i % 3 == 0 else r for i, r in enumerate(rows)]
    rows[1] = {**rows[1], "answers": {"text": ["The"], "answer_start": [0]}}
    preds = {}
    for i, row in enumerate(rows):
        answer = row["answers"]["text"][0] if row["answers"]["text"] else ""
        preds[row["id"]] = [answer, "", answer.split(" ")[0], "the " + answer, "something else"][i % 5]
    official = _official(rows, preds)
    ours = score_qa([(r["id"], r["answers"]["text"]) for r in rows], preds, "squad_v2")
    assert ours["f1"] == pytest.approx(official["f1"], abs=1e-12)
    assert ours["exact_match"] == pytest.approx(official["exact"], abs=1e-12)
    assert ours["has_ans_f1"] == pytest.approx(official["HasAns_f1"], abs=1e-12)
    assert ours["has_ans_exact_match"] == pytest.approx(official["HasAns_exact"], abs=1e-12)
    assert ours["no_ans_f1"] == pytest.approx(official["NoAns_f1"], abs=1e-12)
    assert ours["no_ans_exact_match"] == pytest.approx(official["NoAns_exact"], abs=1e-12)
    assert 0 < official["NoAns_f1"] < 100 and 0 < official["HasAns_f1"] < 100
    # One question's scores, as the predictions file records them, average to the same.
    per_question = [qa_example_scores(preds[r["id"]], r["answers"]["text"], "squad_v2") for r in rows]
    assert np.mean([f for f, _ in per_question]) == pytest.approx(official["f1"], abs=1e-9)
    # v1.1 counts an empty prediction for an unanswerable question as 0; v2.0 as right.
    assert qa_example_scores("", [], "squad_v2") == (100.0, 100.0)


def _feature(example, cls, spans, width=8):
    """A window whose first token is the classifier token, the rest context tokens one
    character wide; start/end logits: ``cls`` at position 0, ``spans`` (start, end, s, e)."""
    from xstilts_tui.compute.kinds.qa import QAFeature

    offsets = [None] + [(i, i + 1) for i in range(width - 1)]
    start = np.full(width, -10.0)
    end = np.full(width, -10.0)
    start[0] = end[0] = cls / 2
    for s, e, s_logit, e_logit in spans:
        start[s], end[e] = s_logit, e_logit
    return QAFeature(example, list(range(width)), offsets, 0, 0), start, end


def test_a_v2_null_answer_is_predicted_and_scored():
    """utils_qa.py: the null score is the lowest classifier-token score over a question's
    windows; the null answer wins when it beats the best non-null span by more than the
    threshold. v1.1 post-processing never predicts it."""
    from xstilts_tui.compute.kinds.qa import best_spans
    from xstilts_tui.scoring.metrics import score_qa

    rows = [{"id": "answered", "context": "abcdefg"}, {"id": "unanswerable", "context": "abcdefg"}]
    made = [
        _feature(0, cls=9.0, spans=[(2, 3, 1.5, 1.5)]),  # this window's null score is high...
        _feature(0, cls=1.0, spans=[]),                  # ...but the lowest over windows is 1 < 3
        _feature(1, cls=6.0, spans=[(1, 2, 1.0, 1.0)]),  # null 6 beats the span's 2
    ]
    features = [f for f, _, _ in made]
    starts, ends = [s for _, s, _ in made], [e for _, _, e in made]
    v2 = best_spans(rows, features, starts, ends, 20, 30, null_threshold=0.0)
    assert v2 == {"answered": "bc", "unanswerable": ""}
    assert best_spans(rows, features, starts, ends, 20, 30) == {"answered": "bc", "unanswerable": "ab"}
    # A threshold above the difference (6 - 2) keeps the span.
    assert best_spans(rows, features, starts, ends, 20, 30, null_threshold=4.5)["unanswerable"] == "ab"
    gold = [("answered", ["bc"]), ("unanswerable", [])]
    assert score_qa(gold, v2, "squad_v2")["f1"] == 100.0
    assert score_qa(gold, v2, "squad_v2")["no_ans_exact_match"] == 100.0


def test_without_any_valid_span_utils_qa_compares_the_null_answer_with_a_zero_score():
    """utils_qa.py's edge case: with no non-null candidate it inserts the text "empty"
    with score 0, so the null answer is chosen only when its score is above 0."""
    from xstilts_tui.compute.kinds.qa import best_spans

    rows = [{"id": "q", "context": "abcdefg"}]
    feature, start, end = _feature(0, cls=-1.0, spans=[])
    end[1:] = -20.0
    start[1:] = -10.0
    start[5], end[2] = 5.0, 5.0  # the only high end comes before the only high start
    assert best_spans(rows, [feature], [start], [end], 2, 30, null_threshold=0.0) == {"q": "empty"}
    feature, start, end = _feature(0, cls=1.0, spans=[])
    start[5], end[2] = 5.0, 5.0
    assert best_spans(rows, [feature], [start], [end], 2, 30, null_threshold=0.0) == {"q": ""}


def test_squad_v2_trains_unanswerable_rows_on_the_first_token(demo_tokenizer):
    from xstilts_tui.compute.inputs.data import DataError, check_rows
    from xstilts_tui.compute.kinds.qa import build_features
    from xstilts_tui.tasks.registry import TASKS

    spec = TASKS["squad-v2"]
    assert spec.metric == "squad_v2" and spec.train.path == "rajpurkar/squad_v2"
    rows = _xquad_rows(4)
    rows[1] = _unanswerable(rows[1])
    check_rows(spec, rows, "train.json", "train")
    check_rows(spec, rows, "dev.json", "validation")
    with pytest.raises(DataError, match="has no answers"):
        check_rows(TASKS["squad"], rows, "train.json", "train")
    features = build_features(demo_tokenizer, rows, 128, 64, 64)
    unanswerable = [f for f in features if f.example == 1]
    assert unanswerable and all((f.start_position, f.end_position) == (0, 0) for f in unanswerable)
    assert any(f.start_position > 0 for f in features if f.example == 0)


def _v2_file(path, rows):
    by_context = collections.OrderedDict()
    for row in rows:
        by_context.setdefault(row["context"], []).append(
            {"id": row["id"], "question": row["question"], "is_impossible": not row["answers"]["text"],
             "answers": [{"text": t, "answer_start": s}
                         for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"])]})
    doc = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [
        {"context": c, "qas": qas} for c, qas in by_context.items()]}]}
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.mark.slow
def test_squad_v2_as_an_intermediate_task_end_to_end(tmp_path, capsys, tiny_model_dir):
    import polars as pl

    rows = _xquad_rows(60)
    rows = [_unanswerable(r) if i % 3 == 0 else r for i, r in enumerate(rows)]
    train = _v2_file(tmp_path / "train-v2.json", rows[:40])
    dev = _v2_file(tmp_path / "dev-v2.json", rows[40:])
    recipe = tmp_path / "v2.toml"
    recipe.write_text(f"""
name = "squad-v2"
targets = ["xquad"]
[model]
path = "{tiny_model_dir}"
[hparams]
batch_size = 4
max_length = 128
doc_stride = 64
[hparams.intermediate]
max_steps = 4
[hparams.target]
max_steps = 2
[[arms]]
name = "v2"
intermediate = ["squad-v2"]
[tasks.squad-v2]
train_file = "{train}"
validation_file = "{dev}"
[tasks.xquad]
languages = ["en"]
train_file = "{XQUAD_DIR}/xquad.en.json"
eval_files = "{XQUAD_DIR}/xquad.{{lang}}.json"
max_train_examples = 16
max_eval_examples = 8
""", encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["--recipe", recipe, "--output", out, "--cache", tmp_path / "cache"], capsys)
    assert code == 0, stdout + stderr
    results = pl.read_parquet(out / "results.parquet").filter(pl.col("task") == "squad-v2")
    metrics = set(results["metric"].to_list())
    assert {"f1", "exact_match", "has_ans_f1", "has_ans_exact_match", "no_ans_f1",
            "no_ans_exact_match"} <= metrics
    assert results.filter(pl.col("split") == "validation")["value"].is_between(0, 100).all()


def test_score_command_reads_a_v2_file_with_unanswerable_questions(tmp_path, capsys):
    rows = _xquad_rows(12)
    rows = [_unanswerable(r) if i % 2 == 0 else r for i, r in enumerate(rows)]
    gold = _v2_file(tmp_path / "dev-v2.json", rows)
    # Right on every answerable question; "" on half the unanswerable ones.
    preds = {r["id"]: (r["answers"]["text"][0] if r["answers"]["text"] else ("" if i % 4 == 0 else "x"))
             for i, r in enumerate(rows)}
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(preds), encoding="utf-8")
    code, out, err = run_cli(["score", "--task", "squad-v2", "--gold", gold, "--pred", pred], capsys)
    assert code == 0, err
    result = json.loads(out)
    official = _official(rows, preds)
    assert result["f1"] == pytest.approx(official["f1"]) == pytest.approx(75.0)
    assert result["has_ans_f1"] == 100.0 and result["no_ans_exact_match"] == 50.0
    # v1.1's scorer still refuses a question without answers.
    code, _, err = run_cli(["score", "--task", "squad", "--gold", gold, "--pred", pred], capsys)
    assert code != 0 and "has no answers" in err
