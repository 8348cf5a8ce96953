#!/usr/bin/env python
"""Nearest-neighbour search for retrieval: plain numpy matrix products (what
``xstilts_tui.retrieval_metrics`` uses) against faiss's exact inner-product index, at
Tatoeba's size and at a BUCC-like size, on random unit vectors of XLM-R Large's width.
Both find the k nearest by cosine both ways (k = 4, as ratio-margin scoring needs);
prints seconds for each and their ratio, and whether they agree.

    python scripts/bench_retrieval.py [--bucc 20000] [--dim 1024]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def numpy_knn(x: np.ndarray, y: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    out = np.empty((len(x), k), dtype=np.int64)
    for start in range(0, len(x), block):
        sim = x[start:start + block] @ y.T
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, top, 1), axis=1)
        out[start:start + block] = np.take_along_axis(top, order, 1)
    return out


def faiss_knn(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatIP(y.shape[1])
    index.add(y)
    return index.search(x, k)[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tatoeba", type=int, default=1000)
    parser.add_argument("--bucc", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--k", type=int, default=4)
    args = parser.parse_args()
    from xstilts_tui.retrieval_metrics import normalize

    try:
        import faiss
    except ImportError:
        print("faiss is not installed (pip install faiss-cpu) - nothing to compare against")
        return 1
    rng = np.random.default_rng(0)
    print(f"faiss {faiss.__version__}, numpy {np.__version__}, dim {args.dim}, k {args.k}")
    print(f"{'size':>15} {'numpy s':>9} {'faiss s':>9} {'faiss/numpy':>12}  same neighbours")
    for n in (args.tatoeba, args.bucc):
        x = normalize(rng.normal(size=(n, args.dim)).astype(np.float32))
        y = normalize(rng.normal(size=(n, args.dim)).astype(np.float32))
        timings = {}
        for name, fn in (("numpy", numpy_knn), ("faiss", faiss_knn)):
            started = time.perf_counter()
            forward, backward = fn(x, y, args.k), fn(y, x, args.k)
            timings[name] = (time.perf_counter() - started, forward, backward)
        same = (np.array_equal(timings["numpy"][1][:, 0], timings["faiss"][1][:, 0])
                and np.array_equal(timings["numpy"][2][:, 0], timings["faiss"][2][:, 0]))
        print(f"{f'{n} x {n}':>15} {timings['numpy'][0]:9.2f} {timings['faiss'][0]:9.2f} "
              f"{timings['faiss'][0] / timings['numpy'][0]:12.2f}  {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
