"""Reproduce the paper's grid: 2 models x 5 methods x 2 learning rates x 2 epoch counts = 40 runs.

    python paper/run_grid.py                                  # the 40 runs, one after another -> results/runs.csv
    python paper/run_grid.py --dry-run                        # print the commands, run nothing
    python paper/run_grid.py --models large --methods lora qlora --seeds 1 2 3
    python paper/run_grid.py --smoke                          # the whole grid offline (tiny BERT, shipped data)
    python paper/run_grid.py -- --train_file squad-train-v1.1.json --validation_file squad-dev-v1.1.json

Every run is the matching script, `bertimbau_<model>/main*.py`, started with this Python (sys.executable), so
the grid runs exactly what a user would run by hand; flags after `--` go to every script unchanged.
Resumable: a configuration (model, method, learning rate, epochs, seed) counts as done when the results file the
scripts write to (results/runs.csv; results/smoke_runs.csv with --smoke; or --results_file) already has a row
for it with status ok, so a stopped grid restarted with the same command runs only what is missing. Runs with
other flags after `--` (other data, debug sizes) belong in their own --results_file. A failed run does not stop
the grid: the failures are listed at the end and the exit status is 1.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

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
        command += ["--output_dir", str(output_root / (run.name + ("_smoke" if smoke else "")))]
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


def execute(run: Run, *, command: list[str], results_file: Path) -> Optional[str]:
    """Run one script; None when it finished and wrote its row, else why it failed."""
    status = subprocess.run(command, cwd=REPO_ROOT).returncode
    if status != 0:
        return f"exit status {status}"
    if not is_finished(run, rows=read_finished_rows(results_file)):
        return f"exit status 0 but no finished row in {results_file}"
    return None


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
    commands = {run: build_command(run, results_file=results_file.resolve(), smoke=args.smoke,
                                   output_root=args.output_root, extra=extra) for run in todo}
    if args.dry_run:
        for run in todo:
            print(shlex.join(commands[run]))
        print(f"# {len(todo)} to run, {skipped} of {len(runs)} already finished in {results_file}", file=sys.stderr)
        return 0
    ran, failures, interrupted = [], {}, False
    for number, run in enumerate(todo, 1):
        # Checked again just before the run: another grid process may have finished it meanwhile.
        if is_finished(run, rows=read_finished_rows(results_file)):
            skipped += 1
            continue
        print(f"\n=== [{number}/{len(todo)}] {run.describe()}\n$ {shlex.join(commands[run])}", flush=True)
        try:
            why = execute(run, command=commands[run], results_file=results_file)
        except KeyboardInterrupt:
            interrupted = True
            failures[run] = "interrupted"
            ran.append(run)
            break
        ran.append(run)
        if why:
            failures[run] = why
            print(f"=== failed: {run.describe()} ({why}); going on with the grid", flush=True)
    report(planned=len(runs), skipped=skipped, ran=ran, failures=failures, interrupted=interrupted)
    if interrupted:
        return 130
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
