"""Reproduce the paper's grid: 2 models x 5 methods x 2 learning rates x 2 epoch counts = 40 runs.

    python paper/run_grid.py                                  # the 40 runs, one after another -> results/runs.csv
    python paper/run_grid.py --dry-run                        # print the commands, run nothing
    python paper/run_grid.py --models large --methods lora qlora --seeds 1 2 3
    python paper/run_grid.py --smoke                          # the whole grid offline (tiny BERT, shipped data)
    python paper/run_grid.py -- --train_file squad-train-v1.1.json --validation_file squad-dev-v1.1.json
    python paper/run_grid.py --jobs 3                         # three runs at once on the one GPU
    python paper/run_grid.py --gpus 0 1 2 3                   # four at once, one per GPU (CUDA_VISIBLE_DEVICES)

Every run is the matching script, `bertimbau_<model>/main*.py`, started with this Python (sys.executable), so
the grid runs exactly what a user would run by hand; flags after `--` go to every script unchanged.
Resumable: a configuration (model, method, learning rate, epochs, seed) counts as done when the results file the
scripts write to (results/runs.csv; results/smoke_runs.csv with --smoke; or --results_file) already has a row
for it with status ok, so a stopped grid restarted with the same command runs only what is missing. Runs with
other flags after `--` (other data, debug sizes) belong in their own --results_file. A failed run does not stop
the grid: the failures are listed at the end and the exit status is 1.
With --jobs K (or --gpus), up to K runs go at once, each with its output in its own log file. Ctrl-C or SIGTERM
stops the grid: it passes the signal on to the running scripts, which record their rows as `interrupted`.
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Optional

from results_table import (  # paper/ is on sys.path when this file runs as a script
    EPOCHS, FINISHED, LEARNING_RATES, METHODS, MODEL_SIZES, REPO_ROOT, ResultsError, format_lr, read_results,
    is_same_number,
)

SCRIPTS = {"full": "main.py", "lora": "main_lora.py", "qlora": "main_qlora.py", "dora": "main_dora.py",
           "qdora": "main_qdora.py"}
DEFAULT_SEEDS = (42,)  # the scripts' default --seed; the paper reports one run per configuration, seed not given
# Flags the grid sets itself: passing them after `--` would break the link between a run and its results row.
GRID_FLAGS = ("--learning_rate", "--num_epochs", "--seed", "--smoke", "--results_file", "--method", "--model_size",
              "--output_dir")
POLL_S = 0.2  # how often the grid looks at its running scripts; their runs last seconds (smoke) to hours


@dataclass(frozen=True)
class Run:
    model_size: str
    method: str
    learning_rate: float
    num_epochs: float
    seed: int

    @property
    def name(self) -> str:
        """As common/config.py names a run's output folder."""
        return f"{self.model_size}_{self.method}_lr{self.learning_rate:g}_ep{self.num_epochs:g}_seed{self.seed}"

    def folder_name(self, *, smoke: bool) -> str:
        return self.name + ("_smoke" if smoke else "")

    def describe(self) -> str:
        return (f"{self.model_size} {self.method} lr {format_lr(self.learning_rate)} {self.num_epochs:g} ep "
                f"seed {self.seed}")


def plan_runs(*, models: list[str], methods: list[str], learning_rates: list[float], epochs: list[float],
              seeds: list[int]) -> list[Run]:
    """The grid in the paper's table order (model, lr, epochs, method), each seed of a configuration together."""
    return [Run(size, method, lr, ep, seed) for size in models for lr in learning_rates for ep in epochs
            for method in methods for seed in seeds]


def build_command(run: Run, *, results_file: Path, smoke: bool, output_root: Optional[Path],
                  extra: list[str]) -> list[str]:
    script = REPO_ROOT / f"bertimbau_{run.model_size}" / SCRIPTS[run.method]
    command = [sys.executable, str(script), "--learning_rate", repr(run.learning_rate), "--num_epochs",
               f"{run.num_epochs:g}", "--seed", str(run.seed), "--results_file", str(results_file)]
    if smoke:
        command.append("--smoke")
    if output_root is not None:
        command += ["--output_dir", str(output_root / run.folder_name(smoke=smoke))]
    return command + extra


def read_finished_rows(results_file: Path) -> list[dict]:
    """The rows with status ok; none when the file does not exist yet (ResultsError when it is not a results CSV)."""
    if not results_file.exists():
        return []
    return [row for row in read_results(results_file) if (row.get("status") or "").strip() == FINISHED]


def is_finished(run: Run, *, rows: list[dict]) -> bool:
    """A finished row for the same model, method, seed and, compared as numbers, learning rate and epochs."""
    for row in rows:
        try:
            lr, epochs, seed = float(row["learning_rate"]), float(row["num_epochs"]), int(row.get("seed") or "")
        except (TypeError, ValueError):
            continue  # e.g. a row without a seed (the paper's) never stands for one of our runs
        if ((row["model_size"], row["method"], seed) == (run.model_size, run.method, run.seed)
                and is_same_number(lr, run.learning_rate) and is_same_number(epochs, run.num_epochs)):
            return True
    return False


def check_outcome(run: Run, *, returncode: int, results_file: Path) -> Optional[str]:
    """None when the script finished and wrote its row, else why the run failed."""
    if returncode != 0:
        return f"exit status {returncode}"
    if not is_finished(run, rows=read_finished_rows(results_file)):
        return f"exit status 0 but no finished row in {results_file}"
    return None


def parse_gpus(values: Optional[list[str]]) -> list[str]:
    """`--gpus 0 1`, `--gpus 0,1` -> ["0", "1"]: ids as CUDA_VISIBLE_DEVICES takes them (indices or UUIDs)."""
    return [gpu.strip() for value in values or [] for gpu in value.split(",") if gpu.strip()]


def pick_gpu(gpus: list[str], *, busy: list[str]) -> Optional[str]:
    """The GPU for the next run: the one with the fewest running runs (`busy`: one entry per running run), the
    first in --gpus order on a tie, so K runs on G GPUs spread round-robin and a run that ends frees its place.
    None without --gpus: the run sees the devices the grid sees."""
    if not gpus:
        return None
    load = Counter(busy)
    return min(gpus, key=lambda gpu: (load[gpu], gpus.index(gpu)))


def run_environment(gpu: Optional[str]) -> Optional[dict]:
    """The script's environment: the grid's own, with CUDA_VISIBLE_DEVICES narrowed to its GPU when it has one."""
    if gpu is None:
        return None  # Popen's default: inherit
    return {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}


@dataclass
class Job:
    number: int
    run: Run
    process: subprocess.Popen
    gpu: Optional[str]
    log: Optional[Path]
    started: float = field(default_factory=time.monotonic)


def start_job(number: int, run: Run, *, command: list[str], gpu: Optional[str], log: Optional[Path]) -> Job:
    """Start one script. Its own session, so that a Ctrl-C in the terminal reaches only the grid, which passes it on
    once: a second signal while the script writes its `interrupted` row would cut the row short."""
    output: Optional[IO] = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        output = open(log, "w", encoding="utf-8")
        output.write(f"$ {shlex.join(command)}\n" + (f"# CUDA_VISIBLE_DEVICES={gpu}\n" if gpu is not None else ""))
        output.flush()
    try:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=run_environment(gpu), stdout=output,
                                   stderr=subprocess.STDOUT if output else None, start_new_session=True)
    finally:
        if output is not None:
            output.close()  # the script holds its own copy of the file
    return Job(number, run, process, gpu, log)


def last_line(path: Path) -> str:
    """The log's last non-empty line: a failed script ends with its one-line `error:`."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 4096))
            lines = handle.read().decode("utf-8", "replace").replace("\r", "\n").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


@dataclass
class GridOutcome:
    ran: list[Run] = field(default_factory=list)
    failures: dict = field(default_factory=dict)
    skipped: int = 0
    signals: list[int] = field(default_factory=list)  # what stopped the grid, first signal first


def launch(number: int, run: Run, *, total: int, command: list[str], logs: Optional[dict], gpu: Optional[str],
           outcome: GridOutcome) -> Optional[Job]:
    on_gpu = f" on GPU {gpu}" if gpu is not None else ""
    if logs is None:
        print(f"\n=== [{number}/{total}] {run.describe()}{on_gpu}\n$ {shlex.join(command)}", flush=True)
    else:
        print(f"=== [{number}/{total}] started: {run.describe()}{on_gpu}, log {logs[run]}", flush=True)
    outcome.ran.append(run)
    try:
        return start_job(number, run, command=command, gpu=gpu, log=None if logs is None else logs[run])
    except OSError as exc:  # e.g. a log folder that cannot be written: this run fails, the others go on
        outcome.failures[run] = f"could not start: {exc}"
        print(f"=== [{number}/{total}] failed ({outcome.failures[run]}): {run.describe()}; going on with the grid",
              flush=True)
        return None


def finish(job: Job, *, total: int, results_file: Path, logs: Optional[dict], outcome: GridOutcome) -> None:
    why = check_outcome(job.run, returncode=job.process.returncode, results_file=results_file)
    if why and outcome.signals:
        why = "interrupted"
    if why:
        outcome.failures[job.run] = why
    if logs is None:
        if why and why != "interrupted":
            print(f"=== failed: {job.run.describe()} ({why}); going on with the grid", flush=True)
        return
    seconds = time.monotonic() - job.started
    status = ("interrupted" if why == "interrupted" else f"failed ({why})") if why else "ok"
    print(f"=== [{job.number}/{total}] {status}: {job.run.describe()} after {seconds:.0f} s, log {job.log}",
          flush=True)
    if why and why != "interrupted":
        print(f"    {last_line(job.log)}", flush=True)


def stop_jobs(running: list[Job], *, signals: list[int], first: bool) -> None:
    """First signal: pass it on (SIGINT stays SIGINT, SIGTERM SIGTERM) so that each script records its row as
    `interrupted`, and wait for them. A second one: kill them at once, rows or not."""
    name = signal.Signals(signals[-1]).name
    if first:
        print(f"\n=== {name}: no new runs; passing it on to the {len(running)} running script(s) and waiting for "
              "them to record their rows (send it again to kill them)", flush=True)
    else:
        print(f"\n=== {name} again: killing the {len(running)} running script(s)", flush=True)
    for job in running:
        if job.process.poll() is None:
            job.process.send_signal(signals[0] if first else signal.SIGKILL)


def run_jobs(todo: list[Run], *, commands: dict, results_file: Path, jobs: int, gpus: list[str],
             logs: Optional[dict]) -> GridOutcome:
    """Run the scripts, up to `jobs` at once, in `todo` order. `logs` (run -> log file) sends each script's output
    to its file and prints a line when a run starts and ends; None lets the scripts write to the terminal."""
    outcome, pending, running = GridOutcome(), list(enumerate(todo, 1)), []
    # The handler only notes the signal; the loop below acts on it between two polls, never halfway through
    # starting a script (an exception raised there could leave a script running untracked).
    # A signal the grid was started ignoring (nohup, a background job of a script) stays ignored.
    handlers = {signum: signal.signal(signum, lambda signum, frame: outcome.signals.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(signum) != signal.SIG_IGN}
    passed_on = 0  # how many of the signals received have been acted on
    try:
        while running or (pending and not outcome.signals):
            if len(outcome.signals) > passed_on:
                stop_jobs(running, signals=outcome.signals, first=passed_on == 0)
                passed_on = len(outcome.signals)
            while pending and len(running) < jobs and not outcome.signals:
                number, run = pending.pop(0)
                # Checked again just before the run: another grid process may have finished it meanwhile.
                if is_finished(run, rows=read_finished_rows(results_file)):
                    outcome.skipped += 1
                    continue
                job = launch(number, run, total=len(todo), command=commands[run], logs=logs,
                             gpu=pick_gpu(gpus, busy=[job.gpu for job in running]), outcome=outcome)
                if job is not None:
                    running.append(job)
            for job in [job for job in running if job.process.poll() is not None]:
                running.remove(job)
                finish(job, total=len(todo), results_file=results_file, logs=logs, outcome=outcome)
            if running:
                time.sleep(POLL_S)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    return outcome


def split_extra(argv: list[str]) -> tuple[list[str], list[str]]:
    """(grid flags, script flags): everything after the first `--` goes to the scripts."""
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1:]
    return argv, []


def check_extra(extra: list[str]) -> Optional[str]:
    for flag in extra:
        if flag.split("=", 1)[0] in GRID_FLAGS:
            return (f"{flag.split('=', 1)[0]} after `--`: the grid sets it for each run "
                    "(use --learning_rates, --num_epochs, --seeds, --smoke, --results_file, --output_root)")
    return None


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a whole number >= 1")
    return int(text)


def plan_logs(runs: list[Run], *, smoke: bool, log_dir: Optional[Path], output_root: Optional[Path]) -> dict:
    """run -> its log file, named like its output folder; beside that folder unless --log_dir says otherwise."""
    folder = log_dir or output_root or REPO_ROOT / "outputs"  # the scripts' own default for outputs
    return {run: folder / f"{run.folder_name(smoke=smoke)}.log" for run in runs}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     usage="%(prog)s [options] [-- flags for every script]")
    parser.add_argument("--models", nargs="+", choices=MODEL_SIZES, default=list(MODEL_SIZES),
                        help="model sizes (default: both)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="methods (default: all five)")
    parser.add_argument("--learning_rates", nargs="+", type=float, default=list(LEARNING_RATES),
                        help="learning rates (default: the paper's 2e-4 and 4.25e-5)")
    parser.add_argument("--num_epochs", nargs="+", type=float, default=[float(e) for e in EPOCHS],
                        help="epoch counts (default: the paper's 2 and 3)")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS),
                        help="seeds; several give mean ± std in the figures and tables (default: 42)")
    parser.add_argument("--smoke", action="store_true",
                        help="smoke mode: tiny local BERT and the shipped data, offline; results/smoke_runs.csv")
    parser.add_argument("--results_file", type=Path, default=None,
                        help="results CSV the scripts append to and the grid resumes from "
                             "(default: results/runs.csv, results/smoke_runs.csv with --smoke)")
    parser.add_argument("--output_root", type=Path, default=None,
                        help="put each run's outputs in <output_root>/<run name> (default: the scripts' outputs/)")
    parser.add_argument("--jobs", type=positive_int, default=None,
                        help="runs at once (default: 1, or one per GPU with --gpus); for GPUs, and CPU smoke runs")
    parser.add_argument("--gpus", nargs="+", default=None, metavar="ID",
                        help="GPUs to spread the runs over (e.g. 0 1 or 0,1): each run gets one as its "
                             "CUDA_VISIBLE_DEVICES, the least busy first; with --jobs above their number they share")
    parser.add_argument("--log_dir", type=Path, default=None,
                        help="write each run's output to <log_dir>/<run name>.log (default with several jobs: next "
                             "to the run's output folder, <output_root or outputs>/<run name>.log)")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="print the commands of the runs still to do, run nothing")
    return parser.parse_args(argv)


def report(*, planned: int, skipped: int, ran: list[Run], failures: dict, interrupted: bool) -> None:
    print(f"\ngrid: {planned} runs planned, {skipped} already finished (skipped), {len(ran)} run now, "
          f"{len(ran) - len(failures)} ok, {len(failures)} failed" + (", interrupted" if interrupted else ""))
    for run, why in failures.items():
        print(f"  failed: {run.describe()} ({why})")


def main(argv: Optional[list[str]] = None) -> int:
    grid_argv, extra = split_extra(sys.argv[1:] if argv is None else argv)
    args = parse_args(grid_argv)
    problem = check_extra(extra)
    gpus = parse_gpus(args.gpus)
    if args.gpus is not None and not gpus:
        problem = problem or "--gpus names no GPU"
    results_file = (args.results_file or REPO_ROOT / "results" / ("smoke_runs.csv" if args.smoke else "runs.csv"))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        done = read_finished_rows(results_file)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runs = plan_runs(models=args.models, methods=args.methods, learning_rates=args.learning_rates,
                     epochs=args.num_epochs, seeds=args.seeds)
    todo = [run for run in runs if not is_finished(run, rows=done)]
    skipped = len(runs) - len(todo)
    # Resolved here: the scripts run in the repository root, the user meant a path from where they are.
    output_root = args.output_root.resolve() if args.output_root else None
    commands = {run: build_command(run, results_file=results_file.resolve(), smoke=args.smoke,
                                   output_root=output_root, extra=extra) for run in todo}
    if args.dry_run:
        for run in todo:
            print(shlex.join(commands[run]))
        print(f"# {len(todo)} to run, {skipped} of {len(runs)} already finished in {results_file}", file=sys.stderr)
        return 0
    jobs = args.jobs or max(1, len(gpus))
    logs = (plan_logs(todo, smoke=args.smoke, log_dir=args.log_dir, output_root=output_root)
            if jobs > 1 or args.log_dir else None)
    if jobs > 1 and todo:
        print(f"grid: {len(todo)} runs to do, {jobs} at once" + (f" on GPUs {','.join(gpus)}" if gpus else ""),
              flush=True)
    outcome = run_jobs(todo, commands=commands, results_file=results_file, jobs=jobs, gpus=gpus, logs=logs)
    report(planned=len(runs), skipped=skipped + outcome.skipped, ran=outcome.ran, failures=outcome.failures,
           interrupted=bool(outcome.signals))
    if outcome.signals:
        return 128 + outcome.signals[0]  # as a shell reports a process stopped by that signal: 130, 143
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())
