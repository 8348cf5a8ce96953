"""The plan for people and for tools: ``plan``'s text (a summary, then each stage with its
key, state, reason, estimate and command) and ``plan --json``'s data."""

from __future__ import annotations

import shlex
from typing import Any

from xstilts_tui.plan.cost import plan_costs, summary
from xstilts_tui.plan.stages import Plan, Stage
from xstilts_tui.protocol import provenance
from xstilts_tui.recipe.sections import unset_paths


def unset_variables(stage: Stage) -> list[str]:
    """Environment variables a stage's data paths name that are unset now."""
    found = []
    for task in stage.spec.get("tasks") or ([stage.spec["task"]] if "task" in stage.spec else []):
        for _, variable in unset_paths(task["settings"]):
            if variable not in found:
                found.append(variable)
    return found


def plan_data(plan: Plan, slots: int = 1) -> dict[str, Any]:
    """The plan as data (``plan --json``): each stage with its key, state, command and
    cost estimate, and the summary."""
    states = plan.states()
    done = {s for s, (state, _) in states.items() if state != "pending"}
    costs = {c.stage: c for c in plan_costs(plan, done)}
    stages = []
    for stage in plan.stages:
        cost = costs[stage.id]
        stages.append({
            "id": stage.id, "kind": stage.kind, "key": stage.key, "arms": list(stage.arms),
            "seed": stage.seed, "task": stage.task, "deps": list(stage.deps),
            "state": states[stage.id][0], "why": states[stage.id][1],
            "reused": stage.reused, "provenance": stage.provenance,
            "needs_unset": unset_variables(stage), "dir": str(plan.stage_dir(stage)),
            "command": plan.command(stage), "train_examples": cost.examples,
            "train_tokens_at_most": cost.tokens, "estimate_s": cost.seconds,
            "estimate_source": cost.source})
    return {"recipe": plan.recipe.name, "output_dir": str(plan.output_dir),
            "cache_dir": str(plan.cache_dir), "launcher": plan.launch.launcher,
            "made_by": plan.made_by, "runtime": provenance.runtime_as_dict(plan.runtime),
            "summary": summary(plan, list(costs.values()), slots), "stages": stages}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def describe(plan: Plan, slots: int = 1) -> str:
    """The plan for people: a summary (stages, examples, tokens, estimated device-hours
    and makespan), then each stage: its key, whether it is cached, its estimate and the
    command that runs it by hand."""
    data = plan_data(plan, slots)
    summary = data["summary"]
    runtime = plan.runtime
    lines = [f"recipe {plan.recipe.name}: {len(plan.stages)} stages; "
             f"results in {plan.output_dir}, stage cache in {plan.cache_dir}; "
             f"launcher {plan.launch.launcher}",
             f"computed by xstilts-tui {plan.made_by.get('version')} on {runtime.device}"
             + (f" ({runtime.threads} threads a stage)" if runtime.device == "cpu" else "")
             + f", {runtime.hardware()}"]
    lines.append("stages by kind: " + ", ".join(f"{n} {k}" for k, n in summary["by_kind"].items())
                 + "; by arm: " + ", ".join(f"{a} {n}" for a, n in summary["by_arm"].items())
                 + "; by task: " + ", ".join(f"{t} {n}" for t, n in summary["by_task"].items()))
    unknown = summary["unknown_examples"]
    lines.append(f"training: {summary['train_examples']:,} examples, at most "
                 f"{summary['train_tokens_at_most']:,} tokens (examples x max_length)"
                 + (f"; unknown for {len(unknown)} stage(s)" if unknown else ""))
    sources = summary["estimate_sources"]
    words = {"none": "with nothing to train", "flops": "from FLOPs", "measured": "measured here",
             "cached": "cached", "unknown": "unknown (their data's size is not known)"}
    how = ", ".join(f"{n} {words.get(what, what)}" for what, n in sources.items())
    lines.append(f"estimate: {summary['device_hours']:.2f} device-hours ({how}"
                 + (f"; flops: {summary['flop_rule']}" if "flops" in sources else "")
                 + ("; incomplete: some stages have no estimate" if not summary["estimate_complete"] else "")
                 + ")")
    lines.append(f"makespan: {_duration(summary['makespan_s'])} on {slots} slot(s), "
                 f"{_duration(summary['sequential_s'])} one stage at a time")
    for stage, entry in zip(plan.stages, data["stages"]):
        after = f" after {', '.join(stage.deps)}" if stage.deps else ""
        unset = "".join(f"  needs ${v} (unset)" for v in entry["needs_unset"])
        estimate = f"  est {_duration(entry['estimate_s'])} ({entry['estimate_source']})" \
            if stage.kind != "base" and entry["state"] == "pending" else ""
        why = f" ({entry['why']})" if entry["why"] else ""
        lines.append(f"{stage.id}  key {stage.key[:12]}  {entry['state']}{why}  arms "
                     f"{', '.join(stage.arms)}{after}{estimate}{unset}")
        lines.append(f"  $ {shlex.join(plan.command(stage))}")
    return "\n".join(lines)
