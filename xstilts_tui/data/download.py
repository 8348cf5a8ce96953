"""Resumable, checksummed downloads of the benchmark authors' own files (no torch here).

A download goes to ``<file>.part`` and continues from there with an HTTP ``Range``
request after an interruption (in the same call, or in a later one); the file is renamed
into place only once its sha256 equals the pinned one. ``XSTILTS_UPSTREAM_MIRROR``
rewrites ``https://host/path`` to ``<mirror>/host/path``, for a site mirror (and for tests).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

MIRROR_ENV = "XSTILTS_UPSTREAM_MIRROR"
_CHUNK = 1 << 16
_ATTEMPTS = 4


class DownloadError(RuntimeError):
    """A file could not be had; the message names it and what to do."""


class ChecksumError(DownloadError):
    pass


def mirrored(url: str) -> str:
    mirror = os.environ.get(MIRROR_ENV, "").rstrip("/")
    if not mirror:
        return url
    _, _, rest = url.partition("://")
    return f"{mirror}/{rest}" if rest else url


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _progress(name: str, total: int | None, initial: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=name[-40:],
                disable=None, file=sys.stderr, leave=False)


def _get(url: str, part: Path, name: str) -> None:
    """Append what the server has past ``part``'s current size."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # already complete
            return
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    with response:
        if have and response.status != 206:  # the server ignored the range: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        with open(part, "ab" if have else "wb") as out, _progress(name, total, have) as bar:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                bar.update(len(chunk))
        if total is not None and part.stat().st_size < total:
            raise http.client.IncompleteRead(b"", total - part.stat().st_size)


def download(url: str, dest: Path, sha256: str) -> Path:
    """``url`` to ``dest``, resumed from ``dest.part`` if an earlier try stopped, and
    checked against ``sha256``. A mismatch removes the bytes and raises ChecksumError."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    source = mirrored(url)
    for attempt in range(_ATTEMPTS):
        try:
            _get(source, part, dest.name)
            break
        except (http.client.IncompleteRead, ConnectionError, TimeoutError, urllib.error.URLError,
                http.client.HTTPException) as exc:
            if attempt == _ATTEMPTS - 1:
                raise DownloadError(f"{url}: download stopped ({exc.__class__.__name__}) after "
                                    f"{part.stat().st_size if part.exists() else 0} bytes; run "
                                    "the same command again to resume") from None
    digest = sha256_of(part)
    if digest != sha256:
        part.unlink()
        raise ChecksumError(f"{url}: sha256 {digest[:16]}... differs from the pinned "
                            f"{sha256[:16]}...; the download was removed (a changed or damaged file)")
    part.replace(dest)
    return dest
