"""Which English rows pick checkpoints: a seeded sample, the same for every arm and seed,
and never a row any stage of the study is tested on.

* SQuAD v1.1's dev set holds XQuAD's 1190 questions (XQuAD translated 240 of its
  paragraphs and kept their ids, ``xquad_ids.txt``): a stage that selects on SQuAD dev
  (SQuAD as an intermediate task, or the target of XQuAD and MLQA) leaves them out, so
  that no checkpoint is chosen on a question later scored in translation.
* TyDiQA-GoldP is tested on its validation split, English included: its selection rows
  are held out of the English training rows instead (``TRAIN_HOLDOUT``, seeded), and
  training leaves them out.
* A target stage also leaves out any row whose id its own test sets hold (a local copy of
  SQuAD dev next to XQuAD's files, for instance).
"""

from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path

SELECTION_SEED = 0  # one sample for the whole study: every arm and seed selects on the same rows
TRAIN_HOLDOUT = 500  # TyDiQA: English training rows held out for selection (at most a fifth)


@lru_cache(maxsize=1)
def xquad_ids() -> frozenset[str]:
    """The ids of XQuAD's 1190 questions (those of the SQuAD v1.1 dev questions it translated)."""
    text = (Path(__file__).with_name("xquad_ids.txt")).read_text(encoding="utf-8")
    return frozenset(line for line in text.split() if line)


def sample(rows: list[dict], n: int, exclude: frozenset[str] | set[str] = frozenset()) -> list[dict]:
    """``n`` rows drawn with ``SELECTION_SEED`` from those whose id is not in ``exclude``
    (all of them when there are no more), in their original order."""
    kept = [row for row in rows if row["id"] not in exclude]
    if n <= 0 or n >= len(kept):
        return kept
    chosen = sorted(random.Random(SELECTION_SEED).sample(range(len(kept)), n))
    return [kept[i] for i in chosen]


def holdout(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out selection rows): ``TRAIN_HOLDOUT`` rows (at most a fifth)
    drawn with ``SELECTION_SEED``."""
    size = min(TRAIN_HOLDOUT, len(rows) // 5)
    held = set(random.Random(SELECTION_SEED).sample(range(len(rows)), size))
    return ([row for i, row in enumerate(rows) if i not in held],
            [row for i, row in enumerate(rows) if i in held])
