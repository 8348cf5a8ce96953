"""Where a recipe's models and data come from, whether they are on this machine, and
fetching them (control plane: no torch, transformers or datasets here).

A task split on the hub (``tasks.HubSplit``) has candidate sources, tried in order:

* ``hub``: the repository's own data files on its main branch, chosen from the
  ``configs`` of its README (skipped for repositories that ship only a loading script);
* ``parquet-export``: the hub's automatic parquet export, branch ``refs/convert/parquet``,
  ``<config>/<split>/*.parquet``;
* the same two for each mirror (a maintained copy with the same columns);
* ``upstream``: the benchmark authors' files (``xstilts_tui.data.upstream``).

Everything fetched lives under the data root (``$XSTILTS_DATA_ROOT``, default
``~/.cache/xstilts-tui/data``): hub files in ``hub/<repo>/<revision>/`` (fetched with
``huggingface_hub.snapshot_download``, resumable, each LFS file's sha256 checked against
the hub's), upstream files in ``upstream/<name>/``, and for each source a manifest in
``manifests/`` written only once every file is verified. A source is on this machine when
its manifest is there and its files have the recorded sizes: that check reads no file and
asks no server. Models go to the Hugging Face cache (``HF_HUB_CACHE``), where
transformers finds them with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstilts_tui.data.download import DownloadError, sha256_of
from xstilts_tui.tasks.formats import TATOEBA_CODES
from xstilts_tui.tasks.registry import HubSplit
from xstilts_tui.data.upstream import UPSTREAM

DATA_ROOT_ENV = "XSTILTS_DATA_ROOT"
EXPORT_REVISION = "refs/convert/parquet"
# What a model needs to load with transformers: configuration, tokenizer files and
# safetensors weights (no pickled .bin, no TF/Flax/ONNX copies).
MODEL_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]
_TRUE = {"1", "true", "yes", "on"}


class SourceUnavailable(Exception):
    """This source cannot serve the split (no such repository, script only, no export):
    the next candidate is tried."""


class DataSourceError(RuntimeError):
    """No source could serve a split; one line naming them and what to do."""


def data_root() -> Path:
    return Path(os.environ.get(DATA_ROOT_ENV) or Path.home() / ".cache" / "xstilts-tui" / "data").expanduser()


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


_problem: dict[str, str | None] = {}


def hub_problem(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be used now (offline mode, no answer to one short request within
    ``timeout``: refused, unknown host, silent), or None (memoised per endpoint)."""
    if hub_offline():
        return "HF_HUB_OFFLINE is set"
    endpoint = hub_endpoint()
    if endpoint not in _problem:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint + "/api/whoami-v2", method="HEAD"),
                                   timeout=timeout).close()
            _problem[endpoint] = None
        except urllib.error.HTTPError:  # an answer, even a refusal, means it is there
            _problem[endpoint] = None
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            text = "no answer within {:g} s".format(timeout) if "timed out" in str(reason) else str(reason)
            _problem[endpoint] = f"{endpoint} does not answer ({text})"
    return _problem[endpoint]


def hub_reachable(timeout: float = 3.0) -> bool:
    """Offline mode is off and the hub answers one short request (memoised)."""
    return hub_problem(timeout) is None


HUB_TIMEOUT_S = (10.0, 30.0)  # connect, and each read: a silent server is an error, not a wait


def bound_hub_timeouts() -> None:
    """huggingface_hub's shared client waits without limit by default: give it bounded
    connect and read timeouts (its own retries then end too)."""
    from huggingface_hub.utils import get_session

    session = get_session()
    session.timeout = type(session.timeout)(HUB_TIMEOUT_S[1], connect=HUB_TIMEOUT_S[0])


def unset_variable(path: str) -> str | None:
    """The environment variable a data path still names after expansion (it is unset):
    such a path is checked when its stage runs, so a recipe for data kept elsewhere (a
    cluster's data root) validates and plans without it."""
    match = re.search(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", path)
    return match.group(1) if match else None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "--", text).strip("-") or "default"


@dataclass(frozen=True)
class Source:
    kind: str  # hub | parquet-export | upstream
    repo: str = ""
    config: str | None = None
    split: str = ""
    upstream: str | None = None
    lang: str = ""
    lang_name: str = ""

    @property
    def revision(self) -> str:
        return EXPORT_REVISION if self.kind == "parquet-export" else "main"

    @property
    def label(self) -> str:
        if self.kind == "upstream":
            return f"{self.upstream} upstream files ({self.lang})"
        where = f"{self.config}/{self.split}" if self.config else self.split
        return f"{self.repo}{'@' + EXPORT_REVISION if self.kind == 'parquet-export' else ''} {where}"

    @property
    def key(self) -> str:
        if self.kind == "upstream":
            return f"upstream/{self.upstream}/{UPSTREAM[self.upstream].part(self.lang, self.lang_name)}"
        return f"{self.kind}/{_slug(self.repo)}/{_slug(self.config or 'default')}/{_slug(self.split)}"

    def manifest_path(self, root: Path) -> Path:
        return root / "manifests" / f"{self.key}.json"

    def folder(self, root: Path) -> Path:
        if self.kind == "upstream":
            return UPSTREAM[self.upstream].folder(root)
        return root / "hub" / _slug(self.repo) / _slug(self.revision)


def _fill(template: str | None, lang: str, lang_name: str) -> str | None:
    if template is None:
        return None
    return template.format(lang=lang, lang_name=lang_name, code3=TATOEBA_CODES.get(lang, lang))


def candidates(split: HubSplit, lang: str, lang_name: str) -> list[Source]:
    config = _fill(split.config, lang, lang_name)
    out: list[Source] = []
    if not split.script:
        out.append(Source("hub", split.path, config, split.split))
    out.append(Source("parquet-export", split.path, config or "default", split.split))
    for mirror in split.mirrors:
        out.extend(candidates(mirror, lang, lang_name))
    if split.upstream:
        out.append(Source("upstream", split=split.split, upstream=split.upstream, lang=lang,
                          lang_name=lang_name))
    return out


def present(source: Source, root: Path | None = None) -> dict[str, Any] | None:
    """The manifest of a fetched source whose files are all there at their sizes."""
    root = root or data_root()
    path = source.manifest_path(root)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    folder = root / manifest.get("folder", "")
    for item in manifest.get("files", []):
        file = folder / item["path"]
        if not file.is_file() or file.stat().st_size != item["size"]:
            return None
    if source.kind == "upstream" and not UPSTREAM[source.upstream].complete(root):
        return None
    return manifest


# --- fetching ------------------------------------------------------------------------


def _hub_errors():
    from huggingface_hub import errors

    return errors


def _tree(repo: str, revision: str, repo_type: str = "dataset", path: str | None = None):
    """{path: RepoFile} of a repository at a revision; SourceUnavailable where the hub
    says there is no such repository, revision or folder."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    errors = _hub_errors()
    try:
        entries = HfApi().list_repo_tree(repo, path_in_repo=path, revision=revision,
                                         repo_type=repo_type, recursive=True)
        return {e.path: e for e in entries if isinstance(e, RepoFile)}
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError,
            errors.EntryNotFoundError) as exc:
        raise SourceUnavailable(f"{type(exc).__name__.replace('Error', '')}") from None
    except errors.HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 404:
            raise SourceUnavailable("not found") from None
        raise DownloadError(f"{repo}@{revision}: {str(exc).splitlines()[0][:160]}") from None


def _readme_data_files(readme: Path, config: str | None) -> list[str] | None:
    """The data-file patterns of a configuration from a README's YAML header (every
    split), or None when the README declares no configurations."""
    import yaml

    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    try:
        header = yaml.safe_load(text.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return None
    configs = header.get("configs") if isinstance(header, dict) else None
    if not isinstance(configs, list) or not configs:
        return None
    chosen = None
    for entry in configs:
        if not isinstance(entry, dict):
            continue
        name = entry.get("config_name", "default")
        if name == config or (config is None and (entry.get("default") or len(configs) == 1)):
            chosen = entry
            break
    if chosen is None:
        raise SourceUnavailable(f"no configuration {config!r} in its README")
    patterns: list[str] = []
    data_files = chosen.get("data_files", [])
    if isinstance(data_files, str):
        data_files = [{"path": data_files}]
    for item in data_files if isinstance(data_files, list) else []:
        paths = item.get("path") if isinstance(item, dict) else item
        patterns.extend([paths] if isinstance(paths, str) else list(paths or []))
    return patterns


def _download(repo: str, revision: str, files: list[str], folder: Path, tree: dict,
              repo_type: str = "dataset", cache_dir: str | None = None) -> Path:
    """``files`` through snapshot_download (resumable), each LFS file's sha256 checked
    against the hub's listing; a mismatch removes the file."""
    from huggingface_hub import snapshot_download

    errors = _hub_errors()
    try:
        if cache_dir is not None or repo_type == "model":
            out = Path(snapshot_download(repo, repo_type=repo_type, revision=revision,
                                         allow_patterns=files, cache_dir=cache_dir))
        else:
            out = Path(snapshot_download(repo, repo_type=repo_type, revision=revision,
                                         allow_patterns=files, local_dir=folder))
    except errors.HfHubHTTPError as exc:
        raise DownloadError(f"{repo}@{revision}: {str(exc).splitlines()[0][:160]}") from None
    except OSError as exc:
        raise DownloadError(f"{repo}@{revision}: {exc}") from None
    for name in files:
        entry = tree.get(name)
        lfs = getattr(entry, "lfs", None)
        target = out / name
        if lfs is not None and lfs.sha256 and sha256_of(target) != lfs.sha256:
            target.unlink()
            raise DownloadError(f"{repo}@{revision} {name}: sha256 differs from the hub's; "
                                "the file was removed, run the fetch again")
    return out


def _write_manifest(source: Source, root: Path, folder: Path, files: list[dict]) -> dict:
    manifest = {"source": source.label, "kind": source.kind, "folder": str(folder.relative_to(root)),
                "config": source.config, "split": source.split, "files": files}
    path = source.manifest_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(path)
    return manifest


def fetch(source: Source, root: Path | None = None) -> dict[str, Any]:
    """Download and verify one source; its manifest. SourceUnavailable when the source
    cannot serve this split (the next one may), DownloadError when a download fails."""
    root = root or data_root()
    folder = source.folder(root)
    if source.kind == "upstream":
        files = UPSTREAM[source.upstream].fetch(root, source.lang, source.lang_name)
        return _write_manifest(source, root, folder, files)
    if source.kind == "parquet-export":
        tree = _tree(source.repo, EXPORT_REVISION, path=source.config)
        files = []
        for split in source.split.split("+"):
            found = sorted(p for p in tree if p.startswith(f"{source.config}/{split}/")
                           and p.endswith(".parquet"))
            if not found:
                raise SourceUnavailable(f"the export has no {source.config}/{split}")
            files += found
    else:
        tree = _tree(source.repo, "main")
        patterns = None
        if "README.md" in tree:
            _download(source.repo, "main", ["README.md"], folder, tree)
            patterns = _readme_data_files(folder / "README.md", source.config)
        if patterns is None:
            if any(p.endswith(".py") and "/" not in p for p in tree):
                raise SourceUnavailable("its main branch holds a loading script, which datasets "
                                        "no longer runs")
            patterns = [p for p in tree if not p.endswith(".py") and p not in (".gitattributes",)]
        files = sorted(p for p in tree if any(fnmatch.fnmatch(p, pat) for pat in patterns))
        if not files:
            raise SourceUnavailable(f"no data files for configuration {source.config or 'default'}")
        files = ["README.md"] * ("README.md" in tree) + files
    _download(source.repo, source.revision, files, folder, tree)
    recorded = [{"path": p, "size": (folder / p).stat().st_size,
                 "sha256": getattr(getattr(tree[p], "lfs", None), "sha256", None)} for p in files]
    return _write_manifest(source, root, folder, recorded)


def obtain(split: HubSplit, lang: str, lang_name: str, root: Path | None = None) -> tuple[Source, dict]:
    """The first candidate source on this machine; else, where the hub may be used, the
    first that can be fetched. DataSourceError when none serves."""
    root = root or data_root()
    sources = candidates(split, lang, lang_name)
    for source in sources:
        manifest = present(source, root)
        if manifest is not None:
            return source, manifest
    if hub_offline():
        raise DataSourceError(f"{sources[0].label} is not on this machine (data root {root}) and "
                              "HF_HUB_OFFLINE is set; run `xstilts-tui data fetch RECIPE` where the "
                              "hub is reachable and point XSTILTS_DATA_ROOT at its copy")
    return fetch_first(sources, root)


def fetch_first(sources: list[Source], root: Path | None = None) -> tuple[Source, dict]:
    """Fetch the first source that can serve; DataSourceError naming why each could not."""
    reasons = []
    for source in sources:
        try:
            return source, fetch(source, root)
        except SourceUnavailable as exc:
            reasons.append(f"{source.label}: {exc}")
        except DownloadError as exc:
            reasons.append(str(exc))
        except Exception as exc:  # the network, a proxy: name it and go on to the next source
            text = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
            reasons.append(f"{source.label}: {type(exc).__name__} {text}".strip())
    raise DataSourceError("no source could serve it: " + "; ".join(reasons))


# --- models --------------------------------------------------------------------------


def model_present(repo: str, revision: str | None, cache_dir: str | None = None) -> Path | None:
    """The cached snapshot folder of a hub model with its configuration and safetensors
    weights, or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, "config.json", cache_dir=cache_dir, revision=revision)
    if not isinstance(found, str):
        return None
    folder = Path(found).parent
    return folder if any(folder.glob("*.safetensors")) else None


def fetch_model(repo: str, revision: str | None, cache_dir: str | None = None) -> Path:
    tree = _tree(repo, revision or "main", repo_type="model")
    files = sorted(p for p in tree if any(fnmatch.fnmatch(p, pat) for pat in MODEL_PATTERNS))
    if not any(p.endswith(".safetensors") for p in files):
        raise SourceUnavailable("no safetensors weights (only pickled ones, which are not loaded)")
    return _download(repo, revision or "main", files, Path(), tree, repo_type="model", cache_dir=cache_dir)
