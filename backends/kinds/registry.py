"""Every task kind the workers know, by the name ``xstilts_tui.tasks`` gives it."""

from __future__ import annotations

from xstilts_tui.tasks.registry import (EXTRACTIVE_QA, MULTIPLE_CHOICE, PAIR_CLASSIFICATION,
                                        SENTENCE_CLASSIFICATION, TOKEN_TAGGING)

from .base import Kind
from .classification import Classification, MultipleChoice
from .qa import ExtractiveQA
from .tagging import Tagging

KINDS: dict[str, Kind] = {
    EXTRACTIVE_QA: ExtractiveQA(),
    SENTENCE_CLASSIFICATION: Classification(),
    PAIR_CLASSIFICATION: Classification(),
    MULTIPLE_CHOICE: MultipleChoice(),
    TOKEN_TAGGING: Tagging(),
}
