"""Which deltas are real: each arm against the baseline arm, per task and language and for
the average over languages, from the per-example predictions the target stages keep.

* Paired bootstrap over the test examples (the same examples, both arms; pooled over
  seeds: each (seed, example) pair is one observation): the delta's 95% interval, from
  SciPy's ``bootstrap`` (percentile method), and a two-sided p-value from SciPy's
  ``permutation_test`` swapping the two arms' predictions within pairs.
* Across seeds, where both arms have at least three: a paired t-test on the per-seed
  scores (``scipy.stats.ttest_rel``), with its interval.
* The average over languages: the per-language bootstrap and permutation distributions
  (the same number of resamples, independent examples) averaged, so the interval and the
  p-value of the average come from the same resamples.

A metric that is not a mean over examples (seqeval's entity F1) is recomputed on each
resample from the examples' counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

RESAMPLES = 9999  # bootstrap and permutation resamples: the headless table, the dashboard and report alike
CONFIDENCE = 0.95


@dataclass
class Delta:
    delta: float
    low: float
    high: float
    p: float
    n_seeds: int
    n_examples: int  # pairs the bootstrap resampled (examples x seeds)
    seed_p: float | None = None  # the across-seed t-test, with 3 seeds or more
    seed_low: float | None = None
    seed_high: float | None = None

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.low > 0 or self.high < 0


def metric_columns(metric: str, columns: list[str]) -> tuple[str, ...]:
    """The per-example columns a metric is computed from."""
    if metric == "f1" and "tp" in columns:
        return ("tp", "n_pred", "n_gold")
    if metric == "accuracy" and "correct" in columns:
        return ("correct", "n_words")
    return (metric,)


def corpus_score(values: np.ndarray, metric_cols: tuple[str, ...]) -> np.ndarray:
    """The metric over examples on the last-but-one axis of ``values`` (..., n, k)."""
    if metric_cols == ("tp", "n_pred", "n_gold"):
        sums = values.sum(axis=-2)
        denominator = sums[..., 1] + sums[..., 2]
        return np.where(denominator > 0, 200.0 * sums[..., 0] / np.maximum(denominator, 1), 0.0)
    if metric_cols == ("correct", "n_words"):
        sums = values.sum(axis=-2)
        return 100.0 * sums[..., 0] / np.maximum(sums[..., 1], 1)
    return values[..., 0].mean(axis=-1)


def _paired(base: pl.DataFrame, other: pl.DataFrame, cols: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    joined = base.join(other, on=["seed", "example_id"], suffix="_b").sort(["seed", "example_id"])
    a = joined.select(list(cols)).to_numpy().astype(float)
    b = joined.select([f"{c}_b" for c in cols]).to_numpy().astype(float)
    return a, b


def _distributions(a: np.ndarray, b: np.ndarray, cols: tuple[str, ...], rng: np.random.Generator,
                   resamples: int):
    """The observed delta, SciPy's bootstrap and permutation results for one language."""
    from scipy import stats

    n = len(a)
    table = np.concatenate([a, b])  # rows 0..n-1: the baseline; n..2n-1: the arm

    def statistic(x, y, axis=-1):
        x = np.moveaxis(np.asarray(x), axis, -1)
        y = np.moveaxis(np.asarray(y), axis, -1)
        return corpus_score(table[y], cols) - corpus_score(table[x], cols)

    x, y = np.arange(n), np.arange(n) + n
    boot = stats.bootstrap((x, y), statistic, paired=True, vectorized=True, n_resamples=resamples,
                           confidence_level=CONFIDENCE, method="percentile", random_state=rng,
                           batch=500)
    perm = stats.permutation_test((x, y), statistic, permutation_type="samples", vectorized=True,
                                  n_resamples=resamples, alternative="two-sided", random_state=rng,
                                  batch=500)
    return float(statistic(x, y)), boot, perm


def _seed_test(per_seed_a: list[float], per_seed_b: list[float]):
    from scipy import stats

    if len(per_seed_a) < 3:
        return None, None, None
    result = stats.ttest_rel(per_seed_b, per_seed_a)
    interval = result.confidence_interval(CONFIDENCE)
    return float(result.pvalue), float(interval.low), float(interval.high)


def _two_sided_p(null: np.ndarray, observed: float) -> float:
    """As permutation_test reports it: twice the smaller tail, the observed counted in."""
    n = len(null)
    greater = (np.count_nonzero(null >= observed - 1e-12) + 1) / (n + 1)
    less = (np.count_nonzero(null <= observed + 1e-12) + 1) / (n + 1)
    return float(min(1.0, 2 * min(greater, less)))


def deltas(predictions: pl.DataFrame, task: str, metric: str, languages: list[str], arms: list[str],
           baseline: str, resamples: int = RESAMPLES, seed: int = 0) -> dict[tuple[str, str], Delta]:
    """For each arm but the baseline and each language (and ``avg``, where every language
    has pairs): the delta to the baseline with its interval and p-value."""
    from xstilts_tui.results.store import AVG

    found: dict[tuple[str, str], Delta] = {}
    part = predictions.filter(pl.col("task") == task)
    if part.is_empty():
        return found
    cols = metric_columns(metric, part.columns)
    if not all(c in part.columns for c in cols):
        return found
    for arm in arms:
        if arm == baseline:
            continue
        rng = np.random.default_rng(seed)
        boots, perms, observed, pairs = [], [], [], 0
        seeds_seen: set[int] = set()
        for lang in languages:
            base = part.filter((pl.col("arm") == baseline) & (pl.col("language") == lang))
            other = part.filter((pl.col("arm") == arm) & (pl.col("language") == lang))
            a, b = _paired(base, other, cols)
            if len(a) < 2:
                continue
            seeds = sorted(set(base["seed"].to_list()) & set(other["seed"].to_list()))
            seeds_seen.update(seeds)
            value, boot, perm = _distributions(a, b, cols, rng, resamples)
            per_seed = [_paired(base.filter(pl.col("seed") == s), other.filter(pl.col("seed") == s), cols)
                        for s in seeds]
            seed_p, seed_low, seed_high = _seed_test(
                [float(corpus_score(pa, cols)) for pa, _ in per_seed],
                [float(corpus_score(pb, cols)) for _, pb in per_seed])
            found[(arm, lang)] = Delta(value, float(boot.confidence_interval.low),
                                       float(boot.confidence_interval.high), float(perm.pvalue),
                                       len(seeds), len(a), seed_p, seed_low, seed_high)
            boots.append(boot.bootstrap_distribution)
            perms.append(perm.null_distribution)
            observed.append(value)
            pairs += len(a)
        if boots and len(boots) == len(languages) and len(languages) > 1:
            mean_boot = np.mean(boots, axis=0)
            mean_null = np.mean(perms, axis=0)
            value = float(np.mean(observed))
            low, high = np.percentile(mean_boot, [100 * (1 - CONFIDENCE) / 2,
                                                  100 * (1 + CONFIDENCE) / 2])
            found[(arm, AVG)] = Delta(value, float(low), float(high), _two_sided_p(mean_null, value),
                                      len(seeds_seen), pairs)
    return found


def run_predictions(folder: Path, problems: list[tuple[str, str]] | None = None) -> pl.DataFrame:
    """Every per-example prediction of a run's target stages (the last evaluation of each
    language), with the arm of each row, read from the stage folders run.json names: only
    the files each stage's DONE marker records, verified against their recorded hashes. A
    stage whose predictions cannot be used adds a line to ``problems`` (its deltas then
    have no interval)."""
    from xstilts_tui.protocol.stage_cache import recorded_predictions

    manifest = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    frames = []
    for stage in manifest.get("stages", []):
        if stage.get("kind") != "target" or not stage.get("dir"):
            continue
        paths, problem = recorded_predictions(Path(stage["dir"]))
        if problem is not None:
            if problems is not None:
                problems.append((stage["id"], f"{stage['id']}: predictions not used ({problem}); "
                                              "its deltas have no interval"))
            continue
        for path in paths:
            frame = pl.read_parquet(path)
            if frame.is_empty():
                continue
            last = frame["step"].max()
            frames.append(frame.filter(pl.col("step") == last)
                          .with_columns(pl.lit(stage["arms"][0]).alias("arm")))
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames, how="diagonal_relaxed")


def format_delta(d: Delta | None, mean_delta: float | None = None) -> str:
    """``+2.1 [+0.4, +3.8]*`` (``*``: the interval excludes zero); ``(1 seed)`` where the
    delta rests on one seed."""
    if d is None:
        return "-" if mean_delta is None else f"{mean_delta:+.1f}"
    text = f"{d.delta:+.1f} [{d.low:+.1f}, {d.high:+.1f}]" + ("*" if d.significant else "")
    return text + (" (1 seed)" if d.n_seeds == 1 else "")


def summary_records(deltas_found: dict[tuple[str, str], Delta]) -> list[dict[str, Any]]:
    return [{"arm": arm, "column": column, **vars(d), "significant": d.significant}
            for (arm, column), d in deltas_found.items()]
