#!/usr/bin/env python
"""Nearest-neighbour search for retrieval: ``xstilts_tui.scoring.retrieval.knn`` with
numpy matrix products (blocks of 512 rows) against faiss's exact inner-product index, at
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tatoeba", type=int, default=1000)
    parser.add_argument("--bucc", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--k", type=int, default=4)
    args = parser.parse_args()
    from xstilts_tui.scoring.retrieval import knn, normalize

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
        for name in ("numpy", "faiss"):  # the project's own search, both ways
            started = time.perf_counter()
            forward = knn(x, y, args.k, use_faiss=name == "faiss")[1]
            backward = knn(y, x, args.k, use_faiss=name == "faiss")[1]
            timings[name] = (time.perf_counter() - started, forward, backward)
        same = (np.array_equal(timings["numpy"][1][:, 0], timings["faiss"][1][:, 0])
                and np.array_equal(timings["numpy"][2][:, 0], timings["faiss"][2][:, 0]))
        print(f"{f'{n} x {n}':>15} {timings['numpy'][0]:9.2f} {timings['faiss'][0]:9.2f} "
              f"{timings['faiss'][0] / timings['numpy'][0]:12.2f}  {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
