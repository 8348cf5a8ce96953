"""Reading one TOML table field by field: each value checked for its type and range, an
unknown key answered with the closest known one, every problem one ``RecipeError`` line
naming the file and the field."""

from __future__ import annotations

import difflib
import math
from typing import Any

from xstilts_tui.recipe.schema import RecipeError


def type_name(t: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            list: "a list", dict: "a table"}.get(t, str(t))


class Table:
    """Reads one TOML table, field by field, and complains in one line."""

    def __init__(self, file: str, where: str, data: Any):
        self.file = file
        self.where = where
        if not isinstance(data, dict):
            self.fail("", f"expected a table, got {type(data).__name__}")
        self.data = dict(data)
        self.seen: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, message: str) -> None:
        field_name = self.name(key) if key else (self.where or "recipe")
        raise RecipeError(f"{self.file}: {field_name}: {message}")

    def get(self, key: str, kind: type, default: Any = None, required: bool = False,
            aliases: tuple[str, ...] = ()) -> Any:
        """``key``'s value, checked; ``aliases`` are other names of the same setting (the
        Hugging Face Trainer's or PEFT's), reported under the name the recipe used."""
        self.seen.add(key)
        given = [a for a in aliases if a in self.data]
        for alias in given:
            self.seen.add(alias)
        if len(given) + (key in self.data) > 1:
            names = [n for n in (key, *aliases) if n in self.data]
            self.fail(names[1], f"the same setting as {names[0]!r}; give one of them")
        if given:
            key = given[0]
        if key not in self.data:
            if required:
                self.fail(key, f"missing; expected {type_name(kind)}")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(key, f"expected {type_name(kind)}, got {value!r}")
        if kind is float and not math.isfinite(value):
            self.fail(key, f"must be a finite number, got {value!r}")
        if kind is int and abs(value) >= 2**63:
            self.fail(key, f"must be below 2**63, got {value!r}")
        return value

    def get_str_list(self, key: str, default: tuple[str, ...] = (), required: bool = False):
        value = self.get(key, list, None, required)
        if value is None:
            return default
        for item in value:
            if not isinstance(item, str):
                self.fail(key, f"expected a list of strings, got {item!r} in it")
        return tuple(value)

    def finish(self, known: list[str] | None = None) -> None:
        unknown = [k for k in self.data if k not in self.seen]
        if unknown:
            key = unknown[0]
            choices = sorted(known if known is not None else self.seen)
            close = difflib.get_close_matches(key, choices, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(choices)}"
            self.fail(key, f"unknown key; {hint}")


def choice_error(kind: str, value: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(value, choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {kind} {value!r}{hint}; expected one of: {', '.join(choices)}"
