"""The QA metrics against hand-made cases of the published scripts' rules."""

import json

import pytest

from conftest import run_cli
from xstilts_tui.scoring.metrics import normalize_mlqa, normalize_squad, qa_f1, score_qa


def squad(gold, pred):
    return score_qa(gold, pred, "squad_v1")


def mlqa(gold, pred, lang):
    return score_qa(gold, pred, "mlqa", lang)


def test_squad_normalisation_rules():
    assert normalize_squad("  The  Eiffel\tTower!  ") == "eiffel tower"
    assert normalize_squad("A cat, an owl and THE dog.") == "cat owl and dog"
    # Only whole-word articles go: "theatre" keeps its letters.
    assert normalize_squad("theatre") == "theatre"
    # ASCII punctuation only: SQuAD v1.1 keeps « » and the Chinese full stop.
    assert normalize_squad("«Paris»。") == "«paris»。"


def test_squad_exact_and_f1_by_hand():
    gold = {"q": ["the Eiffel Tower"]}
    assert squad(gold, {"q": "Eiffel tower."}) == {"exact_match": 100.0, "f1": 100.0, "count": 1}
    # pred tokens: eiffel tower in paris; gold: eiffel tower -> P=2/4, R=1, F1=2/3
    result = squad(gold, {"q": "the Eiffel Tower in Paris"})
    assert result["exact_match"] == 0.0
    assert result["f1"] == pytest.approx(100 * 2 / 3)


def test_several_gold_answers_take_the_maximum():
    gold = {"q": ["Denver Broncos", "The Broncos", "Broncos"]}
    result = squad(gold, {"q": "broncos"})
    assert result["exact_match"] == 100.0 and result["f1"] == 100.0
    # Best F1 comes from a different gold answer than best EM would.
    result = squad({"q": ["Denver Broncos team", "x"]}, {"q": "Denver Broncos"})
    assert result["exact_match"] == 0.0
    assert result["f1"] == pytest.approx(100 * 0.8)


def test_missing_predictions_score_zero_and_count():
    gold = {"a": ["one"], "b": ["two"], "c": ["three"], "d": ["four"]}
    result = squad(gold, {"a": "one", "b": "two", "zzz": "ignored"})
    assert result == {"exact_match": 50.0, "f1": 50.0, "count": 4}


def test_empty_prediction_scores_zero():
    assert squad({"q": ["Paris"]}, {"q": ""})["f1"] == 0.0


def test_mlqa_unicode_punctuation_and_articles():
    assert normalize_mlqa("«París»", "es") == "parís"
    assert mlqa({"q": ["la casa"]}, {"q": "Casa"}, "es")["exact_match"] == 100.0
    # English rules do not remove Spanish articles.
    assert mlqa({"q": ["la casa"]}, {"q": "Casa"}, "en")["exact_match"] == 0.0
    assert normalize_mlqa("Der Hund, die Katze und das Haus", "de") == "hund katze und haus"
    assert normalize_mlqa("những cái bàn", "vi") == "bàn"
    assert normalize_mlqa("The Hindi text", "hi") == "the hindi text"


def test_mlqa_chinese_mixed_segmentation():
    assert normalize_mlqa("北京大学，2008年", "zh") == "北 京 大 学 2008 年"
    # Character overlap gives partial credit where the SQuAD script gives none.
    gold, pred = {"q": ["北京"]}, {"q": "北京大学"}
    assert mlqa(gold, pred, "zh")["f1"] == pytest.approx(100 * 2 / 3)
    assert squad(gold, pred)["f1"] == 0.0
    # Latin runs inside Chinese stay whole words.
    assert normalize_mlqa("在Google工作", "zh") == "在 google 工 作"


def test_mlqa_arabic_article_removal():
    # The published pattern removes every "ال".
    assert normalize_mlqa("الكتاب", "ar") == "كتاب"
    assert mlqa({"q": ["الكتاب"]}, {"q": "كتاب"}, "ar")["exact_match"] == 100.0
    assert squad({"q": ["الكتاب"]}, {"q": "كتاب"})["exact_match"] == 0.0
    # Arabic punctuation (، ؟) is Unicode punctuation.
    assert normalize_mlqa("مصر، القاهرة؟", "ar") == "مصر قاهرة"


def test_mlqa_needs_a_known_language():
    with pytest.raises(ValueError, match="no normalisation for language 'th'"):
        score_qa({"q": ["x"]}, {"q": "x"}, "mlqa", "th")


def test_f1_of_empty_normalised_strings_is_zero():
    # As in both scripts: an answer that normalises to nothing shares no token.
    assert qa_f1("the", "a", normalize_squad) == 0.0


def _write(path, obj):
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def test_score_command_on_real_xquad(tmp_path, capsys, xquad_dir):
    gold = xquad_dir / "xquad.de.json"
    data = json.loads(gold.read_text(encoding="utf-8"))
    qas = [qa for article in data["data"] for p in article["paragraphs"] for qa in p["qas"]]
    # Right for every other question, nothing for the rest.
    pred = {qa["id"]: qa["answers"][0]["text"] for qa in qas[::2]}
    code, out, err = run_cli(["score", "--task", "xquad", "--gold", gold,
                              "--pred", _write(tmp_path / "p.json", pred), "--lang", "de"], capsys)
    assert code == 0, err
    result = json.loads(out)
    expected = 100 * len(pred) / len(qas)
    assert result["f1"] == pytest.approx(expected) and result["exact_match"] == pytest.approx(expected)
    assert result["questions"] == len(qas) == 1190


def test_score_command_mlqa_uses_language_rules(tmp_path, capsys):
    gold = _write(tmp_path / "g.json", {"data": [{"title": "t", "paragraphs": [{
        "context": "北京大学", "qas": [{"id": "1", "question": "?",
                                      "answers": [{"text": "北京", "answer_start": 0}]}]}]}]})
    pred = _write(tmp_path / "p.json", {"1": "北京大学"})
    code, out, _ = run_cli(["score", "--task", "mlqa", "--gold", gold, "--pred", pred,
                            "--lang", "zh"], capsys)
    assert code == 0
    assert json.loads(out)["f1"] == pytest.approx(100 * 2 / 3)
    code, out, _ = run_cli(["score", "--task", "xquad", "--gold", gold, "--pred", pred], capsys)
    assert json.loads(out)["f1"] == 0.0


@pytest.mark.parametrize("args, message", [
    (["--task", "nope"], "unknown task 'nope'"),
    (["--task", "xquad", "--lang", "xx"], "xquad has no language 'xx'"),
    (["--task", "mlqa"], "give --lang"),
])
def test_score_command_errors_are_one_line(tmp_path, capsys, args, message):
    gold = _write(tmp_path / "g.json", {"data": []})
    pred = _write(tmp_path / "p.json", {})
    code, out, err = run_cli(["score", "--gold", gold, "--pred", pred, *args], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_score_command_bad_files(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    code, _, err = run_cli(["score", "--task", "xquad", "--gold", bad, "--pred", bad], capsys)
    assert code == 2 and "--gold" in err and "not SQuAD JSON" in err
    gold = _write(tmp_path / "g.json", {"data": [{"title": "t", "paragraphs": [{"context": "a b", "qas": [
        {"id": "q", "question": "?", "answers": [{"text": "a", "answer_start": 0}]}]}]}]})
    code, _, err = run_cli(["score", "--task", "xquad", "--gold", gold,
                            "--pred", _write(tmp_path / "l.json", ["a"])], capsys)
    assert code == 2 and "expected a JSON object" in err
    empty = _write(tmp_path / "e.json", {"data": []})
    code, _, err = run_cli(["score", "--task", "xquad", "--gold", empty,
                            "--pred", _write(tmp_path / "p.json", {})], capsys)
    assert code == 2 and "no questions" in err
