"""One results row per run, in a CSV with a fixed, documented column order (docs/results.md).

Appends are atomic and serialised: the row is written under an exclusive lock on `<file>.lock` into a
temporary copy of the whole file that is synced and then replaces the original (common/durable.py). Ten runs
finishing at once never interleave, and a crash mid-write leaves the earlier rows untouched (the next writer
deletes the temporary copy it left). The copy keeps the file's permissions; a symlinked results file keeps its
link and the row goes to its target. A file that does not parse is refused, naming the line, rather than
appended to (a row after an unterminated quote would vanish into the quoted field). A file written by an
earlier version, whose header lacks newer columns, is rewritten with the current header once (its rows keep
those columns empty).
"""
from __future__ import annotations

import csv
import fcntl
import io
import logging
import os
import subprocess
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Optional

from .config import REPO_ROOT, RunConfig
from .durable import remove_stale_temporaries, write_atomically

logger = logging.getLogger("bertimbau_qa")

RESULT_COLUMNS = [
    # what ran
    "timestamp", "model_size", "model_name", "method", "learning_rate", "num_epochs", "batch_size",
    "gradient_accumulation_steps", "world_size", "effective_batch_size", "seed", "lora_r", "lora_alpha",
    "lora_dropout", "target_modules", "quantize_4bit", "use_dora", "max_seq_length", "doc_stride", "data_source",
    "train_examples", "train_features", "train_answers_dropped", "eval_examples", "eval_features",
    # what came out
    "f1", "exact_match", "f1_pt", "exact_match_pt",
    "eval_unanswerable", "f1_answerable", "exact_match_answerable",  # common/inference.py score_answerable
    "train_time_s", "compile_time_s", "eval_time_s", "train_tokens_per_s",
    "peak_memory_mb", "trainable_params", "total_params", "train_loss", "artifact_size_mb",
    # provenance
    "device", "precision", "compiled", "cuda_graphs", "throughput_mode", "git_commit", "git_dirty", "versions", "status", "error", "output_dir",
    # resumption (docs/faults.md)
    "resumes", "resumed_from_step",
]
# Columns every version of this file had: a header that has them, in RESULT_COLUMNS' order, is an earlier
# version's and is migrated; any other header is another file and is refused.
EVERY_VERSION_COLUMNS = ("timestamp", "method", "f1", "exact_match", "status", "error")

LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets")


def library_versions() -> str:
    """`name=version` pairs of the libraries that shape results, ';'-separated."""
    parts = []
    for name in LIBRARIES:
        try:
            parts.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name}=missing")
    return ";".join(parts)


def git_state(repo: Path) -> tuple[str, str]:
    """(commit, dirty) of the code that ran; ("unknown", "") outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
        return commit, str(bool(status.strip())).lower()
    except (OSError, subprocess.SubprocessError):
        return "unknown", ""


def device_name() -> str:
    import torch

    return f"cuda:{torch.cuda.get_device_name()}" if torch.cuda.is_available() else "cpu"


def data_source_label(config: RunConfig) -> str:
    """The `data_source` column: which data a run used (the two Portuguese translations do not compare)."""
    if config.train_file:
        return f"files:{Path(config.train_file).name}|{Path(config.validation_file).name}"
    if config.smoke:
        return "smoke:shipped"
    return f"hub:{config.dataset}" + (f"@{config.dataset_revision}" if config.dataset_revision else "")


def describe_run(config: RunConfig, *, world_size: int, plan=None) -> dict:
    """The columns that say what ran, where and with which code: shared by finished and failed runs' rows. `plan`:
    the run's `common.model.StepPlan` (made here from the config when not given), the training step as planned; a
    finished run then writes over `cuda_graphs` what really ran (`common.trainer.graphs_used`)."""
    from .model import plan_training_step, resolve_precision

    if plan is None:
        plan = plan_training_step(config, world_size=world_size)

    commit, dirty = git_state(REPO_ROOT)
    return {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_size": config.model_size,
        "model_name": config.model_name or "smoke:tiny-bert-pt",
        "method": config.method,
        "learning_rate": config.learning_rate,
        "num_epochs": config.num_epochs,
        "batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "world_size": world_size,
        "effective_batch_size": config.batch_size * config.gradient_accumulation_steps * world_size,
        "seed": config.seed,
        "lora_r": config.lora_r if config.use_peft else None,
        "lora_alpha": config.lora_alpha if config.use_peft else None,
        "lora_dropout": config.lora_dropout if config.use_peft else None,
        "target_modules": " ".join(config.target_modules) if config.use_peft else None,
        "quantize_4bit": str(config.quantize_4bit).lower(),
        "use_dora": str(config.use_dora).lower(),
        "max_seq_length": config.max_seq_length,
        "doc_stride": config.doc_stride,
        "data_source": data_source_label(config),
        "device": device_name(),
        "precision": resolve_precision(config),
        "compiled": str(plan.compiled).lower(),
        "cuda_graphs": plan.graphs,
        "throughput_mode": str(config.throughput).lower(),
        "git_commit": commit,
        "git_dirty": dirty,
        "versions": library_versions(),
        "output_dir": str(config.resolved_output_dir()),
    }


def format_row(row: dict) -> dict:
    """Refuse unknown columns, fill absent ones with '' (a column that does not apply to the run)."""
    unknown = set(row) - set(RESULT_COLUMNS)
    if unknown:
        raise KeyError(f"unknown result columns: {sorted(unknown)}")
    return {column: row.get(column, "") if row.get(column) is not None else "" for column in RESULT_COLUMNS}


class ResultsFileError(ValueError):
    """A results file that cannot take a row; the message names the file (and the line) and what to do."""


def read_results(path: Path, text: Optional[str] = None) -> tuple[list[str], list[dict]]:
    """(header, rows) of a results CSV (`text`: its content, when already read); ResultsFileError naming the
    line where it stops parsing."""
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ResultsFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); is it a results "
                                   "CSV? Move it aside or pass another --results_file") from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header, rows = None, []
    while True:
        line = reader.line_num + 1  # where the next record starts (a quoted field may span several lines)
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ResultsFileError(
                f"{path}: line {line}: does not parse as CSV ({exc}; an unterminated quote?); a row appended after "
                "it would be lost: repair or delete that row, or move the file aside"
            ) from exc
        if not record:
            continue
        if header is None:
            header = record
        elif len(record) != len(header):
            raise ResultsFileError(f"{path}: line {line}: {len(record)} fields where the header has {len(header)}; "
                                   "repair or delete that row, or move the file aside")
        else:
            rows.append(dict(zip(header, record)))
    return header or [], rows


def check_header(path: Path, header: list[str]) -> bool:
    """True for this version's header (or none yet), False for an earlier version's; ResultsFileError otherwise."""
    if not header or header == RESULT_COLUMNS:
        return True
    order = {column: i for i, column in enumerate(RESULT_COLUMNS)}
    positions = [order.get(column, -1) for column in header]
    earlier = (-1 not in positions and positions == sorted(set(positions))
               and set(EVERY_VERSION_COLUMNS) <= set(header))
    if not earlier:
        raise ResultsFileError(
            f"{path}: its header differs from this version's columns and is not an earlier version's (a different "
            "file?); move it aside or pass another --results_file"
        )
    return False


@contextmanager
def _locked(target: Path):
    """The writers' lock of `target`: `<target>.lock`, beside the file itself (a symlink and its target share it)."""
    with open(target.with_name(target.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _render(rows: list[dict]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=RESULT_COLUMNS, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def append_result(path: str | Path, row: dict) -> Path:
    """Append one row to the results CSV atomically (see module docstring); write the header if new."""
    path = Path(path)
    target = path.resolve()  # through a symlink: its target gets the row and the link stays a link
    target.parent.mkdir(parents=True, exist_ok=True)
    line = io.StringIO()
    csv.DictWriter(line, fieldnames=RESULT_COLUMNS, lineterminator="\n").writerow(format_row(row))
    with _locked(target):
        for stale in remove_stale_temporaries(target):
            logger.warning("Removed %s, left by a writer of %s that crashed", stale, target)
        like = None
        if target.exists():
            like = target.stat()
            if not os.access(target, os.W_OK):
                raise PermissionError(f"{path}: permission denied (the file is read-only)")
            existing = target.read_text(encoding="utf-8")
            header, rows = read_results(target, existing)
            if not check_header(target, header):
                logger.warning("%s: header of an earlier version; rewriting it with this version's columns (%d rows "
                               "kept, new columns empty)", path, len(rows))
                existing = _render(rows)
            elif not existing:
                existing = _render([])
            elif not existing.endswith("\n"):
                existing += "\n"
        else:
            existing = _render([])
        write_atomically(target, (existing + line.getvalue()).encode("utf-8"), like=like)
    return path
