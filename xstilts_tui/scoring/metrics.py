"""Exact re-implementations of the published extractive-QA evaluation scripts.

* ``squad_v1``: SQuAD v1.1 ``evaluate-v1.1.py`` (used by XQuAD and TyDiQA-GoldP).
* ``squad_v2``: SQuAD v2.0 ``evaluate-v2.0.py`` (unanswerable questions: the empty
  answer is the only right one; overall, HasAns and NoAns scores).
* ``mlqa``: MLQA ``mlqa_evaluation_v1.py`` with its per-language normalisation.

All score every gold question: a question without a prediction counts as 0 (the v2.0
script skips it with a message, then fails on the HasAns/NoAns split; our evaluation
predicts every question), each question takes the maximum over its gold answers, and the
totals are on a 0-100 scale.
Pure Python: the control plane and the workers share this module.
"""

from __future__ import annotations

import functools
import re
import string
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

__all__ = [
    "QA_METRICS",
    "MLQA_LANGUAGES",
    "normalize_squad",
    "normalize_mlqa",
    "qa_f1",
    "qa_exact",
    "score_qa",
    "accuracy",
    "tagging_f1",
]

# --- SQuAD v1.1 -------------------------------------------------------------------

_ASCII_PUNCT = frozenset(string.punctuation)
_EN_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_squad(text: str) -> str:
    """Lower-case, drop ASCII punctuation, drop a/an/the, collapse white space."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _ASCII_PUNCT)
    text = _EN_ARTICLES.sub(" ", text)
    return " ".join(text.split())


# --- MLQA -------------------------------------------------------------------------



@functools.cache
def _unicode_punct() -> frozenset[str]:
    """Every Unicode punctuation character plus ASCII punctuation (built on first use)."""
    return frozenset(
        chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")
    ) | _ASCII_PUNCT

_WHITESPACE_LANGS = frozenset({"en", "es", "hi", "vi", "de", "ar"})
_MIXED_SEGMENTATION_LANGS = frozenset({"zh"})
MLQA_LANGUAGES = tuple(sorted(_WHITESPACE_LANGS | _MIXED_SEGMENTATION_LANGS))
_MLQA_ARTICLES: dict[str, re.Pattern[str] | None] = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "hi": None,
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    # The published script's pattern, kept as written: it removes every "ال".
    "ar": re.compile(r"\sال^|ال"),
    "zh": None,
}
_CJK = re.compile(r"[\u4e00-\u9fa5]")


def _mixed_segmentation(text: str) -> list[str]:
    """Split CJK characters and punctuation one by one, white-space split the rest."""
    punct = _unicode_punct()
    pieces: list[str] = []
    pending = ""
    for ch in text:
        if _CJK.search(ch) or ch in punct:
            if pending:
                pieces.extend(pending.split())
                pending = ""
            pieces.append(ch)
        else:
            pending += ch
    if pending:
        pieces.extend(pending.split())
    return pieces


def normalize_mlqa(text: str, lang: str) -> str:
    if lang not in _MLQA_ARTICLES:
        raise ValueError(f"MLQA has no normalisation for language {lang!r}; known: {', '.join(MLQA_LANGUAGES)}")
    punct = _unicode_punct()
    text = text.lower()
    text = "".join(ch for ch in text if ch not in punct)
    articles = _MLQA_ARTICLES[lang]
    if articles is not None:
        text = articles.sub(" ", text)
    tokens = _mixed_segmentation(text) if lang in _MIXED_SEGMENTATION_LANGS else text.split()
    return " ".join(t for t in tokens if t.strip())


# --- shared scoring ---------------------------------------------------------------

Normalizer = Callable[[str], str]


def _normalizer(metric: str, lang: str | None) -> Normalizer:
    if metric in ("squad_v1", "squad_v2"):
        return normalize_squad
    if metric == "mlqa":
        if lang is None:
            raise ValueError("the MLQA metric needs the language of the answers")
        normalize_mlqa("", lang)  # validates the language once, up front
        return lambda s: normalize_mlqa(s, lang)
    raise ValueError(f"unknown QA metric {metric!r}; known: {', '.join(QA_METRICS)}")


QA_METRICS = ("squad_v1", "squad_v2", "mlqa")


def qa_f1(prediction: str, gold: str, normalize: Normalizer) -> float:
    pred_tokens = normalize(prediction).split()
    gold_tokens = normalize(gold).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def qa_exact(prediction: str, gold: str, normalize: Normalizer) -> float:
    return float(normalize(prediction) == normalize(gold))


def _v2_f1(prediction: str, gold: str, normalize: Normalizer) -> float:
    """evaluate-v2.0.py's F1: where either side has no tokens, 1 when both have none."""
    pred_tokens, gold_tokens = normalize(prediction).split(), normalize(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    return qa_f1(prediction, gold, normalize)


def _question_scores(prediction: str, answers: list[str], metric: str,
                     normalize: Normalizer) -> tuple[float, float]:
    """One question's (exact, F1) on a 0-1 scale: the maximum over its gold answers. v2.0
    keeps the answers that normalise to some text; with none, the only gold answer is ""."""
    f1 = qa_f1
    if metric == "squad_v2":
        answers = [a for a in answers if normalize(a)] or [""]
        f1 = _v2_f1
    return (max((qa_exact(prediction, a, normalize) for a in answers), default=0.0),
            max((f1(prediction, a, normalize) for a in answers), default=0.0))


def score_qa(
    gold: Mapping[str, Iterable[str]] | Iterable[tuple[str, Iterable[str]]],
    predictions: Mapping[str, str],
    metric: str = "squad_v1",
    lang: str | None = None,
) -> dict[str, float]:
    """Score predictions against gold answers, as the published scripts do.

    ``gold`` maps each question id to its gold answer texts, or lists (id, answers)
    pairs, where a repeated id counts each time (the scripts score every question of the
    file). Questions missing from ``predictions`` score 0; predictions for unknown ids
    are ignored. ``squad_v2`` adds ``has_ans_*`` and ``no_ans_*`` (exact_match, f1,
    count) where the gold has questions with, and without, answers.
    """
    normalize = _normalizer(metric, lang)
    per_question: list[tuple[bool, float, float]] = []  # (has an answer, exact, F1)
    for qid, answers in (gold.items() if isinstance(gold, Mapping) else gold):
        answers = list(answers)
        exact = f1 = 0.0
        if qid in predictions:
            exact, f1 = _question_scores(predictions[qid], answers, metric, normalize)
        per_question.append((bool(answers), exact, f1))
    scores = _totals(per_question)
    if metric == "squad_v2":  # evaluate-v2.0.py's HasAns_* and NoAns_*, where there are any
        for prefix, kind in (("has_ans", True), ("no_ans", False)):
            part = [q for q in per_question if q[0] is kind]
            if part:
                scores.update({f"{prefix}_{k}": v for k, v in _totals(part).items()})
    return scores


def _totals(per_question: list[tuple[bool, float, float]]) -> dict[str, float]:
    total = len(per_question)
    if total == 0:
        return {"exact_match": 0.0, "f1": 0.0, "count": 0}
    return {"exact_match": 100.0 * sum(q[1] for q in per_question) / total,
            "f1": 100.0 * sum(q[2] for q in per_question) / total, "count": total}


def qa_example_scores(prediction: str, answers: Iterable[str], metric: str = "squad_v1",
                      lang: str | None = None) -> tuple[float, float]:
    """One question's F1 and exact match (0-100), as ``score_qa`` counts it: its mean over
    a file's questions is the file's score."""
    exact, f1 = _question_scores(prediction, list(answers), metric, _normalizer(metric, lang))
    return 100.0 * f1, 100.0 * exact


# --- classification, multiple choice, tagging ---------------------------------------


def accuracy(gold: Iterable, predicted: Iterable) -> float:
    """Share of positions where the prediction equals the gold label, on a 0-100 scale.

    For tagging, pass one label per word (a word whose prediction is missing counts as
    wrong: give it a value no gold label has, such as None)."""
    gold, predicted = list(gold), list(predicted)
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    if not gold:
        return 0.0
    # evaluate.py's order of operations (a share, then times 100), to the last bit
    return float(sum(g == p for g, p in zip(gold, predicted))) / len(gold) * 100


def xtreme_tags(tags: list[str]) -> list[str]:
    """Tags rewritten so that seqeval 1.x reads each the way seqeval 0.0.12 (XTREME's
    ``evaluate.py``) does: the chunk letter is the tag's first character and the type
    the part after its last '-', the whole tag when there is none (``CCONJ`` is its own
    type, not "C" + "CONJ"). Types get a prefix so that none can equal the type 1.x
    gives ``O`` ("_", which UPOS also uses)."""
    return [t if t == "O" else f"{t[0]}-T{t.rsplit('-', 1)[-1]}" for t in tags]


def tagging_counts(gold: list[str], predicted: list[str]) -> tuple[int, int, int]:
    """One sentence's entities as ``tagging_f1`` reads them: (correctly predicted, predicted,
    gold). Summed over sentences, 2 x correct / (predicted + gold) is the corpus F1."""
    from seqeval.metrics.sequence_labeling import get_entities

    gold_entities = set(get_entities(xtreme_tags(gold)))
    predicted_entities = set(get_entities(xtreme_tags(predicted)))
    return len(gold_entities & predicted_entities), len(predicted_entities), len(gold_entities)


def tagging_f1(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """Entity-level precision, recall and F1 (0-100) as XTREME's evaluate.py computes them
    for PAN-X and UD-POS (seqeval 0.0.12's reading of a tag, through the installed
    seqeval): an I- tag after O or another type starts an entity; a type change ends one;
    a tag without a B-/I- prefix is a type of its own. One list of tags a sentence, the
    same lengths on both sides."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    if len(gold) != len(predicted) or any(len(g) != len(p) for g, p in zip(gold, predicted)):
        raise ValueError("gold and predicted tags differ in their number of sentences or words")
    gold = [xtreme_tags(s) for s in gold]
    predicted = [xtreme_tags(s) for s in predicted]
    import warnings

    with warnings.catch_warnings():  # UPOS tags are not NE tags; seqeval says so per tag
        warnings.simplefilter("ignore", UserWarning)
        return {"f1": 100 * f1_score(gold, predicted),
                "precision": 100 * precision_score(gold, predicted),
                "recall": 100 * recall_score(gold, predicted)}
