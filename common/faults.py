"""What a run does when it goes wrong, so that grids show what failed instead of silently missing it.

- Bad input (ConfigError, DataError): one line `error: ...`, exit status 2, no results row: nothing ran.
- A run that fails after it started appends a row with its `status` and `error`, then exits non-zero:
  `diverged` (NaN or infinite training loss, exit 1), `oom` (out of memory, exit 1, with batch-size
  advice), `interrupted` (Ctrl-C: exit 130; SIGTERM, as schedulers send before pre-emption: exit 143),
  `failed` (anything else, a library panic included, exit 1, with its traceback: it is a bug or a broken
  environment).
`--debug` adds the traceback to every error.
"""
from __future__ import annotations

import logging
import signal
import sys
import traceback
from typing import Callable

from .config import ConfigError, RunConfig
from .data import DataError
from .distributed import is_main_process, world_size
from .results import append_result, describe_run

logger = logging.getLogger("bertimbau_qa")

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite: every later step would be wasted."""


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that it unwinds the run the same way."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def check_finite_loss(loss, *, step: int, learning_rate: float) -> None:
    """Raise TrainingDiverged on a NaN or infinite loss (the Trainer would log it as a finite average).

    Reading the loss waits for the GPU, once per batch; the Trainer's own NaN filter already does so there.
    """
    import torch

    if not bool(torch.isfinite(loss).all()):
        raise TrainingDiverged(
            f"training loss is {float(loss)} at optimizer step {step}: the run diverged; lower --learning_rate "
            f"(this run: {learning_rate:g}) or keep gradient clipping on (--max_grad_norm 1.0)"
        )


def is_library_panic(exc: BaseException) -> bool:
    """A Rust library (tokenizers, safetensors) panicked: pyo3 raises PanicException, which derives from
    BaseException so that `except Exception` cannot swallow it; for a run it is a failure like any other."""
    return type(exc).__name__ == "PanicException"


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    message = str(exc).lower()
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)
    )


def _failed_phase(exc: BaseException) -> str:
    """Where in the run the exception came from, read off its traceback."""
    functions = {frame.f_code.co_name for frame, _ in traceback.walk_tb(exc.__traceback__)}
    if functions & {"predict", "evaluation_loop", "prediction_step"}:
        return "evaluation"
    if functions & {"train", "training_step"}:
        return "training"
    return "model loading"


def oom_advice(config: RunConfig, *, phase: str) -> str:
    """Settings that need less memory; for training they keep the effective batch (the paper's setup)."""
    if phase == "evaluation":
        return f"try --eval_batch_size {max(1, config.eval_batch_size // 2)}"
    if phase == "model loading":
        return "the model itself does not fit: try a 4-bit method (qlora, qdora) or a GPU with more memory"
    effective = config.batch_size * config.gradient_accumulation_steps
    checkpointing = "" if config.gradient_checkpointing else ", or add --gradient_checkpointing"
    if config.batch_size == 1:
        return ("already at --batch_size 1: try --gradient_checkpointing, a shorter --max_seq_length (e.g. 256 "
                "--doc_stride 96) or a 4-bit method (qlora, qdora)")
    smaller = max(d for d in range(1, config.batch_size // 2 + 1) if config.batch_size % d == 0)
    steps = effective // smaller
    return (f"try --batch_size {smaller} --gradient_accumulation_steps {steps} (same effective batch of "
            f"{effective}){checkpointing}")


def classify_failure(exc: BaseException, config: RunConfig) -> tuple[str, str, int]:
    """(status, one-line message, exit status) of a run that stopped with `exc`."""
    if isinstance(exc, TrainingDiverged):
        return "diverged", str(exc), EXIT_FAILED
    if isinstance(exc, RunInterrupted):
        return "interrupted", str(exc), 128 + exc.signum
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "stopped by Ctrl-C (SIGINT)", 128 + signal.SIGINT
    if is_out_of_memory(exc):
        phase = _failed_phase(exc)
        settings = f"--eval_batch_size {config.eval_batch_size}" if phase == "evaluation" else (
            f"--batch_size {config.batch_size} --gradient_accumulation_steps {config.gradient_accumulation_steps}")
        return "oom", f"out of memory during {phase} ({settings}): {oom_advice(config, phase=phase)}", EXIT_FAILED
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return "failed", f"{type(exc).__name__}: {first_line}", EXIT_FAILED


def failure_row(config: RunConfig, *, status: str, error: str) -> dict:
    """The results row of a run that did not finish: what ran and where, without results."""
    return {**describe_run(config, world_size=world_size()), "status": status, "error": error}


def report_bad_input(exc: BaseException, *, debug: bool) -> int:
    """One line on stderr (the traceback too with --debug); nothing ran, so no results row."""
    if debug:
        traceback.print_exception(exc)
    print("error: " + " ".join(str(exc).splitlines()), file=sys.stderr)
    return EXIT_BAD_INPUT


def _close_progress_bars() -> None:
    """A bar left open by the exception would redraw itself after the error line when the process exits."""
    try:
        from tqdm import tqdm
    except ImportError:
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def _raise_interrupted(signum, frame):
    raise RunInterrupted(signum)


def run_recording_failures(run: Callable[[RunConfig], dict], config: RunConfig) -> int:
    """Call `run(config)`; turn what can go wrong into an exit status, and a results row where the run started."""
    # SIGTERM (pre-emption, `kill`, Slurm's time limit) would end the process without a row.
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        run(config)
        return 0
    except (ConfigError, DataError) as exc:
        return report_bad_input(exc, debug=config.debug)
    except BaseException as exc:
        if not (isinstance(exc, (Exception, KeyboardInterrupt)) or is_library_panic(exc)):
            raise  # SystemExit, GeneratorExit: not failures of the run
        status, message, exit_status = classify_failure(exc, config)
        signal.signal(signal.SIGTERM, previous)  # a second SIGTERM must not cut the row in half
        _close_progress_bars()
        if status == "failed":
            logger.error("Run failed", exc_info=exc)  # unexpected: the traceback is what helps
        elif config.debug:
            traceback.print_exception(exc)
        results_file = config.resolved_results_file()
        note = ""
        # Under torchrun/accelerate every process gets here; one row per run, from the main process.
        if is_main_process():
            try:
                append_result(results_file, failure_row(config, status=status, error=message))
                note = f" (recorded as status {status} in {results_file})"
            except Exception as record_exc:  # the run's own error matters more than this one
                note = f" (could not record it in {results_file}: {record_exc})"
        print(f"error: {message}{note}", file=sys.stderr)
        return exit_status
    finally:
        signal.signal(signal.SIGTERM, previous)
