"""The XTREME score, with the names and averaging rules of google-research/xtreme's
``evaluate.py``: per task, each metric averaged over the task's languages; a task's
summary is (avg EM + avg F1) / 2 for QA, avg F1 where there is one (tagging, BUCC), else
avg accuracy; the overall score is the unweighted mean of the nine task summaries (only
when all nine are there); each group's score the mean of its tasks (only when all of
them are there)."""

from __future__ import annotations

from collections.abc import Mapping

from xstilts_tui.tasks.registry import TASKS

# Our task names -> the names evaluate.py uses.
XTREME_TASKS = {
    "pawsx": "pawsx", "xnli": "xnli", "udpos": "udpos", "panx": "panx", "xquad": "xquad",
    "mlqa": "mlqa", "tydiqa": "tydiqa", "bucc2018": "bucc2018", "tatoeba": "tatoeba",
}
GROUPS = {
    "classification": ("pawsx", "xnli"),
    "structured prediction": ("udpos", "panx"),
    "question answering": ("xquad", "mlqa", "tydiqa"),
    "retrieval": ("bucc2018", "tatoeba"),
}
QA_TASKS = GROUPS["question answering"]
# The order evaluate.py's TASK2LANGS lists each task's languages in: its averages sum the
# per-language scores in this order, which decides the last bits of a float.
EVALUATE_ORDER = {
    "pawsx": "de en es fr ja ko zh".split(),
    "xnli": "ar bg de el en es fr hi ru sw th tr ur vi zh".split(),
    "panx": ("ar he vi id jv ms tl eu ml ta te af nl en de el bn hi mr ur fa fr it pt es bg ru "
             "ja ka ko th sw yo my zh kk tr et fi hu").split(),
    "udpos": ("af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te th "
              "tl tr ur vi yo zh").split(),
    "bucc2018": "de fr ru zh".split(),
    "tatoeba": ("ar he vi id jv tl eu ml ta te af nl de el bn hi mr ur fa fr it pt es bg ru ja "
                "ka ko th sw zh kk tr et fi hu").split(),
    "xquad": "en es de el ru tr ar vi th zh hi".split(),
    "mlqa": "en es de ar hi vi zh".split(),
    "tydiqa": "en ar bn fi id ko ru sw te".split(),
}


def average(task: str, by_lang: Mapping[str, float]) -> float:
    """The mean over languages, summed in evaluate.py's order (others after, sorted)."""
    order = EVALUATE_ORDER.get(task, [])
    langs = [lang for lang in order if lang in by_lang] + sorted(set(by_lang) - set(order))
    return sum(by_lang[lang] for lang in langs) / len(langs)


def task_summary(task: str, scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``scores[metric][language]`` of one task -> ``avg_<metric>`` and ``avg_metric``."""
    out = {f"avg_{metric}": average(task, by_lang) for metric, by_lang in scores.items() if by_lang}
    if task in QA_TASKS and "avg_exact_match" in out and "avg_f1" in out:
        out["avg_metric"] = (out["avg_exact_match"] + out["avg_f1"]) / 2
    elif "avg_f1" in out:
        out["avg_metric"] = out["avg_f1"]
    elif "avg_accuracy" in out:
        out["avg_metric"] = out["avg_accuracy"]
    return out


def is_complete(task: str, scores: Mapping[str, Mapping[str, float]]) -> bool:
    """Every metric of the task scored in every one of XTREME's languages of it
    (evaluate.py reads a file for each and stops when one is missing)."""
    wanted = set(TASKS[task].languages)
    return bool(scores) and all(wanted <= set(by_lang) for by_lang in scores.values())


def xtreme_score(per_task: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, float]:
    """``per_task[task][metric][language]`` -> group scores and ``all_task``, counting only
    the tasks scored in all their languages (a partial task has no summary)."""
    summaries = {t: task_summary(t, {m: {lang: v for lang, v in by_lang.items()
                                          if lang in TASKS[t].languages}
                                      for m, by_lang in s.items()}).get("avg_metric")
                 for t, s in per_task.items() if is_complete(t, s)}
    summaries = {t: v for t, v in summaries.items() if v is not None}
    overall: dict[str, float] = {}
    if set(XTREME_TASKS) <= set(summaries):
        overall["all_task"] = sum(summaries[t] for t in XTREME_TASKS) / len(XTREME_TASKS)
    for group, tasks in GROUPS.items():
        if all(t in summaries for t in tasks):
            overall[group] = sum(summaries[t] for t in tasks) / len(tasks)
    return overall
