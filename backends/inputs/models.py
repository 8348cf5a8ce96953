"""Models and tokenizers: training a tokenizer on the spot, building a model from a
configuration, and loading encoders strictly and safely for the next phase."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# XLM-R's special tokens, in XLM-R's id order (<s>=0, <pad>=1, </s>=2, <unk>=3).
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


class ModelLoadError(RuntimeError):
    """A checkpoint that must not be trained on: missing or mismatched encoder weights."""


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """An XLM-R tokenizer (SentencePiece-style Unigram) trained on ``texts``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import XLMRobertaTokenizer

    tokenizer = Tokenizer(models.Unigram())
    # The same pre-tokenisation XLMRobertaTokenizer applies, so the pieces fit it.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(),
         pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                      unk_token="<unk>", show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    vocab = [tuple(piece) for piece in json.loads(tokenizer.to_str())["model"]["vocab"]]
    if [p for p, _ in vocab[: len(SPECIAL_TOKENS)]] != SPECIAL_TOKENS:
        raise RuntimeError("tokenizer training did not put the special tokens first")
    return XLMRobertaTokenizer(vocab=vocab[: len(SPECIAL_TOKENS)]
                               + canonical_pieces(vocab[len(SPECIAL_TOKENS):]))


# The Unigram trainer appends the characters it must cover but did not learn with scores
# stepping down by this much, in hash-set order, which changes from run to run.
_FALLBACK_STEP = 1e-4


def canonical_pieces(pieces: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """The trained pieces in an order and with scores that do not depend on the run.

    The learned scores agree between runs up to float noise; the appended characters
    get the same set of scores in an arbitrary order. The pieces of that lowest run of
    scores are given them in code-point order, every score is rounded, and pieces are sorted by score,
    then text, so the same corpus always gives the same ids."""
    by_score = sorted(pieces, key=lambda p: p[1])
    tail = 1
    while tail < len(by_score) and any(
            abs(by_score[tail][1] - by_score[tail - 1][1] - step) < _FALLBACK_STEP / 10
            for step in (0.0, _FALLBACK_STEP)):
        tail += 1
    if tail > 1:
        chars = sorted(p for p, _ in by_score[:tail])
        scores = sorted((s for _, s in by_score[:tail]), reverse=True)
        by_score[:tail] = list(zip(chars, scores))
    return sorted(((p, round(s, 9)) for p, s in by_score), key=lambda p: (-p[1], p[0]))


def corpus_texts(corpus: list[Any]) -> Iterable[str]:
    """The text of a recipe's tokenizer corpus: "demo" or fingerprinted text files."""
    from xstilts_tui.data import demo as demo_data

    for item in corpus:
        if item == "demo":
            yield from demo_data.corpus()
        else:
            with open(item["path"], encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        yield line.rstrip("\n")


def build_base_model(model_spec: dict[str, Any], corpus: list[Any], out_dir: Path) -> dict[str, int]:
    """Train the tokenizer, build an XLM-R model from the recipe's configuration with
    its init seed, and save both in the transformers layout (safetensors)."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    tokenizer = train_tokenizer(corpus_texts(corpus), model_spec["tokenizer"]["vocab_size"])
    from xstilts_tui.tasks.registry import DEFAULT_MAX_POSITIONS

    config = XLMRobertaConfig(**{
        "max_position_embeddings": DEFAULT_MAX_POSITIONS, **model_spec["config"],
        "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
        "type_vocab_size": 1})
    torch.manual_seed(model_spec["init_seed"])
    model = XLMRobertaForMaskedLM(config)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return {"vocab_size": len(tokenizer),
            "total_params": sum(p.numel() for p in model.parameters())}


def resolve_source(model: dict[str, Any], inputs: dict[str, str],
                   commit: str | None = None) -> tuple[str, dict[str, Any]]:
    """Where to load from (a hub id or a folder) and the keyword arguments to do it. A hub
    model loads at ``commit`` when the plan resolved one (the commit its key holds), else
    at the recipe's revision."""
    kwargs: dict[str, Any] = {"trust_remote_code": bool(model.get("trust_remote_code", False))}
    if "stage" in model:
        return str(Path(inputs[model["stage"]]) / "checkpoint"), kwargs
    if "path" in model:
        return model["path"], kwargs
    if commit or model.get("revision"):
        kwargs["revision"] = commit or model["revision"]
    return model["hub"], kwargs


def load_tokenizer(source: str, kwargs: dict[str, Any]):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, **kwargs)


def load_for_task(model_class, source: str, kwargs: dict[str, Any],
                  head: dict[str, Any] | None = None):
    """Load an encoder into ``model_class`` strictly, with a freshly initialised head.

    Every encoder weight must come from the checkpoint with the right shape: a missing
    one stops the run (the silent strict=False bug of older tools). Head weights of the
    checkpoint (an intermediate task's head, a masked-LM head) are dropped; the task's
    head (``head``: its number of labels and their names) is initialised anew from the
    current torch seed. The encoder's pooler is trained only by multiple-choice heads,
    so it counts as part of the head: kept when the checkpoint has one, else
    initialised. Weights load from safetensors or with ``weights_only``; remote code
    only when the recipe asks for it.
    """
    import torch

    try:
        model, info = model_class.from_pretrained(
            source, output_loading_info=True, weights_only=True, dtype=torch.float32,
            ignore_mismatched_sizes=True, **(head or {}), **kwargs)
    except (OSError, ValueError, RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"could not load model from {source}: {first[:300]}") from exc
    bare = model.base_model is model  # an encoder without a head (retrieval)
    prefix = "" if bare else model.base_model_prefix + "."
    pooler = prefix + "pooler."
    missing = sorted(k for k in info["missing_keys"] if k.startswith(prefix) and not k.startswith(pooler))
    mismatched = sorted(key for key in (k[0] if isinstance(k, tuple) else str(k)
                                        for k in info.get("mismatched_keys", ()))
                        if key.startswith(prefix))
    if missing or mismatched:
        what = missing or mismatched
        raise ModelLoadError(
            f"{source}: {len(what)} encoder weight(s) {'missing' if missing else 'mismatched'} "
            f"(first: {what[0]}); refusing to train on a partly random encoder")
    head_modules = [] if bare else [name for name, _ in model.named_children()
                                    if name != model.base_model_prefix]
    for name in head_modules:
        init_head(getattr(model, name), model.config)
    encoder = model if bare else getattr(model, model.base_model_prefix)
    if getattr(encoder, "pooler", None) is not None and any(k.startswith(pooler) for k in info["missing_keys"]):
        init_head(encoder.pooler, model.config)
        head_modules.append(prefix + "pooler")
    report = {"missing_head_keys": sorted(info["missing_keys"]),
              "unexpected_keys": sorted(info["unexpected_keys"]), "head_modules": head_modules}
    return model, report


def init_head(module, config) -> None:
    """BERT-style initialisation: normal(0, initializer_range) weights, zero biases."""
    import torch

    for sub in module.modules():
        if isinstance(sub, torch.nn.Linear):
            torch.nn.init.normal_(sub.weight, mean=0.0, std=config.initializer_range)
            if sub.bias is not None:
                torch.nn.init.zeros_(sub.bias)
        elif isinstance(sub, torch.nn.LayerNorm):
            torch.nn.init.ones_(sub.weight)
            torch.nn.init.zeros_(sub.bias)
