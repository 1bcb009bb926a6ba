"""Faults: a failed run leaves a row with its status; NaN loss -> diverged; out of memory -> oom with batch
advice; full disk -> disk_full; SIGTERM / Ctrl-C -> interrupted, but never a second row after the ok one; one
live run per output folder; a run killed with SIGKILL in any epoch resumes to the uninterrupted result, past a
damaged checkpoint too; a finished run is not trained, recorded or overwritten again."""
import csv
import errno
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
import transformers

from conftest import REPO_ROOT

from common.checkpoint import (
    CHECKPOINT_CONFIG, ResumePoint, checkpoint_callbacks, checkpoint_problem, logged_loss_sum, resume_point,
)
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


@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"),  # torch.save on a full disk
    OSError(errno.ENOSPC, "No space left on device"),
], ids=["torch", "oserror"])
def test_full_disk_while_saving_a_checkpoint_is_said_in_the_users_words(error, tmp_path, capsys, monkeypatch):
    def no_space(self, output_dir):
        raise error

    monkeypatch.setattr(transformers.Trainer, "_save_optimizer_and_scheduler", no_space)
    status, stderr, rows = run_small(tmp_path, capsys, "--save_steps", "1")
    assert status == 1
    message = f"disk full while saving checkpoint-1 to {tmp_path / 'out'}: free space on that disk"
    assert_failure_row(rows, "disk_full", message, "--resume")
    assert last_line(stderr).startswith(f"error: {message}") and "Traceback" not in stderr


def write_then_sigterm(real):
    sent = []

    def write(*args, **kwargs):
        result = real(*args, **kwargs)
        if not sent:  # once: a failure row written after it must not kill the test session
            sent.append(os.kill(os.getpid(), signal.SIGTERM))  # arrives while the row is being recorded
        return result

    return write


def merge_fails(*args, **kwargs):
    raise ValueError("merge went wrong")


@pytest.mark.parametrize("patched, replacement, exit_status, message", [
    ("write_merged_model", send_sigterm, 143, "stopped by SIGTERM"),  # pre-empted during --merge
    ("write_merged_model", merge_fails, 1, "ValueError: merge went wrong"),
    ("append_result", "sigterm_while_writing", 143, "stopped by SIGTERM"),  # held back until the row is complete
])
def test_nothing_after_the_ok_row_adds_a_second_row(patched, replacement, exit_status, message, tmp_path, capsys,
                                                    monkeypatch):
    import common.faults
    import common.run

    module = common.faults if patched == "append_result" else common.run
    if replacement == "sigterm_while_writing":
        replacement = write_then_sigterm(common.faults.append_result)
    monkeypatch.setattr(module, patched, replacement)
    status, stderr, rows = run_small(tmp_path, capsys, "--merge")
    assert status == exit_status
    [row] = rows
    assert row["status"] == "ok" and row["f1"] != ""
    assert last_line(stderr).startswith(f"error: {message}") and "no other row is written" in last_line(stderr)
    assert (tmp_path / "out" / "finished.json").is_file()
    monkeypatch.undo()
    # The same command with --resume: nothing is trained or recorded again; the merge that was cut short is done.
    status, stderr, rows = run_small(tmp_path, capsys, "--merge", "--resume")
    assert status == 0 and len(rows) == 1 and "this run finished already" in stderr
    assert (tmp_path / "out" / "merged" / "run_config.json").is_file()


def hold_output_dir(path, ready):
    from common.output_dir import claimed_output_dir

    with claimed_output_dir(path):
        ready.set()
        signal.pause()


def test_an_output_dir_in_use_by_a_live_run_is_refused(tmp_path, capsys):
    from common.output_dir import LOCK_FILE, claimed_output_dir

    out, context = tmp_path / "out", multiprocessing.get_context("fork")
    ready = context.Event()
    other = context.Process(target=hold_output_dir, args=(out, ready))
    other.start()
    try:
        assert ready.wait(60)
        status, stderr, rows = run_small(tmp_path, capsys)
        assert status == 2 and rows == []
        assert last_line(stderr) == (
            f"error: --output_dir {out} is in use by another run (process {other.pid}); two runs in one folder would "
            "mix their models and checkpoints: wait for it to end, or pass another --output_dir")
    finally:
        os.kill(other.pid, signal.SIGKILL)  # the other run dies without cleaning up
        other.join(60)
    # The kernel dropped the dead run's lock; the lock file it left behind blocks nothing.
    assert (out / LOCK_FILE).exists()
    with claimed_output_dir(out):
        assert (out / LOCK_FILE).read_text() == f"{os.getpid()}\n"


# ---------------------------------------------------------------------------------------------------------
# Checkpoints and --resume

# Runs a script and SIGKILLs it once the checkpoint of step $KILL_AFTER_STEP is completely written (a pre-empted job).
KILL_AFTER_CHECKPOINT = """
import os, runpy, signal, sys
from transformers.trainer_callback import CallbackHandler
on_save = CallbackHandler.on_save
def save_then_die(self, args, state, control):
    control = on_save(self, args, state, control)
    if state.global_step == int(os.environ["KILL_AFTER_STEP"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return control
CallbackHandler.on_save = save_then_die
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
# 48 windows in batches of 16: 3 optimizer steps per epoch, 9 in 3 epochs, checkpoints every 2 steps and at epoch
# ends (2, 3, 4, 6, 8, 9). The run is killed after checkpoint-4 (epoch 2, one batch in), resumed and killed again
# after checkpoint-8 (epoch 3, two batches in), then resumed to the end: each resume must skip the batches already
# seen in that epoch's own order, and restore weights, optimizer, scheduler and dropout's random state.
RESUMABLE = ["--smoke", "--max_train_samples", "48", "--max_eval_samples", "16", "--num_epochs", "3"]


def run_killed(*args, output_dir, results, kill_after_step):
    command = [sys.executable, "-c", KILL_AFTER_CHECKPOINT, "bertimbau_base/main_lora.py", *RESUMABLE,
               "--output_dir", str(output_dir), "--results_file", str(results), *args]
    env = {**os.environ, "KILL_AFTER_STEP": str(kill_after_step)}
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=env)


def load_weights(path):
    from safetensors.torch import load_file

    return load_file(path)


def assert_same_run(got, expected, *, got_dir, expected_dir, weights="adapter_model.safetensors"):
    """Rows, predictions and weights of a resumed run equal those of the uninterrupted one."""
    for column in ("f1", "exact_match", "f1_pt", "exact_match_pt", "train_loss", "train_features"):
        assert float(got[column]) == pytest.approx(float(expected[column]), abs=1e-6), column
    read = lambda folder: json.loads((folder / "predictions.json").read_text(encoding="utf-8"))  # noqa: E731
    assert read(got_dir) == read(expected_dir)
    got_weights, expected_weights = load_weights(got_dir / weights), load_weights(expected_dir / weights)
    assert got_weights.keys() == expected_weights.keys()
    for key in expected_weights:  # the same data order, dropout and optimizer state: the same weights
        torch.testing.assert_close(got_weights[key], expected_weights[key], rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """An uninterrupted run (in this process, without checkpoints); the same run with checkpoints, SIGKILLed in
    epoch 2, resumed and SIGKILLed in epoch 3, and resumed to the end."""
    tmp = tmp_path_factory.mktemp("resume")
    assert main(model_size="base", method="lora", argv=[*RESUMABLE, "--output_dir", str(tmp / "uninterrupted"),
                                                        "--results_file", str(tmp / "uninterrupted.csv")]) == 0
    out, results = tmp / "resumed", tmp / "resumed.csv"
    seen = {}
    for step, resume in [(4, ()), (8, ("--resume",))]:
        killed = run_killed("--save_steps", "2", *resume, output_dir=out, results=results, kill_after_step=step)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        seen[step] = sorted(p.name for p in out.glob("checkpoint-*"))
        if step == 4:
            seen["files"] = {p.name for p in (out / "checkpoint-4").iterdir()}
            seen["adapter_keys"] = list(load_weights(out / "checkpoint-4" / "adapter_model.safetensors"))
    seen["rows_before_the_end"] = results.exists()
    assert main(model_size="base", method="lora", argv=[*RESUMABLE, "--save_steps", "2", "--resume",
                                                        "--output_dir", str(out), "--results_file", str(results)]) == 0
    return {"tmp": tmp, "seen": seen}


def test_sigkilled_run_resumes_exactly_in_epochs_2_and_3(killed_and_resumed):
    tmp, seen = killed_and_resumed["tmp"], killed_and_resumed["seen"]
    assert seen[4] == ["checkpoint-3", "checkpoint-4"] and seen[8] == ["checkpoint-6", "checkpoint-8"]
    assert not seen["rows_before_the_end"]  # a killed process writes no row
    [expected], [got] = read_rows(tmp / "uninterrupted.csv"), read_rows(tmp / "resumed.csv")
    assert got["status"] == "ok"
    assert_same_run(got, expected, got_dir=tmp / "resumed", expected_dir=tmp / "uninterrupted")
    # The row says how it ran; its train_loss (checked above) is the whole run's, not the last 1 step's.
    assert (got["resumes"], got["resumed_from_step"]) == ("2", "8")
    assert (expected["resumes"], expected["resumed_from_step"]) == ("0", "")
    assert float(got["train_time_s"]) > 0
    assert not list((tmp / "resumed").glob("checkpoint-*"))  # removed once the row is written


def test_peft_checkpoint_holds_adapter_head_and_training_state(killed_and_resumed):
    seen = killed_and_resumed["seen"]
    assert {"adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json",
            CHECKPOINT_CONFIG} <= seen["files"]
    assert "model.safetensors" not in seen["files"]  # no copy of the frozen base model
    keys = seen["adapter_keys"]
    assert keys and all("lora_" in k or "qa_outputs" in k for k in keys)
    assert any("qa_outputs" in k for k in keys)


def test_finished_run_is_neither_trained_again_nor_overwritten(killed_and_resumed, capsys):
    tmp = killed_and_resumed["tmp"]
    out, results = tmp / "resumed", tmp / "resumed.csv"
    before, folder_before = results.read_bytes(), sorted(p.name for p in out.iterdir())
    common = [*RESUMABLE, "--output_dir", str(out), "--results_file", str(results), "--save_steps", "2"]
    # A job script that always passes --resume: the finished run is reported, not trained or recorded again.
    assert main(model_size="base", method="lora", argv=[*common, "--resume"]) == 0
    assert f"{out}: this run finished already (its row is in {results})" in capsys.readouterr().err
    assert main(model_size="base", method="lora", argv=[*common, "--resume", "--learning_rate", "5e-3"]) == 2
    assert "holds a finished run with other settings (--learning_rate 0.001 -> 0.005)" in last_line(
        capsys.readouterr().err)
    assert main(model_size="base", method="lora", argv=common) == 2
    message = last_line(capsys.readouterr().err)
    assert f"--output_dir {out} holds a finished run" in message and "pass another --output_dir" in message
    assert results.read_bytes() == before and sorted(p.name for p in out.iterdir()) == folder_before


def test_run_stopped_in_its_final_evaluation_resumes_with_its_real_loss(tmp_path, capsys, monkeypatch):
    """Stopped after its last checkpoint, the resumed run trains no step: its row must still carry the loss of
    the steps it trained before, not the 0.0 of the steps after the resume."""
    results = tmp_path / "runs.csv"

    def run_into(folder, *extra):
        return main(model_size="base", method="lora", argv=[*SMALL, "--results_file", str(results), "--output_dir",
                                                            str(tmp_path / folder), "--save_steps", "1", *extra])

    assert run_into("uninterrupted") == 0
    monkeypatch.setattr(transformers.Trainer, "prediction_step", press_ctrl_c)
    assert run_into("stopped") == 128 + signal.SIGINT
    monkeypatch.undo()
    assert run_into("stopped", "--resume") == 0
    expected, stopped, resumed = read_rows(results)
    assert stopped["status"] == "interrupted" and resumed["status"] == "ok"
    assert (resumed["resumes"], resumed["resumed_from_step"]) == ("1", "2")  # the last step: nothing left to train
    assert float(resumed["train_loss"]) == pytest.approx(float(expected["train_loss"]), abs=1e-6)
    assert float(expected["train_loss"]) > 1


# 48 windows, 2 epochs of 3 steps; checkpoints 2, 3, 4, 6, of which --keep_checkpoints leaves the last two.
# Each method's last checkpoint is then damaged in its own way, as a node that died before its files reached
# the disk leaves them; --resume must skip it, naming the file, and continue from checkpoint-4 (epoch 2, one
# batch in) to the uninterrupted result: weights, optimizer and random state of each method restore exactly.
DAMAGES = {"full": ("optimizer.pt", "truncated"), "qlora": ("trainer_state.json", "empty"),
           "dora": ("adapter_model.safetensors", "empty"), "qdora": ("rng_state.pth", "truncated")}


@pytest.mark.parametrize("method", list(DAMAGES))
def test_every_method_resumes_exactly_past_a_damaged_checkpoint(method, tmp_path, capsys):
    out, results = tmp_path / "out", tmp_path / "runs.csv"
    argv = ["--smoke", "--max_train_samples", "48", "--max_eval_samples", "8", "--num_epochs", "2", "--save_steps",
            "2", "--keep_checkpoints", "--output_dir", str(out), "--results_file", str(results)]
    assert main(model_size="base", method=method, argv=argv) == 0
    weights = "model.safetensors" if method == "full" else "adapter_model.safetensors"
    expected_dir = tmp_path / "uninterrupted"
    expected_dir.mkdir()
    for name in ("predictions.json", weights):
        shutil.copy(out / name, expected_dir / name)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    name, damage = DAMAGES[method]
    damaged = out / "checkpoint-6" / name
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2] if damage == "truncated" else b"")
    (out / "finished.json").unlink()  # as if the run had died after that checkpoint, before its row
    capsys.readouterr()

    assert main(model_size="base", method=method, argv=[*argv, "--resume"]) == 0
    stderr = capsys.readouterr().err
    assert f"Skipping {out / 'checkpoint-6'}: {name} is damaged" in stderr and "trying checkpoint-4" in stderr
    expected, got = read_rows(results)
    assert (got["status"], got["resumes"], got["resumed_from_step"]) == ("ok", "1", "4")
    assert_same_run(got, expected, got_dir=out, expected_dir=expected_dir, weights=weights)


def write_checkpoint(folder, *, complete=True, learning_rate=1e-3, train_time=12.5, record=None):
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": int(folder.name.split("-")[1])}))
    if complete:
        config = vars(parse_config("base", "lora", ["--smoke", "--learning_rate", str(learning_rate)]))
        record = {"config": config, "train_time_s": train_time, **(record or {})}
        (folder / CHECKPOINT_CONFIG).write_text(json.dumps(record))


def test_resume_takes_the_last_complete_checkpoint(tmp_path):
    config = parse_config("base", "lora", ["--smoke", "--learning_rate", "1e-3", "--resume", "--output_dir",
                                           str(tmp_path)])
    assert resume_point(config, tmp_path) == ResumePoint()  # nothing to resume: a fresh start
    write_checkpoint(tmp_path / "checkpoint-9")
    write_checkpoint(tmp_path / "checkpoint-10", train_time=20.0,
                     record={"global_step": 10, "train_loss_sum": 45.0, "resumed_from": [4]})
    write_checkpoint(tmp_path / "checkpoint-12", complete=False)  # killed while saving
    point = resume_point(config, tmp_path)  # 10 > 9 as numbers
    assert point == ResumePoint(checkpoint=tmp_path / "checkpoint-10", step=10, train_time_s=20.0,
                                train_loss_sum=45.0, resumed_from=(4,))
    assert point.resumes == 2
    # 10 steps recorded with a loss sum of 45, 5 more at a mean of 3: the run's mean is 60 / 15.
    assert point.whole_run_loss(session_loss=3.0, global_step=15) == pytest.approx(4.0)
    assert point.whole_run_loss(session_loss=0.0, global_step=10) == pytest.approx(4.5)  # resumed at the last step
    write_checkpoint(tmp_path / "checkpoint-15", learning_rate=5e-4)
    with pytest.raises(ConfigError, match=r"--learning_rate 0.0005 -> 0.001"):
        resume_point(config, tmp_path)
    fresh = parse_config("base", "lora", ["--smoke", "--learning_rate", "1e-3", "--save_steps", "5"])
    with pytest.raises(ConfigError, match=r"holds checkpoints of an earlier run \(checkpoint-15\): pass --resume"):
        resume_point(fresh, tmp_path)


def test_checkpoint_of_an_earlier_version_resumes_without_inventing_a_loss(tmp_path):
    config = parse_config("base", "lora", ["--smoke", "--learning_rate", "1e-3", "--resume"])
    write_checkpoint(tmp_path / "checkpoint-7")  # its record has no step and no loss sum
    point = resume_point(config, tmp_path)
    assert (point.step, point.train_loss_sum) == (7, None)
    assert point.whole_run_loss(session_loss=3.0, global_step=9) is None  # an empty cell, not a made-up mean


def damaged_checkpoints(tmp_path):
    """A complete checkpoint of real file formats, and ways to damage it; the record lists no sizes (as in
    checkpoints of earlier versions), so the formats themselves must show the damage."""
    from safetensors.torch import save_file

    def make(name):
        folder = tmp_path / name
        write_checkpoint(folder)
        torch.save({"state": {0: {"exp_avg": torch.ones(64)}}}, folder / "optimizer.pt")
        save_file({"lora_A": torch.ones(4, 4)}, folder / "adapter_model.safetensors")
        return folder

    return make


@pytest.mark.parametrize("name, damage, problem", [
    ("optimizer.pt", lambda data: data[:-40], "optimizer.pt is damaged (not a complete torch file)"),
    ("trainer_state.json", lambda data: b"", "trainer_state.json is damaged (empty)"),
    ("trainer_state.json", lambda data: data[:-3], "trainer_state.json is damaged (not valid JSON)"),
    ("adapter_model.safetensors", lambda data: b"", "adapter_model.safetensors is damaged (empty)"),
    ("adapter_model.safetensors", lambda data: data[:-8],
     "adapter_model.safetensors is damaged (shorter or longer than its header says)"),
    (CHECKPOINT_CONFIG, lambda data: data[:20], f"{CHECKPOINT_CONFIG} is damaged"),
])
def test_damaged_checkpoint_is_skipped_naming_the_file(name, damage, problem, tmp_path, caplog):
    make = damaged_checkpoints(tmp_path)
    assert checkpoint_problem(make("checkpoint-2")) is None
    last = make("checkpoint-4")
    (last / name).write_bytes(damage((last / name).read_bytes()))
    assert problem in checkpoint_problem(last)
    config = parse_config("base", "lora", ["--smoke", "--learning_rate", "1e-3", "--resume"])
    with caplog.at_level("WARNING", logger="bertimbau_qa"):
        assert resume_point(config, tmp_path).checkpoint == tmp_path / "checkpoint-2"
    assert f"Skipping {last}: {problem}" in caplog.text and "trying checkpoint-2" in caplog.text


def test_checkpoints_at_epoch_ends_besides_every_n_steps(tmp_path):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    config = parse_config("base", "lora", ["--smoke", "--save_steps", "4"])
    last_step_logged, callback = checkpoint_callbacks(config)
    assert len(checkpoint_callbacks(parse_config("base", "lora", ["--smoke"]))) == 1  # default: no checkpoints
    args = TrainingArguments(output_dir=str(tmp_path), save_strategy="steps", save_steps=4, report_to="none")
    for step, saves in [(3, True), (4, False), (10, False)]:  # 4: saved as a step; 10: saved as the last step
        state, control = TrainerState(global_step=step, max_steps=10, save_steps=4), TrainerControl()
        callback.on_epoch_end(args, state, control)
        assert control.should_save == saves, step
        assert control.should_log == saves  # logged with each save: the loss of every step reaches the record
        last_step_logged.on_step_end(args, state, control)
        assert control.should_log == (saves or step == 10)  # and at the last step


def test_loss_sum_from_the_log():
    log = [{"loss": 5.0, "step": 1}, {"loss": 4.0, "step": 3}, {"eval_f1": 1.0, "step": 3}, {"loss": 2.0, "step": 4}]
    assert logged_loss_sum(log, up_to_step=4) == pytest.approx(5.0 + 4.0 * 2 + 2.0)
    assert logged_loss_sum(log, up_to_step=3) == pytest.approx(13.0)


def test_checkpoint_training_time_leaves_compiling_out(monkeypatch):
    # A resumed compiled run compiles again: that time is the row's compile_time_s, not its train_time_s.
    import common.model

    clock = {"now": 100.0, "compiled": 7.0}
    monkeypatch.setattr("common.checkpoint.time.perf_counter", lambda: clock["now"])
    monkeypatch.setattr(common.model, "compile_seconds", lambda: clock["compiled"])
    _, callback = checkpoint_callbacks(parse_config("base", "lora", ["--smoke", "--save_steps", "4"]))
    callback.on_train_begin(None, None, None)
    clock["now"], clock["compiled"] = 160.0, 27.0  # a minute later, 20 s of it compiling
    assert callback.training_seconds() == pytest.approx(40.0)
