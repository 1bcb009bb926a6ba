"""What a run does when it goes wrong, so that grids show what failed instead of silently missing it.

- Bad input (ConfigError, DataError): one line `error: ...`, exit status 2, no results row: nothing ran.
- A run that fails after it started appends a row with its `status` and `error`, then exits non-zero:
  `diverged` (NaN or infinite training loss, exit 1), `oom` (out of memory, exit 1, with batch-size
  advice), `disk_full` (no space left while writing a checkpoint or an output, exit 1), `interrupted`
  (Ctrl-C: exit 130; SIGTERM, as schedulers send before pre-emption: exit 143), `failed` (anything else, a
  library panic included, exit 1, with its traceback: it is a bug or a broken environment).
- One run, one row: the finished row and the folder's `finished.json` are written with SIGTERM and Ctrl-C held
  back, and whatever stops the run after that (a signal or an error during `--merge`) is reported with its exit
  status but adds no second row.
`--debug` adds the traceback to every error.
"""
from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .config import ConfigError, RunConfig
from .data import DataError
from .distributed import is_main_process, world_size
from .output_dir import write_finished
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


class LossWatch:
    """Notices a NaN or infinite training loss on the device, and says so only when asked (`check`).

    Reading the loss on the host after every step (`bool(torch.isfinite(loss))`) would make the CPU wait for the
    GPU once per step, so it could not queue the next step's kernels in the meantime. Instead each step records,
    on the device, the first optimizer step whose loss was not finite and that loss; `check` reads them (one
    host-device synchronisation) at logging steps, before a checkpoint is saved and when training ends, and
    raises TrainingDiverged naming the step. A diverged run therefore stops at the next check, not at once:
    at most `--logging_steps` steps later, steps that the diverged weights would have wasted anyway.
    """

    def __init__(self, *, learning_rate: float):
        self.learning_rate = learning_rate
        self.first_step = None  # device tensors, created with the first loss (on its device)
        self.first_loss = None

    def observe(self, loss, *, step: int) -> None:
        """Record `loss` of optimizer step `step` (1-based) without a host-device synchronisation."""
        import torch

        loss = loss.detach().float()
        if self.first_step is None:
            self.first_step = torch.zeros((), dtype=torch.int64, device=loss.device)
            self.first_loss = torch.zeros((), dtype=torch.float32, device=loss.device)
        new = ~torch.isfinite(loss) & (self.first_step == 0)
        # Python numbers in torch.where are kernel arguments, not copies to the device.
        self.first_step = torch.where(new, step, self.first_step)
        self.first_loss = torch.where(new, loss, self.first_loss)

    def check(self) -> None:
        """Raise TrainingDiverged if any observed loss was not finite (reads the device: call it rarely)."""
        if self.first_step is None:
            return
        step = int(self.first_step)
        if step:
            raise TrainingDiverged(
                f"training loss is {float(self.first_loss)} at optimizer step {step}: the run diverged; lower "
                f"--learning_rate (this run: {self.learning_rate:g}) or keep gradient clipping on (--max_grad_norm 1.0)"
            )


class RowAlreadyWritten(Exception):
    """Something stopped the run after its finished row was written (its cause is the exception)."""

    def __init__(self, results_file: Path):
        super().__init__(f"the run's row is already in {results_file}")
        self.results_file = results_file


HELD_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def recorded_row(config: RunConfig, *, output_dir: Path, row: dict) -> Iterator[Path]:
    """Append the finished row and mark the folder finished, with SIGTERM and Ctrl-C held back until both are
    written; an error or signal in the `with` block after that raises RowAlreadyWritten, never a second row.

    Held by Python handlers that only note the signal, not by blocking it (pthread_sigmask): a blocked signal
    goes to another thread of the process (torch has several), and Python still runs its handler at once.
    """
    arrived = []
    previous = _hold_signals(arrived)
    try:
        results_file = append_result(config.resolved_results_file(), row)
        write_finished(output_dir, config=config, row=row, results_file=results_file)
    except BaseException:
        _release_signals(previous, arrived)
        raise
    try:
        _release_signals(previous, arrived)  # a signal that came meanwhile is raised here
        yield results_file
    except (Exception, KeyboardInterrupt) as exc:
        raise RowAlreadyWritten(results_file) from exc


def _hold_signals(arrived: list) -> dict:
    try:
        return {signum: signal.signal(signum, lambda signum, frame: arrived.append(signum)) for signum in HELD_SIGNALS}
    except ValueError:  # not the main thread: Python delivers signals to the main thread only, nothing to hold
        return {}


def _release_signals(previous: dict, arrived: list) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
    for signum in arrived[:1]:  # the run's own handlers raise; deliver the first signal as it would have come
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, None)
        elif handler != signal.SIG_IGN:
            os.kill(os.getpid(), signum)


def is_disk_full(exc: BaseException) -> bool:
    """No space left (or over quota); torch's zip writer reports it as a RuntimeError about file positions."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        message = str(exc)
        if isinstance(exc, RuntimeError) and any(text in message for text in (
                "unexpected pos", "file write failed", "No space left on device")):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _being_written(exc: BaseException, config: RunConfig) -> str:
    """What the run was writing when `exc` came: `checkpoint-N to <dir>`, a file, or its output folder."""
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_name == "_save_checkpoint" and "output_dir" in frame.f_locals:
            checkpoint = Path(frame.f_locals["output_dir"])  # the Trainer's `<output_dir>/checkpoint-<step>`
            return f"{checkpoint.name} to {checkpoint.parent}"
    filename = getattr(exc, "filename", None)
    return str(filename) if filename else f"the run's files to {config.resolved_output_dir()}"


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
    if is_disk_full(exc):
        again = ("run the same command with --resume to continue from the last complete checkpoint"
                 if config.save_steps else "run it again")
        return "disk_full", (f"disk full while saving {_being_written(exc, config)}: free space on that disk (or "
                             f"pass an --output_dir on one with room), then {again}"), EXIT_FAILED
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
    except RowAlreadyWritten as exc:  # the run is recorded as finished: report, but write no second row
        status, message, exit_status = classify_failure(exc.__cause__, config)
        signal.signal(signal.SIGTERM, previous)
        _close_progress_bars()
        if status == "failed" or config.debug:
            logger.error("After the run's row was written", exc_info=exc.__cause__)
        print(f"error: {message} (after the run finished: {exc} with status ok, and no other row is written; "
              "the same command with --resume completes what was left, such as --merge)", file=sys.stderr)
        return exit_status
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
