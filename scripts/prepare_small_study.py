#!/usr/bin/env python3
"""Local data for ``recipes/small-study.toml`` on a machine without the hub.

From XQuAD's files (``xquad.<lang>.json``, SQuAD v1.1 JSON, 48 articles parallel across
languages) and UD CoNLL-U treebanks (``<lang>_<name>-ud-<split>.conllu``), writes to OUT:

* ``xquad/train.en.json``: English articles 0-25 (target training);
* ``xquad/selection.en.json``: English articles 26-29 (checkpoint selection);
* ``xquad/heldout.<lang>.json``: articles 30-47 in every language (zero-shot evaluation:
  no held-out article, nor its translation, is trained or selected on);
* ``udpos/train.<lang>.conllu``: each language's treebank sentences, English less its last
  200, which become ``udpos/validation.en.conllu`` (intermediate checkpoint selection).

It prints the ``--set`` arguments that point the recipe at these files. Usage:

    prepare_small_study.py --xquad DIR --udpos DIR --tatoeba DIR --model DIR OUT
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TRAIN_ARTICLES = 26
SELECTION_ARTICLES = 4
UD_VALIDATION_SENTENCES = 200


def split_xquad(folder: Path, out: Path) -> list[str]:
    files = sorted(folder.glob("xquad.*.json"))
    if not files:
        raise SystemExit(f"error: no xquad.<lang>.json files in {folder}")
    out.mkdir(parents=True, exist_ok=True)
    languages = []
    for file in files:
        lang = file.name.split(".")[1]
        doc = json.loads(file.read_text(encoding="utf-8"))
        articles = doc["data"]
        held_from = TRAIN_ARTICLES + SELECTION_ARTICLES
        if len(articles) <= held_from:
            raise SystemExit(f"error: {file} has {len(articles)} articles; expected XQuAD's 48")
        parts = {f"heldout.{lang}.json": articles[held_from:]}
        if lang == "en":
            parts["train.en.json"] = articles[:TRAIN_ARTICLES]
            parts["selection.en.json"] = articles[TRAIN_ARTICLES:held_from]
        for name, chosen in parts.items():
            (out / name).write_text(json.dumps({"version": doc.get("version", "1.1"), "data": chosen},
                                               ensure_ascii=False), encoding="utf-8")
        languages.append(lang)
    return languages


def _sentences(text: str) -> list[str]:
    return [block.strip("\n") + "\n" for block in text.split("\n\n") if block.strip()]


def split_udpos(folder: Path, out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    by_lang: dict[str, list[str]] = {}
    for file in sorted(folder.glob("*.conllu")):
        lang = file.name.split("_")[0]
        by_lang.setdefault(lang, []).extend(_sentences(file.read_text(encoding="utf-8")))
    if "en" not in by_lang:
        raise SystemExit(f"error: no English treebank (en_*.conllu) in {folder}")
    for lang, sentences in by_lang.items():
        if lang == "en":
            (out / "validation.en.conllu").write_text(
                "\n".join(sentences[-UD_VALIDATION_SENTENCES:]) + "\n", encoding="utf-8")
            sentences = sentences[:-UD_VALIDATION_SENTENCES]
        (out / f"train.{lang}.conllu").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    return sorted(by_lang)


def settings(out: Path, model: Path | None, tatoeba: Path | None) -> list[str]:
    """The --set arguments that run the recipe on the files written here."""
    sets = [f"tasks.xquad.train_file={out / 'xquad' / 'train.en.json'}",
            f"tasks.xquad.validation_file={out / 'xquad' / 'selection.en.json'}",
            f"tasks.xquad.eval_files={out / 'xquad' / 'heldout.{lang}.json'}",
            f"tasks.udpos.train_file={out / 'udpos' / 'train.{lang}.conllu'}",
            f"tasks.udpos.validation_file={out / 'udpos' / 'validation.en.conllu'}"]
    if tatoeba:
        sets.append(f"tasks.tatoeba.data_dir={tatoeba.resolve()}")
    if model:
        sets.insert(0, f"model.path={model.resolve()}")
    return sets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--xquad", type=Path, required=True, help="folder of xquad.<lang>.json")
    parser.add_argument("--udpos", type=Path, required=True, help="folder of <lang>_*.conllu treebanks")
    parser.add_argument("--tatoeba", type=Path, help="folder of LASER's tatoeba.<xxx>-eng.* files")
    parser.add_argument("--model", type=Path, help="a local copy of multilingual-e5-small")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    languages = split_xquad(args.xquad, out / "xquad")
    treebanks = split_udpos(args.udpos, out / "udpos")
    print(f"XQuAD in {len(languages)} languages, UD in {', '.join(treebanks)}: {out}", file=sys.stderr)
    print(" ".join(f"--set '{s}'" for s in settings(out, args.model, args.tatoeba)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
