"""Every task kind: its data from the hub's schema and local files, its features, that
training lowers its loss, the multi-task batch plan, continued MLM, and the hand-off of
every kind's checkpoint to every other kind, strictly."""

import json
import math
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from xstilts_tui.compute.inputs.data import DataError, load_rows, read_conll_tags
from xstilts_tui.compute.kinds.registry import KINDS
from xstilts_tui.compute.inputs.models import ModelLoadError, load_for_task
from xstilts_tui.compute.kinds.multitask import MLM, BatchPlan, build_task_model, mask_batch, mlm_features
from xstilts_tui.compute.engines.registry import get_backend
from xstilts_tui.compute.engines.training import TrainJob
from xstilts_tui.data import demo as demo_data
from xstilts_tui.protocol.hparams import HParams
from xstilts_tui.recipe.schema import TaskSettings
from xstilts_tui.tasks.registry import TASKS, HubSplit

HP = HParams(**{**asdict(HParams()), "max_length": 64, "eval_batch_size": 16})


def _task(name, **settings):
    return {"name": name, "settings": asdict(TaskSettings(languages=("en",), **settings))}


# --- data in the hub's schema and in local files ------------------------------------

HUB_ROWS = {
    "mnli": [{"premise": "A man eats.", "hypothesis": "Someone eats.", "label": 0, "idx": 0},
             {"premise": "A man eats.", "hypothesis": "Nobody eats.", "label": 2, "idx": 1},
             {"premise": "Hidden.", "hypothesis": "Test row.", "label": -1, "idx": 2}],
    "anli": [{"uid": "a1", "premise": "P.", "hypothesis": "H.", "label": 1, "reason": ""}],
    "qqp": [{"question1": "How old?", "question2": "What age?", "label": 1, "idx": 7}],
    "sst2": [{"sentence": "a gripping film", "label": 1, "idx": 0}],
    "hellaswag": [{"ind": 4, "activity_label": "x", "ctx_a": "She", "ctx_b": "then",
                   "ctx": "She then", "endings": ["runs.", "sits.", "flies.", "sleeps."],
                   "source_id": "s", "split": "train", "split_type": "indomain", "label": "2"},
                  {"ind": 5, "activity_label": "x", "ctx_a": "He", "ctx_b": "", "ctx": "He",
                   "endings": ["a", "b", "c", "d"], "source_id": "s", "split": "test",
                   "split_type": "indomain", "label": ""}],
    "commonsenseqa": [{"id": "q1", "question": "Where do fish live?", "question_concept": "fish",
                       "choices": {"label": ["A", "B", "C", "D", "E"],
                                   "text": ["tree", "water", "sky", "desk", "car"]},
                       "answerKey": "B"}],
    "cosmosqa": [{"id": "c1", "context": "It rained.", "question": "Why wet?",
                  "answer0": "rain", "answer1": "sun", "answer2": "wind", "answer3": "none",
                  "label": 0}],
}
EXPECTED = {
    "mnli": [{"id": "0", "text": "A man eats.", "pair": "Someone eats.", "label": 0},
             {"id": "1", "text": "A man eats.", "pair": "Nobody eats.", "label": 2}],
    "anli": [{"id": "a1", "text": "P.", "pair": "H.", "label": 1}],
    "qqp": [{"id": "7", "text": "How old?", "pair": "What age?", "label": 1}],
    "sst2": [{"id": "0", "text": "a gripping film", "pair": None, "label": 1}],
    "hellaswag": [{"id": "4", "text": "She then", "choices": ["runs.", "sits.", "flies.", "sleeps."],
                   "label": 2}],
    "commonsenseqa": [{"id": "q1", "text": "Where do fish live?",
                       "choices": ["tree", "water", "sky", "desk", "car"], "label": 1}],
    "cosmosqa": [{"id": "c1", "text": "It rained. Why wet?", "choices": ["rain", "sun", "wind", "none"],
                  "label": 0}],
}


@pytest.mark.parametrize("name", sorted(HUB_ROWS))
def test_hub_loader_reads_each_tasks_hub_schema(tmp_path, monkeypatch, name):
    folder = tmp_path / name
    folder.mkdir()
    with open(folder / "train.jsonl", "w", encoding="utf-8") as handle:
        for row in HUB_ROWS[name]:
            handle.write(json.dumps(row) + "\n")
    # The task's own hub entry, pointed at the local folder: same code, same schema.
    monkeypatch.setitem(TASKS, name, replace(TASKS[name], train=HubSplit(str(folder), "train")))
    assert load_rows(_task(name), "train") == EXPECTED[name]
    # The same rows as a local file of the recipe.
    assert load_rows(_task(name, train_file=str(folder / "train.jsonl")), "train") == EXPECTED[name]


def test_hub_tagging_schema_with_class_label_tags(tmp_path, monkeypatch):
    import datasets

    features = datasets.Features({"id": datasets.Value("string"),
                                  "tokens": datasets.Sequence(datasets.Value("string")),
                                  "tags": datasets.Sequence(datasets.ClassLabel(names=["O", "N", "V"]))})
    folder = tmp_path / "hub-ccg"
    folder.mkdir()
    datasets.Dataset.from_dict({"id": ["s1"], "tokens": [["Anna", "runs"]], "tags": [[1, 2]]},
                               features=features).to_parquet(folder / "train.parquet")
    monkeypatch.setitem(TASKS, "ccg", replace(TASKS["ccg"], train=HubSplit(str(folder), "train")))
    assert load_rows(_task("ccg"), "train") == [{"id": "s1", "tokens": ["Anna", "runs"],
                                                 "tags": ["N", "V"]}]


def test_conll_tagging_files(tmp_path):
    path = tmp_path / "ccg.conll"
    path.write_text("# a comment\nAnna\tN\nruns\t(S\\NP)\n\nBoris\tN\n", encoding="utf-8")
    rows = load_rows(_task("ccg", train_file=str(path)), "train")
    assert [(r["tokens"], r["tags"]) for r in rows] == [(["Anna", "runs"], ["N", "(S\\NP)"]),
                                                        (["Boris"], ["N"])]
    path.write_text("Anna N\n", encoding="utf-8")
    with pytest.raises(Exception, match="ccg.conll:1: expected a word and its tag separated by a tab"):
        read_conll_tags(path)


def test_bad_rows_name_the_file_row_and_columns(tmp_path):
    path = tmp_path / "mnli.jsonl"
    path.write_text(json.dumps({"sentence1": "a", "sentence2": "b", "label": 0}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"mnli.jsonl: row 0: no column 'premise' \(expected the "
                                        r"columns of mnli: premise, hypothesis, label\)"):
        load_rows(_task("mnli", train_file=str(path)), "train")
    path.write_text(json.dumps({"premise": "a", "hypothesis": "b", "label": 7}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="label 7 out of range for 3 classes"):
        load_rows(_task("mnli", train_file=str(path)), "train")


def test_text_labels_map_to_the_tasks_label_order(tmp_path):
    path = tmp_path / "mnli.csv"
    path.write_text("premise,hypothesis,label\nA,B,contradiction\nC,D,entailment\n", encoding="utf-8")
    rows = load_rows(_task("mnli", train_file=str(path)), "train")
    assert [r["label"] for r in rows] == [2, 0]


# --- features ----------------------------------------------------------------------------


def test_tagging_labels_first_sub_token_of_every_word(demo_tokenizer):
    rows = [{"id": "1", "tokens": ["Gringotts", "hired", "Quentin", "in", "1987", "."],
             "tags": ["ORG", "O", "NAME", "O", "YEAR", "O"]}]
    kind = KINDS["token_tagging"]
    head = kind.head(TASKS["demo-tags"], rows)
    feature = kind.features(demo_tokenizer, rows, HP, head)[0]
    enc = demo_tokenizer(rows[0]["tokens"], is_split_into_words=True)
    word_ids = enc.word_ids()
    assert len(word_ids) > len(rows[0]["tokens"]) + 2  # some words are several pieces
    labelled = [(w, lab) for w, lab in zip(word_ids, feature["labels"]) if lab != -100]
    assert [w for w, _ in labelled] == list(range(6))  # every word once, on its first piece
    assert [head["id2label"][lab] for _, lab in labelled] == rows[0]["tags"]
    for position, (w, lab) in enumerate(zip(word_ids, feature["labels"])):
        if w is not None and position > 0 and word_ids[position - 1] == w:
            assert lab == -100


def test_multiple_choice_features_pair_the_text_with_each_choice(demo_tokenizer):
    rows = load_rows(_task("demo-choice", generated_train_examples=3), "train")
    kind = KINDS["multiple_choice"]
    features = kind.features(demo_tokenizer, rows, HP, kind.head(TASKS["demo-choice"], rows))
    batch = kind.collate(features, demo_tokenizer.pad_token_id)
    assert batch["input_ids"].shape[:2] == (3, 4) and batch["labels"].tolist() == [r["label"] for r in rows]
    text = demo_tokenizer.decode(features[0]["input_ids"][rows[0]["label"]], skip_special_tokens=True)
    assert rows[0]["choices"][rows[0]["label"]] in text and rows[0]["text"].split()[0] in text


# --- training each kind --------------------------------------------------------------------

KIND_TASKS = ["demo-jobs", "demo-nli", "demo-topic", "demo-choice", "demo-tags"]


def _train(tiny_model_dir, demo_tokenizer, names, steps, seed=0, mlm=False, **hp):
    hp = HParams(**{**vars(HP), "lr": 3e-3, "batch_size": 16, "grad_accum": 1, "warmup_ratio": 0.0,
          "log_every": 1, "max_steps": steps, "eval_every": 0, **hp})
    parts = {}
    for name in names:
        rows = load_rows(_task(name, generated_train_examples=400), "train")
        kind = KINDS[TASKS[name].kind]
        head = kind.head(TASKS[name], rows)
        parts[name] = (kind, head, kind.features(demo_tokenizer, rows, hp, head))
    torch.manual_seed(seed)
    model, _ = build_task_model([(n, k, h) for n, (k, h, _) in parts.items()], str(tiny_model_dir),
                                {}, mlm=mlm)
    texts = list(demo_data.corpus(per_language=40)) if mlm else []
    mlm_data = mlm_features(demo_tokenizer, texts, 64)
    plan = BatchPlan({n: len(p[2]) for n, p in parts.items()}, 16, seed, steps, 0, len(mlm_data),
                     0.25 if mlm else 0.0)
    losses = {n: [] for n in [*names, MLM]}
    drawn = []

    def batch(i):
        task, idx = plan.batch(i)
        drawn.append(task)
        if task == MLM:
            return task, mask_batch([mlm_data[j] for j in idx], demo_tokenizer, 0.15,
                                    torch.Generator().manual_seed(i))
        kind, _, features = parts[task]
        return task, kind.collate([features[j] for j in idx], demo_tokenizer.pad_token_id)

    def report(step, total, loss, lr, rate):
        losses[drawn[-1]].append(loss)

    get_backend("torch").train(TrainJob(model=model, batch=batch, steps=steps, hparams=hp,
                                        seed=seed, report=report))
    return model, parts, losses


# Multiple choice sits longer on its plateau (the first token must learn to look at the
# choice), so it gets more steps.
STEPS_TO_LEARN = {"demo-jobs": 40, "demo-nli": 80, "demo-topic": 80, "demo-choice": 150,
                  "demo-tags": 40}


@pytest.mark.parametrize("name", KIND_TASKS)
def test_each_kind_learns_its_task(tiny_model_dir, demo_tokenizer, name):
    model, parts, losses = _train(tiny_model_dir, demo_tokenizer, [name], STEPS_TO_LEARN[name])
    curve = losses[name]
    assert sum(curve[-8:]) / 8 < 0.85 * sum(curve[:8]) / 8, curve
    # Its evaluation runs and gives its metric.
    kind, head, _ = parts[name]
    rows = load_rows(_task(name, generated_eval_examples=40), "validation")
    scores = kind.evaluate(model.models[name], demo_tokenizer, get_backend("torch"), rows, HP,
                           TASKS[name], "en", head)
    metric = TASKS[name].selection_metric
    assert 0.0 <= scores[metric] <= 100.0


def test_multi_task_shares_one_encoder_and_trains_every_head(tiny_model_dir, demo_tokenizer):
    model, parts, losses = _train(tiny_model_dir, demo_tokenizer, KIND_TASKS, 30, mlm=True)
    encoders = {id(m.roberta) for m in model.models.values()}
    assert len(encoders) == 1
    names = [n for n, _ in model.named_parameters()]
    assert len(names) == len(set(id(p) for p in model.parameters()))  # shared ones counted once
    assert all(losses[n] for n in [*KIND_TASKS, MLM]), {n: len(v) for n, v in losses.items()}
    # The masked-LM head is tied to the shared embeddings.
    mlm = model.models[MLM]
    assert mlm.lm_head.decoder.weight is mlm.roberta.embeddings.word_embeddings.weight


# --- the batch plan ---------------------------------------------------------------------------


def _shares(plan):
    names, counts = np.unique([plan.batch(i)[0] for i in range(len(plan))], return_counts=True)
    return dict(zip(names.tolist(), (counts / len(plan)).tolist()))


def test_tasks_are_drawn_in_proportion_to_their_sizes():
    n = 20_000
    plan = BatchPlan({"a": 6000, "b": 3000, "c": 1000}, 8, seed=3, micro_batches=n)
    shares = _shares(plan)
    for name, p in {"a": 0.6, "b": 0.3, "c": 0.1}.items():
        assert abs(shares[name] - p) < 4 * math.sqrt(p * (1 - p) / n), (name, shares)
    capped = _shares(BatchPlan({"a": 6000, "b": 3000, "c": 1000}, 8, 3, n, cap=2000))
    for name, p in {"a": 0.4, "b": 0.4, "c": 0.2}.items():
        assert abs(capped[name] - p) < 4 * math.sqrt(p * (1 - p) / n), (name, capped)
    with_mlm = _shares(BatchPlan({"a": 3000, "b": 1000}, 8, 3, n, mlm_size=50, mlm_ratio=0.2))
    for name, p in {"a": 0.6, "b": 0.2, MLM: 0.2}.items():
        assert abs(with_mlm[name] - p) < 4 * math.sqrt(p * (1 - p) / n), (name, with_mlm)


def test_every_example_once_an_epoch_and_the_plan_is_a_function_of_the_seed():
    plan = BatchPlan({"a": 50, "b": 30}, 8, seed=1, micro_batches=200)
    again = BatchPlan({"a": 50, "b": 30}, 8, seed=1, micro_batches=200)
    other = BatchPlan({"a": 50, "b": 30}, 8, seed=2, micro_batches=200)
    assert [plan.batch(i) for i in range(200)] == [again.batch(i) for i in range(200)]
    assert [plan.batch(i) for i in range(200)] != [other.batch(i) for i in range(200)]
    seen = [idx for i in range(200) for t, idx in [plan.batch(i)] if t == "b"]
    per_epoch = math.ceil(30 / 8)
    for epoch in range(len(seen) // per_epoch):
        chunk = [j for batch in seen[epoch * per_epoch:(epoch + 1) * per_epoch] for j in batch]
        assert sorted(chunk) == list(range(30))
    # Asking out of order gives the same batches (a resumed stage starts in the middle).
    assert [plan.batch(i) for i in reversed(range(200))][::-1] == [again.batch(i) for i in range(200)]


def test_masking_is_per_batch_deterministic_and_spares_special_tokens(demo_tokenizer):
    features = mlm_features(demo_tokenizer, list(demo_data.corpus(per_language=10))[:32], 64)
    a = mask_batch(features, demo_tokenizer, 0.15, torch.Generator().manual_seed(5))
    b = mask_batch(features, demo_tokenizer, 0.15, torch.Generator().manual_seed(5))
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    chosen = a["labels"] != -100
    share = chosen.sum().item() / a["attention_mask"].sum().item()
    assert 0.08 < share < 0.22
    specials = torch.tensor(demo_tokenizer.all_special_ids)
    assert not torch.isin(a["labels"][chosen], specials).any()
    masked = (a["input_ids"] == demo_tokenizer.mask_token_id) & chosen
    assert masked.sum() > 0.6 * chosen.sum()


# --- hand-off -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kind_checkpoints(tmp_path_factory, tiny_model_dir, demo_tokenizer):
    """A checkpoint saved after a few steps on each kind's demo task."""
    out = {}
    for name in KIND_TASKS:
        model, _, _ = _train(tiny_model_dir, demo_tokenizer, [name], 3)
        folder = tmp_path_factory.mktemp(f"ckpt-{name}")
        model.primary.save_pretrained(folder)
        demo_tokenizer.save_pretrained(folder)
        out[name] = (folder, {k: v.clone() for k, v in model.primary.roberta.state_dict().items()})
    return out


TARGET_KINDS = ["extractive_qa", "pair_classification", "multiple_choice", "token_tagging"]


@pytest.mark.parametrize("source", KIND_TASKS)
@pytest.mark.parametrize("target", TARGET_KINDS)
def test_hand_off_from_every_kind_to_every_kind(kind_checkpoints, source, target):
    folder, encoder = kind_checkpoints[source]
    kind = KINDS[target]
    head = kind.head(TASKS["mnli"] if target == "pair_classification" else None,
                     [{"tags": ["A", "B", "C", "D"]}] if target == "token_tagging" else [])
    torch.manual_seed(0)
    model, report = load_for_task(kind.auto_class(), str(folder), {}, head)
    loaded = model.roberta.state_dict()
    trained_pooler = any(k.startswith("pooler.") for k in encoder)
    for key, value in encoder.items():
        if key in loaded:
            assert torch.equal(loaded[key], value), key
    if target == "multiple_choice" and not trained_pooler:
        assert "roberta.pooler" in report["head_modules"]
    if target == "token_tagging":
        assert model.config.num_labels == 4 and model.classifier.out_features == 4
    # Only the source's head (and a pooler the target has no use for) was left behind.
    assert all(not k.startswith("roberta.") or k.startswith("roberta.pooler.")
               for k in report["unexpected_keys"])


def test_hand_off_refuses_a_checkpoint_missing_an_encoder_weight(kind_checkpoints, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "broken"
    shutil.copytree(kind_checkpoints["demo-nli"][0], folder)
    weights = load_file(folder / "model.safetensors")
    del weights["roberta.encoder.layer.1.output.dense.weight"]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    kind = KINDS["multiple_choice"]
    with pytest.raises(ModelLoadError, match="1 encoder weight.s. missing .first: "
                                             "roberta.encoder.layer.1.output.dense.weight"):
        load_for_task(kind.auto_class(), str(folder), {}, kind.head(None, []))


def _padded_waste(plan, lengths, n):
    """Share of a batch's padded positions that are padding, over n micro-batches."""
    pad = total = 0
    for i in range(n):
        _, idx = plan.batch(i)
        longest = max(lengths[j] for j in idx)
        pad += sum(longest - lengths[j] for j in idx)
        total += longest * len(idx)
    return pad / total


def test_length_grouped_batches_cover_each_example_once_and_keep_lengths_close():
    rng = np.random.default_rng(0)
    # Lengths like SQuAD's windows: mostly middling, a long tail cut at max_length.
    lengths = np.minimum(rng.gamma(4.0, 45.0, size=1000).astype(int) + 20, 256)
    grouped = BatchPlan({"a": 1000}, 16, seed=4, micro_batches=300, lengths={"a": lengths})
    again = BatchPlan({"a": 1000}, 16, seed=4, micro_batches=300, lengths={"a": lengths})
    other = BatchPlan({"a": 1000}, 16, seed=5, micro_batches=300, lengths={"a": lengths})
    random = BatchPlan({"a": 1000}, 16, seed=4, micro_batches=300)
    batches = [grouped.batch(i) for i in range(300)]
    assert batches == [again.batch(i) for i in range(300)]
    assert batches != [other.batch(i) for i in range(300)]
    # Asked out of order (a resumed stage), the same batches.
    assert [grouped.batch(i) for i in reversed(range(300))][::-1] == batches
    per_epoch = math.ceil(1000 / 16)
    for epoch in range(300 // per_epoch):
        chunk = [j for _, idx in batches[epoch * per_epoch:(epoch + 1) * per_epoch] for j in idx]
        assert sorted(chunk) == list(range(1000))
    # Each epoch's order differs, and the batches do not run from short to long.
    first = [tuple(idx) for _, idx in batches[:per_epoch]]
    second = [tuple(idx) for _, idx in batches[per_epoch:2 * per_epoch]]
    assert first != second
    means = [lengths[list(idx)].mean() for idx in first]
    assert not (means == sorted(means) or means == sorted(means, reverse=True))
    # Lengths within a batch are much closer than in random batches: padding falls.
    waste_random = _padded_waste(random, lengths, per_epoch * 2)
    waste_grouped = _padded_waste(grouped, lengths, per_epoch * 2)
    assert waste_grouped < waste_random / 4, (waste_grouped, waste_random)


def test_length_grouped_batches_in_a_multi_task_plan():
    lengths = {"a": np.arange(200) % 97 + 3, "b": np.arange(120) % 61 + 3}
    plan = BatchPlan({"a": 200, "b": 120}, 8, seed=2, micro_batches=400, lengths=lengths)
    plain = BatchPlan({"a": 200, "b": 120}, 8, seed=2, micro_batches=400)
    # The task drawn for each micro-batch does not depend on grouping.
    assert [plan.batch(i)[0] for i in range(400)] == [plain.batch(i)[0] for i in range(400)]
    seen = [idx for i in range(400) for t, idx in [plan.batch(i)] if t == "b"]
    per_epoch = math.ceil(120 / 8)
    chunk = [j for batch in seen[:per_epoch] for j in batch]
    assert sorted(chunk) == list(range(120))


def test_length_grouped_epochs_start_with_their_longest_batch():
    """As the Trainer's sampler does: a batch that does not fit in memory fails at an
    epoch's first step, not hours in, and the allocator sizes itself once."""
    rng = np.random.default_rng(1)
    lengths = np.minimum(rng.gamma(4.0, 45.0, size=1000).astype(int) + 20, 256)
    lengths[[17, 503]] = 300  # two longest examples, wherever the shuffle puts them
    per_epoch = math.ceil(1000 / 16)
    for seed in range(4):
        plan = BatchPlan({"a": 1000}, 16, seed=seed, micro_batches=3 * per_epoch, lengths={"a": lengths})
        for epoch in range(3):
            first = plan.batch(epoch * per_epoch)[1]
            assert lengths[first].max() == 300, (seed, epoch)
