"""One results row per run, in a CSV with a fixed, documented column order (docs/results.md).

Appends are atomic and serialised: the row is written under an exclusive lock on `<file>.lock` into a
temporary copy of the whole file that then replaces the original (os.replace). Ten runs finishing at once
never interleave, and a crash mid-write leaves the earlier rows untouched.
"""
from __future__ import annotations

import csv
import fcntl
import io
import os
import subprocess
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from .config import REPO_ROOT, RunConfig

RESULT_COLUMNS = [
    # what ran
    "timestamp", "model_size", "model_name", "method", "learning_rate", "num_epochs", "batch_size",
    "gradient_accumulation_steps", "world_size", "effective_batch_size", "seed", "lora_r", "lora_alpha",
    "lora_dropout", "target_modules", "quantize_4bit", "use_dora", "max_seq_length", "doc_stride", "data_source",
    "train_examples", "train_features", "train_answers_dropped", "eval_examples", "eval_features",
    # what came out
    "f1", "exact_match", "f1_pt", "exact_match_pt",
    "eval_unanswerable", "f1_answerable", "exact_match_answerable",  # common/inference.py score_answerable
    "train_time_s", "eval_time_s", "train_tokens_per_s",
    "peak_memory_mb", "trainable_params", "total_params", "train_loss", "artifact_size_mb",
    # provenance
    "device", "precision", "git_commit", "git_dirty", "versions", "status", "error", "output_dir",
]

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


def describe_run(config: RunConfig, *, world_size: int) -> dict:
    """The columns that say what ran, where and with which code: shared by finished and failed runs' rows."""
    from .model import resolve_precision

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


def append_result(path: str | Path, row: dict) -> Path:
    """Append one row to the results CSV atomically (see module docstring); write the header if new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = io.StringIO()
    csv.DictWriter(line, fieldnames=RESULT_COLUMNS, lineterminator="\n").writerow(format_row(row))
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            existing = path.read_text(encoding="utf-8") if path.exists() else ""
            header = ",".join(RESULT_COLUMNS)
            if not existing:
                existing = header + "\n"
            elif existing.split("\n", 1)[0] != header:
                raise ValueError(
                    f"{path}: its header differs from this version's columns; move it aside (it was written by "
                    "another version of this repository) and run again"
                )
            elif not existing.endswith("\n"):
                existing += "\n"
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                    handle.write(existing + line.getvalue())
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path
