"""End to end: recipes run through all three phases in worker processes, headless."""

import json
import shutil

import polars as pl
import pytest

from conftest import SMALL_DEMO, XQUAD_DIR, run_cli

pytestmark = pytest.mark.slow




def test_demo_recipe_end_to_end_then_fully_cached(tmp_path, capsys):
    recipe = tmp_path / "small-demo.toml"
    recipe.write_text(SMALL_DEMO, encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["--recipe", recipe, "--output", out], capsys)
    assert code == 0, stdout + stderr

    results = pl.read_parquet(out / "results.parquet")
    assert results.columns[:12] == ["run", "recipe", "arm", "seed", "stage", "stage_key", "task",
                                    "language", "split", "metric", "value", "step"]
    final = results.filter((pl.col("split") == "test") & (pl.col("step") == 12))
    langs = ["en", "es", "de", "ru", "zh"]
    for arm in ("baseline", "jobs"):
        for lang in langs:
            for metric in ("f1", "exact_match"):
                rows = final.filter((pl.col("arm") == arm) & (pl.col("language") == lang)
                                    & (pl.col("metric") == metric))
                assert rows.height == 1, (arm, lang, metric)
                assert 0.0 <= rows["value"][0] <= 100.0
    # Every language before training, at step 0, for both arms (the fresh head's floor).
    before = results.filter(pl.col("step") == 0)
    assert before.height == 2 * 5 * 2 and set(before["language"]) == set(langs)
    # The intermediate stage scored its English validation set.
    assert results.filter(pl.col("split") == "validation")["task"].unique().to_list() == ["demo-jobs"]

    stages = pl.read_parquet(out / "stages.parquet")
    assert stages["status"].to_list() == ["done"] * 4
    trained = stages.filter(pl.col("kind") != "base")
    assert (trained["steps"] == 12).all() and (trained["trainable_params"] > 0).all()
    assert (trained["checkpoint_bytes"] > 0).all() and (trained["peak_memory_bytes"] > 0).all()
    assert json.loads(trained["versions"][0])["torch"]

    # Progress went through the events: loss fell over the target training.
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in events
              if e["type"] == "progress" and e["stage"] == "target/baseline/demo-qa/seed1"]
    assert len(losses) == 6 and losses[-1] < losses[0]

    # The summary table: arms as rows, languages and avg as columns, deltas to the baseline.
    lines = stdout.splitlines()
    title = next(i for i, line in enumerate(lines) if line.startswith("demo-qa f1"))
    assert lines[title].startswith("demo-qa f1: 1 seed; trained on en, zero-shot in the other")
    assert lines[title + 1].split() == ["arm"] + langs + ["avg"]
    jobs = next(i for i, line in enumerate(lines) if line.startswith("jobs "))
    # A delta in every column, with its interval from the kept predictions, on one seed.
    assert lines[jobs + 1].split()[0] == "Δ" and len(lines[jobs + 1].split()) == 7
    assert lines[jobs + 2].split()[0] == "95%" and lines[jobs + 2].count("[") == 6
    assert "paired bootstrap over the test examples" in stdout
    assert "random weights" in stdout  # what the demo's numbers are
    assert max(len(line) for line in lines[title:title + 8]) <= 100

    # Running it again trains nothing and gives the same final table.
    code, stdout2, stderr2 = run_cli(["--recipe", recipe, "--output", out], capsys)
    assert code == 0, stderr2
    assert stdout2.count("] cached") == 4 and "started" not in stdout2
    again = pl.read_parquet(out / "results.parquet")
    cols = ["arm", "seed", "stage", "task", "language", "split", "metric", "value", "step"]
    assert again.select(cols).sort(cols).equals(results.select(cols).sort(cols))
    assert again["cached"].all()


def _local_recipe(model_dir, validation_file, languages=("en", "de")):
    return f"""
name = "local"
targets = ["xquad"]

[model]
path = "{model_dir}"

[hparams]
batch_size = 8
grad_accum = 1
max_length = 128
doc_stride = 64
max_steps = 3
lr = 1e-4
eval_batch_size = 16

[[arms]]
name = "baseline"

[[arms]]
name = "squad"
intermediate = ["squad"]

[tasks.squad]
train_file = "{XQUAD_DIR}/xquad.en.json"
validation_file = "{validation_file}"
max_train_examples = 24
max_eval_examples = 8

[tasks.xquad]
languages = {json.dumps(list(languages))}
train_file = "{XQUAD_DIR}/xquad.en.json"
eval_files = "{XQUAD_DIR}/xquad.{{lang}}.json"
max_train_examples = 24
max_eval_examples = 16
"""


def test_model_from_a_local_folder_with_local_files(tmp_path, capsys, tiny_model_dir):
    recipe = tmp_path / "local.toml"
    recipe.write_text(_local_recipe(tiny_model_dir, XQUAD_DIR / "xquad.en.json", ("en", "de", "th")),
                      encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["--recipe", recipe, "--output", out], capsys)
    assert code == 0, stdout + stderr
    stages = pl.read_parquet(out / "stages.parquet")
    assert stages["stage"].to_list() == ["intermediate/squad/torch/seed0",
                                         "target/baseline/xquad/seed0", "target/squad/xquad/seed0"]
    results = pl.read_parquet(out / "results.parquet").filter(pl.col("split") == "test")
    assert sorted(results["language"].unique().to_list()) == ["de", "en", "th"]
    # Each checkpoint loads back with from_pretrained, strictly.
    from transformers import AutoModelForQuestionAnswering

    for stage_dir in (tmp_path / "stage-cache").glob("target-*"):
        model, info = AutoModelForQuestionAnswering.from_pretrained(
            stage_dir / "checkpoint", output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"]
        assert (stage_dir / "checkpoint" / "model.safetensors").is_file()


def test_missing_encoder_weights_stop_the_stage(tmp_path, capsys, tiny_model_dir):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    weights = load_file(broken / "model.safetensors")
    dropped = next(k for k in weights if "layer.0.attention.self.query.weight" in k)
    del weights[dropped]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})

    from xstilts_tui.compute.inputs.models import ModelLoadError, load_for_task
    from transformers import AutoModelForQuestionAnswering

    with pytest.raises(ModelLoadError, match="encoder weight"):
        load_for_task(AutoModelForQuestionAnswering, str(broken), {})

    recipe = tmp_path / "r.toml"
    recipe.write_text(_local_recipe(broken, XQUAD_DIR / "xquad.en.json"), encoding="utf-8")
    code, stdout, stderr = run_cli(["--recipe", recipe, "--output", tmp_path / "out"], capsys)
    assert code == 1
    assert "1 encoder weight(s) missing (first: roberta.encoder.layer.0.attention.self.query.weight)" \
        in stderr
    stages = pl.read_parquet(tmp_path / "out" / "stages.parquet")
    assert set(stages["status"].to_list()) == {"failed", "skipped"}


def test_a_failing_stage_fails_its_dependents_and_the_rest_go_on(tmp_path, capsys, tiny_model_dir):
    bad = tmp_path / "broken.json"
    bad.write_text('{"data": [', encoding="utf-8")
    recipe = tmp_path / "r.toml"
    recipe.write_text(_local_recipe(tiny_model_dir, bad), encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["--recipe", recipe, "--output", out], capsys)
    assert code == 1
    stages = {r["stage"]: r for r in pl.read_parquet(out / "stages.parquet").iter_rows(named=True)}
    assert stages["intermediate/squad/torch/seed0"]["status"] == "failed"
    assert "broken.json: not SQuAD JSON" in stages["intermediate/squad/torch/seed0"]["reason"]
    assert stages["target/squad/xquad/seed0"]["status"] == "skipped"
    assert stages["target/baseline/xquad/seed0"]["status"] == "done"
    results = pl.read_parquet(out / "results.parquet")
    assert set(results["arm"].to_list()) == {"baseline"}
    assert "error: intermediate/squad/torch/seed0:" in stderr


def test_test_scores_and_predictions_name_the_step_whose_weights_they_scored(tmp_path, capsys, tiny_model_dir):
    # Selection every step, stopping at the first evaluation without a gain: the kept step
    # is before the last one trained, and the test sets are scored on the kept weights.
    data = json.loads((XQUAD_DIR / "xquad.en.json").read_text(encoding="utf-8"))
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                qa["id"] += "-selection"  # not a question the test sets hold
    selection = tmp_path / "selection.en.json"
    selection.write_text(json.dumps(data), encoding="utf-8")
    text = _local_recipe(tiny_model_dir, XQUAD_DIR / "xquad.en.json")
    text = text[:text.index('[[arms]]\nname = "squad"')] + text[text.index("[tasks.xquad]"):]
    text = text.replace("max_steps = 3\n", "max_steps = 12\neval_every = 1\npatience = 1\n").replace(
        'eval_files = "', f'validation_file = "{selection}"\neval_files = "')
    recipe = tmp_path / "r.toml"
    recipe.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["--recipe", recipe, "--output", out], capsys)
    assert code == 0, stdout + stderr
    stage = pl.read_parquet(out / "stages.parquet").row(0, named=True)
    kept, trained = stage["best_step"], stage["steps"]
    assert kept is not None and kept < trained, (kept, trained)
    results = pl.read_parquet(out / "results.parquet")
    test = results.filter(pl.col("split") == "test")
    assert test.height == 4 and test["step"].to_list() == [kept] * 4
    validation = results.filter(pl.col("split") == "validation")
    assert validation["step"].max() == trained  # validation rows keep the step they evaluated
    for path in (tmp_path / "stage-cache").glob("target-*/predictions/*.parquet"):
        assert pl.read_parquet(path)["step"].unique().to_list() == [kept]
