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

from xstilts_tui.scoring.metrics import accuracy, score_qa, tagging_f1
from xstilts_tui.tasks.registry import (EXTRACTIVE_QA, MULTIPLE_CHOICE, PAIR_CLASSIFICATION,
                               SENTENCE_CLASSIFICATION, TOKEN_TAGGING, TaskSpec)

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


def eval_batch_size(hp: dict[str, Any], device) -> int:
    """The evaluation batch: the recipe's, or with 0 a start for the largest that fits."""
    return _batch_or_auto(hp["eval_batch_size"], device)


def _batch_or_auto(batch_size: int, device) -> int:
    return batch_size or AUTO_EVAL_BATCH.get(device.type, 64)


def run_model(model, backend, features: list, collate: Callable[[list], dict],
              batch_size: int, length: Callable[[Any], int], outputs: Callable[[Any], Any]) -> list:
    """``outputs(model_output)`` for each feature (as numpy, one row per feature), in
    batches of similar length, in inference mode and the backend's precision. ``batch_size``
    0: the largest that fits - a GPU out of memory halves the batch and goes on."""
    import torch

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

    def features(self, tokenizer, rows: list[dict], hp: dict[str, Any], head: dict[str, Any]) -> list:
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

    def eval_features(self, tokenizer, rows: list[dict], hp: dict[str, Any], head: dict[str, Any]) -> list:
        """The features of evaluation rows, through the feature cache."""
        from ..inputs.features import load_features

        return load_features(self, tokenizer, rows, hp, head).all()

    def evaluate(self, model, tokenizer, backend, rows: list[dict], hp: dict[str, Any],
                 spec: TaskSpec, lang: str, head: dict[str, Any],
                 keep: list[dict[str, Any]] | None = None) -> dict[str, float]:
        """The task's metrics on ``rows``; with ``keep``, one record per example appended to
        it: its id, prediction and gold (as text) and what it adds to each metric."""
        raise NotImplementedError

    def logits(self, model, tokenizer, backend, features: list, hp: dict[str, Any]) -> list:
        """The model's logits for each feature (its batches without labels)."""
        return run_model(model, backend, features,
                         lambda b: {k: v for k, v in self.collate(b, tokenizer.pad_token_id).items()
                                    if k != "labels"},
                         hp["eval_batch_size"], self.length,
                         lambda out: out.logits.float().cpu().numpy())

    def auto_class(self):
        import transformers

        return getattr(transformers, self.model_class)


class Classification(Kind):
    """Single sentences or sentence pairs: ``<s> text </s></s> pair </s>``, a
    classification head on the first token; accuracy."""

    name = "classification"
    model_class = "AutoModelForSequenceClassification"

    def head(self, spec, train_rows):
        return _labels(list(spec.labels))

    def features(self, tokenizer, rows, hp, head):
        texts = [r["text"] for r in rows]
        pairs = [r["pair"] for r in rows] if rows and rows[0]["pair"] is not None else None
        enc = tokenizer(texts, pairs, truncation=True, max_length=hp["max_length"])
        types = segment_ids(tokenizer, enc)
        return [{"input_ids": ids, "label": r["label"],
                 **({"token_type_ids": types[i]} if types is not None else {})}
                for i, (ids, r) in enumerate(zip(enc["input_ids"], rows))]

    def collate(self, features, pad_id):
        import torch

        batch = _ids_and_mask([f["input_ids"] for f in features], pad_id,
                              [f["token_type_ids"] for f in features]
                              if "token_type_ids" in features[0] else None)
        batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.long)
        return batch

    def evaluate(self, model, tokenizer, backend, rows, hp, spec, lang, head, keep=None):
        features = self.eval_features(tokenizer, rows, hp, head)
        logits = self.logits(model, tokenizer, backend, features, hp)
        predicted = [int(x.argmax()) for x in logits]
        if keep is not None:
            names = list(spec.labels) if spec.labels else None
            for i, (row, p) in enumerate(zip(rows, predicted)):
                keep.append({"example_id": str(row.get("id", i)),
                             "prediction": names[p] if names else str(p),
                             "gold": names[row["label"]] if names else str(row["label"]),
                             "accuracy": 100.0 * (p == row["label"])})
        return {"accuracy": accuracy([r["label"] for r in rows], predicted)}


class MultipleChoice(Classification):
    """Each choice paired with the shared text, ``<s> text </s></s> choice </s>``, one
    score a choice from the pooled first token; accuracy."""

    name = "multiple_choice"
    model_class = "AutoModelForMultipleChoice"

    def head(self, spec, train_rows):
        return Kind.head(self, spec, train_rows)  # one score a choice; labels unused

    def check_rows(self, rows):
        counts = {len(r["choices"]) for r in rows}
        if len(counts) > 1:
            raise ValueError(f"rows have different numbers of choices ({sorted(counts)}); "
                             "a multiple-choice task needs the same number in every row")

    def features(self, tokenizer, rows, hp, head):
        if not rows:
            return []
        self.check_rows(rows)
        n = len(rows[0]["choices"])
        firsts = [r["text"] for r in rows for _ in r["choices"]]
        seconds = [c for r in rows for c in r["choices"]]
        encoded = tokenizer(firsts, seconds, truncation=True, max_length=hp["max_length"])
        enc, types = encoded["input_ids"], segment_ids(tokenizer, encoded)
        return [{"input_ids": enc[i * n:(i + 1) * n], "label": r["label"],
                 **({"token_type_ids": types[i * n:(i + 1) * n]} if types is not None else {})}
                for i, r in enumerate(rows)]

    def length(self, feature):
        return max(len(ids) for ids in feature["input_ids"])

    def collate(self, features, pad_id):
        import torch

        n = len(features[0]["input_ids"])
        flat = _ids_and_mask([ids for f in features for ids in f["input_ids"]], pad_id,
                             [t for f in features for t in f["token_type_ids"]]
                             if "token_type_ids" in features[0] else None)
        batch = {k: v.view(len(features), n, -1) for k, v in flat.items()}
        batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.long)
        return batch


class Tagging(Kind):
    """A tag for every word, predicted on its first sub-token (the other sub-tokens
    carry no label); accuracy over words, or seqeval's F1 for the XTREME tasks. Words cut
    off by ``max_length`` count as wrong ("O" for seqeval). The tag set is read from the
    training rows, in sorted order."""

    name = "tagging"
    model_class = "AutoModelForTokenClassification"

    def head(self, spec, train_rows):
        return _labels(sorted({t for r in train_rows for t in r["tags"]}))

    def features(self, tokenizer, rows, hp, head):
        label2id = head["label2id"]
        enc = tokenizer([r["tokens"] for r in rows], is_split_into_words=True, truncation=True,
                        max_length=hp["max_length"])
        features = []
        for i, row in enumerate(rows):
            word_ids = enc.word_ids(i)
            labels, first = [], []
            previous = None
            for position, word in enumerate(word_ids):
                if word is None or word == previous:
                    labels.append(IGNORE)
                else:
                    labels.append(label2id.get(row["tags"][word], IGNORE))
                    first.append((word, position))
                previous = word
            features.append({"input_ids": enc["input_ids"][i], "labels": labels, "first": first,
                             "words": len(row["tokens"])})
        return features

    def collate(self, features, pad_id):
        batch = _ids_and_mask([f["input_ids"] for f in features], pad_id)
        batch["labels"] = _pad([f["labels"] for f in features], batch["input_ids"].shape[1], IGNORE)
        return batch

    def evaluate(self, model, tokenizer, backend, rows, hp, spec, lang, head, keep=None):
        import json

        from xstilts_tui.scoring.metrics import tagging_counts

        features = self.eval_features(tokenizer, rows, hp, head)
        logits = self.logits(model, tokenizer, backend, features, hp)
        id2label = {int(k): v for k, v in head["id2label"].items()}
        gold, predicted = [], []
        for row, feature, scores in zip(rows, features, logits):
            words: list[str | None] = [None] * len(row["tokens"])
            for word, position in feature["first"]:
                words[word] = id2label[int(scores[position].argmax())]
            gold.append(row["tags"])
            predicted.append(words)
            if keep is not None:
                filled = [w if w is not None else "O" for w in words]
                record = {"example_id": str(row.get("id", len(keep))),
                          "prediction": json.dumps(filled), "gold": json.dumps(row["tags"])}
                if spec.metric == "seqeval":
                    tp, n_pred, n_gold = tagging_counts(row["tags"], filled)
                    record.update(tp=tp, n_pred=n_pred, n_gold=n_gold)
                else:
                    record.update(correct=sum(g == w for g, w in zip(row["tags"], words)),
                                  n_words=len(words))
                keep.append(record)
        if spec.metric == "seqeval":  # XTREME's UD-POS and PAN-X: entity-level F1
            return tagging_f1(gold, [[w if w is not None else "O" for w in sent] for sent in predicted])
        return {"accuracy": accuracy([t for s in gold for t in s], [t for s in predicted for t in s])}


class ExtractiveQA(Kind):
    """Sliding windows over the context, start and end logits, n-best span search;
    the SQuAD v1.1 or MLQA metric."""

    name = "extractive_qa"
    model_class = "AutoModelForQuestionAnswering"

    def features(self, tokenizer, rows, hp, head):
        from .qa import build_features

        return build_features(tokenizer, rows, hp["max_length"], hp["doc_stride"],
                              hp["max_query_length"])

    def length(self, feature):
        return len(feature.input_ids)

    def renumber(self, features, start):
        for feature in features:
            feature.example += start

    def to_record(self, feature):
        from dataclasses import asdict

        return asdict(feature)

    def from_record(self, record):
        from .qa import QAFeature

        record["offsets"] = [tuple(o) if o is not None else None for o in record["offsets"]]
        return QAFeature(**record)

    def collate(self, features, pad_id):
        from .qa import pad_batch

        return pad_batch(features, pad_id, True)

    def evaluate(self, model, tokenizer, backend, rows, hp, spec, lang, head, keep=None):
        from xstilts_tui.scoring.metrics import qa_example_scores

        from .qa import best_spans, pad_batch

        features = self.eval_features(tokenizer, rows, hp, head)
        logits = run_model(model, backend, features,
                           lambda b: pad_batch(b, tokenizer.pad_token_id, False),
                           hp["eval_batch_size"], self.length,
                           lambda out: list(zip(out.start_logits.float().cpu().numpy(),
                                                out.end_logits.float().cpu().numpy())))
        starts = [s[: len(f.input_ids)] for f, (s, _) in zip(features, logits)]
        ends = [e[: len(f.input_ids)] for f, (_, e) in zip(features, logits)]
        predictions = best_spans(rows, features, starts, ends, hp["n_best"], hp["max_answer_length"])
        gold = {r["id"]: r["answers"]["text"] for r in rows}
        scores = score_qa(gold, predictions, spec.metric, lang if spec.metric == "mlqa" else None)
        if keep is not None:
            import json

            for row in rows:
                prediction = predictions.get(row["id"], "")
                f1, exact = qa_example_scores(prediction, row["answers"]["text"], spec.metric,
                                              lang if spec.metric == "mlqa" else None)
                keep.append({"example_id": row["id"], "prediction": prediction,
                             "gold": json.dumps(list(row["answers"]["text"]), ensure_ascii=False),
                             "f1": f1, "exact_match": exact})
        return {"f1": scores["f1"], "exact_match": scores["exact_match"]}


KINDS: dict[str, Kind] = {
    EXTRACTIVE_QA: ExtractiveQA(),
    SENTENCE_CLASSIFICATION: Classification(),
    PAIR_CLASSIFICATION: Classification(),
    MULTIPLE_CHOICE: MultipleChoice(),
    TOKEN_TAGGING: Tagging(),
}
