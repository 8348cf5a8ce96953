"""Readers of the XTREME tasks' native files (pure Python; the workers load data with
them and ``xstilts-tui score`` reads gold files with them).

* CoNLL-U (UD-POS): the syntactic words of each sentence (integer ids; multiword-token
  ranges ``4-5`` and empty nodes ``8.1`` skipped) with their UPOS tag (column 4).
* PAN-X: one ``lang:word<TAB>tag`` a line, a blank line between sentences.
* Tatoeba: ``tatoeba.<xxx>-eng.<xxx>`` and ``.eng``, line-aligned translations.
* BUCC 2018: ``<xx>-en.<split>.<xx>`` and ``.en`` (``id<TAB>sentence``) and ``.gold``
  (``xx-id<TAB>en-id``).
"""

from __future__ import annotations

from pathlib import Path

from .squad_format import DataFileError

# XTREME's two-letter codes -> the ISO 639-3 codes of LASER's Tatoeba file names.
TATOEBA_CODES = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "es": "spa",
    "et": "est", "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin",
    "hu": "hun", "id": "ind", "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz",
    "ko": "kor", "ml": "mal", "mr": "mar", "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh",
    "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl", "tr": "tur", "ur": "urd", "vi": "vie",
    "zh": "cmn",
}


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataFileError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise DataFileError(f"{path}: not UTF-8 text") from None


def read_conllu(path: str | Path) -> list[dict]:
    """Sentences of a CoNLL-U file as ``{"id", "tokens", "tags"}`` (UPOS tags)."""
    path = Path(path)
    rows: list[dict] = []
    tokens: list[str] = []
    tags: list[str] = []
    sent_id = None
    for number, line in enumerate(_lines(path), 1):
        if not line.strip():
            if tokens:
                rows.append({"id": sent_id or f"{path.stem}-{len(rows)}", "tokens": tokens, "tags": tags})
            tokens, tags, sent_id = [], [], None
            continue
        if line.startswith("#"):
            if line.startswith("# sent_id = "):
                sent_id = line[len("# sent_id = "):].strip()
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise DataFileError(f"{path}:{number}: expected 10 tab-separated CoNLL-U columns, "
                                f"got {len(cols)}")
        if not cols[0].isdigit():  # a multiword token range or an empty node
            continue
        tokens.append(cols[1])
        tags.append(cols[3])
    if tokens:
        rows.append({"id": sent_id or f"{path.stem}-{len(rows)}", "tokens": tokens, "tags": tags})
    return rows


def read_panx(path: str | Path) -> list[dict]:
    """Sentences of a PAN-X file (``lang:word<TAB>tag``), language prefixes removed."""
    path = Path(path)
    rows: list[dict] = []
    tokens: list[str] = []
    tags: list[str] = []
    for number, line in enumerate(_lines(path), 1):
        if not line.strip():
            if tokens:
                rows.append({"id": f"{path.stem}-{len(rows)}", "tokens": tokens, "tags": tags})
            tokens, tags = [], []
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise DataFileError(f"{path}:{number}: expected a word and its tag separated by a tab")
        word = parts[0]
        if len(word) > 3 and word[2] == ":" and word[:2].isalpha():
            word = word[3:]
        tokens.append(word)
        tags.append(parts[-1])
    if tokens:
        rows.append({"id": f"{path.stem}-{len(rows)}", "tokens": tokens, "tags": tags})
    return rows


def tatoeba_paths(folder: str | Path, lang: str) -> tuple[Path, Path]:
    code = TATOEBA_CODES[lang]
    base = Path(folder) / f"tatoeba.{code}-eng"
    return base.with_name(base.name + f".{code}"), base.with_name(base.name + ".eng")


def read_tatoeba(folder: str | Path, lang: str) -> dict:
    """``{"source": [...], "english": [...]}``: line i of one translates line i of the other."""
    source_path, english_path = tatoeba_paths(folder, lang)
    source, english = _lines(source_path), _lines(english_path)
    if len(source) != len(english):
        raise DataFileError(f"{source_path}: {len(source)} lines but {english_path} has "
                            f"{len(english)}; Tatoeba files are line-aligned")
    return {"source": source, "english": english}


def _id_lines(path: Path) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    for number, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        parts = line.split("\t", 1)
        if len(parts) != 2:
            raise DataFileError(f"{path}:{number}: expected an id and a sentence separated by a tab")
        ids.append(parts[0])
        texts.append(parts[1])
    return ids, texts


def read_bucc(folder: str | Path, lang: str, split: str) -> dict:
    """One BUCC 2018 pair and split: source and English ids and sentences, gold pairs."""
    base = Path(folder) / f"{lang}-en.{split}"
    src_ids, src = _id_lines(base.with_name(base.name + f".{lang}"))
    en_ids, en = _id_lines(base.with_name(base.name + ".en"))
    gold = set()
    gold_path = base.with_name(base.name + ".gold")
    if gold_path.exists():
        for number, line in enumerate(_lines(gold_path), 1):
            parts = line.split("\t")
            if len(parts) != 2:
                raise DataFileError(f"{gold_path}:{number}: expected two ids separated by a tab")
            gold.add((parts[0], parts[1]))
    return {"source_ids": src_ids, "source": src, "english_ids": en_ids, "english": en, "gold": gold}
