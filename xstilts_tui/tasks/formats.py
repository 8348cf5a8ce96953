"""Readers of the XTREME tasks' native files (pure Python; the workers load data with
them and ``xstilts-tui score`` reads gold files with them).

* CoNLL-U (UD-POS): the words of each sentence as XTREME has them (a multiword token is
  one word, tagged as its head word; empty nodes skipped) with their UPOS tag (column 4).
* PAN-X: one ``lang:word<TAB>tag`` a line, a blank line between sentences.
* Tatoeba: ``tatoeba.<xxx>-eng.<xxx>`` and ``.eng``, line-aligned translations.
* BUCC 2018: ``<xx>-en.<split>.<xx>`` and ``.en`` (``id<TAB>sentence``) and ``.gold``
  (``xx-id<TAB>en-id``).
"""

from __future__ import annotations

from pathlib import Path

from xstilts_tui.tasks.squad import DataFileError

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


# The UPOS precedence that breaks a tie between a multiword token's highest syntactic
# words (ud-conversion-tools' conllu_to_conll.py, as XTREME runs it with --lang <code>).
_FUSED_HEAD_PRECEDENCE = {
    "default": "VERB NOUN PROPN PRON ADJ NUM ADV INTJ AUX ADP DET PART CCONJ SCONJ X PUNCT ".split(" "),
    "es": "VERB AUX PRON ADP DET".split(" "),
    "fr": "VERB AUX PRON NOUN ADJ ADV ADP DET PART SCONJ CONJ".split(" "),
    "it": "VERB AUX ADV PRON ADP DET INTJ".split(" "),
}


def _fused_head(span: list[int], heads: dict[int, set[int]], upos: dict[int, str],
                precedence: list[str]) -> int:
    """The word of a multiword token that keeps its place and tag: the single highest
    (fewest ancestors over the basic and enhanced edges), else among the highest the one
    whose UPOS comes first in the precedence list (a UPOS missing from the list never
    wins; XTREME's converter stops there)."""
    def ancestors(node: int) -> int:
        seen, todo = set(), [node]
        while todo:
            for head in heads.get(todo.pop(), ()):
                if head not in seen:
                    seen.add(head)
                    todo.append(head)
        seen.discard(node)
        return len(seen)

    depth = [ancestors(n) for n in span]
    highest = [n for n, d in zip(span, depth) if d == min(depth)]
    if len(highest) == 1:
        return highest[0]
    rank = {tag: i for i, tag in reversed(list(enumerate(precedence)))}
    best, best_rank = highest[0], len(precedence) + 1
    for node in highest:
        if rank.get(upos[node], len(precedence) + 1) < best_rank:
            best, best_rank = node, rank[upos[node]]
    return best


def _xtreme_words(words: dict[int, tuple[str, str]], heads: dict[int, set[int]],
                  fused: dict[int, tuple[int, str]], precedence: list[str]) -> tuple[list, list]:
    """A sentence's words and tags as XTREME's UD-POS has them: each multiword token one
    word (its surface form) with the tag of its head word; spaces and zero-width
    non-joiners removed from words."""
    replaced: dict[int, str] = {}
    dropped: set[int] = set()
    for start, (end, form) in fused.items():
        span = [n for n in range(start, end + 1) if n in words]
        if not span:
            continue
        head = _fused_head(span, heads, {n: words[n][1] for n in span}, precedence)
        replaced[head] = form
        dropped.update(n for n in span if n != head)
    tokens, tags = [], []
    for n in sorted(words):
        if n in dropped:
            continue
        form = replaced.get(n, words[n][0])
        tokens.append("".join(form.replace("\u200c", "").split(" ")))
        tags.append(words[n][1])
    return tokens, tags


def read_conllu(path: str | Path, lang: str | None = None) -> list[dict]:
    """Sentences of a CoNLL-U file as ``{"id", "tokens", "tags"}`` (UPOS), in XTREME's
    words: google-research/xtreme converts treebanks with ud-conversion-tools'
    ``conllu_to_conll.py --replace_subtokens_with_fused_forms`` (a multiword token such as
    German "im" stays one word, tagged as its head word) and then drops sentences whose
    words are all, or all but one, "_" (``udpos_preprocess``). Empty nodes are no words.
    ``lang`` picks the precedence list (default: the file name's prefix, ``de_gsd-...``)."""
    path = Path(path)
    lang = lang or path.name.split("_")[0]
    precedence = _FUSED_HEAD_PRECEDENCE.get(lang, _FUSED_HEAD_PRECEDENCE["default"])
    rows: list[dict] = []
    words: dict[int, tuple[str, str]] = {}
    heads: dict[int, set[int]] = {}
    fused: dict[int, tuple[int, str]] = {}
    sent_id = None

    def close() -> None:
        if words:
            tokens, tags = _xtreme_words(words, heads, fused, precedence)
            empty = sum(t == "_" for t in tokens)
            if empty == 0 or empty < len(tokens) - 1:
                rows.append({"id": sent_id or f"{path.stem}-{len(rows)}", "tokens": tokens, "tags": tags})

    for number, line in enumerate(_lines(path), 1):
        if not line.strip():
            close()
            words, heads, fused, sent_id = {}, {}, {}, None
            continue
        if line.startswith("#"):
            if line.startswith("# sent_id = "):
                sent_id = line[len("# sent_id = "):].strip()
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise DataFileError(f"{path}:{number}: expected 10 tab-separated CoNLL-U columns, "
                                f"got {len(cols)}")
        ident = cols[0]
        if "-" in ident:  # a multiword token: its surface form replaces its words
            first, _, last = ident.partition("-")
            if first.isdigit() and last.isdigit():
                fused[int(first)] = (int(last), cols[1])
            continue
        if not ident.isdigit():  # an empty node (8.1): no word
            continue
        node = int(ident)
        words[node] = (cols[1], cols[3])
        linked = heads.setdefault(node, set())
        if cols[6].isdigit():
            linked.add(int(cols[6]))
        if cols[8] != "_":  # enhanced dependencies count as edges too, as the converter reads them
            for pair in cols[8].split("|"):
                head = pair.split(":")[0]
                if head.isdigit():
                    linked.add(int(head))
    close()
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
