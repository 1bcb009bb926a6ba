"""The SQuAD v1.1 metric on known cases (official semantics) and the Portuguese-aware variant, called directly
and through the `evaluate` module in metrics/squad."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common import squad_metric
from conftest import REPO_ROOT


# (prediction, gold answers, exact match, F1)
OFFICIAL_CASES = [
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
]
PORTUGUESE_CASES = [
    ("«Os Lusíadas»", ["Os Lusíadas"], 100.0, 100.0),
    ("o Brasil", ["Brasil"], 100.0, 100.0),
    ("uma cidade – Recife", ["Recife"], 0.0, 2 * 0.5 / 1.5 * 100),
    ("Sao Paulo", ["São Paulo"], 0.0, 50.0),
]
# Several questions: the average, a question without a prediction (0), a prediction for an unknown id (ignored).
AVERAGED_REFERENCES = [
    {"id": "1", "answers": {"text": ["Brasília"], "answer_start": [0]}},
    {"id": "2", "answers": {"text": ["1960"], "answer_start": [0]}},
    {"id": "3", "answers": {"text": ["Niemeyer"], "answer_start": [0]}},
    {"id": "4", "answers": {"text": ["Lúcio Costa"], "answer_start": [0]}},
]
AVERAGED_PREDICTIONS = [
    {"id": "1", "prediction_text": "Brasília"},
    {"id": "2", "prediction_text": "em 1961"},
    {"id": "4", "prediction_text": "Costa"},
    {"id": "unknown", "prediction_text": "ignored"},
]


def as_inputs(prediction, golds):
    return {"predictions": [{"id": "q", "prediction_text": prediction}],
            "references": [{"id": "q", "answers": {"text": golds, "answer_start": [0] * len(golds)}}]}


def score(prediction, golds, fn=squad_metric.compute):
    return fn(**as_inputs(prediction, golds))


@pytest.mark.parametrize("prediction, golds, em, f1", OFFICIAL_CASES)
def test_official_semantics(prediction, golds, em, f1):
    result = score(prediction, golds)
    assert result["exact_match"] == pytest.approx(em)
    assert result["f1"] == pytest.approx(f1)


@pytest.mark.parametrize("prediction, golds, em, f1", PORTUGUESE_CASES)
def test_portuguese_aware_variant(prediction, golds, em, f1):
    result = score(prediction, golds, squad_metric.compute_portuguese)
    assert result["exact_match"] == pytest.approx(em)
    assert result["f1"] == pytest.approx(f1)


def test_averages_over_questions_and_missing_prediction_scores_zero():
    result = squad_metric.compute(predictions=AVERAGED_PREDICTIONS, references=AVERAGED_REFERENCES)
    assert result["exact_match"] == pytest.approx(25.0)
    assert result["f1"] == pytest.approx((1 + 0 + 0 + 2 * 1 * 0.5 / 1.5) / 4 * 100)


def test_rejects_duplicate_reference_ids():
    ref = {"id": "1", "answers": {"text": ["x"], "answer_start": [0]}}
    with pytest.raises(ValueError, match="duplicate"):
        squad_metric.compute(predictions=[], references=[ref, ref])


# Run in a fresh process, offline, from another directory, with evaluate's module cache in a temporary folder:
# what a user gets from `evaluate.load(<path>)`, and no chance of finding `common` on sys.path by accident.
EVALUATE_SCRIPT = """
import json, sys
import evaluate
cases = json.load(sys.stdin)
out = {}
for config in ("default", "portuguese"):
    metric = evaluate.load(sys.argv[1], None if config == "default" else config)
    out[config] = [metric.compute(**case) for case in cases]
scorer = sys.modules[type(metric).__module__].compute_portuguese
out["code_file"] = sys.modules[scorer.__module__].__file__
print(json.dumps(out))
"""


def test_evaluate_module_gives_the_same_numbers_offline(tmp_path):
    cases = [as_inputs(p, g) for p, g, _, _ in OFFICIAL_CASES + PORTUGUESE_CASES]
    cases.append({"predictions": AVERAGED_PREDICTIONS, "references": AVERAGED_REFERENCES})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-c", EVALUATE_SCRIPT, str(REPO_ROOT / "metrics" / "squad")],
                          input=json.dumps(cases), capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # Equal to the plain functions, which the tests above check against the expected values.
    assert out["default"] == [squad_metric.compute(**case) for case in cases]
    assert out["portuguese"] == [squad_metric.compute_portuguese(**case) for case in cases]
    # The code evaluate ran is its cached copy of common/squad_metric.py itself, not a second implementation.
    code_file = Path(out["code_file"])
    assert code_file.is_relative_to(tmp_path / "modules")
    repository_code = (REPO_ROOT / "common" / "squad_metric.py").read_text(encoding="utf-8")
    assert code_file.read_text(encoding="utf-8") == repository_code


def test_evaluate_module_links_to_the_repository_metric():
    link = REPO_ROOT / "metrics" / "squad" / "squad_metric.py"
    assert link.is_symlink() and link.resolve() == (REPO_ROOT / "common" / "squad_metric.py").resolve()
