"""A loopback HTTP server standing in for the Hugging Face hub and for the benchmark
authors' download hosts, in tests (127.0.0.1 only; started and stopped by the test).

It answers the requests ``huggingface_hub`` makes (``HF_ENDPOINT`` pointed at it): a
repository's revision info, its recursive tree listing with each file's size and LFS
sha256, and HEAD/GET of a file with ``X-Repo-Commit``, ``ETag`` and ``Range``; and plain
GETs of upstream files under ``/upstream/<host>/<path>`` (the form
``XSTILTS_UPSTREAM_MIRROR`` rewrites real URLs to). A path can be set to be cut off
half-way on its first GET, to test resuming; every request is logged.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


class HubStub:
    def __init__(self) -> None:
        # (kind, repo, revision) -> {path: bytes}; kind is "models" or "datasets"
        self.repos: dict[tuple[str, str, str], dict[str, bytes]] = {}
        self.upstream: dict[str, bytes] = {}  # "<host>/<path>" -> bytes
        self.cut_once: set[str] = set()  # request paths whose first GET stops half-way
        self.tamper: dict[str, bytes] = {}  # file path in a repo -> other bytes served for it
        self.log: list[tuple[str, str, str]] = []  # (method, path, Range header)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add_repo(self, kind: str, repo: str, files: dict[str, bytes], revision: str = "main") -> None:
        self.repos[(kind, repo, revision)] = dict(files)

    def commit(self, kind: str, repo: str, revision: str) -> str:
        return hashlib.sha1(f"{kind}/{repo}@{revision}".encode()).hexdigest()

    def gets(self, fragment: str) -> list[tuple[str, str, str]]:
        return [entry for entry in self.log if entry[0] == "GET" and fragment in entry[1]]

    def start(self) -> "HubStub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- request handling ---------------------------------------------------------------

    def _find(self, kind: str, repo: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
        for (k, r, rev), files in self.repos.items():
            if k == kind and r == repo and (rev == revision or self.commit(k, r, rev) == revision):
                return self.commit(k, r, rev), files
        return None

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _json(self, payload, status: int = 200) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _missing(self, what: str) -> None:
                body = json.dumps({"error": what}).encode()
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Error-Code", "EntryNotFound" if "file" in what else "RepoNotFound")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _bytes(self, data: bytes, key: str, headers: dict[str, str]) -> None:
                start = 0
                ranged = self.headers.get("Range", "")
                if ranged.startswith("bytes="):
                    start = int(ranged[6:].split("-")[0] or 0)
                self.send_response(206 if start else 200)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if self.command == "HEAD":
                    return
                body = data[start:]
                if key in stub.cut_once:
                    stub.cut_once.discard(key)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                stub.log.append((self.command, path, self.headers.get("Range", "")))
                parts = path.strip("/").split("/")
                if parts[0] == "upstream":
                    key = "/".join(parts[1:])
                    if key not in stub.upstream:
                        return self._missing("file")
                    return self._bytes(stub.upstream[key], path, {})
                if parts[0] == "api" and len(parts) >= 5:
                    kind, repo, action = parts[1], f"{parts[2]}/{parts[3]}", parts[4]
                    revision = unquote(parts[5]) if len(parts) > 5 else "main"
                    found = stub._find(kind, repo, revision)
                    if found is None:
                        return self._missing("repo")
                    commit, files = found
                    if action == "revision":
                        return self._json({"id": repo, "sha": commit, "private": False,
                                           "siblings": [{"rfilename": p} for p in sorted(files)]})
                    if action == "tree":
                        prefix = unquote("/".join(parts[6:]))
                        entries = [{"type": "file", "path": p, "size": len(data),
                                    "oid": hashlib.sha1(data).hexdigest(),
                                    "lfs": {"oid": hashlib.sha256(data).hexdigest(),
                                            "size": len(data), "pointerSize": 134}}
                                   for p, data in sorted(files.items())
                                   if not prefix or p.startswith(prefix.rstrip("/") + "/")]
                        return self._json(entries)
                    return self._missing("repo")
                kind = "datasets" if parts[0] == "datasets" else "models"
                if kind == "datasets":
                    parts = parts[1:]
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._missing("repo")
                repo, revision = f"{parts[0]}/{parts[1]}", unquote(parts[3])
                file = unquote("/".join(parts[4:]))
                found = stub._find(kind, repo, revision)
                if found is None:
                    return self._missing("repo")
                commit, files = found
                if file not in files:
                    return self._missing("file")
                data = files[file]
                if self.command == "GET" and file in stub.tamper:
                    return self._bytes(stub.tamper[file], path, {
                        "X-Repo-Commit": commit, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'})
                self._bytes(data, path, {"X-Repo-Commit": commit,
                                         "ETag": f'"{hashlib.sha256(data).hexdigest()}"'})

        return Handler
