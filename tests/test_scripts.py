"""All ten scripts run end to end in smoke mode (tiny local BERT, shipped data, CPU) and write their row."""
import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

from common.results import RESULT_COLUMNS

SCRIPTS = {"full": "main.py", "lora": "main_lora.py", "qlora": "main_qlora.py", "dora": "main_dora.py",
           "qdora": "main_qdora.py"}
CASES = [(size, method) for size in ("base", "large") for method in SCRIPTS]


def run_script(size, method, tmp_path, *extra, from_model_folder=False):
    script = f"bertimbau_{size}/{SCRIPTS[method]}"
    cwd = REPO_ROOT / f"bertimbau_{size}" if from_model_folder else REPO_ROOT
    path = SCRIPTS[method] if from_model_folder else script
    results = tmp_path / "smoke_runs.csv"
    command = [sys.executable, path, "--smoke", "--output_dir", str(tmp_path / "out"), "--results_file", str(results),
               *extra]
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, results


@pytest.mark.parametrize("size, method", CASES)
def test_script_smoke_run_writes_one_complete_row(size, method, tmp_path):
    # Half the runs start from the model folder, as `cd bertimbau_base && python main_lora.py`.
    proc, results = run_script(size, method, tmp_path, from_model_folder=(method in ("lora", "qdora")))
    with open(results, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == RESULT_COLUMNS
        rows = list(reader)
    assert len(rows) == 1
    row = rows[0]
    assert (row["model_size"], row["method"], row["status"]) == (size, method, "ok")
    assert row["data_source"] == "smoke:shipped"
    assert 0.0 <= float(row["f1"]) <= 100.0 and 0.0 <= float(row["exact_match"]) <= float(row["f1"]) + 1e-9
    assert int(row["eval_examples"]) == 74 and int(row["train_examples"]) == 209
    assert int(row["train_features"]) > int(row["train_examples"])  # overflow windows at length 128
    assert float(row["train_time_s"]) > 0 and float(row["eval_time_s"]) > 0 and float(row["peak_memory_mb"]) > 0
    trainable, total = int(row["trainable_params"]), int(row["total_params"])
    if method == "full":
        assert trainable == total
    else:
        assert 0 < trainable < total / 4 and row["lora_r"] == "16" and row["lora_alpha"] == "32"
    assert row["quantize_4bit"] == str(method.startswith("q")).lower()
    assert row["use_dora"] == str(method.endswith("dora")).lower()
    assert row["versions"].startswith("torch=") and row["device"] == "cpu"
    # Artefacts: predictions for every evaluation question; the adapter (with the QA head) or the model.
    out = tmp_path / "out"
    predictions = json.loads((out / "predictions.json").read_text(encoding="utf-8"))
    assert len(predictions) == 74 and all(isinstance(text, str) for text in predictions.values())
    if method == "full":
        assert (out / "model.safetensors").exists()
    else:
        from safetensors import safe_open

        with safe_open(out / "adapter_model.safetensors", "pt") as f:
            keys = list(f.keys())
        assert any("qa_outputs" in k for k in keys) and any("lora_A" in k for k in keys)
        assert any("lora_magnitude_vector" in k for k in keys) == method.endswith("dora")
    assert "F1 / EM" in proc.stderr  # the summary block
    # Quiet by default: the known-harmless library warnings are filtered (common/quiet.py), and the config is
    # one line, not a dump.
    assert [line for line in proc.stderr.splitlines() if "warn" in line.lower()] == []
    assert f"Run {size} {method}: model smoke:tiny-bert-pt, data smoke:shipped" in proc.stderr
    assert '"max_seq_length"' not in proc.stderr


def test_help_lists_the_seed_readme_flags_with_defaults():
    proc = subprocess.run([sys.executable, "bertimbau_large/main_qlora.py", "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for flag in ("--learning_rate", "--num_epochs", "--batch_size", "--gradient_accumulation_steps", "--seed",
                 "--model_name", "--max_seq_length", "--doc_stride", "--lora_r", "--lora_alpha", "--lora_dropout",
                 "--target_modules", "--output_dir", "--train_file", "--validation_file", "--dataset",
                 "--max_train_samples", "--max_eval_samples", "--smoke"):
        assert flag in proc.stdout
    text = " ".join(proc.stdout.split())
    assert "neuralmind/bert-large-portuguese-cased" in text and "(default: 0.0002)" in text  # preset + method


def test_smoke_with_user_files_uses_them(tmp_path, real_sample):
    proc, results = run_script("base", "lora", tmp_path, "--train_file", str(real_sample), "--validation_file",
                               str(real_sample), "--max_train_samples", "120", "--max_eval_samples", "50",
                               "--num_epochs", "1")
    with open(results, newline="", encoding="utf-8") as handle:
        row = next(csv.DictReader(handle))
    assert row["data_source"] == f"files:{real_sample.name}|{real_sample.name}"
    assert row["eval_examples"] == "50"
    assert int(row["train_answers_dropped"]) > 0  # the sample's misplaced answers were counted and dropped
    assert "re-located" in proc.stderr
