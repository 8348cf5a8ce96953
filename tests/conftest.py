import os
import sys
from pathlib import Path

import pytest

# No hub here or in CI: fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.pop("XSTILTS_CACHE", None)  # each test chooses its own stage cache

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("XSTILTS_SHARED_DATA", ROOT.parent / "shared" / "data"))
XQUAD_DIR = SHARED_DATA / "xquad"
XQUAD_LANGS = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")


# The demo recipe at a size that runs in seconds.
SMALL_DEMO = """
name = "small-demo"
seeds = [1]
targets = ["demo-qa"]

[model]
config = { hidden_size = 32, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 64 }
tokenizer = { vocab_size = 1000, corpus = ["demo"] }

[hparams]
lr = 2e-3
batch_size = 16
grad_accum = 1
max_length = 96
doc_stride = 48
max_query_length = 24
log_every = 2
max_steps = 12

[hparams.target]
eval_before_training = true

[[arms]]
name = "baseline"

[[arms]]
name = "jobs"
intermediate = ["demo-jobs"]

[tasks.demo-qa]
generated_train_examples = 200
generated_eval_examples = 30

[tasks.demo-jobs]
generated_train_examples = 200
generated_eval_examples = 30
"""


@pytest.fixture
def recipes_dir(tmp_path):
    """A folder of recipes holding the small demo (small-demo.toml)."""
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "small-demo.toml").write_text(SMALL_DEMO, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def xquad_dir() -> Path:
    if not (XQUAD_DIR / "xquad.en.json").is_file():
        pytest.fail(f"the real XQuAD files are expected at {XQUAD_DIR} (set XSTILTS_SHARED_DATA)")
    return XQUAD_DIR


@pytest.fixture(scope="session")
def demo_tokenizer():
    """The tokenizer the demo recipe trains (same corpus, same vocabulary size)."""
    from xstilts_tui.compute.inputs.models import corpus_texts, train_tokenizer
    from xstilts_tui.recipe.parse import load_recipe

    recipe = load_recipe(ROOT / "recipes" / "demo.toml")
    return train_tokenizer(corpus_texts(list(recipe.model.tokenizer.corpus)),
                           recipe.model.tokenizer.vocab_size)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, demo_tokenizer) -> Path:
    """A tiny XLM-R model and tokenizer saved in the transformers layout."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    path = tmp_path_factory.mktemp("tiny-xlmr")
    config = XLMRobertaConfig(vocab_size=len(demo_tokenizer), hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=64,
                              max_position_embeddings=514, type_vocab_size=1,
                              pad_token_id=1, bos_token_id=0, eos_token_id=2)
    torch.manual_seed(0)
    XLMRobertaForMaskedLM(config).save_pretrained(path)
    demo_tokenizer.save_pretrained(path)
    return path


def run_cli(args, capsys):
    """Run the command line in-process; returns (exit status, stdout, stderr)."""
    from xstilts_tui.cli.main import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


sys.path.insert(0, str(ROOT))


FAKE_WORKER = Path(__file__).resolve().parent / "fake_worker.py"


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Plans whose stages run the fake worker (no torch, events only); returns the worker
    log's path."""
    from xstilts_tui.plan.stages import Plan

    log = tmp_path / "fake.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setattr(Plan, "command",
                        lambda self, stage, master_port=None: [sys.executable, str(FAKE_WORKER),
                                                               str(self.spec_path(stage))])
    return log
