"""The recipe file editor behind the form: comments, order and the user's names kept."""

import tomllib

from conftest import SMALL_DEMO
from xstilts_tui.recipe.parse import parse_recipe
from xstilts_tui.recipe.doc import RecipeDocument

COMMENTED = "# header comment\n" + SMALL_DEMO.replace(
    "lr = 2e-3", "learning_rate = 2e-3  # the Trainer's name").replace(
    '[[arms]]\nname = "baseline"', '[[arms]]\nname = "baseline"  # no intermediate task')


def test_an_unchanged_document_is_the_same_text():
    doc = RecipeDocument(COMMENTED)
    doc.set("name", "small-demo")
    doc.set("seeds", [1])
    doc.set_hparam(None, "lr", 2e-3)
    doc.set_arms(doc.plain()["arms"])
    assert doc.dumps() == COMMENTED


def test_edits_keep_comments_and_the_users_names(tmp_path):
    doc = RecipeDocument(COMMENTED)
    doc.set_hparam(None, "lr", 1e-3)  # written under learning_rate, its comment kept
    doc.set_hparam("intermediate", "epochs", 3)  # a new [hparams.intermediate] table
    doc.set_hparam("target", "eval_before_training", None)  # [hparams.target] emptied: gone
    arms = doc.plain()["arms"]
    doc.set_arms([arms[0], {"name": "jobs-2", "intermediate": ["demo-jobs"], "backend": "peft"}])
    doc.set_languages("demo-qa", ["en", "de"])
    text = doc.dumps()
    assert text.startswith("# header comment\n")
    assert "learning_rate = 0.001  # the Trainer's name" in text
    assert 'name = "baseline"  # no intermediate task' in text
    assert 'languages = ["en", "de"]' in text
    data = tomllib.loads(text)
    assert "target" not in data["hparams"]
    assert data["hparams"]["intermediate"] == {"epochs": 3}
    recipe = parse_recipe(text, "r.toml", tmp_path)
    assert recipe.hparams_intermediate.lr == 1e-3 and recipe.hparams_intermediate.epochs == 3
    assert [a.name for a in recipe.arms] == ["baseline", "jobs-2"]
    assert recipe.arms[1].backend == "peft"
    assert recipe.tasks["demo-qa"].languages == ("en", "de")
    # A language list set back to None goes; the task's other settings stay.
    doc.set_languages("demo-qa", None)
    assert tomllib.loads(doc.dumps())["tasks"]["demo-qa"] == {"generated_train_examples": 200,
                                                              "generated_eval_examples": 30}


def test_bf16_switch_stays_until_the_form_changes_the_precision():
    text = SMALL_DEMO + "\n[hparams.intermediate]\nbf16 = true\n"
    doc = RecipeDocument(text)
    doc.set_hparam("intermediate", "precision", "bf16")  # the same meaning: the line stays
    assert doc.dumps() == text
    doc.set_hparam("intermediate", "precision", "fp32")
    assert tomllib.loads(doc.dumps())["hparams"]["intermediate"] == {"precision": "fp32"}
