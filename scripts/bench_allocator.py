#!/usr/bin/env python
"""Does glibc's allocator policy pay for CPU training? A MiniLM-sized BERT (6 layers, hidden
384, 12 heads, random weights: the compute of all-MiniLM-L6-v2) trains for extractive QA
with AdamW on random tokens, batch 16 x 256, in fresh processes that alternate between glibc's defaults
and ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824``
(large blocks from the heap, freed memory kept: what a worker's environment could set).
Prints each run's steps per second and the median ratio tunables / defaults (above 1: the
setting pays), with each variant's peak RSS.

    python scripts/bench_allocator.py [--steps 30] [--repeats 3] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824"

CHILD = r"""
import json, resource, sys, time, torch
from transformers import BertConfig, BertForQuestionAnswering
steps, warm = int(sys.argv[1]), 5
torch.manual_seed(0)
config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                    intermediate_size=1536)
model = BertForQuestionAnswering(config).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
ids = torch.randint(1000, 30000, (16, 256))
starts, ends = torch.randint(0, 256, (16,)), torch.randint(0, 256, (16,))
for i in range(warm + steps):
    if i == warm:
        start = time.perf_counter()
    loss = model(input_ids=ids, start_positions=starts, end_positions=ends).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
wall = time.perf_counter() - start
print(json.dumps({"steps_per_s": steps / wall,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(steps: int, tunables: bool) -> dict:
    env = dict(os.environ)
    env.pop("GLIBC_TUNABLES", None)
    if tunables:
        env["GLIBC_TUNABLES"] = TUNABLES
    done = subprocess.run([sys.executable, "-c", CHILD, str(steps)], env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="also write the runs and the ratio as JSON here")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"defaults": [], "tunables": []}
    for repeat in range(args.repeats):
        for name in ("defaults", "tunables") if repeat % 2 == 0 else ("tunables", "defaults"):
            result = run(args.steps, name == "tunables")
            runs[name].append(result)
            print(f"{name:9s} run {repeat + 1}: {result['steps_per_s']:.3f} steps/s, "
                  f"peak RSS {result['peak_rss_mib']:.0f} MiB", flush=True)
    median = {k: statistics.median(r["steps_per_s"] for r in v) for k, v in runs.items()}
    ratio = median["tunables"] / median["defaults"]
    print(f"median steps/s: defaults {median['defaults']:.3f}, tunables {median['tunables']:.3f}; "
          f"ratio tunables / defaults {ratio:.3f}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump({"runs": runs, "median": median, "ratio": ratio, "tunables": TUNABLES}, handle,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
