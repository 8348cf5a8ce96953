"""Rows of every task kind in one shape, from a source row in the hub's schema (pure
Python: the workers' loaders and ``xstilts-tui score`` share it).

* classification: ``{"id", "text", "pair" (None for single sentences), "label"}``;
* multiple choice: ``{"id", "text", "choices", "label"}``;
* tagging: ``{"id", "tokens", "tags"}`` with tags as strings.
"""

from __future__ import annotations

from typing import Any

from xstilts_tui.tasks.registry import (
    MULTIPLE_CHOICE,
    PAIR_CLASSIFICATION,
    SENTENCE_CLASSIFICATION,
    TOKEN_TAGGING,
    Columns,
    TaskSpec,
)


def _field(row: dict[str, Any], name: str) -> Any:
    """A column, or a nested field named with a dot ("choices.text")."""
    value: Any = row
    for part in name.split("."):
        value = value[part]
    return value


def _joined(row: dict[str, Any], names: tuple[str, ...]) -> str:
    return " ".join(str(_field(row, n)).strip() for n in names)


def _label_index(value: Any, spec: TaskSpec) -> int | None:
    """An integer label from an integer, a digit string or a label name; None: unlabelled."""
    if isinstance(value, bool):
        raise ValueError(f"label {value!r} is not a class index")
    if isinstance(value, int):
        return value if value >= 0 else None
    text = str(value).strip()
    if not text:
        return None
    if text.lstrip("-").isdigit():
        return int(text) if int(text) >= 0 else None
    if spec.labels and text in spec.labels:
        return spec.labels.index(text)
    raise ValueError(f"label {value!r} is neither a class index nor one of "
                     f"{', '.join(spec.labels or ())}")


def normalize_row(spec: TaskSpec, row: dict[str, Any], index: int,
                  tag_names: list[str] | None = None) -> dict[str, Any] | None:
    """One source row in the kind's shape (None: a row without a gold label)."""
    cols: Columns = spec.columns
    row_id = str(next((row[k] for k in ("id", "idx", "uid", "ind") if k in row), index))
    if spec.kind in (SENTENCE_CLASSIFICATION, PAIR_CLASSIFICATION):
        label = _label_index(row[cols.label], spec)
        if label is None:
            return None
        if spec.labels and label >= len(spec.labels):
            raise ValueError(f"label {label} out of range for {len(spec.labels)} classes")
        return {"id": row_id, "text": _joined(row, cols.text),
                "pair": _joined(row, cols.pair) if cols.pair else None, "label": label}
    if spec.kind == MULTIPLE_CHOICE:
        if isinstance(cols.choices, str):
            choices = [str(c) for c in _field(row, cols.choices)]
        else:
            choices = [str(row[c]) for c in cols.choices]
        raw = row[cols.label]
        if cols.label_keys:
            keys = [str(k) for k in _field(row, cols.label_keys)]
            if str(raw).strip() == "":
                return None
            if str(raw) not in keys:
                raise ValueError(f"answer key {raw!r} is not one of the choices' keys {keys}")
            label = keys.index(str(raw))
        else:
            label = _label_index(raw, spec)
            if label is None:
                return None
        if not 0 <= label < len(choices):
            raise ValueError(f"label {label} out of range for {len(choices)} choices")
        return {"id": row_id, "text": _joined(row, cols.text), "choices": choices, "label": label}
    if spec.kind == TOKEN_TAGGING:
        tokens = [str(t) for t in row[cols.tokens]]
        tags = [tag_names[t] if tag_names and isinstance(t, int) else str(t) for t in row[cols.tags]]
        if len(tokens) != len(tags):
            raise ValueError(f"{len(tokens)} tokens but {len(tags)} tags")
        return {"id": row_id, "tokens": tokens, "tags": tags} if tokens else None
    raise ValueError(f"no row shape for task kind {spec.kind}")


def expected_columns(spec: TaskSpec) -> str:
    cols = spec.columns
    if spec.kind == TOKEN_TAGGING:
        return f"{cols.tokens}, {cols.tags}"
    names = list(cols.text) + list(cols.pair)
    if spec.kind == MULTIPLE_CHOICE:
        names += [cols.choices] if isinstance(cols.choices, str) else list(cols.choices)
    names.append(cols.label)
    return ", ".join(names)


