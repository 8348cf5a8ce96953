"""The task table, shared by the control plane and the workers (no torch here).

A task names its kind (which head and which feature pipeline), its languages, its
metric and where its data comes from. A new task of a known kind is a new entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EXTRACTIVE_QA = "extractive_qa"
TASK_KINDS = (EXTRACTIVE_QA,)


@dataclass(frozen=True)
class HubSplit:
    """One split of a dataset on the hub, loaded with ``datasets.load_dataset``.

    ``config`` may hold ``{lang}``, filled with the evaluation language. ``id_prefix``
    keeps only the rows whose id starts with it (``{lang_name}`` is filled), for
    datasets that mix languages in one split.
    """

    path: str
    split: str
    config: str | None = None
    id_prefix: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str
    description: str
    languages: tuple[str, ...]
    metric: str
    # English training data (intermediate phase or target fine-tuning); None: none.
    train: HubSplit | None
    # English validation data, for checkpoint selection.
    validation: HubSplit | None
    # Per-language evaluation data; None: evaluated on `validation` (English only).
    evaluation: HubSplit | None
    # Generated offline by the project (demo tasks): no hub, no files.
    generated: bool = False
    lang_names: dict[str, str] = field(default_factory=dict)


_SQUAD_TRAIN = HubSplit("rajpurkar/squad", "train")
_SQUAD_VALID = HubSplit("rajpurkar/squad", "validation")

# TyDiQA-GoldP ids start with the language's English name ("finnish-...").
_TYDIQA_NAMES = {
    "en": "english", "ar": "arabic", "bn": "bengali", "fi": "finnish", "id": "indonesian",
    "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu",
}

DEMO_LANGUAGES = ("en", "es", "de", "ru", "zh")

TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec(
            name="squad",
            kind=EXTRACTIVE_QA,
            description="SQuAD v1.1, English extractive QA",
            languages=("en",),
            metric="squad_v1",
            train=_SQUAD_TRAIN,
            validation=_SQUAD_VALID,
            evaluation=None,
        ),
        TaskSpec(
            name="xquad",
            kind=EXTRACTIVE_QA,
            description="XQuAD: trained on SQuAD v1.1, zero-shot in 11 languages",
            languages=("en", "es", "de", "el", "ru", "tr", "ar", "vi", "th", "zh", "hi"),
            metric="squad_v1",
            train=_SQUAD_TRAIN,
            validation=_SQUAD_VALID,
            evaluation=HubSplit("google/xquad", "validation", config="xquad.{lang}"),
        ),
        TaskSpec(
            name="mlqa",
            kind=EXTRACTIVE_QA,
            description="MLQA: trained on SQuAD v1.1, zero-shot in 7 languages (MLQA normalisation)",
            languages=("en", "es", "de", "ar", "hi", "vi", "zh"),
            metric="mlqa",
            train=_SQUAD_TRAIN,
            validation=_SQUAD_VALID,
            evaluation=HubSplit("facebook/mlqa", "test", config="mlqa.{lang}.{lang}"),
        ),
        TaskSpec(
            name="tydiqa",
            kind=EXTRACTIVE_QA,
            description="TyDiQA-GoldP: trained on its English part, zero-shot in 9 languages",
            languages=("en", "ar", "bn", "fi", "id", "ko", "ru", "sw", "te"),
            metric="squad_v1",
            train=HubSplit("google-research-datasets/tydiqa", "train", config="secondary_task",
                           id_prefix="english-"),
            validation=HubSplit("google-research-datasets/tydiqa", "validation",
                                config="secondary_task", id_prefix="english-"),
            evaluation=HubSplit("google-research-datasets/tydiqa", "validation",
                                config="secondary_task", id_prefix="{lang_name}-"),
            lang_names=_TYDIQA_NAMES,
        ),
        TaskSpec(
            name="demo-qa",
            kind=EXTRACTIVE_QA,
            description="offline demo: generated biographies, English training, 5 languages",
            languages=DEMO_LANGUAGES,
            metric="squad_v1",
            train=None,
            validation=None,
            evaluation=None,
            generated=True,
        ),
        TaskSpec(
            name="demo-jobs",
            kind=EXTRACTIVE_QA,
            description="offline demo: generated English QA about jobs and employers (intermediate)",
            languages=("en",),
            metric="squad_v1",
            train=None,
            validation=None,
            evaluation=None,
            generated=True,
        ),
    )
}


def task_names() -> list[str]:
    return sorted(TASKS)
