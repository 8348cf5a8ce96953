"""What a plan will cost before it starts: training examples and tokens per stage, an
estimate of each stage's time, and the makespan on a number of slots.

A stage's time comes, where possible, from a rate measured by a finished stage in the
stage cache (the same encoder, backend kind, phase and sequence length: its examples/s);
else from a FLOP count, ``6 x non-embedding parameters x tokens`` at ``MFU`` of a peak: an
H100's (``PEAK_FLOPS``) for a GPU, a matrix product's measured here for a CPU (the rule is
named in the output, so that nobody mistakes it for a measurement of the stage).
Evaluation time is left out.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Callable

from xstilts_tui.plan.stages import Plan, Stage, stage_folder
from xstilts_tui.protocol.provenance import Runtime
from xstilts_tui.protocol.slots import cpu_count
from xstilts_tui.tasks.registry import RETRIEVAL, TASKS

# English training examples per task: the train split sizes of the datasets' cards (the
# QA targets train on SQuAD v1.1; XNLI on MultiNLI; udpos on XTREME's English treebanks;
# TyDiQA less the 500 rows held out for selection; ANLI+ is ANLI, MNLI and labelled SNLI).
TRAIN_EXAMPLES = {
    "squad": 87_599, "squad-v2": 130_319, "xquad": 87_599, "mlqa": 87_599, "tydiqa": 3_196, "mnli": 392_702,
    "anli": 162_865, "anli-plus": 1_104_934, "qqp": 363_846, "sst2": 67_349, "hellaswag": 39_905,
    "commonsenseqa": 9_741, "cosmosqa": 25_262, "xnli": 392_702, "pawsx": 49_401,
    "udpos": 21_253, "panx": 20_000, "xglue-nc": 100_000, "xglue-qam": 100_000,
    "xglue-qadsm": 100_000,
}
# Parameters that multiply in the hub encoders the study uses (their configs: layers x
# (4 x hidden^2 + 2 x hidden x inner)); the embedding lookup does no multiplications, as in
# the 6ND rule of the scaling-law papers.
HUB_PARAMETERS = {"FacebookAI/xlm-roberta-large": 301_989_888, "xlm-roberta-large": 301_989_888,
                  "FacebookAI/xlm-roberta-base": 84_934_656, "xlm-roberta-base": 84_934_656,
                  "google-bert/bert-base-multilingual-cased": 84_934_656}
PEAK_FLOPS = 989e12  # an H100's dense bf16 peak, FLOP/s
MFU = 0.40  # the share of the peak a fine-tuning run of an encoder reaches, assumed
GPU_RULE = f"6 x non-embedding parameters x tokens at {MFU:.0%} of {PEAK_FLOPS / 1e12:.0f} TFLOP/s (an H100, bf16)"


@lru_cache(maxsize=1)
def _matmul_flops() -> float:
    """FLOP/s of an fp32 matrix product on every core of this CPU (numpy's BLAS; the
    best of three 0.1-second tries; once a process)."""
    import time

    import numpy as np

    a = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    a @ a
    best = 0.0
    for _ in range(3):
        start, count = time.perf_counter(), 0
        while time.perf_counter() - start < 0.1:
            a @ a
            count += 1
        best = max(best, 2 * 1024 ** 3 * count / (time.perf_counter() - start))
    return best


def peak_flops(runtime: Runtime) -> tuple[float, str]:
    """The FLOP/s a stage's estimate assumes a stage reaches MFU of, and the rule in
    words: an H100's on a GPU; on a CPU, a matrix product's measured here, shared out by
    the threads a stage gets."""
    if runtime.device != "cpu":
        return PEAK_FLOPS, GPU_RULE
    cores = max(cpu_count(), 1)
    threads = min(runtime.threads or cores, cores)
    rate = _matmul_flops() * threads / cores
    return rate, (f"6 x non-embedding parameters x tokens at {MFU:.0%} of {rate / 1e9:.0f} GFLOP/s "
                  f"(an fp32 matrix product measured here, {threads} of {cores} cores)")


@dataclass
class StageCost:
    stage: str
    examples: int | None  # training examples seen (epochs counted); None: unknown
    tokens: int | None  # at most: examples x max_length
    seconds: float | None
    source: str  # "measured", "flops", "cached", "none" (nothing to train), "unknown"


def _task_examples(task: dict[str, Any]) -> int | None:
    settings = task["settings"]
    name = task["name"]
    if TASKS[name].generated:
        size = settings.get("generated_train_examples", 0)
    else:
        size = TRAIN_EXAMPLES.get(name)
    cap = settings.get("max_train_examples") or 0
    if size is None:
        return cap or None
    return min(size, cap) if cap else size


def stage_examples(stage: Stage) -> int | None:
    """Training examples a stage sees, epochs or max_steps counted (None: unknown)."""
    if stage.kind not in ("intermediate", "target"):
        return 0
    hp = stage.spec["hparams"]
    world = stage.spec.get("world_size") or 1
    if hp["max_steps"]:
        return hp["max_steps"] * hp["batch_size"] * hp["grad_accum"] * world
    tasks = stage.spec.get("tasks") or [stage.spec["task"]]
    if all(TASKS[t["name"]].kind == RETRIEVAL for t in tasks):
        return 0  # scored from the encoder as it is: nothing to train
    sizes = [_task_examples(t) for t in tasks]
    if any(s is None for s in sizes):
        return None
    return int(sum(sizes) * hp["epochs"])


def _multiplying(config: dict[str, Any]) -> int:
    h, layers, inner = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    return layers * (4 * h * h + 2 * h * inner)


def model_parameters(plan: Plan) -> int | None:
    """The encoder's parameters that multiply (its layers' weight matrices; not the
    embeddings): the N of 6ND."""
    model = plan.recipe.model
    if model.hub:
        return HUB_PARAMETERS.get(model.hub)
    if model.config is not None:
        return _multiplying({"hidden_size": 768, "num_hidden_layers": 12, "intermediate_size": 3072,
                             **model.config})
    config = Path(model.path or "") / "config.json"
    try:
        return _multiplying(json.loads(config.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


Lookup = Callable[[str, str], "tuple[str, dict[str, Any]] | None"]


def encoder_identity(model: dict[str, Any], lookup: Lookup) -> str | None:
    """What sets a stage's pace in its model: the encoder it trains, followed through the
    checkpoints it starts from (an intermediate stage's, the base stage's) to the model the
    recipe names, so that a target stage after an intermediate one and the baseline's share
    a rate and two encoders never do. ``lookup``: a stage's (kind, spec) from its id and
    key. None where a link is missing (a stage no longer in the cache)."""
    for _ in range(16):
        if "stage" not in model:
            return json.dumps({k: v for k, v in model.items() if k != "key"}, sort_keys=True, default=str)
        upstream = lookup(str(model["stage"]), str(model.get("key", "")))
        if upstream is None:
            return None
        kind, spec = upstream
        if kind == "base":  # a model built from a config: that stage is the encoder
            return json.dumps({"base": model["key"]})
        model = spec.get("model", {})
    return None


def _cached_stage(cache_dir: Path, stage_id: str, key: str) -> tuple[str, dict[str, Any]] | None:
    kind = stage_id.split("/", 1)[0]  # a stage's id starts with its kind
    if kind not in ("base", "intermediate", "target") or not key.isalnum():
        return None
    try:
        spec = json.loads((stage_folder(cache_dir, kind, key) / "stage.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return (kind, spec) if isinstance(spec, dict) else None


def _rate_key(spec: dict[str, Any], lookup: Lookup) -> tuple | None:
    encoder = encoder_identity(spec.get("model", {}), lookup)
    if encoder is None:
        return None
    return (encoder, spec["backend"]["kind"], spec["kind"], spec["hparams"]["max_length"])


def measured_rates(plan: Plan) -> dict[tuple, float]:
    """examples/s of finished stages in the plan's stage cache, by what sets the pace."""
    rates: dict[tuple, float] = {}
    if not plan.cache_dir.is_dir():
        return rates
    lookup = partial(_cached_stage, plan.cache_dir)
    for done in plan.cache_dir.glob("*/DONE"):
        spec_path = done.parent / "stage.json"
        try:
            spec = json.loads(spec_path.read_text(encoding="utf-8"))
            if spec.get("kind") not in ("intermediate", "target"):
                continue
            rate = None
            for line in (done.parent / "events.jsonl").read_text(encoding="utf-8").splitlines():
                event = json.loads(line)
                if event.get("type") == "stage_finished" and event.get("examples_per_s"):
                    rate = float(event["examples_per_s"])
            key = _rate_key(spec, lookup)
            if rate and key is not None:
                rates[key] = rate
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return rates


def _plan_lookup(plan: Plan) -> Lookup:
    """A stage's (kind, spec): the plan's own stage of that id and key, else the cache's."""
    def lookup(stage_id: str, key: str) -> tuple[str, dict[str, Any]] | None:
        stage = plan.by_id.get(stage_id)
        if stage is not None and stage.key == key:
            return stage.kind, stage.spec
        return _cached_stage(plan.cache_dir, stage_id, key)
    return lookup


def plan_costs(plan: Plan, done: set[str] | None = None) -> list[StageCost]:
    """Each stage's cost; ``done``: the ids of the stages the cache holds, where the
    caller has verified them already (verifying hashes the checkpoints)."""
    if done is None:
        done = {s.id for s in plan.stages if plan.is_done(s)}
    rates = measured_rates(plan)
    lookup = _plan_lookup(plan)
    params = model_parameters(plan)
    costs = []
    for stage in plan.stages:
        examples = stage_examples(stage)
        if stage.kind == "base" or examples == 0:
            costs.append(StageCost(stage.id, 0, 0, 0.0, "none"))
            continue
        tokens = examples * stage.spec["hparams"]["max_length"] if examples is not None else None
        if stage.id in done:
            costs.append(StageCost(stage.id, examples, tokens, 0.0, "cached"))
            continue
        key = _rate_key({**stage.spec, "kind": stage.kind}, lookup)
        rate = rates.get(key) if key is not None else None
        if rate and examples is not None:
            costs.append(StageCost(stage.id, examples, tokens, examples / rate, "measured"))
        elif params and tokens is not None:
            costs.append(StageCost(stage.id, examples, tokens,
                                   6 * params * tokens / (peak_flops(plan.runtime)[0] * MFU), "flops"))
        else:
            costs.append(StageCost(stage.id, examples, tokens, None, "unknown"))
    return costs


def makespan(plan: Plan, seconds: dict[str, float], slots: int) -> float:
    """The time the plan takes on ``slots`` slots when each stage starts as soon as its
    inputs are done and a slot is free, longest remaining chain first (as the runner
    schedules; each stage's time from ``seconds``)."""
    dependents: dict[str, list[str]] = {s.id: [] for s in plan.stages}
    for stage in plan.stages:
        for dep in stage.deps:
            dependents[dep].append(stage.id)
    chain: dict[str, float] = {}
    for stage in reversed(plan.stages):
        chain[stage.id] = seconds[stage.id] + max((chain[d] for d in dependents[stage.id]), default=0.0)
    index = {s.id: i for i, s in enumerate(plan.stages)}
    waiting_on = {s.id: len(s.deps) for s in plan.stages}
    ready = [(-chain[s.id], index[s.id], s.id) for s in plan.stages if not s.deps]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now, free = 0.0, max(1, slots)
    while ready or running:
        while ready and free:
            _, _, stage_id = heapq.heappop(ready)
            heapq.heappush(running, (now + seconds[stage_id], stage_id))
            free -= 1
        now, stage_id = heapq.heappop(running)
        free += 1
        for after in dependents[stage_id]:
            waiting_on[after] -= 1
            if waiting_on[after] == 0:
                heapq.heappush(ready, (-chain[after], index[after], after))
    return now


def summary(plan: Plan, costs: list[StageCost], slots: int) -> dict[str, Any]:
    """The plan in numbers: stages by kind, arm and task; examples and tokens; the
    estimate (device-hours, its sources) and the makespan on ``slots`` and on one slot."""
    by_kind: dict[str, int] = {}
    by_arm: dict[str, int] = {}
    by_task: dict[str, int] = {}
    for stage in plan.stages:
        by_kind[stage.kind] = by_kind.get(stage.kind, 0) + 1
        for arm in stage.arms if stage.kind != "base" else ():
            by_arm[arm] = by_arm.get(arm, 0) + 1
        if stage.task:
            by_task[stage.task] = by_task.get(stage.task, 0) + 1
    known = [c for c in costs if c.seconds is not None]
    sources: dict[str, int] = {}
    for c in costs:
        sources[c.source] = sources.get(c.source, 0) + 1
    complete = len(known) == len(costs)
    seconds = {c.stage: c.seconds or 0.0 for c in costs}
    per_stage = max((plan.launch.stage_gpus if plan.launch else 1), 1)
    return {
        "stages": len(plan.stages), "by_kind": by_kind, "by_arm": by_arm, "by_task": by_task,
        "train_examples": sum(c.examples or 0 for c in costs),
        "train_tokens_at_most": sum(c.tokens or 0 for c in costs),
        "unknown_examples": [c.stage for c in costs if c.examples is None],
        "device_hours": sum(seconds.values()) * per_stage / 3600,
        "estimate_sources": sources,
        "estimate_complete": complete,
        "flop_rule": peak_flops(plan.runtime)[1] if "flops" in sources else None,
        "sequential_s": sum(seconds.values()),
        "slots": slots,
        "makespan_s": makespan(plan, seconds, slots),
    }
