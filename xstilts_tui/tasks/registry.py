"""The task table, shared by the control plane and the workers (no torch here).

A task names its kind (which head and which feature pipeline), its languages, its
metric and where its data comes from. A new task of a known kind is a new entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xstilts_tui.tasks.formats import TATOEBA_CODES as _TATOEBA_CODES

EXTRACTIVE_QA = "extractive_qa"
SENTENCE_CLASSIFICATION = "sentence_classification"
PAIR_CLASSIFICATION = "pair_classification"
MULTIPLE_CHOICE = "multiple_choice"
TOKEN_TAGGING = "token_tagging"
# A model configuration's positions where it names none (XLM-R's: they start after the
# padding index).
DEFAULT_MAX_POSITIONS = 514
RETRIEVAL = "retrieval"  # no training: sentence vectors of the encoder, nearest neighbours
TASK_KINDS = (EXTRACTIVE_QA, SENTENCE_CLASSIFICATION, PAIR_CLASSIFICATION, MULTIPLE_CHOICE,
              TOKEN_TAGGING, RETRIEVAL)
# The metric checkpoint selection maximises, per metric family.
SELECTION_METRIC = {"squad_v1": "f1", "squad_v2": "f1", "mlqa": "f1", "accuracy": "accuracy", "seqeval": "f1",
                    "tatoeba": "accuracy", "bucc": "f1"}
# The numbers each metric family reports (the first is the headline one).
METRIC_NAMES = {"squad_v1": ("f1", "exact_match"), "mlqa": ("f1", "exact_match"),
                # evaluate-v2.0.py's overall, HasAns_* and NoAns_* scores
                "squad_v2": ("f1", "exact_match", "has_ans_f1", "has_ans_exact_match",
                             "no_ans_f1", "no_ans_exact_match"),
                "accuracy": ("accuracy",), "seqeval": ("f1", "precision", "recall"),
                "tatoeba": ("accuracy",), "bucc": ("f1", "precision", "recall")}


@dataclass(frozen=True)
class Columns:
    """Where a kind's fields sit in a dataset's rows (the hub's schema; local files in
    JSON lines, CSV, TSV or Parquet use the same names).

    * classification: ``text`` (and ``pair``) columns, joined with a space when several;
      ``label`` an integer column.
    * multiple choice: ``text`` the shared first segment (context, question); ``choices``
      one list column (``"endings"``), a nested one (``"choices.text"``) or several
      columns (``("answer0", "answer1", ...)``); ``label`` the right choice's index, or a
      choice key looked up in ``label_keys`` (CommonsenseQA's ``answerKey``).
    * tagging: ``tokens`` a list of words, ``tags`` their tags (strings or integers).
    """

    text: tuple[str, ...] = ()
    pair: tuple[str, ...] = ()
    choices: str | tuple[str, ...] = ()
    label: str = "label"
    label_keys: str | None = None
    tokens: str = "tokens"
    tags: str = "tags"


@dataclass(frozen=True)
class HubSplit:
    """One split of a dataset on the hub, and where else the same rows can be had.

    ``config`` may hold ``{lang}``, filled with the evaluation language. ``id_prefix``
    keeps only the rows whose id starts with it (``{lang_name}`` is filled), for
    datasets that mix languages in one split. ``path`` may also be a local dataset folder.

    Sources are tried in this order (``xstilts_tui.data.sources``): the repository's own
    data files on its main branch (skipped when ``script``: the main branch holds only a
    loading script, which ``datasets`` 4 and later refuse); the hub's automatic parquet
    export (branch ``refs/convert/parquet``, ``<config>/<split>/*.parquet``); each of
    ``mirrors`` (a maintained copy with the same columns); the benchmark authors' own
    files (``upstream``: a name in ``xstilts_tui.data.upstream.UPSTREAM``), checksummed and
    converted into the local forms the project reads.
    """

    path: str
    split: str
    config: str | None = None  # may hold {lang}, {lang_name} or {code3}
    id_prefix: str | None = None
    script: bool = False
    mirrors: tuple["HubSplit", ...] = ()
    upstream: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str
    description: str
    languages: tuple[str, ...]
    metric: str
    # English training data (intermediate phase or target fine-tuning); None: none.
    train: HubSplit | None
    # English validation data, for checkpoint selection.
    validation: HubSplit | None
    # Per-language evaluation data; None: evaluated on `validation` (English only).
    evaluation: HubSplit | None
    # Generated offline by the project (demo tasks): no hub, no files.
    generated: bool = False
    lang_names: dict[str, str] = field(default_factory=dict)
    columns: Columns = Columns()
    # Classification labels in the dataset's id order; None for tagging tasks, whose
    # tag set is read from the training data.
    labels: tuple[str, ...] | None = None
    # Local file forms it reads, for messages (QA: SQuAD JSON).
    local_files: str = "SQuAD v1.1 JSON"

    # Languages with training data (machine-translated for XNLI and PAWS-X, native
    # treebanks for UD-POS): an intermediate arm may train on several of them; other
    # languages than English come from ``translate_train`` (its config may hold {lang}
    # or {lang_name}).
    train_languages: tuple[str, ...] = ("en",)
    translate_train: HubSplit | None = None
    # More English training data after ``train``, in this order (ANLI+: MNLI, then SNLI).
    train_also: tuple[HubSplit, ...] = ()
    # Languages the data set has beyond the benchmark's (XQuAD's Romanian, added after
    # XTREME): a recipe may evaluate them; the XTREME score keeps ``languages``.
    extra_languages: tuple[str, ...] = ()
    # Where no source can be fetched, what a person does by hand (a licence's manual step).
    manual: str = ""
    # Tagging tasks with a fixed tag set (UD's UPOS, PAN-X's BIO tags): any other tag in
    # the data is refused; empty: the tag set is the training data's (CCG).
    tag_set: tuple[str, ...] = ()
    tag_set_name: str = ""
    # Where checkpoint selection's English rows come from: "validation" (a seeded sample
    # of them), or "train-holdout" where the validation split is tested on (TyDiQA): rows
    # held out of English training (tasks/selection.py).
    selection: str = "validation"

    @property
    def selects_on_squad_dev(self) -> bool:
        """Selection on SQuAD v1.1 dev, which holds XQuAD's questions (left out)."""
        return self.validation == _SQUAD_VALID

    @property
    def unanswerable(self) -> bool:
        """QA with questions that have no answer (SQuAD v2.0): accepted in its data, and the
        null answer predicted (HF utils_qa.py's version_2_with_negative)."""
        return self.metric == "squad_v2"

    @property
    def all_languages(self) -> tuple[str, ...]:
        return self.languages + self.extra_languages

    @property
    def selection_metric(self) -> str:
        return SELECTION_METRIC[self.metric]

    @property
    def metric_names(self) -> tuple[str, ...]:
        return METRIC_NAMES[self.metric]


# SQuAD's and ANLI's one configuration is named plain_text (their README's configs and the
# parquet export's folder).
_SQUAD_TRAIN = HubSplit("rajpurkar/squad", "train", config="plain_text")
_SQUAD_VALID = HubSplit("rajpurkar/squad", "validation", config="plain_text")

# TyDiQA-GoldP ids start with the language's English name ("finnish-...").
_TYDIQA_NAMES = {
    "en": "english", "ar": "arabic", "bn": "bengali", "fi": "finnish", "id": "indonesian",
    "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu",
}

DEMO_LANGUAGES = ("en", "es", "de", "ru", "zh")
# Universal Dependencies' 17 universal part-of-speech tags.
UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
        "PUNCT", "SCONJ", "SYM", "VERB", "X")

_XTREME = "google/xtreme"
_PAWSX = "google-research-datasets/paws-x"
_XGLUE = "microsoft/xglue"
# WikiANN with Rahimi et al.'s train/validation/test splits, the data PAN-X is made of,
# in the same columns (tokens, ner_tags with the same seven tags): a parquet repository.
_WIKIANN = "unimelb-nlp/wikiann"
# google/xtreme names UD-POS configurations by language name.
_UD_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek",
    "en": "English", "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian",
    "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian",
    "id": "Indonesian", "it": "Italian", "ja": "Japanese", "kk": "Kazakh", "ko": "Korean",
    "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian", "ta": "Tamil",
    "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ur": "Urdu",
    "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese",
}
_PANX_LANGUAGES = ("af", "ar", "bg", "bn", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr",
                   "he", "hi", "hu", "id", "it", "ja", "jv", "ka", "kk", "ko", "ml", "mr", "ms",
                   "my", "nl", "pt", "ru", "sw", "ta", "te", "th", "tl", "tr", "ur", "vi", "yo", "zh")

_NLI_LABELS = ("entailment", "neutral", "contradiction")
_GLUE = "nyu-mll/glue"
_SQUAD_FILES = "SQuAD v1.1 JSON"
_TABLE_FILES = "JSON lines, JSON, CSV, TSV or Parquet with the hub's columns"
_TAGGING_FILES = ("CoNLL-style text (a word and its tag a line, tab-separated, a blank line "
                  "between sentences) or JSON lines with tokens and tags")


def _english(name: str, kind: str, description: str, train: HubSplit | None,
             validation: HubSplit | None, columns: Columns, labels: tuple[str, ...] | None,
             local_files: str = "", train_also: tuple[HubSplit, ...] = ()) -> TaskSpec:
    """An English intermediate task: trained on ``train``, scored on ``validation``."""
    return TaskSpec(name=name, kind=kind, description=description, languages=("en",),
                    metric="accuracy", train=train, validation=validation, evaluation=None,
                    columns=columns, labels=labels, local_files=local_files or _TABLE_FILES,
                    train_also=train_also)


def _demo(name: str, kind: str, description: str, columns: Columns,
          labels: tuple[str, ...] | None, metric: str = "accuracy") -> TaskSpec:
    return TaskSpec(name=name, kind=kind, description=description, languages=("en",),
                    metric=metric, train=None, validation=None, evaluation=None,
                    generated=True, columns=columns, labels=labels, local_files="none (generated)")

TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec(
            name="squad",
            kind=EXTRACTIVE_QA,
            description="SQuAD v1.1, English extractive QA",
            languages=("en",),
            metric="squad_v1",
            train=_SQUAD_TRAIN,
            validation=_SQUAD_VALID,
            evaluation=None,
            local_files=_SQUAD_FILES,
        ),
        TaskSpec(
            name="squad-v2",
            kind=EXTRACTIVE_QA,
            description="SQuAD v2.0, English extractive QA with unanswerable questions",
            languages=("en",),
            metric="squad_v2",
            train=HubSplit("rajpurkar/squad_v2", "train", config="squad_v2"),
            validation=HubSplit("rajpurkar/squad_v2", "validation", config="squad_v2"),
            evaluation=None,
            local_files="SQuAD v2.0 JSON (train-v2.0.json, dev-v2.0.json)",
        ),
        TaskSpec(
            name="xquad",
            kind=EXTRACTIVE_QA,
            description="XQuAD: trained on SQuAD v1.1, zero-shot in 11 languages",
            languages=("en", "es", "de", "el", "ru", "tr", "ar", "vi", "th", "zh", "hi"),
            metric="squad_v1",
            train=_SQUAD_TRAIN,
            validation=_SQUAD_VALID,
            evaluation=HubSplit("google/xquad", "validation", config="xquad.{lang}"),
            local_files=_SQUAD_FILES,
            extra_languages=("ro",),
        ),
        TaskSpec(
            name="mlqa",
            kind=EXTRACTIVE_QA,
            description="MLQA: trained on SQuAD v1.1, zero-shot in 7 languages (MLQA normalisation)",
            languages=("en", "es", "de", "ar", "hi", "vi", "zh"),
            metric="mlqa",
            train=_SQUAD_TRAIN,
            validation=_SQUAD_VALID,
            evaluation=HubSplit("facebook/mlqa", "test", config="mlqa.{lang}.{lang}", script=True),
            local_files=_SQUAD_FILES,
        ),
        TaskSpec(
            name="tydiqa",
            kind=EXTRACTIVE_QA,
            description="TyDiQA-GoldP: trained on its English part, zero-shot in 9 languages",
            languages=("en", "ar", "bn", "fi", "id", "ko", "ru", "sw", "te"),
            metric="squad_v1",
            train=HubSplit("google-research-datasets/tydiqa", "train", config="secondary_task",
                           id_prefix="english-"),
            # Its English test rows are its validation rows: selection holds out training rows.
            validation=HubSplit("google-research-datasets/tydiqa", "train", config="secondary_task",
                                id_prefix="english-"),
            evaluation=HubSplit("google-research-datasets/tydiqa", "validation",
                                config="secondary_task", id_prefix="{lang_name}-"),
            selection="train-holdout",
            lang_names=_TYDIQA_NAMES,
            local_files=_SQUAD_FILES,
        ),
        # The English intermediate tasks of the study, with the authors' toolkit's splits.
        _english("mnli", PAIR_CLASSIFICATION, "MultiNLI: English natural language inference",
                 HubSplit(_GLUE, "train", config="mnli"),
                 HubSplit(_GLUE, "validation_matched", config="mnli"),
                 Columns(text=("premise",), pair=("hypothesis",)), _NLI_LABELS),
        _english("anli", PAIR_CLASSIFICATION, "Adversarial NLI, rounds 1-3 together",
                 HubSplit("facebook/anli", "train_r1+train_r2+train_r3", config="plain_text"),
                 HubSplit("facebook/anli", "dev_r1+dev_r2+dev_r3", config="plain_text"),
                 Columns(text=("premise",), pair=("hypothesis",)), _NLI_LABELS),
        # The paper's "ANLI+" (its Table 1: 1,104,934 training examples): ANLI R1-R3
        # (162,865), MNLI (392,702) and SNLI (549,367 once its unlabelled "-" rows go),
        # scored on ANLI's development rounds.
        _english("anli-plus", PAIR_CLASSIFICATION, "ANLI+: ANLI rounds 1-3, MNLI and SNLI (the paper's)",
                 HubSplit("facebook/anli", "train_r1+train_r2+train_r3", config="plain_text"),
                 HubSplit("facebook/anli", "dev_r1+dev_r2+dev_r3", config="plain_text"),
                 Columns(text=("premise",), pair=("hypothesis",)), _NLI_LABELS,
                 train_also=(HubSplit(_GLUE, "train", config="mnli"),
                             HubSplit("stanfordnlp/snli", "train", config="plain_text"))),
        _english("qqp", PAIR_CLASSIFICATION, "Quora Question Pairs: paraphrase detection",
                 HubSplit(_GLUE, "train", config="qqp"), HubSplit(_GLUE, "validation", config="qqp"),
                 Columns(text=("question1",), pair=("question2",)),
                 ("not_duplicate", "duplicate")),
        _english("sst2", SENTENCE_CLASSIFICATION, "SST-2: sentence sentiment",
                 HubSplit(_GLUE, "train", config="sst2"), HubSplit(_GLUE, "validation", config="sst2"),
                 Columns(text=("sentence",)), ("negative", "positive")),
        _english("hellaswag", MULTIPLE_CHOICE, "HellaSwag: commonsense sentence completion",
                 HubSplit("Rowan/hellaswag", "train"), HubSplit("Rowan/hellaswag", "validation"),
                 Columns(text=("ctx",), choices="endings"), None),
        _english("commonsenseqa", MULTIPLE_CHOICE, "CommonsenseQA: five-way commonsense questions",
                 HubSplit("tau/commonsense_qa", "train"),
                 HubSplit("tau/commonsense_qa", "validation"),
                 Columns(text=("question",), choices="choices.text", label="answerKey",
                         label_keys="choices.label"), None),
        _english("cosmosqa", MULTIPLE_CHOICE, "Cosmos QA: reading comprehension with commonsense",
                 HubSplit("allenai/cosmos_qa", "train", script=True),
                 HubSplit("allenai/cosmos_qa", "validation", script=True),
                 Columns(text=("context", "question"),
                         choices=("answer0", "answer1", "answer2", "answer3")), None),
        # XTREME targets beyond QA (REFERENCE.md; google/xtreme's configurations).
        TaskSpec(
            name="xnli", kind=PAIR_CLASSIFICATION,
            description="XNLI: trained on MNLI, zero-shot in 15 languages",
            languages=("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur",
                       "vi", "zh"),
            metric="accuracy", train=HubSplit(_GLUE, "train", config="mnli"),
            validation=HubSplit("facebook/xnli", "validation", config="en"),
            evaluation=HubSplit("facebook/xnli", "test", config="{lang}"),
            columns=Columns(text=("premise",), pair=("hypothesis",)), labels=_NLI_LABELS,
            local_files=_TABLE_FILES,
            # facebook/xnli's train split in each language is MNLI machine-translated.
            translate_train=HubSplit("facebook/xnli", "train", config="{lang}"),
            train_languages=("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr",
                             "ur", "vi", "zh")),
        TaskSpec(
            name="pawsx", kind=PAIR_CLASSIFICATION,
            description="PAWS-X: trained on English PAWS, zero-shot in 7 languages",
            languages=("de", "en", "es", "fr", "ja", "ko", "zh"), metric="accuracy",
            train=HubSplit(_PAWSX, "train", config="{lang}"),
            validation=HubSplit(_PAWSX, "validation", config="en"),
            evaluation=HubSplit(_PAWSX, "test", config="{lang}"),
            columns=Columns(text=("sentence1",), pair=("sentence2",)),
            labels=("different", "paraphrase"), local_files=_TABLE_FILES,
            translate_train=HubSplit(_PAWSX, "train", config="{lang}"),
            train_languages=("de", "en", "es", "fr", "ja", "ko", "zh")),
        TaskSpec(
            name="udpos", kind=TOKEN_TAGGING,
            description="UD-POS (UD 2.5): trained on every English treebank, as XTREME does, "
                        "zero-shot in 33 languages",
            languages=("af", "ar", "bg", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr", "he",
                       "hi", "hu", "id", "it", "ja", "kk", "ko", "mr", "nl", "pt", "ru", "ta", "te",
                       "th", "tl", "tr", "ur", "vi", "yo", "zh"),
            metric="seqeval",
            train=HubSplit(_XTREME, "train", config="udpos.English", script=True, upstream="ud-2.5"),
            validation=HubSplit(_XTREME, "validation", config="udpos.English", script=True,
                                upstream="ud-2.5"),
            evaluation=HubSplit(_XTREME, "test", config="udpos.{lang_name}", script=True,
                                upstream="ud-2.5"),
            columns=Columns(tokens="tokens", tags="pos_tags"), lang_names=_UD_NAMES,
            tag_set=UPOS, tag_set_name="UPOS",
            local_files="CoNLL-U (.conllu: words and their UPOS tags)",
            # Each language's own treebanks, for multilingual intermediate training; Thai,
            # Tagalog and Yoruba have test treebanks only in UD 2.5.
            translate_train=HubSplit(_XTREME, "train", config="udpos.{lang_name}", script=True,
                                     upstream="ud-2.5"),
            train_languages=("af", "ar", "bg", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr",
                             "he", "hi", "hu", "id", "it", "ja", "kk", "ko", "mr", "nl", "pt", "ru",
                             "ta", "te", "tr", "ur", "vi", "zh")),
        TaskSpec(
            name="panx", kind=TOKEN_TAGGING,
            description="PAN-X (WikiANN NER): trained on English, zero-shot in 40 languages",
            languages=_PANX_LANGUAGES, metric="seqeval",
            train=HubSplit(_XTREME, "train", config="PAN-X.en", script=True,
                           mirrors=(HubSplit(_WIKIANN, "train", config="en"),)),
            validation=HubSplit(_XTREME, "validation", config="PAN-X.en", script=True,
                                mirrors=(HubSplit(_WIKIANN, "validation", config="en"),)),
            evaluation=HubSplit(_XTREME, "test", config="PAN-X.{lang}", script=True,
                                mirrors=(HubSplit(_WIKIANN, "test", config="{lang}"),)),
            columns=Columns(tokens="tokens", tags="ner_tags"),
            tag_set=("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"),
            tag_set_name="PAN-X's BIO tags",
            local_files="PAN-X text (lang:word<TAB>tag a line, a blank line between sentences)",
            manual="PAN-X's own archive is a manual download: get AmazonPhotos.zip as XTREME's "
                   "README says, unpack panx_dataset/<lang>.tar.gz, and set tasks.panx.train_file, "
                   "validation_file and eval_files (with {lang}) to its train, dev and test files"),
        TaskSpec(
            name="tatoeba", kind=RETRIEVAL,
            description="Tatoeba: find each sentence's English translation, 36 languages, no training",
            languages=tuple(sorted(_TATOEBA_CODES)), metric="tatoeba", train=None, validation=None,
            evaluation=HubSplit(_XTREME, "validation", config="tatoeba.{code3}", script=True,
                                upstream="tatoeba-v1"),
            columns=Columns(text=("source_sentence",), pair=("target_sentence",)),
            local_files="LASER's tatoeba.<xxx>-eng.<xxx> and .eng files in data_dir"),
        TaskSpec(
            name="bucc2018", kind=RETRIEVAL,
            description="BUCC 2018: mine translation pairs from comparable corpora, 4 languages, no training",
            languages=("de", "fr", "ru", "zh"), metric="bucc", train=None, validation=None,
            evaluation=None,
            local_files="the shared task's <xx>-en.{sample,test}.{<xx>,en,gold} files in data_dir"),
        # XGLUE's English-trained classification tasks (microsoft/xglue), for multilingual
        # intermediate training; column names and label orders from the dataset card
        # (unverified against the live hub).
        TaskSpec(
            name="xglue-nc", kind=SENTENCE_CLASSIFICATION,
            description="XGLUE News Classification: title and body, 10 categories",
            languages=("en",), metric="accuracy", train=HubSplit(_XGLUE, "train", config="nc", script=True),
            validation=HubSplit(_XGLUE, "validation.en", config="nc", script=True), evaluation=None,
            columns=Columns(text=("news_title", "news_body"), label="news_category"),
            labels=("foodanddrink", "sports", "travel", "finance", "lifestyle", "news",
                    "entertainment", "health", "video", "autos"), local_files=_TABLE_FILES),
        TaskSpec(
            name="xglue-qam", kind=PAIR_CLASSIFICATION,
            description="XGLUE QAM: does the passage answer the question",
            languages=("en",), metric="accuracy", train=HubSplit(_XGLUE, "train", config="qam", script=True),
            validation=HubSplit(_XGLUE, "validation.en", config="qam", script=True), evaluation=None,
            columns=Columns(text=("question",), pair=("answer",)), labels=("no", "yes"),
            local_files=_TABLE_FILES),
        TaskSpec(
            name="xglue-qadsm", kind=PAIR_CLASSIFICATION,
            description="XGLUE QADSM: is the ad relevant to the query",
            languages=("en",), metric="accuracy", train=HubSplit(_XGLUE, "train", config="qadsm", script=True),
            validation=HubSplit(_XGLUE, "validation.en", config="qadsm", script=True), evaluation=None,
            columns=Columns(text=("query",), pair=("ad_title", "ad_description"),
                            label="relevance_label"), labels=("Bad", "Good"),
            local_files=_TABLE_FILES),
        # CCGbank is licensed by the LDC and not on the hub: local files only.
        _english("ccg", TOKEN_TAGGING, "CCG supertagging (CCGbank, local files)", None, None,
                 Columns(), None, _TAGGING_FILES),
        TaskSpec(
            name="demo-qa",
            kind=EXTRACTIVE_QA,
            description="offline demo: generated biographies, English training, 5 languages",
            languages=DEMO_LANGUAGES,
            metric="squad_v1",
            train=None,
            validation=None,
            evaluation=None,
            generated=True,
        ),
        _demo("demo-nli", PAIR_CLASSIFICATION,
              "offline demo: does a generated job fact entail a statement (intermediate)",
              Columns(text=("premise",), pair=("hypothesis",)), _NLI_LABELS),
        _demo("demo-topic", SENTENCE_CLASSIFICATION,
              "offline demo: which kind of fact a sentence states (intermediate)",
              Columns(text=("sentence",)), ("birth", "job", "move", "weather")),
        _demo("demo-choice", MULTIPLE_CHOICE,
              "offline demo: pick the right answer to a question on job facts (intermediate)",
              Columns(text=("context", "question"), choices="choices"), None),
        _demo("demo-tags", TOKEN_TAGGING,
              "offline demo: tag names, cities, years, jobs and employers (intermediate)",
              Columns(), None),
        TaskSpec(
            name="demo-jobs",
            kind=EXTRACTIVE_QA,
            description="offline demo: generated English QA about jobs and employers (intermediate)",
            languages=("en",),
            metric="squad_v1",
            train=None,
            validation=None,
            evaluation=None,
            generated=True,
        ),
    )
}


def task_names() -> list[str]:
    return sorted(TASKS)
