"""How spos writes: atomic result files, run folders it may write into, one run per folder.

- Every result file is written by `write_atomic`: a temporary file with a unique name, created
  exclusively beside the target (a planted symlink cannot redirect it), fsynced, then renamed
  over the target; a failure removes the temporary file, a kill leaves the old file whole.
- A command writes into a new or empty folder, or, with ``--resume``, into a folder holding a
  run of its own kind (`check_output_folder`); a single-file output that exists is refused
  unless the user passes ``--force`` (`check_output_file`).
- A run holds an OS lock on ``FOLDER/.lock`` (`run_lock`) for as long as it runs; the kernel
  releases it when the process dies, so a killed run never leaves a stale lock. A ``.lock`` that
  holds anything but a pid is someone else's file: the folder is not empty, and it is left alone.
- Logs that grow a line at a time are appended through `AppendLog`, which opens with
  ``O_NOFOLLOW`` and refuses anything but a regular file with one link, so an append never lands
  in a file a planted link points at. Files made by tools that want a path (ONNX, TorchScript)
  are written into a private folder first and copied in with `copy_in_atomic`.
- A kill in the middle of `write_atomic` leaves its temporary file; the next run in the folder
  removes its own (`remove_stale_temps`: only the temporary names of the files it writes).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

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


def copy_in_atomic(source: str | Path, path: str | Path) -> Path:
    """Copy the finished file ``source`` (made in a private scratch folder) to ``path`` by `write_atomic`."""
    with open(source, "rb") as finished:
        return write_atomic(path, lambda handle: shutil.copyfileobj(finished, handle))


def _temp_pattern(name: str) -> re.Pattern:
    """The names `write_atomic` gives its temporary files for targets matching the glob ``name``."""
    return re.compile(rf"\.{_glob_regex(name)}\.[A-Za-z0-9_]{{8}}\.tmp")


def _glob_regex(name: str) -> str:
    return ".+".join(re.escape(part) for part in name.split("*"))


def remove_stale_temps(folder: str | Path, names: tuple[str, ...]) -> list[Path]:
    """Remove the temporary files a killed `write_atomic` left for the files ``names`` (globs relative to
    ``folder``, such as ``front/arch-*.json``); nothing else is touched, links and folders included."""
    removed = []
    for name in names:
        parent = Path(folder) / Path(name).parent
        pattern = _temp_pattern(Path(name).name)
        if not parent.is_dir() or parent.is_symlink():
            continue
        for entry in parent.iterdir():
            if pattern.fullmatch(entry.name) and stat.S_ISREG(entry.lstat().st_mode):
                entry.unlink()
                removed.append(entry)
    return removed


class AppendLog:
    """A file that grows by whole lines, each flushed and fsynced: a kill loses at most the line being written.

    Opened with ``O_NOFOLLOW`` (a planted symlink is refused, not followed) and only when it is a regular
    file with one link (a planted hard link to someone's file is refused too). A last line cut short
    by a kill is ended first, so the next line starts on a line of its own.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            descriptor = os.open(self.path, flags, 0o666)
        except OSError as error:
            reason = "it is a symlink" if error.errno == errno.ELOOP else error.strerror
            raise UserError(f"cannot append to {self.path} ({reason}); spos never writes through links: "
                            "remove it or choose another --output") from None
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(descriptor)
            what = "not a regular file" if not stat.S_ISREG(info.st_mode) else f"a file with {info.st_nlink} links"
            raise UserError(f"cannot append to {self.path} ({what}); spos never writes into files it did not "
                            "create: remove it or choose another --output")
        self._handle = os.fdopen(descriptor, "ab")
        if info.st_size and os.pread(descriptor, 1, info.st_size - 1) != b"\n":
            self._write(b"\n")

    def _write(self, data: bytes) -> None:
        self._handle.write(data)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def write_line(self, text: str) -> None:
        self._write(text.encode() + b"\n")

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> AppendLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_output_file(path: str | Path, force: bool, what: str = "--output") -> Path:
    """A single-file output (``what`` names it to the user): refused when it is a folder, or when it exists
    and ``force`` is not given."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file name")
    if (path.exists() or path.is_symlink()) and not force:
        raise UserError(f"{what} {path} exists; pass --force to replace it or choose another --output")
    return path


def is_run_lock(path: Path) -> bool:
    """Whether ``path`` is a lock file `run_lock` wrote: a regular file holding a pid, or nothing (a run
    killed before writing its pid). Anything else named ``.lock`` belongs to someone else."""
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            return False
        with open(path, "rb") as handle:
            return _holds_a_pid(handle.read(64))
    except OSError:
        return False


def _holds_a_pid(content: bytes) -> bool:
    return re.fullmatch(rb"[0-9]*\n?", content) is not None


def folder_contents(folder: Path) -> list[str]:
    """What a folder holds, the run lock left aside (a ``.lock`` spos did not write counts)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME or not is_run_lock(p))


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
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--output {folder} cannot be created ({error.strerror}); choose another --output") from None
    path = folder / LOCK_NAME
    lock_existed = path.exists() or path.is_symlink()
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as error:
        reason = "it is a symlink" if error.errno == errno.ELOOP else error.strerror
        raise UserError(f"cannot lock {folder} ({path}: {reason}); choose another --output") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise UserError(f"{folder} is in use by another spos run (pid {_holder(path)}); wait for it to end or "
                        "choose another --output") from None
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or not _holds_a_pid(os.pread(descriptor, 64, 0)):
        os.close(descriptor)
        raise UserError(f"{path} is not a spos lock (it holds something else); spos never writes over files it "
                        "did not create: move it away or choose another --output")
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
