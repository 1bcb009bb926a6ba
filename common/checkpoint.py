"""Resumable runs: checkpoints every `--save_steps` optimizer steps and at each epoch end; `--resume`.

The HF Trainer does the heavy lifting: each `checkpoint-<step>/` holds what `save_model` writes (for PEFT
methods only the adapter and the QA head, for full fine-tuning the whole model) plus `optimizer.pt`,
`scheduler.pt`, `rng_state.pth` and `trainer_state.json`; `train(resume_from_checkpoint=...)` restores them
and skips the batches already seen (in the same order: common/sampler.py), so a resumed run ends where an
uninterrupted one would. This module adds what the Trainer leaves to its caller:
- a checkpoint at every epoch end besides every N steps (the Trainer does one or the other);
- a commit record, `run_config.json`, written last: once every file of the checkpoint is synced to disk, the
  record (the run's config, the files and their sizes, the training time and loss so far) is written under a
  temporary name, synced and renamed into place. The Trainer writes into `checkpoint-<step>/` directly, so the
  record is what makes the checkpoint atomic: without it the folder is incomplete (a crash while saving);
- `--resume` takes the last checkpoint that is complete and intact (every recorded file present, with its
  size, and readable as its format), warning about each one it skips and naming the damaged file;
- the config in the record: `--resume` refuses to continue with settings that change the training;
- training seconds and the sum of the training loss carried over a resume, so a resumed row's `train_time_s`
  and `train_loss` cover the whole run.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .config import ConfigError, RunConfig
from .durable import fsync_dir, fsync_file, write_atomically

logger = logging.getLogger("bertimbau_qa")

CHECKPOINT_CONFIG = "run_config.json"  # the commit record, written last: its presence marks a checkpoint complete
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
# Settings that do not change what is trained, so a resumed run may change them.
RESUMABLE_CHANGES = frozenset(
    {"output_dir", "results_file", "resume", "debug", "logging_steps", "dataloader_num_workers", "save_steps",
     "eval_batch_size", "feature_cache", "num_threads", "keep_checkpoints", "merge"}
)


def checkpoint_arguments(config: RunConfig) -> dict:
    """The TrainingArguments fields for checkpointing."""
    if not config.save_steps:
        return {"save_strategy": "no"}
    return {
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        # The newest checkpoint may be half-written when the run is killed: keep the one before it.
        "save_total_limit": 2,
        # Resuming needs the optimizer, scheduler and RNG states, not only the weights.
        "save_only_model": False,
    }


def list_checkpoints(output_dir: Path) -> list[Path]:
    """checkpoint-<step> folders, oldest step first."""
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def remove_checkpoints(output_dir: Path) -> list[Path]:
    """Delete the checkpoints of a finished run (it needs none of them any more); the removed folders."""
    checkpoints = list_checkpoints(output_dir)
    for checkpoint in checkpoints:
        shutil.rmtree(checkpoint)
    return checkpoints


@dataclass(frozen=True)
class ResumePoint:
    """Where a run starts: from scratch (checkpoint None), or from a checkpoint and what its record carries."""
    checkpoint: Optional[Path] = None
    step: int = 0
    train_time_s: float = 0.0
    # Sum of the per-step training losses up to `step`; None for a checkpoint of a version that did not record it.
    train_loss_sum: Optional[float] = 0.0
    resumed_from: tuple[int, ...] = field(default_factory=tuple)  # the steps of earlier resumes of this run

    @property
    def resumes(self) -> int:
        """How many times the run, once finished, will have been resumed."""
        return len(self.resumed_from) + (self.checkpoint is not None)

    def whole_run_loss(self, *, session_loss: float, global_step: int) -> Optional[float]:
        """The mean training loss over all steps, from this session's mean (the Trainer's `training_loss`)."""
        if self.checkpoint is None:
            return session_loss
        if self.train_loss_sum is None or global_step <= 0:
            return None
        return (self.train_loss_sum + session_loss * (global_step - self.step)) / global_step


def settings_changes(saved: dict, config: RunConfig) -> list[str]:
    """`--flag old -> new` for each setting that changes what is trained (the others may change on --resume)."""
    before, now = _comparable(saved), _comparable(vars(config))
    return [f"--{k} {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(before.keys() | now.keys())
            if before.get(k) != now.get(k)]


def _comparable(values: dict) -> dict:
    values = json.loads(json.dumps(values, default=str))  # the form it has in the checkpoint
    return {k: v for k, v in values.items() if k not in RESUMABLE_CHANGES}


def checkpoint_problem(checkpoint: Path) -> Optional[str]:
    """Why `checkpoint` cannot be resumed from, naming the file; None when it is complete and intact.

    Cheap checks only (no tensor is loaded): the record lists every file with its size; torch files are zip
    archives whose directory sits at their end, and safetensors files state their own length in their header,
    so a truncated file of either kind shows without reading it whole.
    """
    marker = checkpoint / CHECKPOINT_CONFIG
    if not marker.is_file():
        return f"incomplete: no {CHECKPOINT_CONFIG} (the run was stopped while saving it)"
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
        record["config"]["method"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{CHECKPOINT_CONFIG} is damaged (not the record a checkpoint ends with)"
    for name, size in record.get("files", {}).items():
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} is damaged: {path.stat().st_size} bytes where {size} were written"
    for path in sorted(p for p in checkpoint.rglob("*") if p.is_file() and p != marker):
        problem = _file_problem(path)
        if problem:
            return f"{path.relative_to(checkpoint)} is damaged ({problem})"
    return None


def _file_problem(path: Path) -> Optional[str]:
    if path.stat().st_size == 0:
        return "empty"
    if path.suffix in (".pt", ".pth", ".bin") and not zipfile.is_zipfile(path):
        return "not a complete torch file"
    if path.suffix == ".safetensors" and not _safetensors_complete(path):
        return "shorter or longer than its header says"
    if path.suffix == ".json":
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            return "not valid JSON"
    return None


def _safetensors_complete(path: Path) -> bool:
    """A safetensors file is an 8-byte header length, a JSON header with each tensor's byte range, the data."""
    try:
        with open(path, "rb") as handle:
            header_length = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_length))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, MemoryError):
        return False
    return path.stat().st_size == 8 + header_length + end


def resume_point(config: RunConfig, output_dir: Path) -> ResumePoint:
    """Where this run starts: the last complete and intact checkpoint with --resume, else from scratch.

    Raises ConfigError when the output folder holds checkpoints that this run would overwrite or mix with
    (no --resume), or when the checkpoint was written with settings that change the training.
    """
    checkpoints = list_checkpoints(output_dir)
    if not config.resume:
        if checkpoints and config.save_steps:
            raise ConfigError(
                f"--output_dir {output_dir} holds checkpoints of an earlier run ({checkpoints[-1].name}): pass "
                "--resume to continue it, or another --output_dir (or delete them) to start over"
            )
        return ResumePoint()
    while checkpoints:
        checkpoint = checkpoints.pop()
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            break
        logger.warning("Skipping %s: %s; %s", checkpoint, problem,
                       f"trying {checkpoints[-1].name}" if checkpoints else "no earlier checkpoint")
    else:
        logger.warning("--resume: no complete checkpoint in %s; starting from the beginning", output_dir)
        return ResumePoint()
    record = json.loads((checkpoint / CHECKPOINT_CONFIG).read_text(encoding="utf-8"))
    changed = settings_changes(record["config"], config)
    if changed:
        raise ConfigError(
            f"--resume: {checkpoint} was written with other settings ({'; '.join(changed)}); pass the flags of the "
            f"interrupted run (see {checkpoint / CHECKPOINT_CONFIG}) or another --output_dir"
        )
    step = record.get("global_step")
    if step is None:  # a record of an earlier version: the Trainer's own state has the step
        step = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
    logger.info("Resuming from %s (optimizer step %d)", checkpoint, step)
    return ResumePoint(checkpoint=checkpoint, step=int(step), train_time_s=float(record.get("train_time_s", 0.0)),
                       train_loss_sum=record.get("train_loss_sum"),
                       resumed_from=tuple(record.get("resumed_from", ())))


def logged_loss_sum(log_history: list[dict], *, up_to_step: int) -> float:
    """The sum of the per-step training losses up to `up_to_step`, from the Trainer's log.

    Each logged `loss` is the mean over the steps since the previous one, so mean x steps gives their sum. The
    callback below makes the Trainer log at every checkpoint, so the log covers every step up to it.
    """
    total, last_step = 0.0, 0
    for entry in log_history:
        if "loss" in entry and entry["step"] <= up_to_step:
            total += entry["loss"] * (entry["step"] - last_step)
            last_step = entry["step"]
    return total


def checkpoint_callbacks(config: RunConfig, *, resume: ResumePoint = ResumePoint()) -> list:
    """Trainer callbacks: the loss logged at the last step; with --save_steps, a checkpoint at each epoch end too,
    each ending with its commit record."""
    from transformers import TrainerCallback

    class LogTheLastStep(TrainerCallback):
        # The Trainer averages the loss over all processes only when it logs; what is left after the last log
        # it adds from the main process alone, so under torchrun `train_loss` would be mostly the main process's
        # windows (the longer half of each step's, in length-grouped batches). A log at the last step leaves
        # nothing over: the run's loss covers every process's windows.
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True

    if not config.save_steps:
        return [LogTheLastStep()]

    class EpochCheckpointsWithRecord(TrainerCallback):
        def __init__(self):
            self.started, self.compiling_before = time.perf_counter(), 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            from .model import compile_seconds

            self.started, self.compiling_before = time.perf_counter(), compile_seconds()

        def training_seconds(self) -> float:
            """This session's training so far, compiling left out (as the results row's train_time_s)."""
            from .model import compile_seconds

            return time.perf_counter() - self.started - (compile_seconds() - self.compiling_before)

        def on_step_end(self, args, state, control, **kwargs):
            if control.should_save:
                self._prepare_save(args, state, control)

        def on_epoch_end(self, args, state, control, **kwargs):
            # At a multiple of save_steps, and at the last step, the Trainer has saved already.
            if state.global_step % state.save_steps and state.global_step < state.max_steps:
                control.should_save = True
                self._prepare_save(args, state, control)

        def _prepare_save(self, args, state, control):
            # Log with each save: the log then holds the loss of every step up to the checkpoint.
            control.should_log = True
            if state.is_world_process_zero:  # a folder saved again (after a resume) is incomplete until re-recorded
                (Path(args.output_dir) / f"checkpoint-{state.global_step}" / CHECKPOINT_CONFIG).unlink(missing_ok=True)

        def on_save(self, args, state, control, **kwargs):
            _wait_for_all_processes()  # each process writes its own rng_state_<rank>.pth into the folder
            if not state.is_world_process_zero:
                return
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            record = {
                "config": vars(config),
                "global_step": state.global_step,
                "train_time_s": resume.train_time_s + self.training_seconds(),
                "train_loss_sum": None if resume.train_loss_sum is None else (
                    resume.train_loss_sum + logged_loss_sum(state.log_history, up_to_step=state.global_step)
                    - logged_loss_sum(state.log_history, up_to_step=resume.step)),
                "resumed_from": [*resume.resumed_from, *([resume.step] if resume.checkpoint else [])],
                "files": _sync_files(folder),
            }
            write_atomically(folder / CHECKPOINT_CONFIG,
                             json.dumps(record, indent=1, default=str).encode("utf-8"))

    return [LogTheLastStep(), EpochCheckpointsWithRecord()]


def _sync_files(folder: Path) -> dict[str, int]:
    """fsync every file of the checkpoint (the Trainer does not), so that the record never lands before them."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKPOINT_CONFIG):
        fsync_file(path)
        files[str(path.relative_to(folder))] = path.stat().st_size
    for sub in {p.parent for p in folder.rglob("*")} | {folder}:
        fsync_dir(sub)
    return files


def _wait_for_all_processes() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
