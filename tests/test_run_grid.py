"""paper/run_grid.py: the paper's 40 runs through the ten scripts, resumable, failures reported at the end."""
import csv
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO_ROOT

from common.results import RESULT_COLUMNS

RUN_GRID = REPO_ROOT / "paper" / "run_grid.py"
sys.path.insert(0, str(RUN_GRID.parent))  # run_grid imports its sibling results_table.py as when run directly
import run_grid as grid  # noqa: E402
SCRIPTS = {"main.py": "full", "main_lora.py": "lora", "main_qlora.py": "qlora", "main_dora.py": "dora",
           "main_qdora.py": "qdora"}
# Smoke runs on a handful of questions: the grid's behaviour is under test here, not learning.
TINY = ["--", "--max_train_samples", "8", "--max_eval_samples", "8"]


def run_grid(*args, timeout=600):
    return subprocess.run([sys.executable, str(RUN_GRID), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT, env=os.environ.copy())


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def flag(command, name):
    return command[command.index(name) + 1]


def test_dry_run_prints_the_40_commands_of_the_grid(tmp_path):
    results = tmp_path / "runs.csv"
    proc = run_grid("--dry-run", "--results_file", results)
    assert proc.returncode == 0, proc.stderr
    commands = [shlex.split(line) for line in proc.stdout.splitlines()]
    assert len(commands) == 40
    configurations = set()
    for command in commands:
        script = command[1].split("/")
        assert command[0] == sys.executable and script[-2] in ("bertimbau_base", "bertimbau_large")
        assert flag(command, "--results_file") == str(results) and flag(command, "--seed") == "42"
        assert "--smoke" not in command
        configurations.add((script[-2], SCRIPTS[script[-1]], float(flag(command, "--learning_rate")),
                            float(flag(command, "--num_epochs"))))
    assert len(configurations) == 40
    assert {c[2] for c in configurations} == {2e-4, 4.25e-5} and {c[3] for c in configurations} == {2.0, 3.0}
    assert not results.exists()  # a dry run writes nothing


def test_dry_run_skips_finished_configurations_compared_as_numbers(tmp_path):
    results = tmp_path / "runs.csv"
    rows = [  # learning rates and epochs written differently from the grid's own 0.0002 / 2
        {"model_size": "base", "method": "lora", "learning_rate": "2e-4", "num_epochs": "2.0", "seed": "42",
         "status": "ok"},
        {"model_size": "base", "method": "qlora", "learning_rate": "0.0000425", "num_epochs": "3", "seed": "42",
         "status": "ok"},
        {"model_size": "base", "method": "dora", "learning_rate": "0.0002", "num_epochs": "2.0", "seed": "42",
         "status": "failed"},  # not finished: runs again
        {"model_size": "base", "method": "full", "learning_rate": "0.0002", "num_epochs": "2.0", "seed": "7",
         "status": "ok"},  # another seed
    ]
    with open(results, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    proc = run_grid("--dry-run", "--models", "base", "--results_file", results, "--seeds", 42, 7)
    assert proc.returncode == 0, proc.stderr
    planned = {(SCRIPTS[c[1].split("/")[-1]], float(flag(c, "--learning_rate")), float(flag(c, "--num_epochs")),
                flag(c, "--seed")) for c in map(shlex.split, proc.stdout.splitlines())}
    assert len(planned) == 40 - 3  # base only, two seeds; three of them finished
    assert ("lora", 2e-4, 2.0, "42") not in planned and ("qlora", 4.25e-5, 3.0, "42") not in planned
    assert ("full", 2e-4, 2.0, "7") not in planned
    assert ("dora", 2e-4, 2.0, "42") in planned and ("full", 2e-4, 2.0, "42") in planned
    assert "37 to run, 3 of 40 already finished" in proc.stderr


def test_smoke_grid_really_runs_and_resumes(tmp_path):
    results, outputs = tmp_path / "smoke_runs.csv", tmp_path / "outputs"
    args = ["--smoke", "--models", "base", "--methods", "lora", "qlora", "--results_file", results,
            "--output_root", outputs, *TINY]
    first = run_grid(*args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    rows = read_rows(results)
    assert len(rows) == 8 and {r["status"] for r in rows} == {"ok"}
    assert {(r["model_size"], r["data_source"], r["seed"]) for r in rows} == {("base", "smoke:shipped", "42")}
    assert {(r["method"], float(r["learning_rate"]), float(r["num_epochs"])) for r in rows} == {
        (m, lr, ep) for m in ("lora", "qlora") for lr in (2e-4, 4.25e-5) for ep in (2.0, 3.0)}
    assert all(int(r["train_examples"]) == 8 and int(r["eval_examples"]) == 8 for r in rows)  # flags after `--`
    assert len([d for d in outputs.iterdir() if (d / "predictions.json").exists()]) == 8
    assert "8 runs planned, 0 already finished (skipped), 8 run now, 8 ok, 0 failed" in first.stdout

    second = run_grid(*args)  # resumed: everything is finished, nothing runs
    assert second.returncode == 0, second.stderr
    assert len(read_rows(results)) == 8
    assert "8 runs planned, 8 already finished (skipped), 0 run now" in second.stdout
    assert "===" not in second.stdout


def test_a_failed_run_does_not_stop_the_grid(tmp_path):
    results = tmp_path / "smoke_runs.csv"
    # --max_train_samples 0 is refused by every script (exit status 2): both runs are tried, both reported.
    proc = run_grid("--smoke", "--models", "base", "--methods", "lora", "qlora", "--learning_rates", "2e-4",
                    "--num_epochs", "2", "--results_file", results, "--", "--max_train_samples", "0", timeout=300)
    assert proc.returncode == 1
    assert "2 run now, 0 ok, 2 failed" in proc.stdout
    assert "failed: base lora lr 2e-4 2 ep seed 42 (exit status 2)" in proc.stdout
    assert "failed: base qlora lr 2e-4 2 ep seed 42 (exit status 2)" in proc.stdout
    assert not results.exists()


def test_flags_the_grid_owns_and_bad_results_files_are_refused(tmp_path):
    proc = run_grid("--dry-run", "--results_file", tmp_path / "runs.csv", "--", "--seed", "3")
    assert proc.returncode == 2 and proc.stderr.startswith("error: --seed after `--`") and not proc.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n", encoding="utf-8")
    proc = run_grid("--dry-run", "--results_file", bad)
    assert proc.returncode == 2 and "lacks the column(s)" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    proc = run_grid("--dry-run", "--results_file", tmp_path / "runs.csv", "--gpus", ",")
    assert proc.returncode == 2 and proc.stderr == "error: --gpus names no GPU\n"
    proc = run_grid("--dry-run", "--results_file", tmp_path / "runs.csv", "--jobs", "0")
    assert proc.returncode == 2 and "argument --jobs: '0': must be a whole number >= 1" in proc.stderr



def test_gpus_go_to_the_least_busy_first_and_are_shared_beyond_their_number():
    assert grid.parse_gpus(["0,1", "3"]) == ["0", "1", "3"] and grid.parse_gpus(None) == []
    assert grid.pick_gpu([], busy=[]) is None  # no --gpus: the run sees what the grid sees
    busy = []
    for _ in range(5):  # five runs at once on two GPUs
        busy.append(grid.pick_gpu(["0", "1"], busy=busy))
    assert busy == ["0", "1", "0", "1", "0"]
    busy.remove("1")  # a run on GPU 1 ends: the next run takes its place
    assert grid.pick_gpu(["0", "1"], busy=busy) == "1"
    assert grid.pick_gpu(["GPU-b", "GPU-a"], busy=["GPU-b"]) == "GPU-a"  # UUIDs, in the order given


class FakeScript:
    """Stands in for subprocess.Popen: runs for a few polls, then appends its finished row and exits 0."""

    started = []  # (CUDA_VISIBLE_DEVICES, GPUs of the scripts running at that moment, Popen's keyword arguments)
    running = []

    def __init__(self, command, **kwargs):
        self.command, self.kwargs, self.returncode = command, kwargs, None
        self.gpu = (kwargs["env"] or os.environ).get("CUDA_VISIBLE_DEVICES")
        self.polls_left = 1 + 2 * (len(FakeScript.started) % 3)  # runs of different lengths: ends out of order
        FakeScript.running.append(self)
        FakeScript.started.append((self.gpu, [script.gpu for script in FakeScript.running], kwargs))

    def poll(self):
        self.polls_left -= 1
        if self.polls_left == 0:
            script = self.command[1].split("/")
            row = {"model_size": script[-2].removeprefix("bertimbau_"), "method": SCRIPTS[script[-1]],
                   "learning_rate": flag(self.command, "--learning_rate"), "seed": flag(self.command, "--seed"),
                   "num_epochs": flag(self.command, "--num_epochs"), "status": "ok"}
            results = flag(self.command, "--results_file")
            new = not os.path.exists(results)
            with open(results, "a", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=RESULT_COLUMNS, lineterminator="\n")
                if new:
                    writer.writeheader()
                writer.writerow(row)
            FakeScript.running.remove(self)
            self.returncode = 0
        return self.returncode


@pytest.mark.parametrize("grid_flags, at_once, gpus", [
    (["--jobs", "3", "--gpus", "0", "1"], 3, ["0", "1"]),  # more jobs than GPUs: they share
    (["--gpus", "0,1"], 2, ["0", "1"]),  # one job per GPU by default
    (["--jobs", "2"], 2, []),  # no --gpus: the environment is the grid's own
])
def test_jobs_run_at_once_each_with_its_gpu_and_log(tmp_path, monkeypatch, capsys, grid_flags, at_once, gpus):
    monkeypatch.setattr(grid.subprocess, "Popen", FakeScript)
    monkeypatch.setattr(grid, "POLL_S", 0)
    monkeypatch.setattr(FakeScript, "started", [])
    monkeypatch.setattr(FakeScript, "running", [])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    results, outputs = tmp_path / "runs.csv", tmp_path / "outputs"
    status = grid.main([*grid_flags, "--models", "base", "--methods", "full", "lora", "qlora", "--learning_rates",
                        "2e-4", "--num_epochs", "2", "3", "--results_file", str(results), "--output_root",
                        str(outputs)])
    assert status == 0, capsys.readouterr().out
    assert len(read_rows(results)) == 6 and len(FakeScript.started) == 6
    assert max(len(running) for _, running, _ in FakeScript.started) == at_once
    for gpu, running, kwargs in FakeScript.started:
        assert kwargs["start_new_session"] and kwargs["cwd"] == REPO_ROOT
        log = outputs / (os.path.basename(kwargs["stdout"].name))
        assert kwargs["stdout"].name == str(log) and log.read_text().startswith("$ ")  # the command heads its log
        if gpus:
            assert gpu in gpus and kwargs["env"]["BERTIMBAU_QA_CACHE"] == os.environ["BERTIMBAU_QA_CACHE"]
            # least busy first: the GPUs' loads never differ by more than one
            assert max(running.count(g) for g in gpus) - min(running.count(g) for g in gpus) <= 1
        else:
            assert kwargs["env"] is None and gpu == "7"
    out = capsys.readouterr().out
    assert out.count("started: ") == 6 and out.count("] ok: ") == 6
    assert "6 runs planned, 0 already finished (skipped), 6 run now, 6 ok, 0 failed" in out


def test_two_real_jobs_write_one_row_and_one_log_each_and_a_failure_stops_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(grid.SCRIPTS, "dora", "no_such_script.py")  # dora fails at once; the others go on
    results, outputs = tmp_path / "smoke_runs.csv", tmp_path / "outputs"
    args = ["--smoke", "--jobs", "2", "--models", "base", "--methods", "lora", "dora", "qlora", "--learning_rates",
            "2e-4", "--num_epochs", "2", "--results_file", str(results), "--output_root", str(outputs), *TINY]
    assert grid.main(args) == 1
    out = capsys.readouterr().out
    rows = read_rows(results)
    assert sorted(r["method"] for r in rows) == ["lora", "qlora"] and {r["status"] for r in rows} == {"ok"}
    for row in rows:  # each row whole: every column, nothing spilled over, numbers that parse
        assert list(row) == RESULT_COLUMNS and None not in row.values()
        assert 0 <= float(row["f1"]) <= 100 and int(row["train_examples"]) == 8 and row["seed"] == "42"
    logs = {method: outputs / f"base_{method}_lr0.0002_ep2_seed42_smoke.log" for method in ("lora", "dora", "qlora")}
    for method in ("lora", "qlora"):
        assert "Summary" in logs[method].read_text() and (outputs / logs[method].stem / "predictions.json").exists()
    assert "no_such_script.py" in logs["dora"].read_text()
    assert "Resolved config" not in out  # the scripts' output is in their logs, not the grid's
    assert out.count("started: ") == 3
    assert "failed (exit status 2): base dora lr 2e-4 2 ep seed 42" in out
    assert "3 runs planned, 0 already finished (skipped), 3 run now, 2 ok, 1 failed" in out

    assert grid.main(args) == 1  # resumed: only the failed run is tried again
    assert "3 runs planned, 2 already finished (skipped), 1 run now, 0 ok, 1 failed" in capsys.readouterr().out
    assert len(read_rows(results)) == 2


def test_sigterm_stops_the_grid_and_each_running_script_records_interrupted(tmp_path):
    results, outputs = tmp_path / "smoke_runs.csv", tmp_path / "outputs"
    # 2000 epochs of one step: runs that are still training when the signal comes, however slow the machine.
    proc = subprocess.Popen([sys.executable, str(RUN_GRID), "--smoke", "--jobs", "2", "--models", "base", "--methods",
                             "lora", "qlora", "--learning_rates", "2e-4", "--num_epochs", "2000", "--results_file",
                             str(results), "--output_root", str(outputs), *TINY],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logs = [outputs / f"base_{method}_lr0.0002_ep2000_seed42_smoke.log" for method in ("lora", "qlora")]
    try:
        deadline = time.monotonic() + 300
        # "Method ..." is logged just before training, when a script already turns SIGTERM into a row.
        while not all(log.exists() and "Method " in log.read_text() for log in logs):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    rows = read_rows(results)
    assert sorted(r["method"] for r in rows) == ["lora", "qlora"]
    assert {(r["status"], r["error"]) for r in rows} == {("interrupted", "stopped by SIGTERM")}
    assert out.count("] interrupted: ") == 2
    assert "2 runs planned, 0 already finished (skipped), 2 run now, 0 ok, 2 failed, interrupted" in out
