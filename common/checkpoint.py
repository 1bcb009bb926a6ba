"""Resumable runs: checkpoints every `--save_steps` optimizer steps and at each epoch end; `--resume`.

The HF Trainer does the heavy lifting: each `checkpoint-<step>/` holds what `save_model` writes (for PEFT
methods only the adapter and the QA head, for full fine-tuning the whole model) plus `optimizer.pt`,
`scheduler.pt`, `rng_state.pth` and `trainer_state.json`; `train(resume_from_checkpoint=...)` restores them
and skips the batches already seen, so a resumed run ends where an uninterrupted one would.
This module adds what the Trainer leaves to its caller:
- a checkpoint at every epoch end besides every N steps (the Trainer does one or the other);
- the run's config inside each checkpoint, so `--resume` refuses to continue with different settings;
- "last checkpoint" means the last *complete* one: a run killed while saving leaves a partial folder;
- training seconds carried over a resume, so `train_time_s` counts the work the run needed.
"""
from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Optional

from .config import ConfigError, RunConfig

logger = logging.getLogger("bertimbau_qa")

CHECKPOINT_CONFIG = "run_config.json"  # written last into a checkpoint: its presence marks it complete
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
# Settings that do not change what is trained, so a resumed run may change them.
RESUMABLE_CHANGES = frozenset(
    {"output_dir", "results_file", "resume", "debug", "logging_steps", "dataloader_num_workers", "save_steps",
     "eval_batch_size", "feature_cache", "num_threads"}
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


def is_complete(checkpoint: Path) -> bool:
    return (checkpoint / "trainer_state.json").is_file() and (checkpoint / CHECKPOINT_CONFIG).is_file()


def _comparable(values: dict) -> dict:
    values = json.loads(json.dumps(values, default=str))  # the form it has in the checkpoint
    return {k: v for k, v in values.items() if k not in RESUMABLE_CHANGES}


def resume_point(config: RunConfig, output_dir: Path) -> tuple[Optional[Path], float]:
    """(checkpoint to resume from or None, training seconds it already took).

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
        return None, 0.0
    while checkpoints and not is_complete(checkpoints[-1]):
        logger.warning("Skipping %s: incomplete (the run was stopped while saving it)", checkpoints.pop())
    if not checkpoints:
        logger.warning("--resume: no complete checkpoint in %s; starting from the beginning", output_dir)
        return None, 0.0
    checkpoint = checkpoints[-1]
    saved = json.loads((checkpoint / CHECKPOINT_CONFIG).read_text(encoding="utf-8"))
    before, now = _comparable(saved["config"]), _comparable(vars(config))
    changed = [f"--{k} {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(before.keys() | now.keys())
               if before.get(k) != now.get(k)]
    if changed:
        raise ConfigError(
            f"--resume: {checkpoint} was written with other settings ({'; '.join(changed)}); pass the flags of the "
            f"interrupted run (see {checkpoint / CHECKPOINT_CONFIG}) or another --output_dir"
        )
    logger.info("Resuming from %s", checkpoint)
    return checkpoint, float(saved.get("train_time_s", 0.0))


def checkpoint_callbacks(config: RunConfig, *, prior_train_time: float = 0.0) -> list:
    """Trainer callbacks: save at each epoch end too, and record the config and elapsed time in each checkpoint."""
    if not config.save_steps:
        return []
    from transformers import TrainerCallback

    class EpochCheckpointsWithConfig(TrainerCallback):
        def __init__(self):
            self.started = time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kwargs):
            # At a multiple of save_steps, and at the last step, the Trainer has saved already.
            if state.global_step % state.save_steps and state.global_step < state.max_steps:
                control.should_save = True

        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            record = {"config": vars(config), "train_time_s": prior_train_time + time.perf_counter() - self.started}
            tmp = folder / (CHECKPOINT_CONFIG + ".tmp")
            tmp.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
            tmp.replace(folder / CHECKPOINT_CONFIG)  # atomic: present means the whole checkpoint is there

    return [EpochCheckpointsWithConfig()]
