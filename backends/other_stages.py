"""The stages that do not train: the base model (built from a configuration, with a
tokenizer trained on the spot) and a retrieval target (sentence vectors, scored in every
language)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from xstilts_tui.protocol.hparams import from_spec
from xstilts_tui.tasks.registry import TASKS

from .stage_output import dir_bytes, peak_memory, write_checkpoint


def run_base(spec: dict[str, Any], stage_dir: Path, events) -> dict[str, Any]:
    from .inputs.models import build_base_model

    info: dict[str, int] = {}
    checkpoint = write_checkpoint(
        stage_dir, lambda folder: info.update(build_base_model(spec["model"], spec["corpus"], folder)))
    events.emit("log", message=f"built the base model: vocabulary {info['vocab_size']}, "
                               f"{info['total_params']:,} parameters")
    return {"total_params": info["total_params"], "checkpoint_bytes": dir_bytes(checkpoint)}


def run_retrieval_stage(spec: dict[str, Any], events, backend, tokenizer, source: str,
                        kwargs: dict[str, Any]) -> dict[str, Any]:
    """A retrieval target (Tatoeba, BUCC): no training; the encoder's sentence vectors,
    scored in every language. The encoder loads strictly, like every hand-off."""
    from transformers import AutoModel

    from .engines import distributed
    from .inputs.data import load_retrieval
    from .inputs.models import load_for_task
    from .kinds.retrieval import default_layer, evaluate_retrieval

    task = spec["task"]
    hp = from_spec(spec["hparams"])
    model, report = load_for_task(AutoModel, source, kwargs)
    model.to(backend.device)
    layer = hp.retrieval_layer or default_layer(model.config.num_hidden_layers)
    events.emit("log", message=f"loaded encoder from {source}; sentence vectors from hidden "
                               f"states {layer} of {model.config.num_hidden_layers} layers")
    languages = task["settings"]["languages"]
    events.emit("stage_started", total_steps=0, languages=len(languages))
    started = time.perf_counter()
    for lang in languages:
        scores = evaluate_retrieval(model, tokenizer, backend, task["name"], load_retrieval(task, lang), hp)
        for metric in TASKS[task["name"]].metric_names:
            events.emit("score", task=task["name"], language=lang, split="test", metric=metric,
                        value=scores[metric], step=0)
        if "threshold" in scores:
            events.emit("log", message=f"{lang}: margin threshold {scores['threshold']:.4f} "
                                       f"(F1 {scores['sample_f1']:.2f} on the sample split)")
    if distributed.rank() != 0:
        return {}
    peak, memory_kind = peak_memory(backend.device)
    events.emit("log", message=f"scored {len(languages)} languages in {time.perf_counter() - started:.1f} s")
    return {"steps": 0, "peak_memory_bytes": peak,
            "memory_kind": memory_kind, "trainable_params": 0,
            "total_params": sum(p.numel() for p in model.parameters()), "checkpoint_bytes": 0,
            "backend": spec["backend"]["name"], "backend_kind": spec["backend"]["kind"],
            "world_size": distributed.world_size()}
