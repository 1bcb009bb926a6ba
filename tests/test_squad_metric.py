"""The SQuAD v1.1 metric on known cases (official semantics) and the Portuguese-aware variant."""
import pytest

from common import squad_metric


def score(prediction, golds, fn=squad_metric.compute):
    return fn(
        predictions=[{"id": "q", "prediction_text": prediction}],
        references=[{"id": "q", "answers": {"text": golds, "answer_start": [0] * len(golds)}}],
    )


@pytest.mark.parametrize(
    "prediction, golds, em, f1",
    [
        ("Rio Amazonas", ["Rio Amazonas"], 100.0, 100.0),
        ("o rio amazonas", ["O Rio Amazonas"], 100.0, 100.0),  # letter case ignored
        ("São Paulo.", ["São Paulo"], 100.0, 100.0),  # ASCII punctuation removed
        ("Sao Paulo", ["São Paulo"], 0.0, 50.0),  # accents are NOT stripped
        ("a capital", ["capital"], 100.0, 100.0),  # "a" is an English article in the official script
        ("o Brasil", ["Brasil"], 0.0, 2 * 0.5 / 1.5 * 100),  # "o" is not: precision 1/2, recall 1
        ("«Os Lusíadas»", ["Os Lusíadas"], 0.0, 0.0),  # « » are not ASCII punctuation
        ("em 1822", ["1822", "em 1822"], 100.0, 100.0),  # max over golds
        ("1500", ["Pedro Álvares Cabral", "1500"], 100.0, 100.0),
        ("", ["Lisboa"], 0.0, 0.0),  # empty prediction
        ("Lisboa Lisboa", ["Lisboa"], 0.0, 2 * 0.5 * 1 / 1.5 * 100),  # token counts, not sets
        ("  Porto   Alegre ", ["Porto Alegre"], 100.0, 100.0),  # white space collapsed
    ],
)
def test_official_semantics(prediction, golds, em, f1):
    result = score(prediction, golds)
    assert result["exact_match"] == pytest.approx(em)
    assert result["f1"] == pytest.approx(f1)


@pytest.mark.parametrize(
    "prediction, golds, em, f1",
    [
        ("«Os Lusíadas»", ["Os Lusíadas"], 100.0, 100.0),
        ("o Brasil", ["Brasil"], 100.0, 100.0),
        ("uma cidade – Recife", ["Recife"], 0.0, 2 * 0.5 / 1.5 * 100),
        ("Sao Paulo", ["São Paulo"], 0.0, 50.0),
    ],
)
def test_portuguese_aware_variant(prediction, golds, em, f1):
    result = score(prediction, golds, squad_metric.compute_portuguese)
    assert result["exact_match"] == pytest.approx(em)
    assert result["f1"] == pytest.approx(f1)


def test_averages_over_questions_and_missing_prediction_scores_zero():
    references = [
        {"id": "1", "answers": {"text": ["Brasília"], "answer_start": [0]}},
        {"id": "2", "answers": {"text": ["1960"], "answer_start": [0]}},
        {"id": "3", "answers": {"text": ["Niemeyer"], "answer_start": [0]}},
        {"id": "4", "answers": {"text": ["Lúcio Costa"], "answer_start": [0]}},
    ]
    predictions = [
        {"id": "1", "prediction_text": "Brasília"},
        {"id": "2", "prediction_text": "em 1961"},
        {"id": "4", "prediction_text": "Costa"},
        {"id": "unknown", "prediction_text": "ignored"},
    ]
    result = squad_metric.compute(predictions=predictions, references=references)
    assert result["exact_match"] == pytest.approx(25.0)
    assert result["f1"] == pytest.approx((1 + 0 + 0 + 2 * 1 * 0.5 / 1.5) / 4 * 100)


def test_rejects_duplicate_reference_ids():
    ref = {"id": "1", "answers": {"text": ["x"], "answer_start": [0]}}
    with pytest.raises(ValueError, match="duplicate"):
        squad_metric.compute(predictions=[], references=[ref, ref])
