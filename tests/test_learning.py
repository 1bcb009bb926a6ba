"""The tiny model really learns: its F1 on the shipped training questions rises far above the untrained F1.

A 2-layer BERT trained from scratch on 209 questions cannot generalise to unseen paragraphs, so the check is
on the questions it trained on. It still exercises everything that must be right for learning: answer
labels, windows, loss, optimiser, post-processing and the metric (a misaligned label or logit order keeps
F1 near the untrained value).
"""
import csv
import subprocess
import sys

from conftest import REPO_ROOT

TRAIN = str(REPO_ROOT / "common" / "smoke_data" / "train.json")


def f1_after(tmp_path, name, *args):
    results = tmp_path / f"{name}.csv"
    proc = subprocess.run(
        [sys.executable, "bertimbau_base/main.py", "--smoke", "--train_file", TRAIN, "--validation_file", TRAIN,
         "--results_file", str(results), "--output_dir", str(tmp_path / name), "--warmup_ratio", "0.1", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(results, newline="", encoding="utf-8") as handle:
        row = next(csv.DictReader(handle))
    return float(row["f1"]), float(row["exact_match"])


def test_tiny_model_learns_the_shipped_questions(tmp_path):
    untrained_f1, _ = f1_after(tmp_path, "untrained", "--num_epochs", "1", "--learning_rate", "1e-12")
    trained_f1, trained_em = f1_after(tmp_path, "trained", "--num_epochs", "15", "--learning_rate", "3e-3")
    print(f"untrained F1 {untrained_f1:.2f}; trained F1 {trained_f1:.2f} EM {trained_em:.2f}")
    assert untrained_f1 < 15
    assert trained_f1 > 50 and trained_f1 > untrained_f1 + 40
    assert trained_em > 40
