"""The identity of what a stage reads: its starting weights (a hub model's resolved
commit, a local folder's file hashes) and every data input (a local file's sha256, a
fetched hub source's files and hashes; a path under an unset variable, or a source not
fetched yet, by its name). Part of a stage's key (``provenance``, ``plan``); no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xstilts_tui.protocol.provenance import digest, file_sha256, folder_hashes


def local_file(path: str) -> dict[str, Any]:
    """A local input by its content; one under an unset variable by its name."""
    from xstilts_tui.data.sources import unset_variable

    if unset_variable(path):
        return {"path": path, "unset": True}
    try:
        return {"path": path, "sha256": file_sha256(path)}
    except OSError:
        return {"path": path, "missing": True}


def _local_folder(path: str) -> dict[str, Any]:
    from xstilts_tui.data.sources import unset_variable

    if unset_variable(path) or not Path(path).is_dir():
        return {"path": path, "unset": bool(unset_variable(path)), "missing": not Path(path).is_dir()}
    return {"path": path, "sha256": digest(folder_hashes(path))}


def _hub_commit(repo: str, revision: str | None, online: bool) -> str | None:
    """A hub model's commit: the revision when it is one, the cached snapshot's, else
    (``online``) the hub's answer where it can be asked; None otherwise."""
    import re

    from xstilts_tui.data import sources as datasources

    if revision and re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    folder = datasources.model_present(repo, revision)
    if folder is not None:
        return folder.name  # .../snapshots/<commit>
    if not online or not datasources.hub_reachable():
        return None
    try:
        from huggingface_hub import HfApi

        return HfApi().model_info(repo, revision=revision, timeout=10).sha
    except Exception:  # the hub answered with an error: resolved when the stage fetches it
        return None


def weights_identity(model: dict[str, Any], online: bool = False) -> dict[str, Any]:
    """What a stage's starting weights are: a hub model's commit (asked of the hub when
    ``online`` and it is not cached here), a local folder's file hashes; a built or
    trained model is its stage's key (in ``parents``)."""
    if model.get("hub"):
        return {"hub": model["hub"], "commit": _hub_commit(model["hub"], model.get("revision"), online)
                or f"unresolved ({model.get('revision') or 'main'})"}
    if model.get("path"):
        return {"path": model["path"], "files": folder_hashes(model["path"])} \
            if Path(model["path"]).is_dir() else {"path": model["path"], "missing": True}
    return {}


def _hub_source(split, lang: str, lang_name: str) -> dict[str, Any]:
    """The first candidate source of a hub split on this machine, by its files' hashes;
    one not fetched yet by its name."""
    from xstilts_tui.data import sources as datasources

    if Path(split.path).is_dir():  # a local dataset folder
        return _local_folder(split.path)
    root = datasources.data_root()
    sources = datasources.candidates(split, lang, lang_name)
    for source in sources:
        manifest = datasources.present(source, root)
        if manifest is None:
            continue
        folder = root / manifest.get("folder", "")
        files = {item["path"]: item.get("sha256") or file_sha256(folder / item["path"])
                 for item in manifest.get("files", [])}
        return {"source": source.label, "sha256": digest(files)}
    return {"source": sources[0].label if sources else split.path, "fetched": False}


_SPLIT_FILE = {"train": "train_file", "validation": "validation_file", "test": "eval_files"}


def _split_input(spec, settings: dict[str, Any], split: str, lang: str) -> tuple[str, dict] | None:
    if split == "test" and spec.evaluation is None:
        split = "validation"  # tasks evaluated on their validation split
    local = settings.get(_SPLIT_FILE[split])
    if local:
        path = local.replace("{lang}", lang)
        return path, local_file(path)
    source = {"train": spec.train if lang == "en" else spec.translate_train,
              "validation": spec.validation, "test": spec.evaluation}[split]
    if source is None:
        return None
    return f"{spec.name} {split} ({lang})", _hub_source(source, lang, spec.lang_names.get(lang, lang))


def data_identity(task: dict[str, Any], stage_kind: str, selects: bool) -> dict[str, Any]:
    """{input: identity} for every data input one task of a stage reads."""
    from xstilts_tui.tasks.registry import RETRIEVAL, TASKS

    spec, settings = TASKS[task["name"]], task["settings"]
    if spec.generated:
        return {}  # made by the code (its fingerprint covers it) from the settings
    if settings.get("data_dir"):
        return {settings["data_dir"]: _local_folder(settings["data_dir"])}
    reads: list[tuple[str, str]] = []
    if spec.kind == RETRIEVAL:
        reads = [("test", lang) for lang in settings["languages"]] if spec.evaluation else []
    else:
        reads = [("train", lang) for lang in settings.get("train_languages") or ("en",)]
        if stage_kind == "intermediate" or selects:
            reads.append(("validation", "en"))
        if stage_kind == "target":
            reads += [("test", lang) for lang in settings["languages"]]
    out: dict[str, Any] = {}
    for split, lang in reads:
        found = _split_input(spec, settings, split, lang)
        if found is not None:
            out[found[0]] = found[1]
        if split == "train" and lang == "en" and not settings.get("train_file"):
            for more in spec.train_also:  # ANLI+: MNLI and SNLI after ANLI
                out[f"{spec.name} train ({lang}): {more.path}"] = _hub_source(more, lang, lang)
    return out


def corpus_identity(corpus: list[str]) -> list[Any]:
    """A text corpus (the tokenizer's, continued MLM's): files by content, names as they are."""
    return [local_file(c) if Path(c).is_file() else c for c in corpus]
