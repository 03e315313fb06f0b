"""How spos writes: atomic result files, run folders it may write into, one run per folder.

- Every result file is written by `write_atomic`: a temporary file with a unique name, created
  exclusively beside the target (a planted symlink cannot redirect it), fsynced, then renamed
  over the target; a failure removes the temporary file, a kill leaves the old file whole.
- A command writes into a new or empty folder, or, with ``--resume``, into a folder holding a
  run of its own kind (`check_output_folder`); a single-file output that exists is refused
  unless the user passes ``--force`` (`check_output_file`).
- A run holds an OS lock on ``FOLDER/.lock`` (`run_lock`) for as long as it runs; the kernel
  releases it when the process dies, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from spos.errors import UserError

LOCK_NAME = ".lock"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_atomic(path: str | Path, write: Callable) -> Path:
    """Call ``write(binary_handle)`` on a fresh temporary file, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(descriptor, 0o666 & ~_umask())  # mkstemp makes 0600; results get the usual mode
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)
    return path


def write_text_atomic(text: str, path: str | Path) -> Path:
    return write_atomic(path, lambda handle: handle.write(text.encode()))


def check_output_file(path: str | Path, force: bool) -> Path:
    """A single-file output: refused when it is a folder, or when it exists and ``force`` is not given."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--output {path} is a folder; give a file name")
    if (path.exists() or path.is_symlink()) and not force:
        raise UserError(f"--output {path} exists; pass --force to replace it or choose another --output")
    return path


def folder_contents(folder: Path) -> list[str]:
    """What a folder holds, the run lock left aside."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME)


def check_output_folder(folder: str | Path, *, kind: str, resume: bool, markers: tuple[str, ...]) -> Path:
    """Refuse a folder this run may not write into (see the module docstring).

    ``markers`` are the files that show the folder holds a ``kind`` run (e.g. ``last.pt``).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--output {folder} is a file; give a folder (new or empty)")
    contents = folder_contents(folder)
    if not contents:
        return folder
    own = any((folder / marker).exists() for marker in markers)
    if own and resume:
        return folder
    if own:
        raise UserError(f"{folder} already holds a {kind} run; pass --resume to continue it or choose another "
                        "--output")
    shown = ", ".join(contents[:4]) + (", ..." if len(contents) > 4 else "")
    raise UserError(f"{folder} is not empty and holds no {kind} run ({shown}); choose a new or empty --output "
                    "(spos never writes over files it did not create)")


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def run_lock(folder: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``FOLDER/.lock`` (with our pid in it) for the ``with`` block.

    A second run in the same folder gets a UserError naming the folder and the holder's pid. A
    lock file (and folder) the lock created is removed again when the run wrote nothing.
    Only torchrun's rank 0 locks: the other ranks of the same run share its folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--output {folder} is a file; give a folder (new or empty)")
    if int(os.environ.get("RANK", "0")) != 0:
        yield folder
        return
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    lock_existed = path.exists() or path.is_symlink()
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        reason = "it is a symlink" if error.errno == errno.ELOOP else error.strerror
        raise UserError(f"cannot lock {folder} ({path}: {reason}); choose another --output") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise UserError(f"{folder} is in use by another spos run (pid {_holder(path)}); wait for it to end or "
                        "choose another --output") from None
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        yield folder
    finally:
        if not folder_contents(folder):  # a run refused before any work leaves nothing behind
            with contextlib.suppress(OSError):
                if not lock_existed:
                    path.unlink()
                if created:
                    folder.rmdir()
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)
