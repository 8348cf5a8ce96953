"""Offline demo data: small generated extractive-QA sets in SQuAD's schema.

Two tasks, both deterministic in their seed:

* ``demo-qa`` (target): short biographies - who was born where and when - with
  questions on the year or the city, in English, Spanish, German, Russian and Chinese.
  Names, years and cities are shared across languages, the sentences around them are not,
  so a model trained on English answers other languages only as far as it transfers.
* ``demo-jobs`` (intermediate, English only): who works as what, where, and when they
  moved, with questions on each; a different relation with the same kind of skill.
* English intermediate tasks of the other kinds, on the same job facts:
  ``demo-nli`` (does a fact entail, contradict or not bear on a statement),
  ``demo-topic`` (which kind of fact a sentence states), ``demo-choice`` (pick the
  answer of the kind the question asks for among four) and ``demo-tags`` (tag names, cities, years, jobs, employers).

QA rows follow the hub's SQuAD schema: id, title, context, question,
answers = {"text": [...], "answer_start": [...]}; the others the columns their task's
``Columns`` names.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

NAMES = (
    "Anna", "Boris", "Carla", "David", "Elena", "Farid", "Greta", "Hugo", "Irene", "Jonas",
    "Karim", "Laura", "Marco", "Nadia", "Oscar", "Paula", "Quentin", "Rosa", "Samir", "Tanja",
    "Umberto", "Vera", "Walter", "Ximena", "Yusuf", "Zoe", "Adrian", "Bianca", "Cyril", "Dana",
    "Emil", "Flora", "Gustav", "Helga", "Ivan", "Julia", "Kai", "Lena", "Milan", "Nora",
)
CITIES = (
    "Lisbon", "Madrid", "Berlin", "Kazan", "Lyon", "Porto", "Vienna", "Prague", "Oslo", "Turin",
    "Krakow", "Seville", "Munich", "Geneva", "Bergen", "Riga", "Tallinn", "Dublin", "Leeds",
    "Malaga", "Bremen", "Graz", "Gdansk", "Bologna", "Valencia", "Lille", "Zagreb", "Sofia",
)
JOBS = ("baker", "teacher", "nurse", "pilot", "painter", "lawyer", "farmer", "chemist",
        "carpenter", "librarian", "tailor", "surgeon", "plumber", "translator", "architect")
COMPANIES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne",
             "Soylent", "Tyrell", "Cyberdyne", "Wonka", "Oscorp", "Aperture", "Gringotts")

# (fact sentence, question on the year, question on the city) per language.
# Two fact orders per language so that position alone does not give the answer.
_BIRTH = {
    "en": (("{n} was born in {c} in {y}.", "{n} was born in {y} in {c}."),
           "In which year was {n} born?", "In which city was {n} born?"),
    "es": (("{n} nació en {c} en {y}.", "{n} nació en {y} en la ciudad de {c}."),
           "¿En qué año nació {n}?", "¿En qué ciudad nació {n}?"),
    "de": (("{n} wurde {y} in {c} geboren.", "{n} wurde in {c} im Jahr {y} geboren."),
           "In welchem Jahr wurde {n} geboren?", "In welcher Stadt wurde {n} geboren?"),
    "ru": (("{n} родился в {y} году в городе {c}.", "{n} родился в городе {c} в {y} году."),
           "В каком году родился {n}?", "В каком городе родился {n}?"),
    "zh": (("{n} 于 {y} 年出生在 {c} 。", "{n} 出生在 {c} ，那年是 {y} 年。"),
           "{n} 是哪一年出生的？", "{n} 出生在哪个城市？"),
}
DEMO_QA_LANGUAGES = tuple(_BIRTH)

_FILLER = {
    "en": "The weather was {w} that year.",
    "es": "Aquel año el tiempo fue {w}.",
    "de": "Das Wetter war in jenem Jahr {w}.",
    "ru": "В тот год погода была {w}.",
    "zh": "那一年的天气很 {w} 。",
}
_WEATHER = {
    "en": ("mild", "cold", "dry", "wet"),
    "es": ("suave", "frío", "seco", "húmedo"),
    "de": ("mild", "kalt", "trocken", "nass"),
    "ru": ("мягкой", "холодной", "сухой", "влажной"),
    "zh": ("温和", "寒冷", "干燥", "潮湿"),
}


def _paragraph(rng: random.Random, people: int) -> list[tuple[str, str, str]]:
    names = rng.sample(NAMES, people)
    return [(n, rng.choice(CITIES), str(rng.randint(1900, 2010))) for n in names]


def _row(task: str, lang: str, index: int, context: str, question: str, answer: str,
         start: int) -> dict:
    assert context[start:start + len(answer)] == answer
    return {
        "id": f"{task}-{lang}-{index:05d}",
        "title": task,
        "context": context,
        "question": question,
        "answers": {"text": [answer], "answer_start": [start]},
    }


def demo_qa(lang: str, count: int, seed: int) -> list[dict]:
    """``count`` questions in ``lang`` about generated birth facts."""
    if lang not in _BIRTH:
        raise ValueError(f"demo-qa has no language {lang!r}; known: {', '.join(DEMO_QA_LANGUAGES)}")
    facts, ask_year, ask_city = _BIRTH[lang]
    # The seed fixes the facts; the language only changes the words around them, so the
    # evaluation sets are parallel across languages, as XQuAD is.
    rng = random.Random(seed)
    rows: list[dict] = []
    while len(rows) < count:
        people = _paragraph(rng, rng.randint(1, 2))
        orders = [rng.randrange(len(facts)) for _ in people]
        filler_at = rng.randrange(len(people) + 1)
        weather = rng.randrange(len(_WEATHER[lang]))
        asked = rng.randrange(len(people))
        ask_for_year = rng.random() < 0.5
        sentences: list[str] = []
        spans: dict[tuple[int, str], int] = {}
        context = ""
        for i, ((n, c, y), order) in enumerate(zip(people, orders)):
            if i == filler_at:
                sentences.append(_FILLER[lang].format(w=_WEATHER[lang][weather]))
            template = facts[order]
            sentence = template.format(n=n, c=c, y=y)
            offset = len(" ".join(sentences)) + (1 if sentences else 0)
            spans[(i, "y")] = offset + template.format(n=n, c=c, y="\0").index("\0")
            spans[(i, "c")] = offset + template.format(n=n, c="\0", y=y).index("\0")
            sentences.append(sentence)
        if filler_at == len(people):
            sentences.append(_FILLER[lang].format(w=_WEATHER[lang][weather]))
        context = " ".join(sentences)
        n, c, y = people[asked]
        if ask_for_year:
            question, answer, start = ask_year.format(n=n), y, spans[(asked, "y")]
        else:
            question, answer, start = ask_city.format(n=n), c, spans[(asked, "c")]
        rows.append(_row("demo-qa", lang, len(rows), context, question, answer, start))
    return rows


_JOB_FACTS = (
    ("{n} works as a {j} at {o}.", ("What does {n} work as?", "j"), ("Where does {n} work?", "o")),
    ("{n} moved to {c} in {y}.", ("When did {n} move to {c}?", "y"), ("Where did {n} move in {y}?", "c")),
    ("At {o}, {n} is the new {j}.", ("Who is the new {j} at {o}?", "n"), ("Which company hired {n}?", "o")),
)


def demo_jobs(count: int, seed: int) -> list[dict]:
    """``count`` English questions about generated jobs, employers and moves."""
    rng = random.Random(seed)
    rows: list[dict] = []
    while len(rows) < count:
        names = rng.sample(NAMES, rng.randint(2, 4))
        sentences: list[str] = []
        candidates: list[tuple[str, str, int]] = []
        for n in names:
            template, *questions = rng.choice(_JOB_FACTS)
            values = {"n": n, "j": rng.choice(JOBS), "o": rng.choice(COMPANIES),
                      "c": rng.choice(CITIES), "y": str(rng.randint(1950, 2020))}
            offset = len(" ".join(sentences)) + (1 if sentences else 0)
            sentence = template.format(**values)
            for question, slot in questions:
                marked = template.format(**{**values, slot: "\0"})
                start = offset + marked.index("\0")
                candidates.append((question.format(**values), values[slot], start))
            sentences.append(sentence)
        context = " ".join(sentences)
        question, answer, start = rng.choice(candidates)
        rows.append(_row("demo-jobs", "en", len(rows), context, question, answer, start))
    return rows


def _job_fact(rng: random.Random, name: str) -> dict[str, str]:
    return {"n": name, "j": rng.choice(JOBS), "o": rng.choice(COMPANIES),
            "c": rng.choice(CITIES), "y": str(rng.randint(1950, 2020))}


def _other(rng: random.Random, pool: tuple[str, ...], not_this: str) -> str:
    return rng.choice([p for p in pool if p != not_this])


def demo_nli(count: int, seed: int) -> list[dict]:
    """Premise: one or two job facts; hypothesis entailed (0), unrelated (1) or
    contradicted (2), in equal shares."""
    rng = random.Random(seed)
    rows = []
    while len(rows) < count:
        names = rng.sample(NAMES, rng.randint(1, 2))
        facts = [_job_fact(rng, n) for n in names]
        premise = " ".join(f"{f['n']} works as a {f['j']} at {f['o']}." for f in facts)
        f = rng.choice(facts)
        label = rng.randrange(3)
        about_job = rng.random() < 0.5
        if label == 0:
            hypothesis = f"{f['n']} is a {f['j']}." if about_job else f"{f['n']} works at {f['o']}."
        elif label == 2:
            hypothesis = (f"{f['n']} is a {_other(rng, JOBS, f['j'])}." if about_job
                          else f"{f['n']} works at {_other(rng, COMPANIES, f['o'])}.")
        else:
            hypothesis = (f"{f['n']} moved to {f['c']} in {f['y']}." if about_job
                          else f"{_other(rng, NAMES, f['n'])} likes {f['c']}.")
        rows.append({"id": f"demo-nli-{len(rows):05d}", "premise": premise,
                     "hypothesis": hypothesis, "label": label})
    return rows


_TOPIC_TEMPLATES = (
    ("{n} was born in {c} in {y}.", "{n} was born in {y}."),
    ("{n} works as a {j} at {o}.", "At {o}, {n} is the new {j}."),
    ("{n} moved to {c} in {y}.", "In {y}, {n} moved to {c}."),
    ("The weather in {c} was mild that year.", "It was cold in {c} in {y}."),
)


def demo_topic(count: int, seed: int) -> list[dict]:
    """One sentence; its label says which kind of fact it states (birth, job, move, weather)."""
    rng = random.Random(seed)
    rows = []
    while len(rows) < count:
        label = rng.randrange(len(_TOPIC_TEMPLATES))
        sentence = rng.choice(_TOPIC_TEMPLATES[label]).format(**_job_fact(rng, rng.choice(NAMES)))
        rows.append({"id": f"demo-topic-{len(rows):05d}", "sentence": sentence, "label": label})
    return rows


_CHOICE_FACTS = ("{n} works as a {j} at {o}.", "{n} moved to {c} in {y}.")
_CHOICE_QUESTIONS = {"j": "What does {n} work as?", "o": "Where does {n} work?",
                     "c": "Where did {n} move?", "y": "When did {n} move?"}


def demo_choice(count: int, seed: int) -> list[dict]:
    """One or two facts about a person and a question on one of them; four choices:
    the right answer and one value of each other kind (job, employer, city, year), so a
    model must tell which kind of answer the question asks for."""
    rng = random.Random(seed)
    rows = []
    while len(rows) < count:
        values = _job_fact(rng, rng.choice(NAMES))
        facts = rng.sample(_CHOICE_FACTS, rng.randint(1, 2))
        context = " ".join(f.format(**values) for f in facts)
        slots = [s for s in "jocy" if any("{" + s + "}" in f for f in facts)]
        slot = rng.choice(slots)
        other = _job_fact(rng, values["n"])
        wrong = [other[s] for s in "jocy" if s != slot]
        rng.shuffle(wrong)
        label = rng.randrange(4)
        wrong.insert(label, values[slot])
        rows.append({"id": f"demo-choice-{len(rows):05d}", "context": context,
                     "question": _CHOICE_QUESTIONS[slot].format(**values), "choices": wrong,
                     "label": label})
    return rows


_TAG_TEMPLATES = (
    "{n} works as a {j} at {o} .", "{n} moved to {c} in {y} .", "At {o} , {n} is the new {j} .",
    "{n} was born in {c} in {y} .", "In {y} , {n} left {o} and moved to {c} .",
)
DEMO_TAGS = {"n": "NAME", "c": "CITY", "y": "YEAR", "j": "JOB", "o": "ORG"}


def demo_tags(count: int, seed: int) -> list[dict]:
    """Words of a job or birth sentence, each tagged NAME, CITY, YEAR, JOB, ORG or O."""
    rng = random.Random(seed)
    rows = []
    while len(rows) < count:
        values = _job_fact(rng, rng.choice(NAMES))
        tokens, tags = [], []
        for word in rng.choice(_TAG_TEMPLATES).split():
            if word.startswith("{"):
                slot = word[1]
                tokens.append(values[slot])
                tags.append(DEMO_TAGS[slot])
            else:
                tokens.append(word)
                tags.append("O")
        rows.append({"id": f"demo-tags-{len(rows):05d}", "tokens": tokens, "tags": tags})
    return rows


# Split sizes and seeds: training and validation draw from disjoint seeds.
DEMO_SPLITS = {"train": 0, "validation": 1, "test": 2}
_ENGLISH_ONLY = {"demo-jobs": demo_jobs, "demo-nli": demo_nli, "demo-topic": demo_topic,
                 "demo-choice": demo_choice, "demo-tags": demo_tags}


def generate(task: str, split: str, lang: str, count: int, seed: int = 0) -> list[dict]:
    """Rows of a generated task; ``seed`` shifts every split's seed together."""
    base = DEMO_SPLITS[split] + 1000 * seed
    if task == "demo-qa":
        return demo_qa(lang, count, base)
    if task in _ENGLISH_ONLY:
        if lang != "en":
            raise ValueError(f"{task} is English only")
        return _ENGLISH_ONLY[task](count, base)
    raise ValueError(f"no generator for task {task!r}")


def corpus(seed: int = 0, per_language: int = 400) -> Iterator[str]:
    """Text for training the demo tokenizer: contexts and questions of every demo task."""
    for lang in DEMO_QA_LANGUAGES:
        for row in demo_qa(lang, per_language, 10_000 + seed):
            yield row["context"]
            yield row["question"]
    for row in demo_jobs(per_language, 20_000 + seed):
        yield row["context"]
        yield row["question"]
