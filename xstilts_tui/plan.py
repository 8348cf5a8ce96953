"""From a recipe to a plan: stages with content-hash cache keys and launch commands.

* ``base``: only for a model built from a configuration: trains the tokenizer and saves
  the freshly initialised model, so that every later stage loads it with
  ``from_pretrained`` like any hub or local model.
* ``intermediate``: one per (intermediate task, backend, seed); arms that ask for the same
  one share it, so it is never trained twice.
* ``target``: one per (arm, target task, seed): fine-tunes on the task's English training
  data with a fresh head, then evaluates in every language.

A stage's key hashes everything that determines its output, including its inputs' keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .recipe import Launch, Recipe, TaskSettings
from .tasks import TASKS


# The stage cache is shared by every recipe whose output folder sits in the same folder
# (runs/<name> -> runs/stage-cache), so a stage done for one recipe serves the next one;
# this variable or --cache puts it elsewhere.
CACHE_ENV = "XSTILTS_CACHE"


@dataclass
class Stage:
    id: str
    kind: str  # base | intermediate | target
    key: str
    deps: tuple[str, ...]  # ids of the stages whose output this one reads
    spec: dict[str, Any]
    arms: tuple[str, ...] = ()
    seed: int | None = None
    task: str | None = None

    def dir(self, cache_dir: Path) -> Path:
        return cache_dir / f"{self.kind}-{self.key[:20]}"


@dataclass
class Plan:
    recipe: Recipe
    stages: list[Stage]
    output_dir: Path
    cache_dir: Path
    launch: Launch = Launch()
    by_id: dict[str, Stage] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = {s.id: s for s in self.stages}

    def stage_dir(self, stage: Stage) -> Path:
        return stage.dir(self.cache_dir)

    def is_done(self, stage: Stage) -> bool:
        """Done, and everything its DONE marker records is intact."""
        from .stage_cache import verify_done

        return verify_done(self.stage_dir(stage)) is None

    def spec_path(self, stage: Stage) -> Path:
        return self.stage_dir(stage) / "stage.json"

    def write_spec(self, stage: Stage) -> Path:
        """Write what the stage's worker reads (atomically), so that its command runs."""
        path = self.spec_path(stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"stage.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.worker_spec(stage), indent=2), encoding="utf-8")
        os.replace(tmp, path)
        return path

    def command(self, stage: Stage, master_port: int | None = None) -> list[str]:
        """The exact command that starts the worker for one stage, as the recipe's
        ``[launch]`` says: one process, torchrun, or the deepspeed launcher (its flags
        before the module, as it requires). ``master_port``: the rendezvous port of this
        worker when several run side by side (the deepspeed launcher's default is fixed)."""
        spec = str(self.spec_path(stage))
        launch = self.launch
        worker = ["-m", "backends.worker", spec]
        if stage.kind == "base" or launch.launcher == "python":
            return [sys.executable, *worker]  # the base stage trains nothing: one process
        if launch.launcher == "torchrun":
            argv = [sys.executable, "-m", "torch.distributed.run"]
            if launch.nnodes == 1 and not launch.rdzv_endpoint:
                argv += ["--standalone", "--nnodes", "1"]
            else:
                argv += ["--nnodes", str(launch.nnodes), "--rdzv-backend", "c10d",
                         "--rdzv-endpoint", launch.rdzv_endpoint, "--rdzv-id", stage.key[:16]]
            argv += ["--nproc-per-node", str(launch.nproc_per_node), *worker]
        else:
            argv = [sys.executable, "-m", "deepspeed.launcher.runner"]
            if launch.hostfile:
                argv += ["--hostfile", launch.hostfile]
            if launch.num_gpus:
                argv += ["--num_gpus", str(launch.num_gpus)]
            if launch.master_addr:
                argv += ["--master_addr", launch.master_addr]
            if launch.master_port or master_port:
                argv += ["--master_port", str(launch.master_port or master_port)]
            argv += ["--no_local_rank", "--module", "backends.worker", spec]
        return [*launch.wrapper, *argv]

    def worker_spec(self, stage: Stage) -> dict[str, Any]:
        """What the worker reads: the stage's spec plus where its inputs and outputs live."""
        return {
            **stage.spec,
            "id": stage.id,
            "key": stage.key,
            "stage_dir": str(self.stage_dir(stage)),
            "inputs": {dep: str(self.stage_dir(self.by_id[dep])) for dep in stage.deps},
        }


def _file_fingerprint(path: str) -> dict[str, Any]:
    if "$" in path:  # a data root from the environment, unset here: the path is the key
        return {"path": path}
    stat = Path(path).stat()
    return {"path": path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _task_spec(name: str, settings: TaskSettings) -> dict[str, Any]:
    spec = TASKS[name]
    data = asdict(settings)
    files: dict[str, Any] = {}
    for key in ("train_file", "validation_file"):
        if data[key] and "{lang}" in data[key]:
            files[key] = [_file_fingerprint(data[key].replace("{lang}", lang)) for lang in settings.train_languages]
        elif data[key]:
            files[key] = _file_fingerprint(data[key])
    if data.get("data_dir") and "$" not in data["data_dir"]:
        files["data_dir"] = [_file_fingerprint(str(p)) for p in sorted(Path(data["data_dir"]).iterdir())
                             if p.is_file()]
    if data["eval_files"]:
        files["eval_files"] = [_file_fingerprint(data["eval_files"].replace("{lang}", lang))
                               for lang in settings.languages]
    return {"name": name, "kind": spec.kind, "metric": spec.metric, "settings": data,
            "files": files}


def _backend_spec(recipe: Recipe, name: str) -> dict[str, Any]:
    profile = recipe.backend(name)
    spec = {"name": profile.name, "kind": profile.kind, "options": dict(profile.options)}
    if profile.options.get("config_file"):
        spec["config_file"] = _file_fingerprint(profile.options["config_file"])
    return spec


def _mlm_spec(arm) -> dict[str, Any] | None:
    if arm.mlm is None:
        return None
    corpus = [c if not Path(c).is_file() else _file_fingerprint(c) for c in arm.mlm.corpus]
    return {"ratio": arm.mlm.ratio, "corpus": corpus}


def build_plan(recipe: Recipe, output_dir: Path | None = None,
               cache_dir: Path | None = None, launch: Launch | None = None) -> Plan:
    """The stages of a recipe. ``launch`` (``--launch``) replaces the recipe's own; the
    number of processes is part of a training stage's key, since it sets the global batch."""
    launch = launch or recipe.launch
    output_dir = Path(output_dir or recipe.output_dir or Path("runs") / recipe.name).resolve()
    cache_dir = Path(cache_dir or os.environ.get(CACHE_ENV) or output_dir.parent / "stage-cache").resolve()
    stages: list[Stage] = []
    model = recipe.model
    model_spec: dict[str, Any]
    base_deps: tuple[str, ...] = ()
    if model.source == "config":
        corpus = [c if not Path(c).is_file() else _file_fingerprint(c) for c in model.tokenizer.corpus]
        base_spec = {"kind": "base", "model": asdict(model), "corpus": corpus}
        base = Stage(id="base", kind="base", key=_hash([__version__, base_spec]), deps=(),
                     spec=base_spec, arms=tuple(a.name for a in recipe.arms))
        stages.append(base)
        base_deps = ("base",)
        model_spec = {"stage": "base", "key": base.key,
                      "trust_remote_code": model.trust_remote_code}
    elif model.source == "hub":
        model_spec = {"hub": model.hub, "revision": model.revision,
                      "trust_remote_code": model.trust_remote_code}
    else:
        model_spec = {"path": model.path, "trust_remote_code": model.trust_remote_code,
                      "config": _file_fingerprint(str(Path(model.path) / "config.json"))}

    for seed in recipe.seeds:
        intermediate_of: dict[str, Stage] = {}
        for arm in recipe.arms:
            if not arm.intermediate:
                continue
            spec = {
                "kind": "intermediate",
                "model": model_spec,
                "tasks": [_task_spec(t, recipe.tasks[t]) for t in arm.intermediate],
                "mlm": _mlm_spec(arm),
                "hparams": asdict(recipe.task_hparams("intermediate", arm.intermediate)),
                "backend": _backend_spec(recipe, arm.backend),
                "world_size": launch.world_size,
                "seed": seed,
            }
            key = _hash([__version__, spec])
            existing = next((s for s in stages if s.key == key), None)
            if existing is not None:
                existing.arms += (arm.name,)
                intermediate_of[arm.name] = existing
                continue
            what = "+".join(arm.intermediate) + (f"+mlm{arm.mlm.ratio:g}" if arm.mlm else "")
            stage_id = f"intermediate/{what}/{arm.backend}/seed{seed}"
            if stage_id in {s.id for s in stages}:  # same tasks, other settings (another corpus)
                stage_id = f"intermediate/{what}-{key[:8]}/{arm.backend}/seed{seed}"
            stage = Stage(id=stage_id, kind="intermediate", key=key, deps=base_deps, spec=spec,
                          arms=(arm.name,), seed=seed, task=what)
            stages.append(stage)
            intermediate_of[arm.name] = stage
        for arm in recipe.arms:
            for task in recipe.targets:
                inter = intermediate_of.get(arm.name)
                init = {"stage": inter.id, "key": inter.key,
                        "trust_remote_code": model.trust_remote_code} if inter else model_spec
                deps = (inter.id,) if inter else base_deps
                spec = {
                    "kind": "target",
                    "model": init,
                    "task": _task_spec(task, recipe.tasks[task]),
                    "hparams": asdict(recipe.task_hparams("target", (task,))),
                    "backend": _backend_spec(recipe, arm.target_backend),
                    "world_size": launch.world_size,
                    "seed": seed,
                }
                stages.append(Stage(id=f"target/{arm.name}/{task}/seed{seed}", kind="target",
                                    key=_hash([__version__, spec]), deps=deps, spec=spec,
                                    arms=(arm.name,), seed=seed, task=task))
    return Plan(recipe=recipe, stages=stages, output_dir=output_dir, cache_dir=cache_dir,
                launch=launch)


def unset_variables(stage: Stage) -> list[str]:
    """Environment variables a stage's data paths name that are unset now."""
    from .recipe import unset_paths

    found = []
    for task in stage.spec.get("tasks") or ([stage.spec["task"]] if "task" in stage.spec else []):
        for _, variable in unset_paths(task["settings"]):
            if variable not in found:
                found.append(variable)
    return found


def plan_data(plan: Plan, slots: int = 1) -> dict[str, Any]:
    """The plan as data (``plan --json``): each stage with its key, state, command and
    cost estimate, and the summary."""
    from .cost import plan_costs, summary

    done = {s.id for s in plan.stages if plan.is_done(s)}
    costs = {c.stage: c for c in plan_costs(plan, done)}
    stages = []
    for stage in plan.stages:
        cost = costs[stage.id]
        stages.append({
            "id": stage.id, "kind": stage.kind, "key": stage.key, "arms": list(stage.arms),
            "seed": stage.seed, "task": stage.task, "deps": list(stage.deps),
            "state": "cached" if stage.id in done else "pending",
            "needs_unset": unset_variables(stage), "dir": str(plan.stage_dir(stage)),
            "command": plan.command(stage), "train_examples": cost.examples,
            "train_tokens_at_most": cost.tokens, "estimate_s": cost.seconds,
            "estimate_source": cost.source})
    return {"recipe": plan.recipe.name, "output_dir": str(plan.output_dir),
            "cache_dir": str(plan.cache_dir), "launcher": plan.launch.launcher,
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
    lines = [f"recipe {plan.recipe.name}: {len(plan.stages)} stages; "
             f"results in {plan.output_dir}, stage cache in {plan.cache_dir}; "
             f"launcher {plan.launch.launcher}"]
    lines.append("stages by kind: " + ", ".join(f"{n} {k}" for k, n in summary["by_kind"].items())
                 + "; by arm: " + ", ".join(f"{a} {n}" for a, n in summary["by_arm"].items())
                 + "; by task: " + ", ".join(f"{t} {n}" for t, n in summary["by_task"].items()))
    unknown = summary["unknown_examples"]
    lines.append(f"training: {summary['train_examples']:,} examples, at most "
                 f"{summary['train_tokens_at_most']:,} tokens (examples x max_length)"
                 + (f"; unknown for {len(unknown)} stage(s)" if unknown else ""))
    sources = summary["estimate_sources"]
    how = ", ".join(f"{n} {what}" for what, n in sources.items())
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
        lines.append(f"{stage.id}  key {stage.key[:12]}  {entry['state']}  arms "
                     f"{', '.join(stage.arms)}{after}{estimate}{unset}")
        lines.append(f"  $ {shlex.join(plan.command(stage))}")
    return "\n".join(lines)
