"""Features tokenised once: per (task kind, rows, tokenizer, settings), an Arrow file in
the stage cache, memory-mapped by every stage and seed that needs the same features.

The key hashes what decides the features: the rows themselves, the tokenizer (its full
serialised form, or its vocabulary for a slow one), the settings the kind reads
(``max_length``, and for QA ``doc_stride`` and ``max_query_length``), the head's labels,
the code that builds them (the sources ``xstilts_tui.compute.kinds.registry`` imports, as read from their
files) and the versions of the libraries that tokenise and store them. A file's name
holds its code's hash after the kind's name, so that ``xstilts-tui cache gc --other-code`` finds those of
other code; its modification time is its last use. A file is written whole under a temporary name and
renamed into place, so a reader never sees half of one; two stages building the same
features at once both write the same bytes.

Features are built ``CHUNK_ROWS`` rows at a time, each chunk turned into Arrow arrays
before the next is tokenised, so a first build holds the Python objects of one chunk, not
of the whole task (the rows' indices, for QA windows, count over all rows).

A ``FeatureTable`` holds the features as Arrow arrays (not Python lists); ``rows(indices)``
gives the few a batch needs as the kind's feature objects, and ``lengths`` each feature's
length for length-grouped batches.
"""

from __future__ import annotations

import hashlib
import json
import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from xstilts_tui.protocol.provenance import feature_code_hash
from xstilts_tui.protocol.hparams import HParams

SETTINGS = ("max_length", "doc_stride", "max_query_length")
CHUNK_ROWS = 8192  # rows tokenised at a time when features are built
_ROOT: Path | None = None  # where this process keeps features (the stage cache's features/)


def use_cache(root: Path | None) -> None:
    """Keep features under ``root`` (None: build them in memory each time)."""
    global _ROOT
    _ROOT = Path(root) if root is not None else None


def cache_root() -> Path | None:
    return _ROOT


_FINGERPRINTS: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of the tokenizer's whole serialised form, computed once per tokenizer object
    (XLM-R's is 17 MB of JSON; every evaluation asks again)."""
    try:
        return _FINGERPRINTS[tokenizer]
    except (KeyError, TypeError):
        pass
    fingerprint = _fingerprint(tokenizer)
    try:
        _FINGERPRINTS[tokenizer] = fingerprint
    except TypeError:  # not weakly referable: computed each time
        pass
    return fingerprint


def _fingerprint(tokenizer) -> str:
    digest = hashlib.sha256()
    digest.update(type(tokenizer).__name__.encode())
    digest.update(json.dumps(list(tokenizer.model_input_names)).encode())
    digest.update(json.dumps([tokenizer.padding_side, tokenizer.truncation_side,
                              getattr(tokenizer, "model_max_length", None)], default=str).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # without the truncation and padding a previous call left set on it
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        digest.update(json.dumps(state, sort_keys=True).encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    return digest.hexdigest()


def rows_fingerprint(rows: list[dict]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def feature_key(kind, tokenizer, rows: list[dict], hp: HParams, head: dict[str, Any]) -> str:
    what = {"code": feature_code_hash(), "kind": kind.name, "tokenizer": tokenizer_fingerprint(tokenizer),
            "rows": rows_fingerprint(rows), "settings": {k: getattr(hp, k) for k in SETTINGS},
            "labels": head.get("label2id")}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:24]


class FeatureTable:
    """A task's features as an Arrow table (in memory or memory-mapped from the cache)."""

    def __init__(self, kind, table: pa.Table, path: Path | None = None):
        self.kind = kind
        self.table = table
        self.path = path
        self.lengths = table.column("_length").to_numpy()

    def __len__(self) -> int:
        return self.table.num_rows

    def rows(self, indices) -> list:
        """The features at ``indices``, as the kind's feature objects (for collate)."""
        taken = self.table.take(pa.array(np.asarray(indices, dtype=np.int64)))
        return [self.kind.from_record(r) for r in taken.drop_columns(["_length"]).to_pylist()]

    def all(self) -> list:
        return self.rows(np.arange(len(self)))


def _to_table(kind, features: list) -> pa.Table:
    records = [kind.to_record(f) for f in features]
    for record, feature in zip(records, features):
        record["_length"] = kind.length(feature)
    if not records:
        return pa.table({"_length": pa.array([], pa.int32())})
    return pa.Table.from_pylist(records)


def build_table(kind, tokenizer, rows: list[dict], hp: HParams,
                head: dict[str, Any]) -> pa.Table:
    """The features of ``rows`` as one Arrow table, tokenised ``CHUNK_ROWS`` rows at a
    time: the Python objects of one chunk are alive at once, the rest is Arrow arrays."""
    kind.check_rows(rows)
    tables = []
    for start in range(0, len(rows), CHUNK_ROWS):
        features = kind.features(tokenizer, rows[start:start + CHUNK_ROWS], hp, head)
        kind.renumber(features, start)
        tables.append(_to_table(kind, features))
        del features
    if not tables:
        return _to_table(kind, [])
    # a column that is empty or null all through one chunk takes the others' type
    return pa.concat_tables(tables, promote_options="permissive").combine_chunks()


def _write(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=4096)
    os.replace(tmp, path)


def load_features(kind, tokenizer, rows: list[dict], hp: HParams,
                  head: dict[str, Any]) -> FeatureTable:
    """The features of ``rows``: from the cache when there, else built (and kept there
    when a cache is in use)."""
    root = _ROOT
    if root is None:
        return FeatureTable(kind, build_table(kind, tokenizer, rows, hp, head))
    path = root / f"{kind.name}-{feature_code_hash()}-{feature_key(kind, tokenizer, rows, hp, head)}.arrow"
    if path.is_file():
        os.utime(path)  # its last use, for ``cache ls`` and ``cache gc --older-than``
    else:
        _write(path, build_table(kind, tokenizer, rows, hp, head))
        # what building took goes back before training: the stage reads the mapped file
        import gc

        gc.collect()
        pa.default_memory_pool().release_unused()
    source = pa.memory_map(str(path), "r")
    return FeatureTable(kind, pa.ipc.open_file(source).read_all(), path)
