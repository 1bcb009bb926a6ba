"""Read a results CSV (results/runs.csv, results/paper_reported.csv, ...) and average it onto the paper's grid.

Shared by make_figures.py, summarize.py and run_grid.py. It only reads results files and imports nothing from
common/ or the model folders (imports go one way: analysis never depends on training code), so the analysis
works on a machine without torch.
"""
from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
PAPER_RESULTS = REPO_ROOT / "results" / "paper_reported.csv"

# The paper's grid (docs/paper.md): 2 model sizes x 5 methods x 2 learning rates x 2 epoch counts = 40 runs.
MODEL_SIZES = ("base", "large")
METHODS = ("full", "lora", "qlora", "dora", "qdora")
PEFT_METHODS = METHODS[1:]
LEARNING_RATES = (2e-4, 4.25e-5)  # docs/paper.md: 2e-4 "high", tuned for PEFT; 4.25e-5 "standard" BERT
EPOCHS = (2, 3)
SETTINGS = tuple((lr, epochs) for lr in LEARNING_RATES for epochs in EPOCHS)  # the paper's table order

# The paper's headline ratios ("LoRA reaches 95.8% of full fine-tuning F1 on Large (81.32 vs 84.86)") divide by
# full fine-tuning at the standard BERT learning rate and the same epochs; at 2e-4 full fine-tuning of Large diverged.
REFERENCE_FULL_LR = 4.25e-5

MODEL_LABELS = {"base": "BERTimbau-Base", "large": "BERTimbau-Large"}
METHOD_LABELS = {"full": "Full FT", "lora": "LoRA", "qlora": "QLoRA", "dora": "DoRA", "qdora": "QDoRA"}

# What a file needs for the paper's tables and figures; every other column is optional.
REQUIRED_COLUMNS = ("model_size", "method", "learning_rate", "num_epochs", "f1", "exact_match", "train_time_s", "status")
MEASURES = ("f1", "exact_match", "train_time_s", "peak_memory_mb", "f1_answerable", "exact_match_answerable")
# Optional measures: files written before a column existed (and the paper's numbers) leave it empty.
OPTIONAL_MEASURES = ("peak_memory_mb", "f1_answerable", "exact_match_answerable")
FINISHED = "ok"

# Learning rates are written as Python floats (0.0002, 4.25e-05); compare them as numbers, never as text.
LR_REL_TOL = 1e-6


class ResultsError(ValueError):
    """A results file that cannot be read; the message is one line naming the file (exit status 2)."""


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation over the finished runs (seeds) of one configuration."""

    mean: float
    std: float  # nan when fewer than two runs: no error bar
    n: int


Key = tuple  # (model_size, method, learning_rate, num_epochs), learning rate and epochs as on the paper's grid


def is_same_number(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=LR_REL_TOL, abs_tol=0.0)


def read_results(path: str | Path) -> list[dict]:
    """All rows of a results CSV as dicts of text, with their file line as `_line`; ResultsError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"results file {path} not found")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            rows = [{**row, "_line": reader.line_num} for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ResultsError(f"results file {path} is not a UTF-8 CSV file ({exc})") from None
    except OSError as exc:
        raise ResultsError(f"results file {path} cannot be read ({exc.strerror})") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in columns]
    if missing:
        raise ResultsError(f"results file {path} lacks the column(s) {', '.join(missing)} (is it a results CSV?)")
    return rows


def parse_number(row: dict, column: str, *, path: Path, required: bool) -> Optional[float]:
    text = (row.get(column) or "").strip()
    if not text:
        if required:
            raise ResultsError(f"{path}, line {row['_line']}: {column} is empty in a finished (status ok) run")
        return None
    try:
        value = float(text)
    except ValueError:
        raise ResultsError(f"{path}, line {row['_line']}: {column} = {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ResultsError(f"{path}, line {row['_line']}: {column} = {text!r} is not a finite number")
    return value


def finished_runs(rows: list[dict], *, path: str | Path) -> list[dict]:
    """The rows with status ok, their numbers parsed; failed/diverged/oom/interrupted rows are left out."""
    path = Path(path)
    runs = []
    for row in rows:
        if (row.get("status") or "").strip() != FINISHED:
            continue
        run = dict(row)
        for column in ("learning_rate", "num_epochs", "f1", "exact_match", "train_time_s"):
            run[column] = parse_number(row, column, path=path, required=True)
        for column in OPTIONAL_MEASURES:
            run[column] = parse_number(row, column, path=path, required=False)
        runs.append(run)
    return runs


def find_grid_key(row: dict) -> Optional[Key]:
    """The paper-grid configuration of a row, or None when its size, method, lr or epochs are not on the grid."""
    size, method = (row.get("model_size") or "").strip(), (row.get("method") or "").strip()
    try:
        lr, epochs = float(row["learning_rate"]), float(row["num_epochs"])
    except (TypeError, ValueError):
        return None
    grid_lr = next((value for value in LEARNING_RATES if is_same_number(lr, value)), None)
    grid_epochs = next((value for value in EPOCHS if is_same_number(epochs, value)), None)
    if size not in MODEL_SIZES or method not in METHODS or grid_lr is None or grid_epochs is None:
        return None
    return (size, method, grid_lr, grid_epochs)


def summarize_values(values: list[float]) -> Optional[Stat]:
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return Stat(mean=statistics.fmean(values), std=std, n=len(values))


def aggregate(runs: list[dict]) -> dict[Key, dict[str, Optional[Stat]]]:
    """Per grid configuration, mean and std of F1, EM, training time and peak memory over its finished runs."""
    grouped: dict[Key, list[dict]] = {}
    for run in runs:
        key = find_grid_key(run)
        if key is not None:
            grouped.setdefault(key, []).append(run)
    return {
        key: {measure: summarize_values([r[measure] for r in group if r[measure] is not None]) for measure in MEASURES}
        for key, group in grouped.items()
    }


def collect_unfinished(rows: list[dict]) -> dict[Key, str]:
    """Per grid configuration with no finished run, the statuses its rows report (e.g. "oom"), for the n/a label."""
    finished = {find_grid_key(row) for row in rows if (row.get("status") or "").strip() == FINISHED}
    statuses: dict[Key, list[str]] = {}
    for row in rows:
        key, status = find_grid_key(row), (row.get("status") or "").strip()
        if key is not None and key not in finished and status and status not in statuses.get(key, []):
            statuses.setdefault(key, []).append(status)
    return {key: "/".join(values) for key, values in statuses.items()}


@dataclass(frozen=True)
class Table:
    """A results file read onto the paper's grid: what make_figures.py and summarize.py draw and print."""

    path: Path
    cells: dict  # Key -> {measure: Stat or None}
    unfinished: dict  # Key -> statuses of its non-ok rows
    off_grid: int  # finished runs outside the paper's grid (other lr, epochs, size or method)
    data_sources: tuple  # distinct data_source values of the finished runs
    devices: tuple  # distinct device values of the finished runs ("cpu", "cuda:<name>")
    memory: dict  # (model_size, method) -> Stat of peak_memory_mb over all its finished grid runs
    from_paper: bool  # every finished row comes from the paper (its `source` column says so)
    # distinct (eval_unanswerable, eval_examples) of the finished runs that scored answerable questions apart
    unanswerable: tuple = ()

    def stat(self, key: Key, measure: str) -> Optional[Stat]:
        return (self.cells.get(key) or {}).get(measure)

    @property
    def max_runs(self) -> int:
        return max((cell["f1"].n for cell in self.cells.values() if cell["f1"]), default=0)

    @property
    def has_memory(self) -> bool:
        return bool(self.memory)

    @property
    def has_answerable(self) -> bool:
        return any(cell["f1_answerable"] for cell in self.cells.values())


def collect_distinct(runs: list[dict], *, column: str) -> tuple:
    return tuple(sorted({(run.get(column) or "").strip() for run in runs} - {""}))


def pool_memory(runs: list[dict]) -> dict:
    """Peak memory per model and method over all its grid runs: lr and epochs do not change what fits in memory."""
    pooled: dict = {}
    for run in runs:
        key = find_grid_key(run)
        if key is not None and run["peak_memory_mb"] is not None:
            pooled.setdefault(key[:2], []).append(run["peak_memory_mb"])
    return {key: summarize_values(values) for key, values in pooled.items()}


def collect_unanswerable(runs: list[dict]) -> tuple:
    """Distinct (eval_unanswerable, eval_examples) texts of the runs that scored answerable questions apart."""
    def text(run, column):
        return (run.get(column) or "").strip()

    return tuple(sorted({(text(run, "eval_unanswerable"), text(run, "eval_examples"))
                         for run in runs if run["f1_answerable"] is not None}))


def load_table(path: str | Path) -> Table:
    """Read and aggregate a results file; ResultsError when it is missing, malformed or has no finished grid run."""
    path = Path(path)
    rows = read_results(path)
    runs = finished_runs(rows, path=path)
    cells = aggregate(runs)
    if not cells:
        raise ResultsError(
            f"results file {path} has no finished run (status ok) on the paper's grid "
            f"(model {'/'.join(MODEL_SIZES)}, method {'/'.join(METHODS)}, lr 2e-4/4.25e-5, epochs 2/3)"
        )
    return Table(
        path=path,
        cells=cells,
        unfinished=collect_unfinished(rows),
        off_grid=sum(1 for run in runs if find_grid_key(run) is None),
        data_sources=collect_distinct(runs, column="data_source"),
        devices=collect_distinct(runs, column="device"),
        memory=pool_memory(runs),
        from_paper=all((run.get("source") or "").startswith("paper") for run in runs),
        unanswerable=collect_unanswerable(runs),
    )


def find_reference_key(key: Key) -> Key:
    """Full fine-tuning of the same model and epochs at the standard lr: the denominator of "% of full F1"."""
    size, _method, _lr, epochs = key
    return (size, "full", REFERENCE_FULL_LR, epochs)


def compute_percent_of_full(table: Table, key: Key) -> Optional[float]:
    f1, reference = table.stat(key, "f1"), table.stat(find_reference_key(key), "f1")
    if f1 is None or reference is None or reference.mean <= 0:
        return None
    return 100.0 * f1.mean / reference.mean


def compute_speedup(table: Table, key: Key) -> Optional[Stat]:
    """Training-time speed-up over full fine-tuning in the same setting (lr, epochs), std propagated to first order."""
    size, _method, lr, epochs = key
    time, full = table.stat(key, "train_time_s"), table.stat((size, "full", lr, epochs), "train_time_s")
    if time is None or full is None or time.mean <= 0:
        return None
    ratio = full.mean / time.mean
    relative = math.hypot(
        full.std / full.mean if full.n > 1 else 0.0, time.std / time.mean if time.n > 1 else 0.0
    )
    several = full.n > 1 or time.n > 1
    return Stat(mean=ratio, std=ratio * relative if several else math.nan, n=min(full.n, time.n))


def format_lr(lr: float) -> str:
    """2e-4 and 4.25e-5 as the paper writes them."""
    mantissa, exponent = f"{lr:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def format_setting(lr: float, epochs: float) -> str:
    return f"lr {format_lr(lr)}, {epochs:g} ep"
