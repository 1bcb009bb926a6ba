"""paper/run_grid.py: the paper's 40 runs through the ten scripts, resumable, failures reported at the end."""
import csv
import os
import shlex
import subprocess
import sys

from conftest import REPO_ROOT

from common.results import RESULT_COLUMNS

RUN_GRID = REPO_ROOT / "paper" / "run_grid.py"
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

