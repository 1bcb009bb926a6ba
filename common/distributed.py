"""What a process needs to know when `torchrun` or `accelerate launch` starts several of them.

The distribution itself is the Trainer's (DDP through accelerate); nothing here sends tensors. These helpers
only read the launcher's environment (RANK, LOCAL_RANK, WORLD_SIZE, set by both launchers), so they work
before the Trainer exists: logging and the 4-bit model's device are decided before it is built.
"""
from __future__ import annotations

import logging
import os


def process_rank() -> int:
    """Global rank of this process (0 when not launched by a distributed launcher)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """The one process that logs, writes the results row, the predictions and the model card."""
    return process_rank() == 0


def quiet_replicas() -> None:
    """Keep logs and progress bars to the main process, so N processes do not print everything N times.

    The Trainer already does this for its own bars and logs (`log_level_replica`); this covers ours and
    `datasets.map`'s. Warnings and errors still show from every process.
    """
    if is_main_process():
        return
    logging.getLogger().setLevel(logging.WARNING)
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()


def bind_local_device() -> None:
    """Make this process's GPU the current one before the model is loaded.

    The Trainer moves a full-precision model to `cuda:LOCAL_RANK` itself, but a 4-bit model is placed at load
    time (`device_map` = the current device), before the Trainer exists; without this every process of a
    multi-GPU QLoRA run would load its copy onto GPU 0.
    """
    import torch

    if torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))


def release_process_group() -> None:
    """End the process group of a multi-process run (accelerate starts it; nothing else ends it).

    Left to the interpreter's exit, gloo's worker threads can still hold work when Python shuts down: one rank of
    a finished 2-process CPU run aborted ("terminate called without an active exception", SIGABRT; pytorch/pytorch
    issues 190489 and PR 179291 describe the same) and torchrun reported the whole run failed. Called once a run
    has succeeded, when no collective is left to run.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
