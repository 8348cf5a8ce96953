"""The deltas' intervals and p-values (SciPy's bootstrap and permutation test) on cases
whose answers are known by hand."""

import numpy as np
import polars as pl
import pytest

from xstilts_tui.scoring.metrics import tagging_f1
from xstilts_tui.results.significance import deltas, format_delta


def frame(arm, values, seed=1, lang="en", task="t", column="accuracy", ids=None):
    ids = ids or [str(i) for i in range(len(values))]
    return pl.DataFrame({"arm": arm, "seed": seed, "language": lang, "task": task,
                         "example_id": ids, column: [float(v) for v in values]})


def test_a_clearly_better_arm_is_significant_and_its_interval_is_right():
    rng = np.random.default_rng(1)
    base = (rng.random(400) < 0.3) * 100.0
    better = (rng.random(400) < 0.8) * 100.0
    found = deltas(pl.concat([frame("b", base), frame("x", better)]), "t", "accuracy", ["en"],
                   ["b", "x"], "b", resamples=2000)
    d = found[("x", "en")]
    assert d.delta == pytest.approx(better.mean() - base.mean())
    # The normal approximation of the paired difference's interval, by hand.
    diff = better - base
    half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
    assert d.low == pytest.approx(d.delta - half, abs=1.5)
    assert d.high == pytest.approx(d.delta + half, abs=1.5)
    assert d.significant and d.p < 0.001 and d.n_seeds == 1 and d.n_examples == 400
    assert format_delta(d).endswith("]* (1 seed)")


def test_identical_arms_and_a_null_difference_are_not_significant():
    rng = np.random.default_rng(2)
    same = (rng.random(300) < 0.5) * 100.0
    found = deltas(pl.concat([frame("b", same), frame("x", same)]), "t", "accuracy", ["en"],
                   ["b", "x"], "b", resamples=1000)
    d = found[("x", "en")]
    assert (d.delta, d.low, d.high) == (0.0, 0.0, 0.0) and d.p == 1.0 and not d.significant
    other = (rng.random(300) < 0.5) * 100.0
    again = (rng.random(300) < 0.5) * 100.0
    d = deltas(pl.concat([frame("b", other), frame("x", again)]), "t", "accuracy", ["en"],
               ["b", "x"], "b", resamples=2000)[("x", "en")]
    assert d.low < 0 < d.high and d.p > 0.05 and not d.significant


def test_the_exact_permutation_p_value_of_a_small_case():
    # Four pairs, the arm right and the baseline wrong on each: of the 2^4 equally likely
    # swaps, only "none" and "all" are as extreme, so p = 2/16.
    found = deltas(pl.concat([frame("b", [0, 0, 0, 0]), frame("x", [100, 100, 100, 100])]), "t",
                   "accuracy", ["en"], ["b", "x"], "b", resamples=9999)
    assert found[("x", "en")].p == pytest.approx(2 / 16)


def test_entity_f1_is_recomputed_from_counts_and_pooled_over_seeds():
    from xstilts_tui.scoring.metrics import tagging_counts

    gold = [["B-PER", "I-PER", "O"], ["B-LOC", "O", "B-ORG"], ["O", "B-PER", "O"]] * 20
    pred_a = [["B-PER", "O", "O"], ["B-LOC", "O", "O"], ["O", "B-PER", "O"]] * 20
    pred_b = [["B-PER", "I-PER", "O"], ["B-LOC", "O", "B-ORG"], ["O", "O", "O"]] * 20

    def tagged(arm, predicted, seed):
        counts = [tagging_counts(g, p) for g, p in zip(gold, predicted)]
        return pl.DataFrame({"arm": arm, "seed": seed, "language": "de", "task": "panx",
                             "example_id": [str(i) for i in range(len(gold))],
                             "tp": [c[0] for c in counts], "n_pred": [c[1] for c in counts],
                             "n_gold": [c[2] for c in counts]})

    data = pl.concat([tagged("b", pred_a, s) for s in (1, 2, 3)] + [tagged("x", pred_b, s) for s in (1, 2, 3)])
    d = deltas(data, "panx", "f1", ["de"], ["b", "x"], "b", resamples=500)[("x", "de")]
    assert d.delta == pytest.approx(tagging_f1(gold, pred_b)["f1"] - tagging_f1(gold, pred_a)["f1"])
    assert d.n_seeds == 3 and d.n_examples == 3 * 60


def test_with_three_seeds_the_across_seed_test_is_a_paired_t_test_on_seed_scores():
    from scipy import stats

    rng = np.random.default_rng(4)
    parts, seed_scores = [], {"b": [], "x": []}
    for seed, (pa, pb) in {1: (0.5, 0.55), 2: (0.45, 0.6), 3: (0.5, 0.52)}.items():
        for arm, p in (("b", pa), ("x", pb)):
            values = (rng.random(200) < p) * 100.0
            seed_scores[arm].append(values.mean())
            parts.append(frame(arm, values, seed=seed))
    d = deltas(pl.concat(parts), "t", "accuracy", ["en"], ["b", "x"], "b", resamples=500)[("x", "en")]
    want = stats.ttest_rel(seed_scores["x"], seed_scores["b"])
    assert d.n_seeds == 3
    assert d.seed_p == pytest.approx(want.pvalue)
    diffs = np.subtract(seed_scores["x"], seed_scores["b"])
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / np.sqrt(3)
    assert (d.seed_low, d.seed_high) == pytest.approx((diffs.mean() - half, diffs.mean() + half))


def test_the_average_over_languages_has_its_own_interval():
    rng = np.random.default_rng(3)
    parts = []
    for lang, (pa, pb) in {"en": (0.5, 0.6), "de": (0.4, 0.5)}.items():
        parts += [frame("b", (rng.random(300) < pa) * 100.0, lang=lang),
                  frame("x", (rng.random(300) < pb) * 100.0, lang=lang)]
    found = deltas(pl.concat(parts), "t", "accuracy", ["en", "de"], ["b", "x"], "b", resamples=2000)
    avg = found[("x", "avg")]
    assert avg.delta == pytest.approx((found[("x", "en")].delta + found[("x", "de")].delta) / 2)
    # Averaging two independent languages narrows the interval against each one's.
    assert avg.high - avg.low < max(found[("x", l)].high - found[("x", l)].low for l in ("en", "de"))
    assert avg.n_examples == 600
