"""Retrieval scoring as XTREME does it, on sentence vectors (numpy; no torch here).

* Tatoeba: for each non-English sentence, its cosine nearest neighbour among the English
  ones; accuracy is the share that find their own translation (line i of both files).
* BUCC 2018: ratio-margin scores (Artetxe and Schwenk 2019) with k = 4 nearest
  neighbours each way; every source sentence proposes its best-scoring neighbour and every
  target its best source (the "max" strategy), the union of both are the candidates; the
  threshold that maximises F1 on the sample split is kept and applied to the test split.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def cosine_nearest(queries: np.ndarray, keys: np.ndarray, block: int = 4096) -> np.ndarray:
    """For each query row, the index of the key row with the highest cosine similarity."""
    q, k = normalize(queries), normalize(keys)
    out = np.empty(len(q), dtype=np.int64)
    for start in range(0, len(q), block):
        out[start:start + block] = np.argmax(q[start:start + block] @ k.T, axis=1)
    return out


def tatoeba_accuracy(source: np.ndarray, english: np.ndarray) -> float:
    """Share (0-100) of source sentences whose nearest English sentence is their own line."""
    if len(source) != len(english):
        raise ValueError(f"{len(source)} source but {len(english)} English sentences; "
                         "Tatoeba's files are line-aligned")
    found = cosine_nearest(source, english)
    return 100.0 * float(np.mean(found == np.arange(len(source))))


def knn(queries: np.ndarray, keys: np.ndarray, k: int, block: int = 512,
        use_faiss: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k largest cosine similarities of each (unit) query row among the key rows and
    their indices, best first. Exact either way: faiss's flat inner-product index when it
    is installed (``use_faiss`` None), else numpy matrix products a block of rows at a
    time (scripts/bench_retrieval.py compares the two)."""
    k = min(k, len(keys))
    if use_faiss is None:
        try:
            import faiss  # noqa: F401

            use_faiss = True
        except ImportError:
            use_faiss = False
    if use_faiss:
        import faiss

        index = faiss.IndexFlatIP(keys.shape[1])
        index.add(np.ascontiguousarray(keys, dtype=np.float32))
        sims, idx = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return sims, idx.astype(np.int64)
    sims = np.empty((len(queries), k), dtype=np.float32)
    idx = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block):
        sim = queries[start:start + block] @ keys.T
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        top_sim = np.take_along_axis(sim, top, 1)
        order = np.argsort(-top_sim, axis=1, kind="stable")
        idx[start:start + block] = np.take_along_axis(top, order, 1)
        sims[start:start + block] = np.take_along_axis(top_sim, order, 1)
    return sims, idx


def margin_candidates(source: np.ndarray, target: np.ndarray, k: int = 4,
                      use_faiss: bool | None = None) -> list[tuple[int, int, float]]:
    """(source index, target index, ratio-margin score) of the max-strategy candidates,
    as LASER's bitext mining does it: each sentence's k nearest neighbours (cosine) on the
    other side; a candidate's margin is its cosine over the mean of the two sentences'
    neighbourhood similarities; each sentence proposes its best-margin neighbour, forward
    and backward, and the candidates are the union."""
    x, y = normalize(source), normalize(target)
    x_sim, x_idx = knn(x, y, k, use_faiss=use_faiss)
    y_sim, y_idx = knn(y, x, k, use_faiss=use_faiss)
    x_mean, y_mean = x_sim.mean(axis=1), y_sim.mean(axis=1)
    pairs: dict[tuple[int, int], float] = {}
    forward = x_sim / ((x_mean[:, None] + y_mean[x_idx]) / 2)
    for i, (row, scores) in enumerate(zip(x_idx, forward)):
        best = int(np.argmax(scores))
        pairs[(i, int(row[best]))] = float(scores[best])
    backward = y_sim / ((y_mean[:, None] + x_mean[y_idx]) / 2)
    for j, (row, scores) in enumerate(zip(y_idx, backward)):
        best = int(np.argmax(scores))
        pairs[(int(row[best]), j)] = float(scores[best])
    return [(i, j, s) for (i, j), s in pairs.items()]


def f1_of(predicted: set, gold: set) -> tuple[float, float, float]:
    """Precision, recall and F1 (0-100) of predicted pairs against gold pairs, as
    ``bucc_f1`` of evaluate.py counts them."""
    correct = len(predicted & gold)
    if not correct:
        return 0.0, 0.0, 0.0
    precision, recall = correct / len(predicted), correct / len(gold)
    return 100 * precision, 100 * recall, 100 * 2 * precision * recall / (precision + recall)


def best_threshold(candidates: Iterable[tuple[str, str, float]], gold: set[tuple[str, str]]
                   ) -> tuple[float, float]:
    """The score threshold (keep candidates scoring at least it) with the highest F1
    against ``gold``, and that F1. Ties go to the higher threshold."""
    ranked = sorted(candidates, key=lambda c: -c[2])
    best_f1, best = 0.0, float("inf")
    correct = 0
    for n, (src, tgt, score) in enumerate(ranked, 1):
        correct += (src, tgt) in gold
        if n < len(ranked) and ranked[n][2] == score:
            continue  # a threshold keeps every candidate of the same score
        if correct:
            precision, recall = correct / n, correct / len(gold)
            f1 = 100 * 2 * precision * recall / (precision + recall)
            if f1 > best_f1:
                best_f1, best = f1, score
    return best, best_f1


def mine(candidates: Iterable[tuple[str, str, float]], threshold: float) -> set[tuple[str, str]]:
    return {(src, tgt) for src, tgt, score in candidates if score >= threshold}
