"""Reading SQuAD v1.1-format JSON (SQuAD, XQuAD, MLQA, TyDiQA-GoldP files). No torch."""

from __future__ import annotations

import json
from pathlib import Path


class DataFileError(ValueError):
    pass


def read_squad_json(path: str | Path) -> list[dict]:
    """Rows in the hub's SQuAD schema: id, title, context, question, answers{text, answer_start}."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataFileError(f"{path}: a folder, not a file") from None
    except UnicodeDecodeError:
        raise DataFileError(f"{path}: not UTF-8 text") from None
    except RecursionError:
        raise DataFileError(f"{path}: JSON nested too deeply to be SQuAD JSON") from None
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{path}: not SQuAD JSON ({exc})") from None
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise DataFileError(f"{path}: not SQuAD JSON (expected an object with a 'data' list)")
    rows: list[dict] = []
    try:
        for article in articles:
            title = article.get("title", "")
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    answers = qa.get("answers", [])
                    rows.append({
                        "id": str(qa["id"]),
                        "title": title,
                        "context": context,
                        "question": qa["question"],
                        "answers": {"text": [a["text"] for a in answers],
                                    "answer_start": [int(a["answer_start"]) for a in answers]},
                    })
    except (KeyError, TypeError, ValueError) as exc:
        raise DataFileError(f"{path}: not SQuAD JSON (an entry lacks {exc})") from None
    return rows


def gold_answers(rows: list[dict]) -> list[tuple[str, list[str]]]:
    """Each question's id and gold answer texts, in file order; a repeated id is kept each
    time, as the SQuAD and MLQA scripts score every occurrence."""
    return [(row["id"], list(row["answers"]["text"])) for row in rows]
