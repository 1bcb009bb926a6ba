"""Data-parallel runs with the ecosystem's launcher: `torchrun` starts two CPU processes (gloo backend) and the
Trainer makes the run data-parallel. One row, logged once, training like one process with the same batch;
a resumed two-process run ends where the uninterrupted one does.
"""
import json
import shutil
import sys

import pytest
import torch
from conftest import run_smoke_script

from common.data import SMOKE_VALIDATION_FILE, load_squad_file
from common.inference import score_predictions
from common.predict import answer

# --standalone: torchrun picks a free port, so parallel test sessions on one machine do not collide.
TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")

# How far a 2 x 8 run may land from a 1 x 16 run. The two see the same windows in the same batches (each epoch's
# order depends only on seed and epoch, the length-grouped sampler builds mega-batches of 96 windows either way,
# and accelerate gives each process every other batch of 8, so a step's 16 windows are the same), and average
# gradients over the same 16 windows, but their dropout masks differ, and so does the last, partial batch. That
# is run-to-run noise, measured on this very setting (smoke LoRA, one epoch) over seeds 42-46: train loss
# 4.477-4.497 with one process (sd 0.009), 4.481-4.496 with two (sd 0.007); the two-process run minus the
# one-process run of the same seed: -0.001 to +0.013 (mean 0.006, sd 0.005). The loss bound is about five
# standard deviations of that difference, so it does not fail by chance, and it is the sharp check: one process
# with batch 8 or 32 (half or twice the windows per step) ends at 4.391 or 4.526 for seed 42, against 4.477,
# beyond the bound. F1 is not: the tiny model barely learns in one epoch, so F1 is mostly noise (1.84 and 5.31
# for those runs, 3.5-5.2 over seeds); its bound only catches a broken run, and the exact check below covers
# DDP evaluation.
F1_TOLERANCE = 2.5
LOSS_TOLERANCE = 0.03


def test_two_processes_write_one_row_that_matches_one_process(trained_run, tmp_path):
    single = trained_run("lora")  # one process, batch 16
    rows, log = run_smoke_script("main_lora.py", tmp_path / "ddp", "--batch_size", "8", launcher=TORCHRUN)

    assert len(rows) == 1  # written by the main process only
    row = rows[0]
    assert (row["world_size"], row["batch_size"], row["effective_batch_size"]) == ("2", "8", "16")
    assert single.row["effective_batch_size"] == "16" and single.row["world_size"] == "1"
    assert row["train_features"] == single.row["train_features"] and row["eval_features"] == single.row["eval_features"]
    # Logs and progress bars come from the main process only (warnings may still come from both).
    assert log.count("Summary") == 1 and log.count("Run base lora: ") == 1
    # At most one tokenizing bar: none when the windows come from the on-disk feature cache.
    assert log.count("Tokenizing training set:   0%") <= 1
    assert abs(float(row["f1"]) - float(single.row["f1"])) <= F1_TOLERANCE
    assert abs(float(row["train_loss"]) - float(single.row["train_loss"])) <= LOSS_TOLERANCE

    # Evaluation was sharded across the two processes and gathered: answering the same questions in one
    # process with the saved model must give exactly the run's predictions and scores, so no window was lost,
    # duplicated or put out of order on the way.
    examples = load_squad_file(SMOKE_VALIDATION_FILE)
    predictions = answer(examples, model_dir=tmp_path / "ddp")
    saved = json.loads((tmp_path / "ddp" / "predictions.json").read_text(encoding="utf-8"))
    assert {qid: p["text"] for qid, p in predictions.items()} == saved
    scores, _ = score_predictions(predictions, examples)
    assert round(scores["f1"], 4) == float(row["f1"]) and round(scores["exact_match"], 4) == float(row["exact_match"])



def test_two_process_run_resumes_exactly_in_epoch_2(tmp_path):
    """torchrun, 2 processes x 8 windows: 48 windows make 3 steps per epoch; checkpoints at 2, 3, 4, 6, the last
    two kept. Without checkpoint-6 and the finished mark, the run looks killed after checkpoint-4 (epoch 2, one
    batch in); resumed, each process must get the batches it had left in epoch 2's order (accelerate's
    set_epoch does not reach the sampler through a skipping, sharding loader: QATrainer tells it the epoch)."""
    out = tmp_path / "ddp"
    small = ["--max_train_samples", "48", "--max_eval_samples", "8", "--num_epochs", "2", "--batch_size", "8",
             "--save_steps", "2", "--keep_checkpoints"]
    [expected], _ = run_smoke_script("main_lora.py", out, *small, launcher=TORCHRUN)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    from safetensors.torch import load_file

    expected_weights = load_file(out / "adapter_model.safetensors")
    expected_predictions = (out / "predictions.json").read_text(encoding="utf-8")
    shutil.rmtree(out / "checkpoint-6")
    (out / "finished.json").unlink()

    rows, _ = run_smoke_script("main_lora.py", out, *small, "--resume", launcher=TORCHRUN)
    got = rows[-1]
    assert (got["status"], got["world_size"], got["resumes"], got["resumed_from_step"]) == ("ok", "2", "1", "4")
    for column in ("f1", "exact_match", "train_loss"):
        assert float(got[column]) == pytest.approx(float(expected[column]), abs=1e-6), column
    assert (out / "predictions.json").read_text(encoding="utf-8") == expected_predictions
    weights = load_file(out / "adapter_model.safetensors")
    for key in expected_weights:
        torch.testing.assert_close(weights[key], expected_weights[key], rtol=0, atol=1e-6)
