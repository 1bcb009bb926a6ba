"""Faults: a failed run leaves a row with its status; NaN loss -> diverged; out of memory -> oom with batch
advice; SIGTERM / Ctrl-C -> interrupted; a run killed with SIGKILL resumes to the uninterrupted result."""
import csv
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
import transformers

from conftest import REPO_ROOT

from common.checkpoint import CHECKPOINT_CONFIG, checkpoint_callbacks, resume_point
from common.config import ConfigError, parse_config
from common.faults import failure_row, oom_advice
from common.results import RESULT_COLUMNS
from common.run import main, run

SMALL = ["--smoke", "--max_train_samples", "32", "--max_eval_samples", "8", "--num_epochs", "1"]
CONFIG_COLUMNS = ["model_size", "model_name", "method", "learning_rate", "num_epochs", "batch_size",
                  "gradient_accumulation_steps", "world_size", "seed", "lora_r", "lora_alpha", "lora_dropout",
                  "target_modules", "quantize_4bit", "use_dora", "max_seq_length", "doc_stride", "data_source",
                  "device", "precision", "git_commit", "git_dirty", "versions", "output_dir"]


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == RESULT_COLUMNS
        return list(reader)


def run_small(tmp_path, capsys, *extra, method="lora"):
    """A small smoke run in this process; (exit status, stderr, the rows of its results file)."""
    results = tmp_path / "runs.csv"
    status = main(model_size="base", method=method,
                  argv=[*SMALL, "--results_file", str(results), "--output_dir", str(tmp_path / "out"), *extra])
    stderr = capsys.readouterr().err
    return status, stderr, read_rows(results) if results.exists() else []


def assert_failure_row(rows, status, *texts):
    [row] = rows
    assert row["status"] == status and row["method"] == "lora" and row["data_source"] == "smoke:shipped"
    assert row["f1"] == row["exact_match"] == row["train_time_s"] == ""  # nothing measured is invented
    for text in texts:
        assert text in row["error"], row["error"]
    return row


def last_line(stderr):
    return stderr.rstrip().splitlines()[-1]


def test_nan_loss_stops_the_run_as_diverged(tmp_path, capsys):
    # lr 1e6 makes the second step's loss NaN; the Trainer would log it as a finite average and go on.
    status, stderr, rows = run_small(tmp_path, capsys, "--learning_rate", "1e6", "--max_train_samples", "64")
    assert status == 1
    row = assert_failure_row(rows, "diverged", "training loss is nan at optimizer step 2", "--learning_rate")
    assert row["learning_rate"] == "1000000.0"
    assert last_line(stderr).startswith("error: training loss is nan") and "status diverged" in last_line(stderr)
    assert "Traceback" not in stderr
    assert not (tmp_path / "out" / "predictions.json").exists()  # stopped before evaluation: 2 of 4 steps


def raise_cuda_oom(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total capacity)")


@pytest.mark.parametrize("phase, patched, advice", [
    ("training", "training_step",
     "--batch_size 8 --gradient_accumulation_steps 4 (same effective batch of 32), or add --gradient_checkpointing"),
    ("evaluation", "prediction_step", "(--eval_batch_size 64): try --eval_batch_size 32"),
])
def test_out_of_memory_is_recorded_as_oom_with_advice(phase, patched, advice, tmp_path, capsys, monkeypatch):
    # No GPU here: the Trainer's step raises what PyTorch raises when CUDA memory runs out.
    monkeypatch.setattr(transformers.Trainer, patched, raise_cuda_oom)
    status, stderr, rows = run_small(tmp_path, capsys, "--batch_size", "16", "--gradient_accumulation_steps", "2",
                                     "--eval_batch_size", "64")
    assert status == 1
    assert_failure_row(rows, "oom", f"out of memory during {phase}", advice)
    assert last_line(stderr).startswith(f"error: out of memory during {phase}") and advice in last_line(stderr)
    assert "Traceback" not in stderr


@pytest.mark.parametrize("batch_size, accumulation, checkpointing, advice", [
    (16, 1, False, "--batch_size 8 --gradient_accumulation_steps 2 (same effective batch of 16), or add"),
    (8, 2, True, "--batch_size 4 --gradient_accumulation_steps 4 (same effective batch of 16)"),
    (6, 1, False, "--batch_size 3 --gradient_accumulation_steps 2 "),
    (5, 1, False, "--batch_size 1 --gradient_accumulation_steps 5 "),
    (1, 8, False, "already at --batch_size 1: try --gradient_checkpointing"),
])
def test_oom_advice_keeps_the_effective_batch(batch_size, accumulation, checkpointing, advice):
    config = parse_config("base", "lora", ["--batch_size", str(batch_size), "--gradient_accumulation_steps",
                                           str(accumulation), "--gradient_checkpointing", str(checkpointing)])
    text = oom_advice(config, phase="training")
    assert advice in text
    assert ("--gradient_checkpointing" in text) != checkpointing


def send_sigterm(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)


def press_ctrl_c(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("interrupt, exit_status, message", [
    (send_sigterm, 128 + signal.SIGTERM, "stopped by SIGTERM"),
    (press_ctrl_c, 128 + signal.SIGINT, "stopped by Ctrl-C (SIGINT)"),
])
def test_interrupted_run_is_recorded(interrupt, exit_status, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(transformers.Trainer, "training_step", interrupt)
    handler = signal.getsignal(signal.SIGTERM)
    status, stderr, rows = run_small(tmp_path, capsys)
    assert status == exit_status
    assert_failure_row(rows, "interrupted", message)
    assert signal.getsignal(signal.SIGTERM) is handler  # the run's handler does not outlive it


def test_unexpected_error_is_recorded_as_failed_with_its_traceback(tmp_path, capsys, monkeypatch):
    def broken_step(*args, **kwargs):
        raise ValueError("tensor shapes do not match\nsecond line")

    monkeypatch.setattr(transformers.Trainer, "training_step", broken_step)
    status, stderr, rows = run_small(tmp_path, capsys)
    assert status == 1
    assert_failure_row(rows, "failed", "ValueError: tensor shapes do not match")
    assert "Traceback" in stderr and "broken_step" in stderr  # a bug: the traceback is what helps
    assert last_line(stderr).startswith("error: ValueError: tensor shapes do not match (recorded as status failed")


class PanicException(BaseException):
    """What pyo3 raises when Rust code (tokenizers, safetensors) panics: a BaseException, not an Exception."""


def test_library_panic_is_recorded_as_failed_not_a_raw_backtrace(tmp_path, capsys, monkeypatch):
    def panicking_step(*args, **kwargs):
        raise PanicException("`stride` must be strictly less than `max_len=31`")

    monkeypatch.setattr(transformers.Trainer, "training_step", panicking_step)
    status, stderr, rows = run_small(tmp_path, capsys)
    assert status == 1
    assert_failure_row(rows, "failed", "PanicException: `stride` must be strictly less than `max_len=31`")
    assert last_line(stderr).startswith("error: PanicException: `stride` must be strictly less")


def test_library_panic_in_prediction_exits_with_one_line(tmp_path, capsys, monkeypatch):
    from common import predict

    def panicking_answer(*args, **kwargs):
        raise PanicException("Rust panicked\nsecond line")

    (tmp_path / "run_config.json").write_text("{}", encoding="utf-8")
    monkeypatch.setattr(predict, "answer", panicking_answer)
    status = predict.main(model_size="base", argv=["--model_dir", str(tmp_path), "--question", "q?", "--context", "c."])
    assert status == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: PanicException: Rust panicked"


def test_failure_rows_describe_the_run_like_a_finished_row(tmp_path):
    config = parse_config("base", "qlora", [*SMALL, "--results_file", str(tmp_path / "runs.csv"),
                                            "--output_dir", str(tmp_path / "out")])
    finished = {k: "" if v is None else str(v) for k, v in run(config).items()}
    failed = {k: "" if v is None else str(v) for k, v in failure_row(config, status="failed", error="x").items()}
    assert {c: failed[c] for c in CONFIG_COLUMNS} == {c: finished[c] for c in CONFIG_COLUMNS}


# ---------------------------------------------------------------------------------------------------------
# Checkpoints and --resume

# Runs a script, and SIGKILLs it once its first checkpoint is completely written (a pre-empted job).
KILL_AFTER_FIRST_CHECKPOINT = """
import os, runpy, signal, sys
from transformers.trainer_callback import CallbackHandler
on_save = CallbackHandler.on_save
def save_then_die(self, *args, **kwargs):
    on_save(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
CallbackHandler.on_save = save_then_die
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
# 48 windows in batches of 16: 3 optimizer steps per epoch; the first checkpoint (step 2) is mid-epoch, so the
# resumed run must skip the batches it saw, in the length-grouped sampler's random order, then shuffle epoch 2.
RESUMABLE = ["--smoke", "--max_train_samples", "48", "--max_eval_samples", "16", "--num_epochs", "2"]


def run_script(*args, output_dir, results, wrapper=None):
    command = [sys.executable, *(["-c", wrapper] if wrapper else []), "bertimbau_base/main_lora.py", *RESUMABLE,
               "--output_dir", str(output_dir), "--results_file", str(results), *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=os.environ.copy())


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """An uninterrupted run; the same run SIGKILLed after its first checkpoint; its resumption."""
    tmp = tmp_path_factory.mktemp("resume")
    uninterrupted = run_script(output_dir=tmp / "uninterrupted", results=tmp / "uninterrupted.csv")
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    killed = run_script("--save_steps", "2", output_dir=tmp / "resumed", results=tmp / "resumed.csv",
                        wrapper=KILL_AFTER_FIRST_CHECKPOINT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    checkpoints = sorted(p.name for p in (tmp / "resumed").glob("checkpoint-*"))
    checkpoint_files = {p.name for p in (tmp / "resumed" / "checkpoint-2").iterdir()}
    resumed = run_script("--save_steps", "2", "--resume", output_dir=tmp / "resumed", results=tmp / "resumed.csv")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return {"tmp": tmp, "killed_checkpoints": checkpoints, "checkpoint_files": checkpoint_files,
            "resumed_stderr": resumed.stderr, "killed_rows": read_rows(tmp / "resumed.csv")}


def test_sigkilled_run_resumes_to_the_uninterrupted_result(killed_and_resumed):
    tmp = killed_and_resumed["tmp"]
    assert killed_and_resumed["killed_checkpoints"] == ["checkpoint-2"]
    assert "Resuming from" in killed_and_resumed["resumed_stderr"]
    [expected], [got] = read_rows(tmp / "uninterrupted.csv"), read_rows(tmp / "resumed.csv")
    assert got["status"] == "ok"
    assert float(got["f1"]) == pytest.approx(float(expected["f1"]), abs=1e-6)
    assert float(got["exact_match"]) == pytest.approx(float(expected["exact_match"]), abs=1e-6)
    assert float(got["train_time_s"]) > 0
    read = lambda name: json.loads((tmp / name / "predictions.json").read_text(encoding="utf-8"))  # noqa: E731
    assert read("resumed") == read("uninterrupted")
    from safetensors.torch import load_file

    weights = [load_file(tmp / name / "adapter_model.safetensors") for name in ("uninterrupted", "resumed")]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:  # the same data order, dropout and optimizer state: the same weights
        torch.testing.assert_close(weights[1][key], weights[0][key], rtol=0, atol=1e-6)


def test_peft_checkpoint_holds_adapter_head_and_training_state(killed_and_resumed):
    files = killed_and_resumed["checkpoint_files"]
    assert {"adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json",
            CHECKPOINT_CONFIG} <= files
    assert "model.safetensors" not in files  # no copy of the frozen base model
    from safetensors import safe_open

    # The killed run's checkpoint-2 is rotated away by now; the resumed run's last one has the same layout.
    with safe_open(killed_and_resumed["tmp"] / "resumed" / "checkpoint-6" / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k or "qa_outputs" in k for k in keys)
    assert any("qa_outputs" in k for k in keys)


def test_resume_refuses_other_settings_and_fresh_runs_refuse_old_checkpoints(killed_and_resumed, capsys):
    tmp = killed_and_resumed["tmp"]
    results = tmp / "resumed.csv"
    before = results.read_bytes()
    common = [*RESUMABLE, "--output_dir", str(tmp / "resumed"), "--results_file", str(results), "--save_steps", "2"]
    assert main(model_size="base", method="lora", argv=[*common, "--resume", "--learning_rate", "5e-3"]) == 2
    assert "--learning_rate 0.001 -> 0.005" in last_line(capsys.readouterr().err)
    assert main(model_size="base", method="lora", argv=common) == 2
    assert "holds checkpoints of an earlier run (checkpoint-6): pass --resume" in last_line(capsys.readouterr().err)
    assert results.read_bytes() == before


def write_checkpoint(folder, *, complete=True, learning_rate=1e-3, train_time=12.5):
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text("{}")
    if complete:
        config = vars(parse_config("base", "lora", ["--smoke", "--learning_rate", str(learning_rate)]))
        (folder / CHECKPOINT_CONFIG).write_text(json.dumps({"config": config, "train_time_s": train_time}))


def test_resume_takes_the_last_complete_checkpoint(tmp_path):
    config = parse_config("base", "lora", ["--smoke", "--learning_rate", "1e-3", "--resume", "--output_dir",
                                           str(tmp_path)])
    assert resume_point(config, tmp_path) == (None, 0.0)  # nothing to resume: a fresh start
    write_checkpoint(tmp_path / "checkpoint-9")
    write_checkpoint(tmp_path / "checkpoint-10", train_time=20.0)
    write_checkpoint(tmp_path / "checkpoint-12", complete=False)  # killed while saving
    assert resume_point(config, tmp_path) == (tmp_path / "checkpoint-10", 20.0)  # 10 > 9 as numbers
    write_checkpoint(tmp_path / "checkpoint-15", learning_rate=5e-4)
    with pytest.raises(ConfigError, match=r"--learning_rate 0.0005 -> 0.001"):
        resume_point(config, tmp_path)


def test_checkpoints_at_epoch_ends_besides_every_n_steps():
    from transformers import TrainerControl, TrainerState, TrainingArguments

    config = parse_config("base", "lora", ["--smoke", "--save_steps", "4"])
    [callback] = checkpoint_callbacks(config)
    assert checkpoint_callbacks(parse_config("base", "lora", ["--smoke"])) == []  # default: no checkpoints
    args = TrainingArguments(output_dir="unused", save_strategy="steps", save_steps=4, report_to="none")
    for step, saves in [(3, True), (4, False), (10, False)]:  # 4: saved as a step; 10: saved as the last step
        state, control = TrainerState(global_step=step, max_steps=10, save_steps=4), TrainerControl()
        callback.on_epoch_end(args, state, control)
        assert control.should_save == saves, step
