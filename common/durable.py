"""Files that survive a crash whole: written under a temporary name, synced to disk, then renamed into place.

A rename is atomic on POSIX file systems, so a reader sees the old file or the new one, never half of one; the
fsync of the file before the rename and of its folder after it make that hold across a power loss or a crashed
node too, not only a killed process. A crash can leave a temporary file behind: its name starts with
`.<target name>.` and ends with `.tmp`, and `remove_stale_temporaries` (called by the next writer, under the
same lock) deletes it.
"""
from __future__ import annotations

import glob
import os
import stat
import tempfile
from pathlib import Path
from typing import Optional

TEMPORARY_SUFFIX = ".tmp"


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` durable (its entry lives in the folder)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def temporary_prefix(target: Path) -> str:
    return f".{target.name}."


def write_atomically(target: Path, data: bytes, *, like: Optional[os.stat_result] = None) -> None:
    """Replace `target` by `data` in one step, with the permissions (and, where allowed, the group) of `like`, the
    file it replaces; without it those of a new file (0666 less the umask), not mkstemp's 0600."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=temporary_prefix(target), suffix=TEMPORARY_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if like is not None:
                try:  # a shared results file keeps its group; only the owner can change it (or a group member)
                    os.fchown(handle.fileno(), -1, like.st_gid)
                except PermissionError:
                    pass
            os.fchmod(handle.fileno(), stat.S_IMODE(like.st_mode) if like is not None else _default_mode())
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Delete the temporary files a crashed writer of `target` left; call it only while holding the writers' lock."""
    removed = []
    for path in target.parent.glob(glob.escape(temporary_prefix(target)) + "*" + TEMPORARY_SUFFIX):
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
