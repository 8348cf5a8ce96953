"""Extractive QA: sliding-window features, batching, and n-best span post-processing.

Windows follow the authors' toolkit: the question is cut to ``max_query_length``
tokens, and successive windows over a long context start ``doc_stride`` tokens apart
(the original BERT/XTREME meaning of doc_stride, not the tokenizer's overlap).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from xstilts_tui.scoring.metrics import score_qa

from .base import Kind, run_model, segment_ids


@dataclass
class QAFeature:
    example: int  # index of the row it came from
    input_ids: list[int]
    offsets: list[tuple[int, int] | None]  # character span in the context; None outside it
    start_position: int  # token index of the answer start (0: not in this window)
    end_position: int
    token_type_ids: list[int] | None = None  # segment ids, where the model reads them


def _truncate_questions(tokenizer, questions: list[str], max_query_length: int) -> tuple[list[str], list[int]]:
    cut = list(questions)
    lengths = [0] * len(cut)
    todo = list(range(len(cut)))
    # Cut each long question at the end of its max_query_length-th token; a cut text can
    # tokenise into a few more pieces, so tokenise again until every question fits.
    while todo:
        enc = tokenizer([cut[i] for i in todo], add_special_tokens=False,
                        return_offsets_mapping=True)
        again = []
        for i, ids, offsets in zip(todo, enc["input_ids"], enc["offset_mapping"]):
            lengths[i] = len(ids)
            if len(ids) > max_query_length:
                end = offsets[max_query_length - 1][1]
                if end >= len(cut[i]):  # pieces sharing offsets: drop the last character
                    end = len(cut[i]) - 1
                cut[i] = cut[i][:end]
                again.append(i)
        todo = again
    return cut, lengths


def _label(offsets: list[tuple[int, int] | None], start_char: int, end_char: int) -> tuple[int, int]:
    context = [i for i, o in enumerate(offsets) if o is not None]
    first, last = context[0], context[-1]
    if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
        return 0, 0
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    # A Metaspace "▁" piece shares its start with the word after it; never end before
    # the start.
    return start - 1, max(end + 1, start - 1)


def build_features(tokenizer, rows: list[dict], max_length: int, doc_stride: int,
                   max_query_length: int) -> list[QAFeature]:
    """Windows of every row, labelled with the first gold answer where the row has one."""
    questions, q_lengths = _truncate_questions(
        tokenizer, [r["question"].lstrip() for r in rows], max_query_length)
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    # One batched tokenizer call per question length: the overlap between windows that
    # gives a start-to-start distance of doc_stride depends on it.
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, n in enumerate(q_lengths):
        by_length[n].append(i)
    per_row: dict[int, list[QAFeature]] = {}
    for q_len, indices in by_length.items():
        window = max_length - q_len - specials
        if window <= 0:
            raise ValueError(f"max_length {max_length} leaves no room for the context after a "
                             f"{q_len}-token question")
        overlap = max(0, window - doc_stride)
        enc = tokenizer([questions[i] for i in indices], [rows[i]["context"] for i in indices],
                        truncation="only_second", max_length=max_length, stride=overlap,
                        return_overflowing_tokens=True, return_offsets_mapping=True)
        types = segment_ids(tokenizer, enc)
        for f, sample in enumerate(enc["overflow_to_sample_mapping"]):
            row_index = indices[sample]
            sequence_ids = enc.sequence_ids(f)
            offsets = [tuple(o) if s == 1 else None
                       for o, s in zip(enc["offset_mapping"][f], sequence_ids)]
            start = end = 0
            answers = rows[row_index]["answers"]
            if answers["text"]:
                start_char = answers["answer_start"][0]
                start, end = _label(offsets, start_char, start_char + len(answers["text"][0]))
            per_row.setdefault(row_index, []).append(
                QAFeature(row_index, list(enc["input_ids"][f]), offsets, start, end,
                          list(types[f]) if types is not None else None))
    return [feature for i in range(len(rows)) for feature in per_row.get(i, [])]


def best_spans(rows: list[dict], features: list[QAFeature], start_logits: list[np.ndarray],
               end_logits: list[np.ndarray], n_best: int, max_answer_length: int,
               null_threshold: float | None = None) -> dict[str, str]:
    """The highest-scoring valid span of each row, over all its windows.

    A span is valid when both ends lie in the context, the end does not precede the
    start, and it is at most ``max_answer_length`` tokens long; candidates are the
    ``n_best`` start and end logits of each window, scored by their sum. A row with no
    valid span gets the empty string.

    With ``null_threshold`` (SQuAD v2.0), as HF ``utils_qa.py`` with
    ``version_2_with_negative``: the null score is the lowest first-token score
    (start + end logit at position 0) over the row's windows; the best non-null answer
    is the best valid span with some text ("empty", scored 0, where there is none); the
    row gets "" when the null score exceeds the best non-null score by more than the
    threshold.
    """
    best: dict[int, tuple[float, int, int]] = {}
    null: dict[int, float] = {}
    for feature, s_logits, e_logits in zip(features, start_logits, end_logits):
        s_logits = np.asarray(s_logits, dtype=np.float64)[: len(feature.offsets)]
        e_logits = np.asarray(e_logits, dtype=np.float64)[: len(feature.offsets)]
        if null_threshold is not None:
            null[feature.example] = min(null.get(feature.example, np.inf), s_logits[0] + e_logits[0])
        hit = _best_in_window(feature, s_logits, e_logits, n_best, max_answer_length,
                              with_text=null_threshold is not None)
        previous = best.get(feature.example)
        if hit is not None and (previous is None or hit[0] > previous[0]):
            best[feature.example] = hit
    predictions = {}
    for i, row in enumerate(rows):
        hit = best.get(i)
        text = row["context"][hit[1]:hit[2]] if hit else ""
        if null_threshold is not None and i in null:
            if hit is None:
                hit, text = (0.0, 0, 0), "empty"
            if null[i] - hit[0] > null_threshold:
                text = ""
        predictions[row["id"]] = text
    return predictions


def _best_in_window(feature: QAFeature, s_logits: np.ndarray, e_logits: np.ndarray, n_best: int,
                    max_answer_length: int, with_text: bool) -> tuple[float, int, int] | None:
    """The window's best valid span: (score, first character, end character), or None."""
    in_context = np.array([o is not None for o in feature.offsets])
    s_idx = np.argsort(-s_logits, kind="stable")[:n_best]
    e_idx = np.argsort(-e_logits, kind="stable")[:n_best]
    length = e_idx[None, :] - s_idx[:, None] + 1
    valid = (in_context[s_idx][:, None] & in_context[e_idx][None, :]
             & (length >= 1) & (length <= max_answer_length))
    if with_text and valid.any():  # v2.0: a span whose characters are none is not an answer
        first = np.array([o[0] if o is not None else 0 for o in feature.offsets])
        last = np.array([o[1] if o is not None else 0 for o in feature.offsets])
        valid &= last[e_idx][None, :] > first[s_idx][:, None]
    if not valid.any():
        return None
    scores = np.where(valid, s_logits[s_idx][:, None] + e_logits[e_idx][None, :], -np.inf)
    flat = int(np.argmax(scores))
    s, e = int(s_idx[flat // len(e_idx)]), int(e_idx[flat % len(e_idx)])
    return float(scores.flat[flat]), feature.offsets[s][0], feature.offsets[e][1]


def pad_batch(features: list[QAFeature], pad_id: int, with_labels: bool):
    """Tensors for one batch, padded to its longest member."""
    import torch

    width = max(len(f.input_ids) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    for i, f in enumerate(features):
        ids[i, : len(f.input_ids)] = torch.tensor(f.input_ids)
        mask[i, : len(f.input_ids)] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if features[0].token_type_ids is not None:
        types = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            types[i, : len(f.token_type_ids)] = torch.tensor(f.token_type_ids)
        batch["token_type_ids"] = types
    if with_labels:
        batch["start_positions"] = torch.tensor([f.start_position for f in features])
        batch["end_positions"] = torch.tensor([f.end_position for f in features])
    return batch


class ExtractiveQA(Kind):
    """Sliding windows over the context, start and end logits, n-best span search (and
    the null answer for SQuAD v2.0); the SQuAD v1.1, SQuAD v2.0 or MLQA metric."""

    name = "extractive_qa"
    model_class = "AutoModelForQuestionAnswering"

    def features(self, tokenizer, rows, hp, head):

        return build_features(tokenizer, rows, hp.max_length, hp.doc_stride,
                              hp.max_query_length)

    def length(self, feature):
        return len(feature.input_ids)

    def renumber(self, features, start):
        for feature in features:
            feature.example += start

    def to_record(self, feature):
        from dataclasses import asdict

        return asdict(feature)

    def from_record(self, record):

        record["offsets"] = [tuple(o) if o is not None else None for o in record["offsets"]]
        return QAFeature(**record)

    def collate(self, features, pad_id):

        return pad_batch(features, pad_id, True)

    def evaluate(self, model, tokenizer, backend, rows, hp, spec, lang, head, keep=None):
        from xstilts_tui.scoring.metrics import qa_example_scores


        features = self.eval_features(tokenizer, rows, hp, head)
        logits = run_model(model, backend, features,
                           lambda b: pad_batch(b, tokenizer.pad_token_id, False),
                           hp.eval_batch_size, self.length,
                           lambda out: list(zip(out.start_logits.float().cpu().numpy(),
                                                out.end_logits.float().cpu().numpy())))
        starts = [s[: len(f.input_ids)] for f, (s, _) in zip(features, logits)]
        ends = [e[: len(f.input_ids)] for f, (_, e) in zip(features, logits)]
        predictions = best_spans(rows, features, starts, ends, hp.n_best, hp.max_answer_length,
                                 hp.null_score_diff_threshold if spec.unanswerable else None)
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
        return {name: scores[name] for name in spec.metric_names if name in scores}
