"""Print the paper's tables from a results CSV, as Markdown.

    python paper/summarize.py                                  # the paper's numbers (results/paper_reported.csv)
    python paper/summarize.py --results results/runs.csv       # your runs

Per model and setting (learning rate, epochs) and method: F1, EM, training time, % of full fine-tuning F1,
training-time speed-up over full fine-tuning, F1 and EM over the answerable questions and peak memory (when the
file has them) and the number of finished runs.
With several runs (seeds) of a configuration every measure is "mean ± standard deviation"; the two ratios are
ratios of means. Only finished runs (status ok) count; a configuration without one reads "n/a" (with the status
of its rows, e.g. "n/a (oom)").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from results_table import (  # paper/ is on sys.path when this file runs as a script
    METHOD_LABELS, METHODS, MODEL_LABELS, MODEL_SIZES, PAPER_RESULTS, REFERENCE_FULL_LR, SETTINGS, ResultsError,
    Stat, Table, format_lr, load_table, compute_percent_of_full, compute_speedup,
)

MISSING = "–"


def format_stat(stat: Optional[Stat], *, decimals: int = 2) -> str:
    if stat is None:
        return MISSING
    text = f"{stat.mean:,.{decimals}f}"
    return text + (f" ± {stat.std:,.{decimals}f}" if stat.n > 1 else "")


def format_duration(stat: Optional[Stat]) -> str:
    """h:mm:ss as the paper writes training time; the spread of several runs in seconds."""
    if stat is None:
        return MISSING
    total = round(stat.mean)
    text = f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"
    return text + (f" ± {stat.std:.0f} s" if stat.n > 1 else "")


def build_rows(table: Table, *, model_size: str) -> list[list[str]]:
    """One row per setting and method, in the paper's order."""
    rows = []
    for lr, epochs in SETTINGS:
        for method in METHODS:
            key = (model_size, method, lr, epochs)
            f1 = table.stat(key, "f1")
            percent, speedup = compute_percent_of_full(table, key), compute_speedup(table, key)
            if f1 is None:
                status = table.unfinished.get(key)
                first = "n/a" + (f" ({status})" if status else "")
            else:
                first = format_stat(f1)
            row = [format_lr(lr), f"{epochs:g}", METHOD_LABELS[method], first,
                   format_stat(table.stat(key, "exact_match")), format_duration(table.stat(key, "train_time_s")),
                   MISSING if percent is None else f"{percent:.1f}%",
                   MISSING if speedup is None else f"{speedup.mean:.2f}×"]
            if table.has_answerable:
                row += [format_stat(table.stat(key, measure)) for measure in ("f1_answerable", "exact_match_answerable")]
            if table.has_memory:
                row.append(format_stat(table.stat(key, "peak_memory_mb"), decimals=0))
            row.append(str(f1.n) if f1 else "0")
            rows.append(row)
    return rows


def format_markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render(table: Table) -> str:
    """All tables and their footnotes as one Markdown text."""
    header = ["lr", "epochs", "method", "F1", "EM", "train time", "% of full F1", "speed-up"]
    if table.has_answerable:
        header += ["F1 answerable", "EM answerable"]
    if table.has_memory:
        header.append("peak memory (MB)")
    header.append("runs")
    origin = "numbers reported by the paper" if table.from_paper else "finished runs only: status ok"
    parts = [f"# Results from {table.path} ({origin})"]
    for size in MODEL_SIZES:
        done = sum(1 for key in table.cells if key[0] == size)
        parts.append(f"## {MODEL_LABELS[size]}: {done} of {len(SETTINGS) * len(METHODS)} configurations")
        parts.append(format_markdown_table(header, build_rows(table, model_size=size)))
    notes = [
        f"% of full F1: F1 / F1 of full fine-tuning of the same model and epochs at lr {format_lr(REFERENCE_FULL_LR)} "
        "(the paper's convention: its full fine-tuning of Large diverged at 2e-4).",
        "speed-up: training time of full fine-tuning in the same setting (lr, epochs) / training time of the method.",
        "F1 and EM: official SQuAD v1.1 scores (percent); train time: wall-clock training time, h:mm:ss.",
    ]
    if table.has_answerable:
        counts = ", ".join(f"{n or '?'} of {total or '?'}" for n, total in table.unanswerable)
        notes.append("F1/EM answerable: the official scores over the evaluation questions that have a gold answer in "
                     f"their context (unanswerable questions left out: {counts}); F1 and EM count every question "
                     "(docs/results.md, \"Answerable questions\").")
    if table.max_runs > 1:
        notes.append("mean ± sample standard deviation over the finished runs (seeds); ratios are ratios of means.")
    if table.has_memory:
        notes.append("peak memory: peak CUDA memory allocated on GPU, peak resident memory of the process on CPU "
                     f"(devices: {', '.join(table.devices) or 'not recorded'}).")
    if table.data_sources:
        notes.append(f"data: {', '.join(table.data_sources)}.")
    if table.off_grid:
        notes.append(f"{table.off_grid} finished run(s) outside the paper's grid are not shown.")
    parts.append("\n".join(f"- {note}" for note in notes))
    return "\n\n".join(parts) + "\n"


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=PAPER_RESULTS,
                        help="results CSV to summarize (default: results/paper_reported.csv, the paper's numbers)")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        table = load_table(args.results)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
