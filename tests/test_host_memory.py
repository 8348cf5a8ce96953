"""glibc keeps freed memory while a CPU training loop runs: a step's large tensors,
allocated again in the next step, cost no page faults (counted, not timed), and the
defaults come back after. Counted in a fresh interpreter."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from xstilts_tui.compute.engines import host_memory

pytestmark = pytest.mark.skipif(host_memory._glibc() is None or sys.platform != "linux",
                                reason="glibc's malloc only")

COUNT = """
import json, resource, torch
from xstilts_tui.compute.engines import host_memory

def step():  # like a training step: large tensors (40 MB, above any mmap threshold), freed together
    xs = [torch.ones(10_000_000) * 2 for _ in range(3)]
    return sum(float(x.sum()) for x in xs)

def faults(rounds=10):
    for _ in range(3):  # warm-up: the heap grows to a step's size
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / rounds

found = {"before": faults()}
with host_memory.reuse_freed_memory() as changed:
    found["changed"], found["inside"] = changed, faults()
found["after"] = faults()
print(json.dumps(found))
"""


def _count(env: dict[str, str]) -> dict:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", COUNT], capture_output=True, text=True, cwd=root,
                          env={"PATH": "/usr/bin:/bin", **env}, check=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_freed_memory_is_reused_inside_and_returned_after():
    found = _count({})
    assert found["changed"]
    pages = 3 * 40_000_000 // 4096  # of the three tensors kept to the step's end
    assert found["before"] > pages  # glibc's default: mapped and zeroed every step
    assert found["inside"] < found["before"] / 10  # the heap may still grow once, then no more
    assert found["after"] > pages


def test_turned_off_by_the_environment():
    found = _count({"XSTILTS_REUSE_FREED_MEMORY": "0"})
    assert not found["changed"]
    assert found["inside"] > 3 * 40_000_000 // 4096
