"""What each task kind needs besides data: its model class and head, its features and
batches, and its evaluation with the task's metric.

A kind is a small class; a task of a known kind is an entry in ``xstilts_tui.tasks.registry``.
Features are built once per (rows, tokenizer, settings) and kept as Arrow
(``xstilts_tui.compute.inputs.features``); a batch is padded to its longest member; labels the loss
ignores are -100, as transformers' heads expect. Where the tokenizer makes segment ids
(BERT's, mBERT's ``token_type_ids``), features carry them and batches feed them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xstilts_tui.tasks.registry import TaskSpec
from xstilts_tui.protocol.hparams import HParams

IGNORE = -100


def _pad(rows: list[list[int]], width: int, value: int):
    import torch

    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def _ids_and_mask(rows: list[list[int]], pad_id: int,
                  types: list[list[int]] | None = None) -> dict[str, Any]:
    width = max(len(r) for r in rows)
    batch = {"input_ids": _pad(rows, width, pad_id),
             "attention_mask": _pad([[1] * len(r) for r in rows], width, 0)}
    if types is not None:
        batch["token_type_ids"] = _pad(types, width, 0)
    return batch


def segment_ids(tokenizer, enc) -> list | None:
    """The encoding's token_type_ids where the model reads them (the tokenizer lists them
    among its model inputs: BERT-family), else None."""
    if "token_type_ids" in tokenizer.model_input_names and "token_type_ids" in enc:
        return enc["token_type_ids"]
    return None


AUTO_EVAL_BATCH = {"cuda": 512, "cpu": 64}


def eval_batch_size(hp: HParams, device) -> int:
    """The evaluation batch: the recipe's, or with 0 a start for the largest that fits."""
    return _batch_or_auto(hp.eval_batch_size, device)


def _batch_or_auto(batch_size: int, device) -> int:
    return batch_size or AUTO_EVAL_BATCH.get(device.type, 64)


def run_model(model, backend, features: list, collate: Callable[[list], dict],
              batch_size: int, length: Callable[[Any], int], outputs: Callable[[Any], Any]) -> list:
    """``outputs(model_output)`` for each feature (as numpy, one row per feature), in
    batches of similar length, in inference mode and the backend's precision. ``batch_size``
    0: the largest that fits - a GPU out of memory halves the batch and goes on."""
    import torch

    from ..engines.training import stop_if_asked_during_evaluation

    device = backend.device
    auto = batch_size == 0
    size = _batch_or_auto(batch_size, device)
    order = sorted(range(len(features)), key=lambda i: length(features[i]), reverse=True)
    results: list[Any] = [None] * len(features)
    model.eval()
    pin = device.type == "cuda"
    b = 0
    with torch.inference_mode():
        while b < len(order):
            stop_if_asked_during_evaluation()
            chunk = order[b: b + size]
            batch = collate([features[i] for i in chunk])
            try:
                batch = {k: (v.pin_memory() if pin else v).to(device, non_blocking=pin)
                         for k, v in batch.items()}
                with backend.autocast():
                    out = outputs(model(**batch))
            except torch.cuda.OutOfMemoryError:
                if not auto or size == 1:
                    raise
                del batch
                torch.cuda.empty_cache()
                size //= 2  # longest first: a batch that fits now fits the rest
                continue
            for j, i in enumerate(chunk):
                results[i] = out[j]
            b += len(chunk)
    return results


def _labels(names: list[str]) -> dict[str, Any]:
    return {"num_labels": len(names), "id2label": dict(enumerate(names)),
            "label2id": {name: i for i, name in enumerate(names)}}


class Kind:
    """One task kind. ``head`` describes the head from the task and its training rows."""

    name: str
    model_class: str  # a transformers Auto class

    def head(self, spec: TaskSpec, train_rows: list[dict]) -> dict[str, Any]:
        """The head's label settings; they replace whatever an earlier phase's head left
        in the checkpoint's configuration (QA: two outputs, start and end)."""
        return _labels(["LABEL_0", "LABEL_1"])

    def features(self, tokenizer, rows: list[dict], hp: HParams, head: dict[str, Any]) -> list:
        raise NotImplementedError

    def check_rows(self, rows: list[dict]) -> None:
        """Raise ValueError where ``rows`` cannot make one task's features together (what
        ``features`` asks of all its rows, checked before they are built a chunk at a time)."""

    def renumber(self, features: list, start: int) -> None:
        """Features built from ``rows[start:...]`` refer to their rows from ``start`` on
        (a kind whose features name their row shifts that index here)."""

    def collate(self, features: list, pad_id: int) -> dict[str, Any]:
        raise NotImplementedError

    def length(self, feature) -> int:
        return len(feature["input_ids"])

    def to_record(self, feature) -> dict[str, Any]:
        """A feature as a flat record for the Arrow feature file."""
        return feature

    def from_record(self, record: dict[str, Any]):
        return record

    def eval_features(self, tokenizer, rows: list[dict], hp: HParams, head: dict[str, Any]) -> list:
        """The features of evaluation rows, through the feature cache."""
        from ..inputs.features import load_features

        return load_features(self, tokenizer, rows, hp, head).all()

    def evaluate(self, model, tokenizer, backend, rows: list[dict], hp: HParams,
                 spec: TaskSpec, lang: str, head: dict[str, Any],
                 keep: list[dict[str, Any]] | None = None) -> dict[str, float]:
        """The task's metrics on ``rows``; with ``keep``, one record per example appended to
        it: its id, prediction and gold (as text) and what it adds to each metric."""
        raise NotImplementedError

    def logits(self, model, tokenizer, backend, features: list, hp: HParams) -> list:
        """The model's logits for each feature (its batches without labels)."""
        return run_model(model, backend, features,
                         lambda b: {k: v for k, v in self.collate(b, tokenizer.pad_token_id).items()
                                    if k != "labels"},
                         hp.eval_batch_size, self.length,
                         lambda out: out.logits.float().cpu().numpy())

    def auto_class(self):
        import transformers

        return getattr(transformers, self.model_class)
