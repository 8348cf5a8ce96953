"""What a validated recipe is: typed, frozen objects (the model, arms, tasks' settings,
backend profiles, how stages launch, SLURM and tracking settings) and the names a recipe
may use. ``parse`` builds them from TOML; everything after it reads only these."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from xstilts_tui.protocol.backend_options import BACKEND_KINDS, defaults
from xstilts_tui.protocol.hparams import HParams

# Training backend kinds known to the workers (``xstilts_tui.compute.engines.registry`` lists the same names);
# each is also a backend a recipe may name with its default options.
BACKENDS = BACKEND_KINDS
LAUNCHERS = ("python", "torchrun", "deepspeed")
LANGUAGE_SAMPLING = ("proportional", "uniform", "temperature")

# The XLM-R configuration fields a built-from-config model may set, with their types.
MODEL_CONFIG_FIELDS = {
    "hidden_size": int, "num_hidden_layers": int, "num_attention_heads": int,
    "intermediate_size": int, "max_position_embeddings": int, "hidden_act": str,
    "hidden_dropout_prob": float, "attention_probs_dropout_prob": float,
    "initializer_range": float, "layer_norm_eps": float,
}
# transformers' activation names (ACT2FN) a model built from a configuration may use.
ACTIVATIONS = {"gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "gelu_python", "quick_gelu",
               "relu", "relu6", "leaky_relu", "silu", "swish", "mish", "tanh", "sigmoid", "linear"}
MAX_VOCAB = 1_000_000  # a tokenizer trained on the spot: beyond this, a typo
# A hub model id: "name" or "owner/name".
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")

TOKENIZER_CORPORA = {"demo": "the generated text of the demo tasks, in all their languages"}


# A recipe's name names its output folder: no separators, no leading dot.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class RecipeError(ValueError):
    """A recipe problem, already phrased for people: ``FILE: FIELD: what is wrong``."""



TRACKERS = ("mlflow", "wandb", "tensorboard")
WANDB_MODES = ("online", "offline", "disabled")


@dataclass(frozen=True)
class TrackingSettings:
    use: tuple[str, ...] = ()        # tracker names; empty: no tracking
    experiment: str | None = None    # MLflow experiment, W&B project (default: the recipe's name)
    dir: str | None = None           # where file-based trackers write (default: <output>/tracking)
    mlflow_uri: str | None = None    # default: $MLFLOW_TRACKING_URI, else a file store in dir
    wandb_mode: str | None = None    # default: W&B's own ($WANDB_MODE, else online)
    wandb_entity: str | None = None


@dataclass(frozen=True)
class SlurmSettings:
    """The ``[slurm]`` section: what each stage's job asks for."""

    partition: str = ""
    gpus_per_node: int = 0  # 0: [launch]'s GPUs per stage
    cpus_per_task: int = 8
    mem_gb: int = 0  # 0: the partition's default
    time_min: int = 24 * 60
    account: str = ""
    sbatch: dict[str, Any] = field(default_factory=dict)  # other sbatch options, e.g. qos


@dataclass(frozen=True)
class TokenizerSpec:
    vocab_size: int = 4000
    corpus: tuple[str, ...] = ("demo",)  # "demo" or text files, one sentence a line


@dataclass(frozen=True)
class ModelSpec:
    """Exactly one of ``hub``, ``path`` or ``config`` says where the encoder comes from."""

    hub: str | None = None
    revision: str | None = None
    path: str | None = None
    config: dict[str, Any] | None = None
    tokenizer: TokenizerSpec | None = None
    init_seed: int = 0
    trust_remote_code: bool = False

    @property
    def source(self) -> str:
        return "hub" if self.hub else "path" if self.path else "config"


@dataclass(frozen=True)
class MLMSpec:
    """Continued multilingual masked-LM batches mixed into intermediate training."""

    ratio: float  # the share of micro-batches that are masked-LM batches
    corpus: tuple[str, ...] = ("demo",)  # "demo" or text files, one sentence a line


@dataclass(frozen=True)
class BackendProfile:
    """A backend as the recipe names it: a kind and its options (defaults filled in)."""

    name: str
    kind: str
    options: dict[str, Any]


MAX_SLOTS = 1024  # stages at once, or GPUs a stage: more is a typo, not a machine


@dataclass(frozen=True)
class Launch:
    """How each stage's worker is started: one process, torchrun, or the deepspeed launcher."""

    launcher: str = "python"
    nproc_per_node: int = 1  # torchrun: processes per node
    nnodes: int = 1  # torchrun: nodes
    rdzv_endpoint: str = ""  # torchrun with several nodes: host:port of the rendezvous
    num_gpus: int = 0  # deepspeed launcher: GPUs per node (0: all it finds)
    hostfile: str = ""  # deepspeed launcher: "host slots=N" lines, for several nodes
    master_addr: str = ""  # deepspeed launcher with a hostfile
    master_port: int = 0  # 0: the launcher's default
    wrapper: tuple[str, ...] = ()  # put before the command, e.g. srun on a cluster
    # Stages side by side: the GPUs to share out (empty: those CUDA_VISIBLE_DEVICES or
    # nvidia-smi shows), how many each stage gets (0: its process count), and on a machine
    # without GPUs how many stages run at once, sharing the cores.
    devices: tuple[str, ...] = ()
    gpus_per_stage: int = 0
    parallel_stages: int = 1

    @property
    def stage_gpus(self) -> int:
        """GPUs one stage's slot gets: gpus_per_stage, else its process count (1 when
        the launcher finds it at run time)."""
        return self.gpus_per_stage or self.world_size or 1

    @property
    def world_size(self) -> int | None:
        """Processes a stage runs in, where the recipe fixes it (None: found at run time)."""
        if self.launcher == "python":
            return 1
        if self.launcher == "torchrun":
            return self.nproc_per_node * self.nnodes
        return self.num_gpus if self.num_gpus and not self.hostfile else None


@dataclass(frozen=True)
class Arm:
    name: str
    intermediate: tuple[str, ...] = ()
    backend: str = "torch"  # the intermediate phase's backend
    mlm: MLMSpec | None = None
    target_backend: str = "torch"
    # ``[arms.tasks.NAME]``: this arm's own settings of an intermediate task (e.g. its
    # training languages), in place of the recipe's ``[tasks.NAME]``.
    tasks: dict[str, "TaskSettings"] = field(default_factory=dict)

    def task_settings(self, name: str, recipe_tasks: dict[str, "TaskSettings"]) -> "TaskSettings":
        return self.tasks.get(name) or recipe_tasks[name]


@dataclass(frozen=True)
class TaskSettings:
    """Per-task choices: languages and where the data comes from."""

    languages: tuple[str, ...]
    train_file: str | None = None
    validation_file: str | None = None
    eval_files: str | None = None  # a path with "{lang}", one SQuAD JSON file a language
    max_train_examples: int = 0  # 0: all
    max_eval_examples: int = 0  # 0: all, per language
    generated_train_examples: int = 2000  # generated tasks only
    generated_eval_examples: int = 200
    # Training languages (translate-train where the task has it) and how batches are
    # drawn across them: proportional to their sizes, uniform, or by temperature T
    # (shares proportional to size^(1/T)).
    train_languages: tuple[str, ...] = ("en",)
    language_sampling: str = "proportional"
    sampling_temperature: float = 5.0
    data_dir: str | None = None  # retrieval tasks: the folder of their native files
    # Hyper-parameters for this task only (its target stage, or an intermediate stage
    # that trains it alone), over the phase's: [tasks.NAME.hparams].
    hparams: dict[str, Any] | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    path: str
    model: ModelSpec
    arms: tuple[Arm, ...]
    targets: tuple[str, ...]
    seeds: tuple[int, ...]
    tasks: dict[str, TaskSettings]
    hparams_intermediate: HParams
    hparams_target: HParams
    description: str = ""
    output_dir: str | None = None
    backends: dict[str, BackendProfile] | None = None
    launch: Launch = Launch()
    slurm: SlurmSettings = SlurmSettings()
    tracking: TrackingSettings = TrackingSettings()
    settings: tuple[str, ...] = ()  # the command line's --set KEY=VALUE overrides, as given

    def task_hparams(self, phase: str, tasks: tuple[str, ...]) -> HParams:
        """A stage's hyper-parameters: the phase's, with a task's own overrides when the
        stage trains that one task."""
        base = self.hparams_target if phase == "target" else self.hparams_intermediate
        if len(tasks) == 1 and self.tasks[tasks[0]].hparams:
            return HParams(**{**asdict(base), **self.tasks[tasks[0]].hparams})
        return base

    def backend(self, name: str) -> BackendProfile:
        if self.backends and name in self.backends:
            return self.backends[name]
        return BackendProfile(name=name, kind=name, options=defaults(name))

    @property
    def baseline(self) -> Arm:
        """The arm deltas are measured against: the first without intermediate tasks."""
        for arm in self.arms:
            if not arm.intermediate:
                return arm
        return self.arms[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
