"""Real data sources against a loopback stand-in for the hub and the upstream hosts:
each source kind (a repository's own parquet files, the hub's parquet export, a mirror,
the benchmark authors' files) loads; checksums are enforced; cut downloads resume;
`data status` and `data fetch`; a recipe then runs with HF_HUB_OFFLINE=1 from the copy;
offline refusal at validation."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import ROOT, SHARED_DATA, XQUAD_DIR, run_cli
from hub_stub import HubStub

UPOS = ["NOUN", "PUNCT", "ADP", "NUM", "SYM", "SCONJ", "ADJ", "PART", "DET", "CCONJ", "PROPN",
        "PRON", "X", "_", "ADV", "INTJ", "VERB", "AUX"]
PANX_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
TATOEBA = SHARED_DATA / "tatoeba"
LASER = "github.com/facebookresearch/LASER/raw/master/data/tatoeba/v1/"


def _parquet(columns: dict, features=None) -> bytes:
    import datasets

    buffer = io.BytesIO()
    datasets.Dataset.from_dict(columns, features=features).to_parquet(buffer)
    return buffer.getvalue()


def _ud_rows(path: Path, count: int) -> dict:
    from xstilts_tui.tasks.formats import read_conllu

    rows = read_conllu(path)[:count]
    return {"id": [r["id"] for r in rows], "tokens": [r["tokens"] for r in rows],
            "pos_tags": [[UPOS.index(t) for t in r["tags"]] for r in rows]}


def _readme(configs: dict[str, dict[str, str]]) -> bytes:
    lines = ["---", "configs:"]
    for name, splits in configs.items():
        lines += [f"- config_name: {name}", "  data_files:"]
        for split, pattern in splits.items():
            lines += [f"  - split: {split}", f"    path: {pattern}"]
    return ("\n".join(lines + ["---", "# a dataset card", ""])).encode()


def _squad_rows(lang: str, count: int) -> dict:
    from xstilts_tui.tasks.squad import read_squad_json

    rows = read_squad_json(XQUAD_DIR / f"xquad.{lang}.json")[:count]
    return {key: [r[key] for r in rows] for key in ("id", "title", "context", "question", "answers")}


@pytest.fixture(scope="module")
def stub():
    """The hub and upstream hosts, with fixtures in each source's exact layout."""
    import datasets

    server = HubStub().start()
    ud = SHARED_DATA / "udpos"
    udpos = datasets.Features({"id": datasets.Value("string"),
                               "tokens": datasets.Sequence(datasets.Value("string")),
                               "pos_tags": datasets.Sequence(datasets.ClassLabel(names=UPOS))})
    # google/xtreme: a loading script on main; the parquet export, <config>/<split>/NNNN.parquet
    server.add_repo("datasets", "google/xtreme", {"xtreme.py": b"# a loading script\n",
                                                  "README.md": b"# XTREME\n"})
    server.add_repo("datasets", "google/xtreme", {
        "udpos.English/train/0000.parquet": _parquet(_ud_rows(ud / "en_ewt-ud-test.conllu", 300), udpos),
        "udpos.English/validation/0000.parquet": _parquet(_ud_rows(ud / "en_ewt-ud-test.conllu", 40), udpos),
        "udpos.English/test/0000.parquet": _parquet(_ud_rows(ud / "en_ewt-ud-test.conllu", 60), udpos),
        "udpos.German/test/0000.parquet": _parquet(_ud_rows(ud / "de_gsd-ud-test.conllu", 60), udpos),
        # the hub's Tatoeba rows keep each line's newline
        "tatoeba.fra/validation/0000.parquet": _parquet(
            {"source_language": ["fra"] * 2, "target_language": ["eng"] * 2,
             "source_sentence": ["Bonjour.\n", "Merci.\n"],
             "target_sentence": ["Hello.\n", "Thanks.\n"]}),
    }, revision="refs/convert/parquet")
    # unimelb-nlp/wikiann: parquet on main, configs in the README (the PAN-X mirror)
    panx = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                              "ner_tags": datasets.Sequence(datasets.ClassLabel(names=PANX_TAGS)),
                              "langs": datasets.Sequence(datasets.Value("string"))})
    server.add_repo("datasets", "unimelb-nlp/wikiann", {
        "README.md": _readme({"de": {"test": "de/test-*", "train": "de/train-*"}}),
        "de/test-00000-of-00001.parquet": _parquet(
            {"tokens": [["Angela", "Merkel", "in", "Berlin"], ["Hallo"]],
             "ner_tags": [[1, 2, 0, 5], [0]], "langs": [["de"] * 4, ["de"]]}, panx),
        "de/train-00000-of-00001.parquet": _parquet(
            {"tokens": [["x"]], "ner_tags": [[0]], "langs": [["de"]]}, panx),
    })
    # google/xquad: parquet on main
    server.add_repo("datasets", "google/xquad", {
        "README.md": _readme({"xquad.de": {"validation": "xquad.de/validation-*"}}),
        "xquad.de/validation-00000-of-00001.parquet": _parquet(_squad_rows("de", 25)),
    })
    # allenai/cosmos_qa: script only on main, parquet export
    cosmos = {"context": ["c1", "c2"], "question": ["q1", "q2"], "answer0": ["a", "b"],
              "answer1": ["c", "d"], "answer2": ["e", "f"], "answer3": ["g", "h"], "label": [1, 3]}
    server.add_repo("datasets", "allenai/cosmos_qa", {"cosmos_qa.py": b"# script\n", "README.md": b"#\n"})
    server.add_repo("datasets", "allenai/cosmos_qa", {
        "default/train/0000.parquet": _parquet(cosmos),
        "default/validation/0000.parquet": _parquet(cosmos)}, revision="refs/convert/parquet")
    # LASER's Tatoeba files, byte for byte (their pinned checksums are the real ones)
    for path in TATOEBA.glob("tatoeba.*"):
        server.upstream[LASER + path.name] = path.read_bytes()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub_model(stub, tiny_model_dir):
    files = {p.name: p.read_bytes() for p in tiny_model_dir.iterdir() if p.is_file()}
    stub.add_repo("models", "xstilts-test/tiny-xlmr", files)
    return "xstilts-test/tiny-xlmr"


def _env(stub, tmp_path, offline=False, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_ENDPOINT=stub.url, XSTILTS_DATA_ROOT=str(tmp_path / "data"),
               HF_HUB_CACHE=str(tmp_path / "hub"), HF_HOME=str(tmp_path / "hf-home"),
               XSTILTS_UPSTREAM_MIRROR=stub.url + "/upstream", HF_HUB_DISABLE_PROGRESS_BARS="1",
               PYTHONPATH=str(ROOT))
    if offline:
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    env.update(extra)
    return env


def _cli(args, env, cwd=None):
    return subprocess.run([sys.executable, "-m", "xstilts_tui", *map(str, args)], env=env,
                          capture_output=True, text=True, cwd=cwd or ROOT, timeout=600)


LOAD = """
import json, sys
from xstilts_tui.compute.inputs.data import load_rows, load_retrieval
from xstilts_tui.data.sources import Source, fetch, SourceUnavailable, data_root
def settings(**kw):
    base = dict(languages=["de"], max_train_examples=0, max_eval_examples=0)
    base.update(kw); return base
out = {}
rows = load_rows({"name": "udpos", "settings": settings()}, "test", "de")
out["udpos"] = [len(rows), rows[0]["tokens"][:3], rows[0]["tags"][:3]]
rows = load_rows({"name": "xquad", "settings": settings()}, "test", "de")
out["xquad"] = [len(rows), rows[0]["id"]]
rows = load_rows({"name": "panx", "settings": settings()}, "test", "de")
out["panx"] = [len(rows), rows[0]["tags"]]
rows = load_rows({"name": "cosmosqa", "settings": settings()}, "train", "en")
out["cosmosqa"] = [len(rows), rows[0]["label"]]
data = load_retrieval({"name": "tatoeba", "settings": settings()}, "de")
out["tatoeba"] = [len(data["source"]), data["source"][0], data["english"][0]]
hub = load_retrieval({"name": "tatoeba", "settings": settings()}, "fr")
out["tatoeba_hub"] = [hub["source"], hub["english"]]
try:
    fetch(Source("hub", "google/xtreme", "udpos.German", "test"))
    out["script"] = "fetched"
except SourceUnavailable as exc:
    out["script"] = str(exc)
out["manifests"] = sorted(str(p.relative_to(data_root() / "manifests")) for p in (data_root() / "manifests").rglob("*.json"))
print(json.dumps(out))
"""


def test_every_source_kind_loads(stub, tmp_path):
    done = subprocess.run([sys.executable, "-c", LOAD], env=_env(stub, tmp_path), capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    from xstilts_tui.tasks.formats import read_conllu, read_tatoeba

    german = read_conllu(SHARED_DATA / "udpos" / "de_gsd-ud-test.conllu")[0]
    # the parquet export (google/xtreme ships a script): tag names from the ClassLabel
    assert out["udpos"] == [60, german["tokens"][:3], german["tags"][:3]]
    assert out["xquad"][0] == 25  # the repository's own parquet files on main
    assert out["panx"] == [2, ["B-PER", "I-PER", "O", "B-LOC"]]  # the mirror
    assert out["cosmosqa"] == [2, 1]  # script on main, export read
    laser = read_tatoeba(TATOEBA, "de")  # upstream files, checked against the pinned sha256
    assert out["tatoeba"] == [len(laser["source"]), laser["source"][0], laser["english"][0]]
    assert out["tatoeba_hub"] == [["Bonjour.", "Merci."], ["Hello.", "Thanks."]]
    assert "loading script" in out["script"]
    assert "parquet-export/google--xtreme/udpos.German/test.json" in out["manifests"]
    assert "upstream/tatoeba-v1/deu.json" in out["manifests"]
    assert "hub/unimelb-nlp--wikiann/de/test.json" in out["manifests"]


def test_upstream_checksum_mismatch_is_refused(stub, tmp_path, monkeypatch):
    from xstilts_tui.data.download import ChecksumError, download

    monkeypatch.setenv("XSTILTS_UPSTREAM_MIRROR", stub.url + "/upstream")
    name = "tatoeba.deu-eng.deu"
    dest = tmp_path / name
    with pytest.raises(ChecksumError) as info:
        download("https://" + LASER + name, dest, "0" * 64)
    assert "differs from the pinned" in str(info.value) and "\n" not in str(info.value)
    assert not dest.exists() and not dest.with_name(name + ".part").exists()


def test_a_cut_download_resumes_where_it_stopped(stub, tmp_path, monkeypatch):
    from xstilts_tui.data.download import download
    from xstilts_tui.data.upstream import _pinned

    monkeypatch.setenv("XSTILTS_UPSTREAM_MIRROR", stub.url + "/upstream")
    name = "tatoeba.fra-eng.fra"
    request = f"/upstream/{LASER}{name}"
    stub.cut_once.add(request)
    before = len(stub.gets(request))
    path = download("https://" + LASER + name, tmp_path / name, _pinned("tatoeba-v1")[name])
    assert path.read_bytes() == (TATOEBA / name).read_bytes()
    gets = stub.gets(request)[before:]
    assert len(gets) == 2 and gets[0][2] == ""
    size = len((TATOEBA / name).read_bytes())
    assert gets[1][2] == f"bytes={size // 2}-"  # the second asked only for the rest


def test_ud_release_upstream_is_extracted_and_read_as_the_hub_does(stub, tmp_path, monkeypatch):
    from xstilts_tui.data import upstream
    from xstilts_tui.tasks.formats import read_conllu

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member, source in (("UD_German-GSD/de_gsd-ud-test.conllu", "de_gsd-ud-test.conllu"),
                               ("UD_English-EWT/en_ewt-ud-test.conllu", "en_ewt-ud-test.conllu"),
                               ("UD_Arabic-NYUAD/ar_nyuad-ud-test.conllu", "en_ewt-ud-test.conllu"),
                               ("UD_German-GSD/LICENSE.txt", "LICENSE.German-GSD.txt")):
            data = (SHARED_DATA / "udpos" / source).read_bytes()
            info = tarfile.TarInfo(f"ud-treebanks-v2.5/{member}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = buffer.getvalue()
    stub.upstream["lindat.mff.cuni.cz/repository/xmlui/bitstream/handle/11234/1-3105/"
                  "ud-treebanks-v2.5.tgz"] = archive
    monkeypatch.setenv("XSTILTS_UPSTREAM_MIRROR", stub.url + "/upstream")
    ud = upstream.UPSTREAM["ud-2.5"]
    # the real pin refuses this stand-in archive
    from xstilts_tui.data.download import ChecksumError

    with pytest.raises(ChecksumError):
        ud.fetch(tmp_path, "de", "German")
    monkeypatch.setattr(upstream, "_UD_SHA256", hashlib.sha256(archive).hexdigest())
    ud.fetch(tmp_path, "de", "German")
    assert ud.complete(tmp_path)
    rows = ud.rows(tmp_path, "test", "de", "German")
    assert len(rows) == len(read_conllu(SHARED_DATA / "udpos" / "de_gsd-ud-test.conllu")) == 977
    assert ud.rows(tmp_path, "test", "ar", "Arabic") == []  # NYUAD ships no words: left out


RECIPE = """
name = "fetched"
seeds = [1]
targets = ["udpos", "tatoeba"]

[model]
hub = "{model}"

[hparams]
lr = 5e-3
batch_size = 8
max_length = 128
doc_stride = 32
max_steps = 4
log_every = 2

[[arms]]
name = "baseline"

[tasks.udpos]
languages = ["en", "de"]
max_eval_examples = 20

[tasks.tatoeba]
languages = ["de"]
max_eval_examples = 50
"""


@pytest.mark.slow
def test_status_fetch_then_an_offline_run_from_the_copy(stub, hub_model, tmp_path):
    recipe = tmp_path / "fetched.toml"
    recipe.write_text(RECIPE.format(model=hub_model))
    env = _env(stub, tmp_path)
    before = _cli(["data", "status", recipe, "--json"], env)
    assert before.returncode == 1, before.stderr
    status = json.loads(before.stdout)
    assert status["missing"] == len(status["inputs"]) == 5  # model, udpos train + test en, de, tatoeba
    copy = tmp_path / "copy"
    fetched = _cli(["data", "fetch", recipe, "--to", copy], env)
    assert fetched.returncode == 0, fetched.stderr[-3000:]
    export = [line for line in fetched.stdout.splitlines() if line.strip().startswith("export ")][-1]
    settings = dict(item.split("=", 1) for item in export.split()[1:])
    assert settings == {"XSTILTS_DATA_ROOT": str(copy / "data"), "HF_HUB_CACHE": str(copy / "hub"),
                        "HF_HUB_OFFLINE": "1"}
    after_env = {**_env(stub, tmp_path, offline=True), **settings}
    after = _cli(["data", "status", recipe, "--json"], after_env)
    assert after.returncode == 0, after.stdout
    report = json.loads(after.stdout)
    assert report["missing"] == 0 and all(i["bytes"] for i in report["inputs"])
    assert {i["source"] for i in report["inputs"] if i["kind"] == "data"} >= {
        "google/xtreme@refs/convert/parquet udpos.German/test", "tatoeba-v1 upstream files (de)"}
    # a second fetch downloads nothing
    requests = len(stub.log)
    again = _cli(["data", "fetch", recipe, "--to", copy], env)
    assert again.returncode == 0 and len(stub.log) == requests
    assert again.stdout.count("have ") == 5
    # the run: no network (HF_HUB_OFFLINE, a dead endpoint), everything from the copy
    run = _cli(["--recipe", recipe, "--output", tmp_path / "out"], after_env)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    import polars as pl

    results = pl.read_parquet(tmp_path / "out" / "results.parquet")
    test = results.filter(pl.col("split") == "test") if "split" in results.columns else results
    assert set(test.filter(pl.col("task") == "udpos")["language"]) == {"en", "de"}
    assert set(test.filter(pl.col("task") == "tatoeba")["language"]) == {"de"}


@pytest.mark.slow
def test_a_run_that_fetches_its_inputs_keys_stages_by_them_and_replays_them_next_time(
        stub, hub_model, tmp_path):
    """Nothing fetched beforehand: the run fetches the model and data first, so that the
    stages' keys hold the hub commit and the files' hashes; the plan afterwards (offline)
    has the same keys and every stage cached."""
    recipe = tmp_path / "online.toml"
    recipe.write_text(RECIPE.format(model=hub_model))
    env = _env(stub, tmp_path)
    run = _cli(["--recipe", recipe, "--output", tmp_path / "out"], env)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "fetching 5 input(s)" in run.stderr
    plan = _cli(["plan", recipe, "--output", tmp_path / "out", "--json"], _env(stub, tmp_path, offline=True))
    assert plan.returncode == 0, plan.stderr
    stages = json.loads(plan.stdout)["stages"]
    assert {s["state"] for s in stages} == {"cached"}, [(s["id"], s["why"]) for s in stages]
    weights = stages[0]["provenance"]["weights"]
    assert weights["hub"] == hub_model and len(weights["commit"]) == 40


def test_hub_checksum_mismatch_is_refused_by_fetch(stub, tmp_path):
    data = stub.repos[("datasets", "google/xtreme", "refs/convert/parquet")]["udpos.German/test/0000.parquet"]
    stub.tamper["udpos.German/test/0000.parquet"] = bytes(b ^ 0xFF for b in data)
    try:
        recipe = tmp_path / "r.toml"
        recipe.write_text(f'name = "r"\ntargets = ["udpos"]\n[model]\npath = "{tmp_path}"\n'
                          '[[arms]]\nname = "baseline"\n[tasks.udpos]\nlanguages = ["de"]\n')
        (tmp_path / "config.json").write_text("{}")
        done = _cli(["data", "fetch", recipe], _env(stub, tmp_path))
    finally:
        stub.tamper.clear()
    assert done.returncode == 1
    assert "udpos test (de)" in done.stderr and "sha256" in done.stderr
    assert not list((tmp_path / "data").rglob("manifests/parquet-export/google--xtreme/udpos.German/*"))


def test_validate_warns_of_a_hub_model_missing_while_offline_and_run_refuses(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XSTILTS_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "r"\ntargets = ["demo-qa"]\n[model]\nhub = "org/absent"\n'
                      '[[arms]]\nname = "baseline"\n')
    code, out, err = run_cli(["validate", recipe], capsys)
    # a recipe written on a laptop for a cluster is valid: a warning, exit 0
    assert code == 0 and err.count("\n") == 1 and err.startswith("warning: ") and "ok (" in out
    assert "data status" in err
    assert "[model] hub: org/absent is not on this machine and HF_HUB_OFFLINE is set" in err
    assert "data fetch" in err
    code, _, err = run_cli(["--recipe", recipe, "--output", tmp_path / "o"], capsys)
    assert code == 2 and "data fetch" in err and not (tmp_path / "o").exists()


def test_validate_warns_of_hub_data_missing_while_offline(tmp_path, monkeypatch, capsys, tiny_model_dir):
    monkeypatch.setenv("XSTILTS_DATA_ROOT", str(tmp_path / "data"))
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "r"\ntargets = ["xquad"]\n[model]\npath = "{tiny_model_dir}"\n'
                      '[[arms]]\nname = "baseline"\n[tasks.xquad]\nlanguages = ["de"]\n')
    code, _, err = run_cli(["validate", recipe], capsys)
    assert code == 0 and err.count("\n") == 1 and err.startswith("warning: ")
    assert "tasks.xquad.train_file: xquad train (en) is not on this machine" in err
    assert "(and 2 more)" in err and "data fetch" in err
    code, out, _ = run_cli(["data", "status", recipe], capsys)
    assert code == 1 and out.count("MISSING") == 3


def test_unset_variables_warn_in_validate_and_mark_plan_stages(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("XS_NOWHERE", raising=False)
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "r"\ntargets = ["udpos"]\n[model]\n'
                      'config = { hidden_size = 32, num_hidden_layers = 1, num_attention_heads = 2, '
                      'intermediate_size = 64 }\n[[arms]]\nname = "baseline"\n[tasks.udpos]\n'
                      'languages = ["en"]\ntrain_file = "${XS_NOWHERE}/train.conllu"\n'
                      'validation_file = "${XS_NOWHERE}/dev.conllu"\n'
                      'eval_files = "${XS_NOWHERE}/{lang}.conllu"\n')
    code, out, err = run_cli(["validate", recipe], capsys)
    assert code == 0 and "ok" in out
    assert "warning:" in err and "tasks.udpos.train_file: $XS_NOWHERE is unset" in err
    code, out, _ = run_cli(["plan", recipe], capsys)
    assert code == 0 and "needs $XS_NOWHERE (unset)" in out


# --- small things --------------------------------------------------------------------


def test_score_accepts_every_language_the_data_set_has(tmp_path, capsys, xquad_dir):
    gold = xquad_dir / "xquad.ro.json"
    data = json.loads(gold.read_text(encoding="utf-8"))
    pred = {qa["id"]: qa["answers"][0]["text"] for a in data["data"] for p in a["paragraphs"]
            for qa in p["qas"]}
    (tmp_path / "p.json").write_text(json.dumps(pred, ensure_ascii=False), encoding="utf-8")
    code, out, err = run_cli(["score", "--task", "xquad", "--gold", gold, "--pred",
                              tmp_path / "p.json", "--lang", "ro"], capsys)
    assert code == 0, err
    assert json.loads(out)["f1"] == 100.0


def test_a_recipe_may_evaluate_romanian_but_the_xtreme_score_keeps_its_eleven(tmp_path):
    import polars as pl

    from xstilts_tui.recipe.parse import parse_recipe
    from xstilts_tui.results.store import xtreme_table
    from xstilts_tui.tasks.registry import TASKS

    recipe = parse_recipe('name = "r"\ntargets = ["xquad"]\n[model]\nhub = "x/y"\n'
                          '[[arms]]\nname = "baseline"\n[tasks.xquad]\n'
                          'languages = ["en", "ro"]\n', str(tmp_path / "r.toml"))
    assert recipe.tasks["xquad"].languages == ("en", "ro")
    eleven = list(TASKS["xquad"].languages)
    rows = [{"arm": "baseline", "seed": 1, "task": "xquad", "language": lang, "metric": metric,
             "value": 50.0, "step": 10, "split": "test"}
            for lang in eleven + ["ro"] for metric in ("f1", "exact_match")]
    rows += [{**rows[-1], "language": "ro", "metric": m, "value": 0.0, "step": 11}
             for m in ("f1", "exact_match")]
    table = xtreme_table(pl.DataFrame(rows), ["baseline"], ["xquad"], {"xquad": eleven + ["ro"]})
    assert "50.0" in table and "45.8" not in table  # ro's zeros left out of XTREME's average


def test_panx_without_any_source_says_which_file_goes_where(tmp_path, monkeypatch):
    from xstilts_tui.compute.inputs.data import DataError, load_rows

    monkeypatch.setenv("XSTILTS_DATA_ROOT", str(tmp_path / "data"))
    settings = dict(languages=["de"], max_train_examples=0, max_eval_examples=0)
    with pytest.raises(DataError) as info:
        load_rows({"name": "panx", "settings": settings}, "test", "de")
    message = str(info.value)
    assert "\n" not in message and "AmazonPhotos.zip" in message and "tasks.panx.train_file" in message and "eval_files" in message
