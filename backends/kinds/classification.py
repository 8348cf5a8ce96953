"""Sentence and sentence-pair classification (accuracy), and multiple choice (one
score per choice, the best one taken)."""

from __future__ import annotations

from xstilts_tui.scoring.metrics import accuracy

from .base import Kind, _ids_and_mask, _labels, segment_ids


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
        enc = tokenizer(texts, pairs, truncation=True, max_length=hp.max_length)
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
        encoded = tokenizer(firsts, seconds, truncation=True, max_length=hp.max_length)
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
