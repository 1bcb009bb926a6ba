"""SQuAD v1.1 exact match and F1, offline.

`evaluate.load("squad")` downloads the metric's code from the Hub at run time, which fails offline, so
the official v1.1 evaluation script's semantics live here: lower-case, drop ASCII punctuation, drop the
English articles a/an/the, collapse white space; EM and token F1 take the max over the gold answers and
are averaged x100. These official semantics are the default so scores compare with the paper's.

`compute_portuguese` is reported beside it and clearly named: it drops the Portuguese articles and all
Unicode punctuation (e.g. « » – “ ”), which the official script, written for English, leaves in.

The same code is also an `evaluate` module, `evaluate.load("metrics/squad")` (see docs/results.md). `evaluate`
copies this file on its own into its module cache, so it imports only the standard library.
"""
from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Callable, Sequence

_ASCII_PUNCTUATION = set(string.punctuation)
_ENGLISH_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PORTUGUESE_ARTICLES = re.compile(r"\b(o|a|os|as|um|uma|uns|umas)\b")


def normalize_answer(text: str) -> str:
    """The official SQuAD v1.1 normalisation."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _ASCII_PUNCTUATION)
    text = _ENGLISH_ARTICLES.sub(" ", text)
    return " ".join(text.split())


def normalize_answer_portuguese(text: str) -> str:
    """Portuguese-aware variant: Unicode punctuation and Portuguese articles removed."""
    text = text.lower()
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    text = _PORTUGUESE_ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _f1(prediction: str, gold: str, normalize: Callable[[str], str]) -> float:
    prediction_tokens = normalize(prediction).split()
    gold_tokens = normalize(gold).split()
    common = Counter(prediction_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _exact(prediction: str, gold: str, normalize: Callable[[str], str]) -> float:
    return float(normalize(prediction) == normalize(gold))


def question_scores(predictions: Sequence[dict], references: Sequence[dict],
                    normalize: Callable[[str], str] = normalize_answer) -> dict[str, tuple[float, float]]:
    """(exact match, F1), each in [0, 1], of every reference id: the best over its gold answers."""
    golds = {ref["id"]: ref["answers"]["text"] for ref in references}
    if len(golds) != len(references):
        raise ValueError("references contain duplicate ids")
    if not golds:
        raise ValueError("no references to score")
    # As in the official script: a question without a prediction scores 0, and a prediction for an
    # unknown id is ignored.
    predicted = {p["id"]: p["prediction_text"] for p in predictions}
    return {
        qid: (max(_exact(predicted[qid], gold, normalize) for gold in answers),
              max(_f1(predicted[qid], gold, normalize) for gold in answers)) if qid in predicted else (0.0, 0.0)
        for qid, answers in golds.items()
    }


def _score(predictions: Sequence[dict], references: Sequence[dict], normalize: Callable[[str], str]) -> dict:
    scores = question_scores(predictions, references, normalize).values()
    return {"exact_match": 100.0 * sum(e for e, _ in scores) / len(scores),
            "f1": 100.0 * sum(f for _, f in scores) / len(scores)}


def compute(*, predictions: Sequence[dict], references: Sequence[dict]) -> dict:
    """Official SQuAD v1.1 scores, with the call shape of `evaluate`'s squad metric.

    predictions: [{"id", "prediction_text"}]; references: [{"id", "answers": {"text": [...], ...}}].
    Returns {"exact_match": float, "f1": float} in percent.
    """
    return _score(predictions, references, normalize_answer)


def compute_portuguese(*, predictions: Sequence[dict], references: Sequence[dict]) -> dict:
    """Like `compute`, with the Portuguese-aware normalisation (not comparable with the paper)."""
    return _score(predictions, references, normalize_answer_portuguese)
