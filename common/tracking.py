"""Experiment tracking through the Trainer's own integrations (`report_to`): TensorBoard, wandb, mlflow.

Each run logs the training loss, learning rate and gradient norm every `--logging_steps` steps, and the final
evaluation F1/EM once at the end, into `<output_dir>/logs/` for TensorBoard (`tensorboard --logdir outputs`).
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path

from .config import ConfigError

# --report_to value -> the import that its Trainer integration needs.
TRACKERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}
LOGS_SUBDIR = "logs"


def _installed(tracker: str) -> bool:
    return any(importlib.util.find_spec(module) is not None for module in TRACKERS[tracker])


def resolve_report_to(value: str) -> list[str]:
    """`--report_to` -> the Trainer's list: "auto" is TensorBoard when installed (else nothing), "none" nothing.

    A tracker that is asked for by name but not installed stops the run before training, with the command that
    installs it (the Trainer would fail too, but only after the data and model are loaded).
    """
    names = [name.strip() for name in value.split(",") if name.strip()]
    if names == ["auto"]:
        return ["tensorboard"] if _installed("tensorboard") else []
    if names == ["none"]:
        return []
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"--report_to {value!r}: choose auto, none, or a comma-separated list of {sorted(TRACKERS)}")
        if not _installed(name):
            raise ConfigError(f"--report_to {name}: {name} is not installed (pip install {name}), or pass --report_to none")
    return names


@contextlib.contextmanager
def tensorboard_logging_dir(path: Path):
    """Point the Trainer's TensorBoard callback at `path` while the Trainer is built.

    transformers 5 has no `logging_dir` argument any more; its callback reads TENSORBOARD_LOGGING_DIR when it
    is created (default: a time-stamped folder under output_dir/runs/). A value the user set wins.
    """
    previous = os.environ.get("TENSORBOARD_LOGGING_DIR")
    if previous is None:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TENSORBOARD_LOGGING_DIR", None)


def log_final_metrics(trainer, *, scores: dict, scores_pt: dict) -> None:
    """Send the evaluation scores to the trackers at the last training step (shown as eval/f1, eval/exact_match).

    The Trainer's TensorBoard callback closes its writer at the end of training and opens a new one on this
    log (a second event file in the same folder; TensorBoard reads both), and flushes it at once.
    """
    trainer.log({
        "eval_f1": scores["f1"],
        "eval_exact_match": scores["exact_match"],
        "eval_f1_pt": scores_pt["f1"],
        "eval_exact_match_pt": scores_pt["exact_match"],
    })
