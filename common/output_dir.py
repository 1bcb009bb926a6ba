"""A run's output folder: one live run at a time, a finished run never overwritten, nothing left empty.

- While a run is alive, its main process holds an exclusive lock (flock) on `<output_dir>/.run.lock`; a second
  run into the same folder is refused at start-up, naming the process that holds it. The kernel releases the
  lock when the process ends, however it ends, so a lock file left by a dead run blocks nothing.
- `finished.json` marks a finished run (its row was written; it holds the row and where it went). A new run into
  that folder is refused, `--resume` says the run is finished and does nothing.
- A folder the run created and left holding nothing (bad input, a failure before anything was written) is
  removed again.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from .checkpoint import settings_changes
from .config import ConfigError, RunConfig
from .distributed import is_main_process
from .durable import write_atomically

logger = logging.getLogger("bertimbau_qa")

LOCK_FILE = ".run.lock"
FINISHED = "finished.json"


@contextmanager
def claimed_output_dir(output_dir: Path) -> Iterator[Path]:
    """Create `output_dir` if needed and hold its lock for the run (main process only: one run, one lock)."""
    if not is_main_process():
        yield output_dir
        return
    created = not output_dir.exists()
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--output_dir {output_dir}: cannot be created ({exc.strerror}); pass a folder you can "
                          "write to") from exc
    lock = _acquire(output_dir / LOCK_FILE, output_dir=output_dir)
    try:
        yield output_dir
    finally:
        if created and [p.name for p in output_dir.iterdir()] == [LOCK_FILE]:
            (output_dir / LOCK_FILE).unlink()  # before the unlock: a run that opens it meanwhile retries
            os.close(lock)
            try:
                output_dir.rmdir()
            except OSError:  # another run started in it meanwhile
                pass
        else:
            os.close(lock)


def _acquire(path: Path, *, output_dir: Path) -> int:
    """An fd holding the exclusive lock of `path`, with this process's id written in it."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"--output_dir {output_dir}: cannot be written ({exc.strerror}); pass a folder you "
                              "can write to") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = _read_holder(path)
            raise ConfigError(
                f"--output_dir {output_dir} is in use by another run ({holder}); two runs in one folder would mix "
                "their models and checkpoints: wait for it to end, or pass another --output_dir"
            ) from exc
        # A finishing run may have deleted the file between our open and our lock: then lock the new one.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


def _read_holder(path: Path) -> str:
    try:
        pid = path.read_text(encoding="utf-8").strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid else "a process that is starting"


def finished_record(output_dir: Path) -> Optional[dict]:
    path = output_dir / FINISHED
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--output_dir {output_dir}: {FINISHED} is damaged ({exc}); the run there finished; "
                          "pass another --output_dir") from exc


def write_finished(output_dir: Path, *, config: RunConfig, row: dict, results_file: Path) -> None:
    record = {"results_file": str(results_file), "config": vars(config), "row": row}
    write_atomically(output_dir / FINISHED, json.dumps(record, indent=1, default=str).encode("utf-8"))


def check_not_finished(config: RunConfig, output_dir: Path) -> Optional[dict]:
    """The record of the finished run in `output_dir` when this is `--resume` of that very run (nothing to do);
    None when no run finished there. A finished run is never overwritten: ConfigError otherwise."""
    record = finished_record(output_dir)
    if record is None:
        return None
    row = record.get("row", {})
    where = f"finished {row.get('timestamp', '')}, F1 {row.get('f1', '?')}, its row in {record.get('results_file')}"
    if not config.resume:
        raise ConfigError(
            f"--output_dir {output_dir} holds a finished run ({where}); a new run does not overwrite it: pass another "
            "--output_dir, or delete that folder to train it again"
        )
    changed = settings_changes(record.get("config", {}), config)
    if changed:
        raise ConfigError(
            f"--resume: {output_dir} holds a finished run with other settings ({'; '.join(changed)}); pass another "
            "--output_dir for these settings"
        )
    return record
