"""Retrieval scoring as XTREME does it, on sentence vectors (numpy; no torch here).

* Tatoeba: for each English sentence, its cosine nearest neighbour among the source-language
  ones (XTREME indexes the source side); accuracy is the share that find their own
  translation (line i of both files).
* BUCC 2018: ratio-margin scores (Artetxe and Schwenk 2019) with k = 4 nearest
  neighbours each way; every source sentence proposes its best-scoring neighbour and every
  target its best source (the "max" strategy), taken best first while neither sentence is
  taken (LASER's mining, as XTREME runs it); the threshold that maximises F1 on the
  sample split (the midpoint after the cut, as XTREME's ``bucc_optimize``) is applied to
  the test split.
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


def tatoeba_predictions(source: np.ndarray, english: np.ndarray) -> np.ndarray:
    """For each English sentence, the index of its nearest source sentence: XTREME indexes
    the source sentences and queries with the English ones
    (``similarity_search(x=source, y=English)``, L2 on unit vectors: cosine order)."""
    if len(source) != len(english):
        raise ValueError(f"{len(source)} source but {len(english)} English sentences; "
                         "Tatoeba's files are line-aligned")
    return cosine_nearest(english, source)


def tatoeba_accuracy(source: np.ndarray, english: np.ndarray) -> float:
    """Share (0-100) of English sentences whose nearest source sentence is their own line."""
    found = tatoeba_predictions(source, english)
    return 100.0 * float(np.mean(found == np.arange(len(english))))


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
    """(source index, target index, ratio-margin score) of the pairs LASER's "max" mining
    keeps (XTREME's ``mine_bitext``): each sentence's k nearest neighbours (cosine) on the
    other side; a pair's margin is its cosine over the mean of the two sentences'
    neighbourhood similarities; each source proposes its best-margin target and each
    target its best source; the proposals are taken in descending score order, a pair
    only while neither of its sentences is taken, and kept when its score is above 0.
    Best first."""
    x, y = normalize(source), normalize(target)
    x_sim, x_idx = knn(x, y, k, use_faiss=use_faiss)
    y_sim, y_idx = knn(y, x, k, use_faiss=use_faiss)
    x_mean, y_mean = x_sim.mean(axis=1), y_sim.mean(axis=1)
    forward = x_sim / ((x_mean[:, None] + y_mean[x_idx]) / 2)
    backward = y_sim / ((y_mean[:, None] + x_mean[y_idx]) / 2)
    fwd_best = x_idx[np.arange(len(x)), forward.argmax(axis=1)]
    bwd_best = y_idx[np.arange(len(y)), backward.argmax(axis=1)]
    pairs = np.stack((np.concatenate((np.arange(len(x)), bwd_best)),
                      np.concatenate((fwd_best, np.arange(len(y))))), axis=1)
    scores = np.concatenate((forward.max(axis=1), backward.max(axis=1)))
    seen_src: set[int] = set()
    seen_tgt: set[int] = set()
    out = []
    for n in np.argsort(-scores, kind="stable"):
        i, j = int(pairs[n][0]), int(pairs[n][1])
        if i in seen_src or j in seen_tgt:
            continue
        seen_src.add(i)
        seen_tgt.add(j)
        if scores[n] > 0:
            out.append((i, j, float(scores[n])))
    return out


def bucc_candidates(source: list[str], source_ids: list[str], english: list[str],
                    english_ids: list[str], vectors, k: int = 4) -> list[tuple[str, str, float]]:
    """Mined (source id, English id, score) as XTREME's BUCC pipeline has them: each
    distinct sentence embedded once (``text_load_unify``), mined with
    ``margin_candidates``, then mapped back to ids, where a sentence that occurs more than
    once in its file has none and drops out (``read_sent2id``); a pair's score is its best."""
    def unique(texts: list[str]) -> list[str]:
        return list(dict.fromkeys(texts))

    def ids(texts: list[str], names: list[str]) -> dict[str, str]:
        counts: dict[str, int] = {}
        for text in texts:
            counts[text.strip()] = counts.get(text.strip(), 0) + 1
        return {t.strip(): n for t, n in zip(texts, names) if counts[t.strip()] == 1}

    src, eng = unique(source), unique(english)
    src_id, eng_id = ids(source, source_ids), ids(english, english_ids)
    scored: dict[tuple[str, str], float] = {}
    for i, j, score in margin_candidates(vectors(src), vectors(eng), k=k):
        a, b = src[i].strip(), eng[j].strip()
        if a in src_id and b in eng_id:
            key = (src_id[a], eng_id[b])
            scored[key] = max(score, scored.get(key, score))
    return [(a, b, s) for (a, b), s in scored.items()]


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
    """XTREME's ``bucc_optimize``: going down the candidates by score, the first cut with
    the highest F1 against ``gold``; the threshold is the midpoint between that cut's
    last candidate and the next (the cut's own score when it is the last candidate, where
    XTREME's code fails). Returns the threshold and that F1 (0 and 0 when nothing is right)."""
    ranked = sorted(candidates, key=lambda c: -c[2])
    best_f1, threshold = 0.0, 0.0
    correct = 0
    for n, (src, tgt, score) in enumerate(ranked, 1):
        correct += (src, tgt) in gold
        if correct:
            precision, recall = correct / n, correct / len(gold)
            f1 = 2 * precision * recall / (precision + recall)
            if f1 > best_f1:
                best_f1 = f1
                threshold = (score + ranked[n][2]) / 2 if n < len(ranked) else score
    return threshold, 100 * best_f1


def mine(candidates: Iterable[tuple[str, str, float]], threshold: float) -> set[tuple[str, str]]:
    return {(src, tgt) for src, tgt, score in candidates if score >= threshold}
