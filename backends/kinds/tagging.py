"""Token tagging (POS, NER): a label on each word's first sub-word, the rest ignored;
XTREME's metrics (token accuracy, entity F1 through seqeval)."""

from __future__ import annotations

from xstilts_tui.scoring.metrics import accuracy, tagging_f1

from .base import IGNORE, Kind, _ids_and_mask, _labels, _pad


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
                        max_length=hp.max_length)
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
