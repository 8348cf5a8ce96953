"""The benchmark authors' own files, as XTREME's download scripts fetch them: the last
source of a task split (``HubSplit.upstream``), downloaded with a pinned sha256 and kept
in the local forms the project reads (no torch here).

* ``tatoeba-v1``: LASER's Tatoeba test files, two a language (``tatoeba.<xxx>-eng.<xxx>``
  and ``.eng``); the checksums are those of LASER's ``data/tatoeba/v1`` at commit 74bc6ae
  (``checksums/tatoeba-v1.sha256``).
* ``ud-2.5``: the Universal Dependencies 2.5 release (``ud-treebanks-v2.5.tgz``, the
  archive XTREME's ``download_data.sh`` fetches); its CoNLL-U files are extracted, and a
  language's split is every treebank folder ``UD_<Language>*`` with that split (Arabic
  NYUAD left out: it ships no words), as the hub's ``udpos.<Language>`` configurations do.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from xstilts_tui.data.download import download
from xstilts_tui.tasks.formats import TATOEBA_CODES, read_conllu, read_tatoeba

CHECKSUMS = Path(__file__).parent / "checksums"
_TATOEBA_BASE = "https://github.com/facebookresearch/LASER/raw/master/data/tatoeba/v1/"
_UD_URL = ("https://lindat.mff.cuni.cz/repository/xmlui/bitstream/handle/11234/1-3105/"
           "ud-treebanks-v2.5.tgz")
# sha256 of ud-treebanks-v2.5.tgz, as pinned by two independent corpus registries.
_UD_SHA256 = "5ff973e44345a5f69b94cc1427158e14e851c967d58773cc2ac5a1d3adaca409"
_UD_SPLITS = {"train": "train", "validation": "dev", "test": "test"}


def _pinned(name: str) -> dict[str, str]:
    pins = {}
    for line in (CHECKSUMS / f"{name}.sha256").read_text().splitlines():
        digest, file = line.split()
        pins[file] = digest
    return pins


@dataclass(frozen=True)
class Upstream:
    name: str
    description: str

    def folder(self, root: Path) -> Path:
        return root / "upstream" / self.name

    def part(self, lang: str, lang_name: str) -> str:
        """The unit fetched and recorded for one language (Tatoeba: a language's two
        files; UD: the whole release)."""
        return TATOEBA_CODES.get(lang, lang) if self.name == "tatoeba-v1" else "release"

    def files(self, lang: str, lang_name: str) -> list[tuple[str, str, str]]:
        """(url, file name, sha256) of what to download."""
        if self.name == "tatoeba-v1":
            pins = _pinned("tatoeba-v1")
            code = TATOEBA_CODES[lang]
            names = (f"tatoeba.{code}-eng.{code}", f"tatoeba.{code}-eng.eng")
            return [(_TATOEBA_BASE + n, n, pins[n]) for n in names]
        return [(_UD_URL, "ud-treebanks-v2.5.tgz", _UD_SHA256)]

    def fetch(self, root: Path, lang: str, lang_name: str) -> list[dict]:
        """Download, verify and convert; the files as recorded in the manifest."""
        folder = self.folder(root)
        recorded = []
        for url, name, sha in self.files(lang, lang_name):
            path = download(url, folder / name, sha)
            recorded.append({"path": str(path.relative_to(folder)), "size": path.stat().st_size,
                             "sha256": sha})
        if self.name == "ud-2.5":
            archive = folder / "ud-treebanks-v2.5.tgz"
            with tarfile.open(archive) as tar:
                members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".conllu")]
                tar.extractall(folder / "extracted", members=members, filter="data")
            (folder / "extracted" / "COMPLETE").write_text(json.dumps({"files": len(members)}))
        return recorded

    def complete(self, root: Path) -> bool:
        return self.name != "ud-2.5" or (self.folder(root) / "extracted" / "COMPLETE").is_file()

    # --- reading ------------------------------------------------------------------------

    def ud_files(self, root: Path, lang_name: str, split: str) -> list[Path]:
        base = self.folder(root) / "extracted" / "ud-treebanks-v2.5"
        wanted = _UD_SPLITS.get(split, split)
        return [f for folder in sorted(base.glob(f"*_{lang_name}*")) if "NYUAD" not in folder.name
                for f in sorted(folder.iterdir()) if wanted in f.name and f.name.endswith(".conllu")]

    def rows(self, root: Path, split: str, lang: str, lang_name: str) -> list[dict] | dict:
        """Rows in the hub's columns (UD: tokens and pos_tags as names); Tatoeba: the
        aligned sentences."""
        if self.name == "tatoeba-v1":
            return read_tatoeba(self.folder(root), lang)
        rows = []
        for split_name in split.split("+"):
            for path in self.ud_files(root, lang_name, split_name):
                rows.extend({"id": r["id"], "tokens": r["tokens"], "pos_tags": r["tags"]}
                            for r in read_conllu(path))
        return rows


UPSTREAM: dict[str, Upstream] = {u.name: u for u in (
    Upstream("tatoeba-v1", "LASER's Tatoeba v1 test files (github.com/facebookresearch/LASER)"),
    Upstream("ud-2.5", "Universal Dependencies 2.5 (lindat.mff.cuni.cz, ud-treebanks-v2.5.tgz)"),
)}
