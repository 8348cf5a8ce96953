"""A recipe file as the user wrote it, edited in place: comments, order and layout kept.

The dashboard's form writes its fields into this document (tomlkit keeps everything it
does not touch byte for byte); a value is only written where it changed, so an unchanged
line keeps its trailing comment and a list stays on one line.
"""

from __future__ import annotations

from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from xstilts_tui.protocol.hparams import HF_PRECISION_FLAGS, hparam_aliases, normalise_hparams

PHASES = ("intermediate", "target")


class RecipeDocument:
    def __init__(self, text: str):
        self.doc = tomlkit.parse(text)  # raises tomlkit's ParseError on bad TOML

    def plain(self) -> dict[str, Any]:
        """The document as plain Python values."""
        return self.doc.unwrap()

    def dumps(self) -> str:
        return tomlkit.dumps(self.doc)

    # -- helpers --

    @staticmethod
    def _set(table: Any, key: str, value: Any) -> None:
        """Write ``value`` unless the table already holds it (a no-op keeps the line)."""
        if key in table and _plain(table[key]) == value:
            return
        if key in table:
            old = table[key]
            new = tomlkit.item(value)
            if hasattr(old, "trivia") and hasattr(new, "trivia"):
                new.trivia.comment = old.trivia.comment
                new.trivia.comment_ws = old.trivia.comment_ws
            table[key] = new
        else:
            table[key] = value

    def _table(self, *path: str, create: bool) -> Any | None:
        table: Any = self.doc
        for key in path:
            if key not in table:
                if not create:
                    return None
                new = tomlkit.table(is_super_table=False)
                table[key] = new
            table = table[key]
        return table

    def _prune(self, *path: str) -> None:
        """Remove a table left empty by the form (``[hparams.target]`` with nothing in it)."""
        for depth in range(len(path), 0, -1):
            parent = self._table(*path[:depth - 1], create=False)
            table = parent.get(path[depth - 1]) if parent is not None else None
            if table is not None and isinstance(table, (Table, dict)) and not _plain(table):
                del parent[path[depth - 1]]

    # -- what the form edits --

    def set(self, key: str, value: Any) -> None:
        self._set(self.doc, key, value)

    def set_model_source(self, key: str, value: str) -> None:
        model = self._table("model", create=True)
        for other in ("hub", "path"):
            if other != key and other in model:
                del model[other]
        self._set(model, key, value)

    def hparams(self, phase: str | None) -> dict[str, Any]:
        """The hyper-parameters one level sets (``None``: the top level), as written."""
        table = self._table("hparams", *((phase,) if phase else ()), create=False)
        if table is None:
            return {}
        return {k: v for k, v in _plain(table).items() if not (phase is None and k in PHASES)}

    def set_hparam(self, phase: str | None, name: str, value: Any | None) -> None:
        """Set (or with None, remove) one hyper-parameter at one level, under the name the
        recipe already uses for it (``learning_rate`` stays ``learning_rate``)."""
        path = ("hparams", *((phase,) if phase else ()))
        table = self._table(*path, create=value is not None)
        if table is None:
            return
        names = [name, *hparam_aliases(name)] + (list(HF_PRECISION_FLAGS) if name == "precision" else [])
        present = [k for k in names if k in table]
        if value is None:
            for key in present:
                del table[key]
            self._prune(*path)
            return
        key = present[0] if present else name
        if key in HF_PRECISION_FLAGS:
            if normalise_hparams({k: _plain(table[k]) for k in present}).get("precision") == value:
                return  # bf16 = true already says it
            # A changed precision is written under our name.
            for flag in present:
                del table[flag]
            key = "precision"
        self._set(table, key, value)

    def drop_task_settings(self, keep: set[str]) -> list[str]:
        """Remove ``[tasks.X]`` tables of tasks not in ``keep`` (no arm or target uses them
        any more); the names removed."""
        tasks = self._table("tasks", create=False)
        if tasks is None:
            return []
        dropped = [name for name in list(tasks) if name not in keep]
        for name in dropped:
            del tasks[name]
        if dropped:
            self._prune("tasks")
        return dropped

    def set_arms(self, arms: list[dict[str, Any]]) -> None:
        """Replace the arms: unchanged arms are left as written (an inline ``arms = [...]``
        stays inline, with its comment); an arm's table is edited in place where its keys
        changed."""
        if "arms" in self.doc and _plain(self.doc["arms"]) == arms:
            return
        if "arms" in self.doc and not isinstance(self.doc["arms"], AoT):
            self._set(self.doc, "arms", arms)  # inline it was, inline it stays
            return
        if "arms" not in self.doc or not isinstance(self.doc["arms"], AoT):
            self.doc["arms"] = tomlkit.aot()
        aot = self.doc["arms"]
        for i, arm in enumerate(arms):
            if i < len(aot):
                table = aot[i]
                for key in [k for k in table if k not in arm]:
                    del table[key]
                for key, value in arm.items():
                    self._set(table, key, value)
            else:
                table = tomlkit.table()
                for key, value in arm.items():
                    table[key] = value
                aot.append(table)
        while len(aot) > len(arms):
            del aot[len(aot) - 1]

    def set_languages(self, task: str, languages: list[str] | None) -> None:
        """A task's languages (None: the task's own list, the key removed)."""
        if languages is None:
            table = self._table("tasks", task, create=False)
            if table is not None and "languages" in table:
                del table["languages"]
                self._prune("tasks", task)
            return
        self._set(self._table("tasks", task, create=True), "languages", languages)


def _plain(item: Any) -> Any:
    return item.unwrap() if hasattr(item, "unwrap") else item
