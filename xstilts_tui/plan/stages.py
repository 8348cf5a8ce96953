"""From a recipe to a plan: stages with content-hash cache keys and launch commands.

* ``base``: only for a model built from a configuration: trains the tokenizer and saves
  the freshly initialised model, so that every later stage loads it with
  ``from_pretrained`` like any hub or local model.
* ``intermediate``: one per (intermediate task, backend, seed); arms that ask for the same
  one share it, so it is never trained twice.
* ``target``: one per (arm, target task, seed): fine-tunes on the task's English training
  data with a fresh head, then evaluates in every language.

A stage's key hashes everything that determines its output: its recipe spec, its parents'
keys, and what ``provenance`` finds: the code the worker runs, the libraries' versions,
the weights' and the data's identities, the resolved precision, the device kind and a CPU
stage's thread count. Its *identity* hashes the spec alone (parents by id): a stage whose
key is new is matched, by identity, with the last one done in the cache, and the two
components' differences say why it runs again (``stage_index``).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xstilts_tui.protocol import provenance
from xstilts_tui.plan.identity import corpus_identity, data_identity, local_file, weights_identity
from xstilts_tui.protocol.provenance import Runtime, digest
from xstilts_tui.recipe.schema import Launch, Recipe, TaskSettings
from xstilts_tui.tasks.registry import RETRIEVAL, TASKS

KEY_VERSION = "stage-key/2"


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
    identity: str = ""  # the spec alone, parents by id: the same stage across changes
    provenance: dict[str, Any] = field(default_factory=dict)  # the key's other components
    reused: dict[str, Any] | None = None  # a finished stage kept across a change (--reuse)

    def dir(self, cache_dir: Path) -> Path:
        return stage_folder(cache_dir, self.kind, self.key)


def stage_folder(cache_dir: Path, kind: str, key: str) -> Path:
    """Where a stage of this kind and key lives in a stage cache."""
    return cache_dir / f"{kind}-{key[:20]}"


@dataclass
class Plan:
    recipe: Recipe
    stages: list[Stage]
    output_dir: Path
    cache_dir: Path
    launch: Launch = Launch()
    runtime: Runtime = Runtime()
    made_by: dict[str, Any] = field(default_factory=dict)
    by_id: dict[str, Stage] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = {s.id: s for s in self.stages}

    def stage_dir(self, stage: Stage) -> Path:
        return stage.dir(self.cache_dir)

    def is_done(self, stage: Stage) -> bool:
        """Done, and everything its DONE marker records is intact."""
        from xstilts_tui.protocol.stage_cache import verify_done

        return verify_done(self.stage_dir(stage)) is None

    def states(self) -> dict[str, tuple[str, str]]:
        """Each stage's state and the words that go with it: ``cached`` (its key is
        finished in the cache), ``reused`` (a finished stage kept across a change:
        from which version, and what differs) or ``pending`` (and why it runs: new, or
        what differs from the last finished stage of the same identity)."""
        from xstilts_tui.plan.index import CacheIndex, why

        index = None
        out: dict[str, tuple[str, str]] = {}
        for stage in self.stages:
            if self.is_done(stage):
                out[stage.id] = ("reused", f"reused from {stage.reused['from']}: "
                                 + "; ".join(stage.reused["differs"])) if stage.reused else ("cached", "")
                continue
            index = index or CacheIndex(self.cache_dir)
            out[stage.id] = ("pending", why(index, stage.identity, stage.key, stage.provenance))
        return out

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
        worker = ["-m", "xstilts_tui.compute.worker", spec]
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
            argv += ["--no_local_rank", "--module", "xstilts_tui.compute.worker", spec]
        return [*launch.wrapper, *argv]

    def worker_spec(self, stage: Stage) -> dict[str, Any]:
        """What the worker reads: the stage's spec plus where its inputs and outputs live."""
        return {
            **stage.spec,
            "id": stage.id,
            "key": stage.key,
            "identity": stage.identity,
            "provenance": stage.provenance,
            "made_by": self.made_by,
            "stage_dir": str(self.stage_dir(stage)),
            "inputs": {dep: str(self.stage_dir(self.by_id[dep])) for dep in stage.deps},
        }


def _task_spec(name: str, settings: TaskSettings) -> dict[str, Any]:
    spec = TASKS[name]
    return {"name": name, "kind": spec.kind, "metric": spec.metric, "settings": asdict(settings)}


def _backend_spec(recipe: Recipe, name: str) -> dict[str, Any]:
    profile = recipe.backend(name)
    return {"name": profile.name, "kind": profile.kind, "options": dict(profile.options)}


def _selects(hparams: dict[str, Any]) -> bool:
    from xstilts_tui.recipe.inputs import _selects as selects

    return selects(hparams)


class _Components:
    """What ``provenance`` finds for a plan's stages, each found once."""

    def __init__(self, recipe: Recipe, runtime: Runtime, online: bool):
        self.recipe = recipe
        self.runtime = runtime
        self.online = online
        self.code = provenance.code_fingerprint()
        self._data: dict[str, Any] = {}
        self._weights: dict[str, Any] = {}
        self._libraries: dict[tuple, dict[str, Any]] = {}

    def data(self, task: dict[str, Any], kind: str, hparams: dict[str, Any]) -> dict[str, Any]:
        key = digest([task, kind, _selects(hparams)])
        if key not in self._data:
            self._data[key] = data_identity(task, kind, _selects(hparams))
        return self._data[key]

    def weights(self, model: dict[str, Any]) -> dict[str, Any]:
        key = digest(model)
        if key not in self._weights:
            self._weights[key] = weights_identity(model, self.online)
        return self._weights[key]

    def of(self, spec: dict[str, Any], parents: dict[str, str]) -> dict[str, Any]:
        """The key's components of a training or target stage."""
        tasks = spec["tasks"] if spec["kind"] == "intermediate" else [spec["task"]]
        data = {t["name"]: self.data(t, spec["kind"], spec["hparams"]) for t in tasks}
        if spec.get("mlm"):
            data["mlm corpus"] = corpus_identity(spec["mlm"]["corpus"])
        if spec["backend"]["options"].get("config_file"):
            data["backend config"] = local_file(spec["backend"]["options"]["config_file"])
        retrieval = spec["kind"] == "target" and TASKS[spec["task"]["name"]].kind == RETRIEVAL
        # A retrieval stage trains nothing: it encodes in fp32 whatever the recipe asks.
        runtime = self.runtime.of_stage("fp32" if retrieval else spec["hparams"]["precision"])
        return {"code": self.code,
                "libraries": self.libraries(spec["backend"]["kind"], tuple(t["kind"] for t in tasks)),
                "weights": self.weights(spec["model"]) if not parents else {},
                "data": data, "runtime": runtime, "parents": parents}

    def libraries(self, backend_kind: str = "torch", task_kinds: tuple[str, ...] = ()) -> dict[str, Any]:
        """``provenance.library_versions``, read once per plan (reading a version parses
        the package's metadata)."""
        key = (backend_kind, task_kinds)
        if key not in self._libraries:
            self._libraries[key] = provenance.library_versions(backend_kind, task_kinds)
        return self._libraries[key]

    def of_base(self, corpus: list[str]) -> dict[str, Any]:
        return {"code": self.code,
                "libraries": self.libraries(),
                "data": {"tokenizer corpus": corpus_identity(corpus)}}


def _keyed(stage_id: str, kind: str, spec: dict[str, Any], components: dict[str, Any],
           **fields: Any) -> Stage:
    """A stage with its key (spec and components) and identity (the spec, parents by id)."""
    anonymous = {**spec, "model": {k: v for k, v in spec["model"].items() if k != "key"}} \
        if isinstance(spec.get("model"), dict) else spec
    return Stage(id=stage_id, kind=kind, key=digest([KEY_VERSION, spec, components]),
                 identity=digest(["stage-identity/1", anonymous]), spec=spec,
                 provenance=components, **fields)


def _mlm_spec(arm) -> dict[str, Any] | None:
    return None if arm.mlm is None else {"ratio": arm.mlm.ratio, "corpus": list(arm.mlm.corpus)}


class _Builder:
    """Stages in plan order, keyed as they are made; a finished stage kept across a
    change the user allows (``reuse``) lends its key to the stages built on it."""

    def __init__(self, recipe: Recipe, launch: Launch, components: _Components,
                 cache_dir: Path, reuse: frozenset[str]):
        self.recipe, self.launch, self.components = recipe, launch, components
        self.cache_dir, self.reuse = cache_dir, reuse
        self.stages: list[Stage] = []
        self._ids: set[str] = set()
        self._by_identity: dict[str, Stage] = {}  # one stage a computation: arms share it
        self._index = None

    def add(self, stage: Stage) -> Stage:
        if self.reuse:
            from xstilts_tui.plan.index import CacheIndex, reusable

            if self._index is None:
                self._index = CacheIndex(self.cache_dir)
            found = reusable(self._index, stage, self.reuse)
            if found is not None:
                stage.key, stage.reused = found
        self.stages.append(stage)
        self._ids.add(stage.id)
        self._by_identity.setdefault(stage.identity, stage)
        return stage

    def model_spec(self) -> tuple[dict[str, Any], tuple[str, ...]]:
        model = self.recipe.model
        if model.source == "config":
            base_spec = {"kind": "base", "model": asdict(model), "corpus": list(model.tokenizer.corpus)}
            base = self.add(_keyed("base", "base", base_spec,
                                   self.components.of_base(list(model.tokenizer.corpus)),
                                   deps=(), arms=tuple(a.name for a in self.recipe.arms)))
            return {"stage": "base", "key": base.key, "trust_remote_code": model.trust_remote_code}, ("base",)
        if model.source == "hub":
            return {"hub": model.hub, "revision": model.revision,
                    "trust_remote_code": model.trust_remote_code}, ()
        return {"path": model.path, "trust_remote_code": model.trust_remote_code}, ()

    def intermediates(self, seed: int, model_spec: dict[str, Any],
                      base_deps: tuple[str, ...]) -> dict[str, Stage]:
        """One stage per distinct intermediate training of a seed; arms asking for the
        same one share it."""
        recipe, of_arm = self.recipe, {}
        for arm in recipe.arms:
            if not arm.intermediate:
                continue
            spec = {"kind": "intermediate", "model": model_spec,
                    "tasks": [_task_spec(t, arm.task_settings(t, recipe.tasks)) for t in arm.intermediate],
                    "mlm": _mlm_spec(arm),
                    "hparams": asdict(recipe.task_hparams("intermediate", arm.intermediate)),
                    "backend": _backend_spec(recipe, arm.backend),
                    "world_size": self.launch.world_size, "seed": seed}
            parents = {d: model_spec["key"] for d in base_deps}
            stage = _keyed("", "intermediate", spec, self.components.of(spec, parents),
                           deps=base_deps, arms=(arm.name,), seed=seed)
            existing = self._by_identity.get(stage.identity)
            if existing is not None:
                existing.arms += (arm.name,)
                of_arm[arm.name] = existing
                continue
            what = "+".join(arm.intermediate) + (f"+mlm{arm.mlm.ratio:g}" if arm.mlm else "")
            if arm.tasks:  # the arm's own task settings: named after it
                what += f"@{arm.name}"
            stage.id = f"intermediate/{what}/{arm.backend}/seed{seed}"
            if stage.id in self._ids:  # same tasks, other settings (another corpus)
                stage.id = f"intermediate/{what}-{stage.key[:8]}/{arm.backend}/seed{seed}"
            stage.task = what
            of_arm[arm.name] = self.add(stage)
        return of_arm

    def targets(self, seed: int, model_spec: dict[str, Any], base_deps: tuple[str, ...],
                of_arm: dict[str, Stage]) -> None:
        recipe = self.recipe
        for arm in recipe.arms:
            for task in recipe.targets:
                inter = of_arm.get(arm.name)
                init = {"stage": inter.id, "key": inter.key,
                        "trust_remote_code": recipe.model.trust_remote_code} if inter else model_spec
                deps = (inter.id,) if inter else base_deps
                spec = {"kind": "target", "model": init,
                        "task": _task_spec(task, recipe.tasks[task]),
                        "hparams": asdict(recipe.task_hparams("target", (task,))),
                        "backend": _backend_spec(recipe, arm.target_backend),
                        "world_size": self.launch.world_size, "seed": seed}
                parents = {d: init["key"] for d in deps}
                self.add(_keyed(f"target/{arm.name}/{task}/seed{seed}", "target", spec,
                                self.components.of(spec, parents), deps=deps, arms=(arm.name,),
                                seed=seed, task=task))


def build_plan(recipe: Recipe, output_dir: Path | None = None,
               cache_dir: Path | None = None, launch: Launch | None = None,
               runtime: Runtime | None = None, reuse: frozenset[str] | set[str] = frozenset(),
               online: bool = False) -> Plan:
    """The stages of a recipe. ``launch`` (``--launch``) replaces the recipe's own; the
    number of processes is part of a training stage's key, since it sets the global batch.
    ``runtime``: where the stages will compute (default: one stage at a time here).
    ``reuse``: kinds of change (``code``, ``libraries``) across which a finished stage of
    the same identity is kept instead of run again. ``online``: a hub model not cached here
    is keyed by the commit the hub names (the plan and run commands; the data commands
    ask no server)."""
    launch = launch or recipe.launch
    output_dir = Path(output_dir or recipe.output_dir or Path("runs") / recipe.name).resolve()
    cache_dir = Path(cache_dir or os.environ.get(CACHE_ENV) or output_dir.parent / "stage-cache").resolve()
    runtime = runtime or provenance.default_runtime()
    builder = _Builder(recipe, launch, _Components(recipe, runtime, online), cache_dir, frozenset(reuse))
    model_spec, base_deps = builder.model_spec()
    for seed in recipe.seeds:
        of_arm = builder.intermediates(seed, model_spec, base_deps)
        builder.targets(seed, model_spec, base_deps, of_arm)
    made_by = {"version": provenance.code_version(), "git": provenance.git_state(),
               "hardware": runtime.hardware()}
    return Plan(recipe=recipe, stages=builder.stages, output_dir=output_dir, cache_dir=cache_dir,
                launch=launch, runtime=runtime, made_by=made_by)
