"""``--set KEY=VALUE``: recipe values replaced from the command line, before validation.

``KEY`` is a dotted path into the recipe (``model.path``, ``hparams.target.epochs``,
``tasks.xquad.eval_files``, ``arms.lora.backend``: an arm by its name; ``arms`` itself,
a TOML array of inline tables, replaces every arm); ``VALUE`` is a TOML
value (``3``, ``5e-5``, ``["en", "de"]``, ``true``, ``"text"``), or, where it does not read
as one, the text itself (a path, a hub id). Every override is then checked like the
recipe's own text, and the resolved recipe is what ``run.json`` and the stage keys record.

Two rules make overrides say what people mean:
* a relative path given for a path setting starts from the working directory (the
  recipe's own relative paths start from the recipe's folder);
* giving the model's ``hub``, ``path`` or ``config`` replaces the recipe's source of the
  model (``--set model.path=DIR`` runs a hub recipe on a local copy).
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from xstilts_tui.recipe.schema import RecipeError

PATH_KEYS = frozenset({"path", "train_file", "validation_file", "eval_files", "data_dir",
                       "config_file", "hostfile"})
MODEL_SOURCES = ("hub", "path", "config")


def parse_setting(text: str) -> tuple[tuple[str, ...], Any]:
    """``KEY=VALUE`` as (the key's parts, the value)."""
    key, sep, raw = text.partition("=")
    parts = tuple(p.strip() for p in key.split("."))
    if not sep or not all(parts):
        raise RecipeError(f"--set {text!r}: expected KEY=VALUE, e.g. model.path=/models/e5 "
                          "or hparams.target.epochs=2")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: a path, a hub id
    return parts, value


def _arm_table(data: dict[str, Any], name: str, text: str) -> dict[str, Any]:
    arms = data.get("arms")
    for arm in arms if isinstance(arms, list) else []:
        if isinstance(arm, dict) and arm.get("name") == name:
            return arm
    names = [a.get("name") for a in arms if isinstance(a, dict)] if isinstance(arms, list) else []
    raise RecipeError(f"--set {text}: no arm named {name!r} (arms: {', '.join(map(str, names)) or 'none'})")


def _table_at(data: dict[str, Any], parts: tuple[str, ...], text: str) -> dict[str, Any]:
    """The table the last part of the key goes into (made where missing)."""
    node, rest = data, list(parts)
    if rest[0] == "arms" and len(rest) > 1:  # arms.NAME.FIELD; plain "arms" replaces them all
        if len(rest) < 3:
            raise RecipeError(f"--set {text}: name an arm and a field, e.g. arms.lora.backend=peft")
        node, rest = _arm_table(data, rest[1], text), rest[2:]
    for i, part in enumerate(rest[:-1]):
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            where = ".".join(parts[: len(parts) - len(rest) + i + 1])
            raise RecipeError(f"--set {text}: {where} is a value, not a table")
        node = nxt
    return node


def apply_settings(data: dict[str, Any], settings: tuple[str, ...] | list[str],
                   cwd: Path | None = None) -> dict[str, Any]:
    """The recipe's parsed TOML with each ``KEY=VALUE`` in place (a copy)."""
    data = copy.deepcopy(data)
    cwd = cwd or Path.cwd()
    for text in settings:
        parts, value = parse_setting(text)
        last = parts[-1]
        if isinstance(value, str) and last in PATH_KEYS:
            expanded = Path(value).expanduser()
            if not expanded.is_absolute() and not value.startswith("$"):
                value = str((cwd / expanded).resolve())
        table = _table_at(data, parts, text)
        if parts[:-1] == ("model",) and last in MODEL_SOURCES:
            for other in MODEL_SOURCES + ("revision",):
                if other != last:
                    table.pop(other, None)
        table[last] = value
    return data

