"""Recipe validation: good recipes load into typed objects; every class of bad input is
one line naming the file and the field, exit status 2, nothing written."""

from pathlib import Path

import pytest

from conftest import ROOT, XQUAD_DIR, run_cli
from xstilts_tui.protocol.hparams import HParams
from xstilts_tui.recipe.parse import load_recipe, parse_recipe
from xstilts_tui.recipe.schema import RecipeError

GOOD = f"""
name = "t"
seeds = [1, 2]
targets = ["xquad"]

[model]
hub = "FacebookAI/xlm-roberta-large"

[[arms]]
name = "baseline"

[[arms]]
name = "squad"
intermediate = ["squad"]

[tasks.xquad]
languages = ["en", "de", "zh"]
eval_files = "{XQUAD_DIR}/xquad.{{lang}}.json"
"""


def test_good_recipe_with_reference_defaults():
    recipe = parse_recipe(GOOD, "t.toml")
    assert recipe.model.source == "hub"
    assert [a.name for a in recipe.arms] == ["baseline", "squad"]
    assert recipe.arms[1].intermediate == ("squad",) and recipe.arms[1].backend == "torch"
    assert recipe.baseline.name == "baseline"
    assert recipe.seeds == (1, 2)
    assert recipe.tasks["xquad"].languages == ("en", "de", "zh")
    # The squad task is used by an arm, so it gets default settings (all its languages).
    assert recipe.tasks["squad"].languages == ("en",)
    hp = recipe.hparams_target
    assert (hp.lr, hp.weight_decay, hp.adam_eps, hp.warmup_ratio, hp.max_grad_norm) == \
        (1e-5, 0.01, 1e-8, 0.1, 1.0)
    assert (hp.batch_size, hp.grad_accum, hp.epochs) == (4, 4, 2.0)
    assert (hp.max_length, hp.doc_stride, hp.max_query_length, hp.n_best, hp.max_answer_length) \
        == (384, 128, 64, 20, 30)


def test_languages_default_to_all_of_the_task():
    recipe = parse_recipe(GOOD.replace('languages = ["en", "de", "zh"]\n', "").replace(
        f'eval_files = "{XQUAD_DIR}/xquad.{{lang}}.json"', ""), "t.toml")
    assert recipe.tasks["xquad"].languages == \
        ("en", "es", "de", "el", "ru", "tr", "ar", "vi", "th", "zh", "hi")


def test_per_phase_hparams_override_shared_ones():
    text = GOOD + "\n[hparams]\nlr = 3e-5\nbatch_size = 8\n[hparams.target]\nlr = 2e-5\nepochs = 3\n"
    recipe = parse_recipe(text, "t.toml")
    assert recipe.hparams_intermediate.lr == 3e-5 and recipe.hparams_target.lr == 2e-5
    assert recipe.hparams_intermediate.batch_size == recipe.hparams_target.batch_size == 8
    assert recipe.hparams_target.epochs == 3.0 and recipe.hparams_intermediate.epochs == 2.0


def test_shipped_recipes_validate_and_plan_offline(tmp_path, capsys):
    files = sorted((ROOT / "recipes").glob("*.toml"))
    assert {f.name for f in files} >= {"demo.toml", "full-vs-lora.toml", "xstilts-paper.toml",
                                       "multilingual-vs-english.toml"}
    # Each is valid; offline, validate warns of the ones whose hub model and data are not on
    # this machine, naming `data fetch` (the demo needs none), and exits 0.
    for file in files:
        load_recipe(file)
    code, out, err = run_cli(["validate", *files], capsys)
    assert code == 0 and out.count(": ok") == len(files) and "demo.toml: ok" in out
    assert all(line.startswith("warning: ") for line in err.splitlines())
    assert err.count("data fetch") == len(files) - 1 and "demo.toml" not in err
    for file in files:
        code, out, err = run_cli(["plan", file, "--output", tmp_path / file.stem], capsys)
        assert code == 0, err
        assert out.startswith(f"recipe {file.stem}:")
    paper = run_cli(["plan", ROOT / "recipes" / "xstilts-paper.toml", "--output", tmp_path / "p"], capsys)[1]
    assert paper.splitlines()[0].startswith("recipe xstilts-paper: 327 stages")
    assert "target/all-nine/tatoeba/seed3" in paper and "target/ccg/bucc2018/seed1" in paper


def test_local_model_path_is_relative_to_the_recipe(tmp_path, tiny_model_dir):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").symlink_to(tiny_model_dir)
    text = GOOD.replace('hub = "FacebookAI/xlm-roberta-large"', 'path = "models/tiny"')
    (tmp_path / "r.toml").write_text(text, encoding="utf-8")
    recipe = load_recipe(tmp_path / "r.toml")
    assert recipe.model.source == "path"
    assert Path(recipe.model.path) == (tmp_path / "models" / "tiny").resolve()


BAD = [
    # (what is wrong, change to GOOD, the field the message must name, words it must contain)
    ("toml syntax", lambda t: t + "\n[[arms]\n", "TOML syntax", "line"),
    ("unknown top key", lambda t: t.replace('seeds = [1, 2]', 'seeds = [1, 2]\nseed = 3'),
     "seed:", "did you mean 'seeds'"),
    ("unknown arm key", lambda t: t.replace('name = "squad"\n', 'name = "squad"\nintermediates = []\n'),
     "arms[1].intermediates", "did you mean 'intermediate'"),
    ("unknown hparam", lambda t: t + "\n[hparams]\nlearning_rat = 1e-5\n", "hparams.learning_rat",
     "did you mean 'learning_rate'"),
    ("unknown task key", lambda t: t.replace("[tasks.xquad]", "[tasks.xquad]\nlangs = []"),
     "tasks.xquad.langs", "did you mean 'languages'"),
    ("unknown target task", lambda t: t.replace('targets = ["xquad"]', 'targets = ["xqad"]'),
     "targets", "unknown task 'xqad' (did you mean 'xquad'?)"),
    ("unknown intermediate task", lambda t: t.replace('["squad"]', '["mnlii"]'),
     "arms[1].intermediate", "unknown task 'mnlii' (did you mean 'mnli'?)"),
    ("task without hub data", lambda t: t.replace('["squad"]', '["ccg"]'),
     "arms[1].intermediate", "ccg has no training data on the hub; give tasks.ccg.train_file"),
    ("mlm ratio out of range", lambda t: t.replace('intermediate = ["squad"]',
                                                   'intermediate = ["squad"]\nmlm = { ratio = 1.5 }'),
     "arms[1].mlm.ratio", "between 0 and 1"),
    ("mlm without a task", lambda t: t.replace('name = "baseline"', 'name = "baseline"\nmlm = { ratio = 0.1 }'),
     "arms[0].mlm", "name at least one intermediate task"),
    ("mlm corpus missing", lambda t: t.replace(
        'intermediate = ["squad"]', 'intermediate = ["squad"]\nmlm = { ratio = 0.1, corpus = ["cc.txt"] }'),
     "arms[1].mlm.corpus", "neither a known corpus"),
    ("negative patience", lambda t: t + "\n[hparams.intermediate]\npatience = -1\n",
     "hparams.intermediate.patience", "0 or more"),
    ("mask everything", lambda t: t + "\n[hparams]\nmlm_probability = 1.0\n",
     "hparams.mlm_probability", "below 1"),
    ("unknown language", lambda t: t.replace('"en", "de", "zh"', '"en", "deu"'),
     "tasks.xquad.languages", "unknown language for xquad 'deu'"),
    ("unknown backend", lambda t: t.replace('intermediate = ["squad"]',
                                            'intermediate = ["squad"]\nbackend = "jax"'),
     "arms[1].backend", "unknown backend 'jax'; expected one of: deepspeed, peft, torch"),
    ("wrong type", lambda t: t + "\n[hparams]\nbatch_size = \"four\"\n", "hparams.batch_size",
     "expected an integer"),
    ("wrong type for a list", lambda t: t.replace('seeds = [1, 2]', 'seeds = 1'), "seeds",
     "expected a list"),
    ("bool is not a number", lambda t: t + "\n[hparams]\nlr = true\n", "hparams.lr",
     "expected a number"),
    ("zero size", lambda t: t + "\n[hparams.target]\nbatch_size = 0\n", "hparams.target.batch_size",
     "greater than 0"),
    ("negative size", lambda t: t + "\n[hparams]\nmax_length = -384\n", "hparams.max_length",
     "greater than 0"),
    ("negative count", lambda t: t.replace("[tasks.xquad]", "[tasks.xquad]\nmax_eval_examples = -1"),
     "tasks.xquad.max_eval_examples", "0 (all) or more"),
    ("stride too long", lambda t: t + "\n[hparams]\ndoc_stride = 400\n", "hparams.doc_stride",
     "below max_length"),
    ("missing eval file", lambda t: t.replace('"en", "de", "zh"', '"en", "de", "zh", "hi"').replace(
        XQUAD_DIR.as_posix(), "/nonexistent/xquad"), "tasks.xquad.eval_files",
     "no file for language 'en' at /nonexistent/xquad/xquad.en.json"),
    ("missing train file", lambda t: t.replace("[tasks.xquad]", '[tasks.xquad]\ntrain_file = "nope.json"'),
     "tasks.xquad.train_file", "no file at"),
    ("missing model folder", lambda t: t.replace('hub = "FacebookAI/xlm-roberta-large"',
                                                 'path = "no/such/model"'),
     "model.path", "no model folder with config.json"),
    ("two model sources", lambda t: t.replace('[model]\n', '[model]\npath = "x"\n'), "model",
     "exactly one of hub"),
    ("missing targets", lambda t: t.replace('targets = ["xquad"]', ""), "targets", "missing"),
    ("duplicate arm", lambda t: t.replace('name = "squad"', 'name = "baseline"'), "arms[1].name",
     "already called 'baseline'"),
    ("missing tokenizer corpus", lambda t: t.replace('hub = "FacebookAI/xlm-roberta-large"',
        'config = { hidden_size = 32, num_attention_heads = 4 }\ntokenizer = { corpus = ["no-such.txt"] }'),
     "model.tokenizer.corpus", "neither a known corpus"),
    ("unknown model config field", lambda t: t.replace('hub = "FacebookAI/xlm-roberta-large"',
        'config = { hiden_size = 32 }'), "model.config.hiden_size", "(did you mean 'hidden_size'?)"),
    ("model config wrong type", lambda t: t.replace('hub = "FacebookAI/xlm-roberta-large"',
        'config = { num_hidden_layers = "two" }'), "model.config.num_hidden_layers", "expected an integer"),
    ("max_length beyond positions", lambda t: t.replace('hub = "FacebookAI/xlm-roberta-large"',
        'config = { hidden_size = 32, num_attention_heads = 4, max_position_embeddings = 130 }'),
     "hparams.max_length", "at most 128"),
    ("bad precision", lambda t: t + "\n[hparams]\nprecision = \"fp8\"\n", "hparams.precision",
     "expected one of: auto, bf16, fp16, fp32"),
]


@pytest.mark.parametrize("label, change, field, words", BAD, ids=[b[0] for b in BAD])
def test_bad_recipes_are_one_line_errors(tmp_path, capsys, label, change, field, words):
    path = tmp_path / "bad.toml"
    path.write_text(change(GOOD), encoding="utf-8")
    with pytest.raises(RecipeError):
        load_recipe(path)
    for command in (["validate", path], ["plan", path], ["--recipe", path, "--output", tmp_path / "out"]):
        code, out, err = run_cli(command, capsys)
        assert code == 2, (command, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert str(path) in lines[0] and field in lines[0] and words in lines[0], lines[0]
        assert "Traceback" not in err
    # --recipe validated first and wrote nothing.
    assert not (tmp_path / "out").exists()


def test_missing_recipe_file(tmp_path, capsys):
    code, _, err = run_cli(["validate", tmp_path / "nope.toml"], capsys)
    assert code == 2 and "no such recipe file" in err and len(err.strip().splitlines()) == 1


def test_hparams_dataclass_defaults_match_reference():
    assert HParams().max_length == 384 and HParams().doc_stride == 128


def test_all_nine_at_once_with_continued_mlm_is_one_arm(tmp_path):
    from xstilts_tui.plan.stages import build_plan

    ccg = tmp_path / "ccg.conll"
    ccg.write_text("Anna\tN\nworks\t(S\\NP)\n\n", encoding="utf-8")
    nine = '["mnli", "anli", "qqp", "sst2", "hellaswag", "commonsenseqa", "cosmosqa", "squad", "ccg"]'
    text = GOOD.replace('intermediate = ["squad"]',
                        f'intermediate = {nine}\nmlm = {{ ratio = 0.1, corpus = ["demo"] }}')
    text += f'\n[tasks.ccg]\ntrain_file = "{ccg}"\nvalidation_file = "{ccg}"\n'
    recipe = parse_recipe(text, str(tmp_path / "r.toml"))
    arm = recipe.arms[1]
    assert len(arm.intermediate) == 9 and arm.mlm.ratio == 0.1 and arm.mlm.corpus == ("demo",)
    plan = build_plan(recipe, tmp_path / "out")
    inter = [s for s in plan.stages if s.kind == "intermediate"]
    assert [s.seed for s in inter] == [1, 2]
    assert inter[0].id == ("intermediate/mnli+anli+qqp+sst2+hellaswag+commonsenseqa+cosmosqa+squad+ccg"
                           "+mlm0.1/torch/seed1")
    assert [t["name"] for t in inter[0].spec["tasks"]][-1] == "ccg"
    assert inter[0].spec["mlm"] == {"ratio": 0.1, "corpus": ["demo"]}


def test_the_trainers_and_peft_names_are_read_as_ours(tmp_path):
    from conftest import SMALL_DEMO

    ours = parse_recipe(SMALL_DEMO + """
[hparams.intermediate]
lr = 3e-5
epochs = 3
batch_size = 8
grad_accum = 2
precision = "bf16"

[backends.lora]
kind = "peft"
alpha = 32
dropout = 0.05
""", "ours.toml", tmp_path)
    theirs = parse_recipe(SMALL_DEMO + """
[hparams.intermediate]
learning_rate = 3e-5
num_train_epochs = 3
per_device_train_batch_size = 8
gradient_accumulation_steps = 2
bf16 = true

[backends.lora]
kind = "peft"
lora_alpha = 32
lora_dropout = 0.05
""", "ours.toml", tmp_path)
    assert theirs.hparams_intermediate == ours.hparams_intermediate
    assert theirs.backends == ours.backends
    fp32 = parse_recipe(SMALL_DEMO + "\n[hparams.intermediate]\nbf16 = false\n", "r.toml", tmp_path)
    assert fp32.hparams_intermediate.precision == "fp32"
    # Errors name the key as the recipe wrote it; both names at once are refused.
    with pytest.raises(RecipeError, match=r"hparams.intermediate.per_device_train_batch_size: must be greater than 0"):
        parse_recipe(SMALL_DEMO + "\n[hparams.intermediate]\nper_device_train_batch_size = 0\n", "r.toml", tmp_path)
    with pytest.raises(RecipeError, match=r"hparams.learning_rate: the same setting as 'lr'"):
        parse_recipe(SMALL_DEMO.replace("lr = 2e-3", "lr = 2e-3\nlearning_rate = 1e-3"), "r.toml", tmp_path)
    with pytest.raises(RecipeError, match=r"backends.lora.lora_alpha: the same setting as 'alpha'"):
        parse_recipe(SMALL_DEMO + '\n[backends.lora]\nkind = "peft"\nalpha = 4\nlora_alpha = 4\n', "r.toml", tmp_path)
    # A task's own hyper-parameters too.
    task = parse_recipe(SMALL_DEMO + "\n[tasks.demo-qa.hparams]\nlearning_rate = 1e-4\n", "r.toml", tmp_path)
    assert task.tasks["demo-qa"].hparams == {"lr": 1e-4}


def test_set_replaces_recipe_values_before_validation(tmp_path, monkeypatch):
    (tmp_path / "e5").mkdir()
    (tmp_path / "e5" / "config.json").write_text("{}", encoding="utf-8")
    (tmp_path / "r.toml").write_text(GOOD.replace(
        'hub = "FacebookAI/xlm-roberta-large"', 'hub = "FacebookAI/xlm-roberta-large"\nrevision = "main"'),
        encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # a relative path on the command line starts here
    settings = ("model.path=e5", "hparams.target.epochs=3", 'tasks.xquad.languages=["en", "de"]',
                'arms.squad.intermediate=["mnli"]', "seeds=[7]")
    recipe = load_recipe(tmp_path / "r.toml", settings)
    # The model's source is replaced (hub and revision gone), the rest set as TOML values.
    assert recipe.model.source == "path" and recipe.model.hub is None and recipe.model.revision is None
    assert Path(recipe.model.path) == (tmp_path / "e5").resolve()
    assert recipe.hparams_target.epochs == 3.0 and recipe.hparams_intermediate.epochs == 2.0
    assert recipe.tasks["xquad"].languages == ("en", "de")
    assert recipe.arms[1].intermediate == ("mnli",) and recipe.seeds == (7,)
    assert recipe.to_dict()["settings"] == settings  # run.json records them
    assert load_recipe(tmp_path / "r.toml").model.hub == "FacebookAI/xlm-roberta-large"  # file unchanged


SET_BAD = [
    ("no-equals", "model.path", "--set 'model.path': expected KEY=VALUE"),
    ("empty-part", "model..path=x", "expected KEY=VALUE"),
    ("unknown-arm", "arms.lora.backend=peft", "--set arms.lora.backend=peft: no arm named 'lora' "
                                              "(arms: baseline, squad)"),
    ("into-a-value", "seeds.first=1", "seeds is a value, not a table"),
    ("arm-without-field", "arms.squad=1", "name an arm and a field"),
    ("checked-like-the-file", "hparams.target.epochz=1", "hparams.target.epochz: unknown key"),
    ("wrong-type", "hparams.target.epochs=three", "hparams.target.epochs"),
]


@pytest.mark.parametrize("label, setting, words", SET_BAD, ids=[b[0] for b in SET_BAD])
def test_bad_set_is_one_line_naming_it(tmp_path, capsys, label, setting, words):
    (tmp_path / "r.toml").write_text(GOOD, encoding="utf-8")
    code, out, err = run_cli(["validate", tmp_path / "r.toml", "--set", setting], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {tmp_path / 'r.toml'}: ") and words in err, err


def test_set_reaches_every_command_that_reads_a_recipe(tmp_path, capsys):
    (tmp_path / "r.toml").write_text(GOOD, encoding="utf-8")
    setting = ["--set", "arms.squad.intermediate=[\"mnli\"]"]
    code, out, err = run_cli(["plan", tmp_path / "r.toml", "--output", tmp_path / "o", *setting], capsys)
    assert code == 0 and "intermediate/mnli/torch/seed1" in out and "squad/torch" not in out, err
    code, out, _ = run_cli(["data", "status", tmp_path / "r.toml", "--json", *setting], capsys)
    assert "mnli train (en)" in out and "squad train (en)" not in out
    code, out, err = run_cli(["--recipe", tmp_path / "r.toml", "--output", tmp_path / "bad",
                              "--cache", tmp_path / "bad-cache", "--set", "hparams.lr=-1"], capsys)
    assert code == 2 and "hparams.lr" in err
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad-cache").exists()


def test_set_may_narrow_a_study_whose_task_tables_it_leaves_unused(tmp_path, capsys):
    """Narrowing the shipped study with --set (fewer targets, fewer arms) leaves some of its
    [tasks.X] tables, and some settings a prepared --set list gives, without a stage: they
    are still checked, then left out; in the file as written an unused table stays an error."""
    study = Path(__file__).resolve().parent.parent / "recipes" / "small-study.toml"
    (tmp_path / "train.en.conllu").write_text("1\tA\ta\tDET\t_\t_\t0\troot\t_\t_\n\n", encoding="utf-8")
    narrowed = ["--set", 'targets=["tatoeba"]', "--set", 'arms=[{name="baseline"}]',
                "--set", f"tasks.udpos.train_file={tmp_path}/train.{{lang}}.conllu"]
    code, out, err = run_cli(["validate", study, *narrowed], capsys)
    assert code == 0, err
    recipe = load_recipe(study, tuple(narrowed[1::2]))
    assert set(recipe.tasks) == {"tatoeba"} and recipe.targets == ("tatoeba",)
    # What an unused table holds is checked all the same.
    code, _, err = run_cli(["validate", study, *narrowed, "--set", "tasks.udpos.train_fil=x"], capsys)
    assert code == 2 and "tasks.udpos.train_fil: unknown key" in err, err
    code, _, err = run_cli(["validate", study, *narrowed, "--set", "tasks.nope.train_file=x"], capsys)
    assert code == 2 and "unknown task 'nope'" in err, err
    # Without --set, an unused [tasks.X] table is still refused.
    (tmp_path / "r.toml").write_text(study.read_text(encoding="utf-8").replace(
        'targets = ["xquad", "tatoeba"]', 'targets = ["tatoeba"]'), encoding="utf-8")
    code, _, err = run_cli(["validate", tmp_path / "r.toml"], capsys)
    assert code == 2 and "tasks.xquad: settings for a task no arm or target uses" in err, err


UD_ARMS = f"""
name = "ud"
seeds = [1]
targets = ["xquad"]

[model]
hub = "intfloat/multilingual-e5-small"

[[arms]]
name = "baseline"

[[arms]]
name = "ud-en"
intermediate = ["udpos"]

[[arms]]
name = "ud-multi"
intermediate = ["udpos"]
[arms.tasks.udpos]
train_languages = ["en", "de", "zh"]

[tasks.xquad]
languages = ["en", "de"]
eval_files = "{XQUAD_DIR}/xquad.{{lang}}.json"
"""


def test_an_arm_trains_an_intermediate_task_in_its_own_languages(tmp_path, capsys):
    """English vs multilingual intermediate training on the same task: the arm's own
    [arms.tasks.NAME] settings make a stage of their own, named after the arm."""
    recipe = parse_recipe(UD_ARMS, "r.toml")
    en, multi = recipe.arms[1], recipe.arms[2]
    assert en.task_settings("udpos", recipe.tasks).train_languages == ("en",)
    assert multi.task_settings("udpos", recipe.tasks).train_languages == ("en", "de", "zh")
    (tmp_path / "r.toml").write_text(UD_ARMS, encoding="utf-8")
    code, out, err = run_cli(["plan", tmp_path / "r.toml", "--output", tmp_path / "o", "--json"], capsys)
    assert code == 0, err
    import json

    stages = {s["id"]: s for s in json.loads(out)["stages"]}
    assert {"intermediate/udpos/torch/seed1", "intermediate/udpos@ud-multi/torch/seed1"} <= set(stages)
    # Targets keep the recipe's settings: every arm is scored on the same data.
    assert "target/ud-multi/xquad/seed1" in stages


UD_BAD = [
    ("not-its-task", lambda t: t.replace("[arms.tasks.udpos]", "[arms.tasks.xquad]"),
     "arms[2].tasks.xquad: xquad is not one of this arm's intermediate tasks"),
    ("no-train-data", lambda t: t.replace('["en", "de", "zh"]', '["en", "th"]'),
     "arms[2].tasks.udpos.train_languages: unknown training language for udpos 'th'"),
    ("hparams", lambda t: t.replace('train_languages = ["en", "de", "zh"]',
                                    "hparams = { max_length = 64 }"),
     "arms[2].tasks.udpos.hparams: an arm cannot change a task's hyper-parameters"),
    ("unknown-key", lambda t: t.replace("train_languages =", "train_language ="),
     "arms[2].tasks.udpos.train_language: unknown key"),
]


@pytest.mark.parametrize("label, change, words", UD_BAD, ids=[b[0] for b in UD_BAD])
def test_an_arms_task_settings_are_checked_like_the_recipes(label, change, words):
    with pytest.raises(RecipeError) as err:
        parse_recipe(change(UD_ARMS), "r.toml")
    assert str(err.value).startswith("r.toml: ") and words in str(err.value), err.value
