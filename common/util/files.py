"""Atomic file writing (a temporary file in the target folder, renamed into place when complete), strict JSON,
folder locks and the checks a folder must pass before a long job writes into it."""
from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator

TMP_PREFIX = ".tmp-"
LOCK_FILE = ".nin.lock"


def umask() -> int:
    """The process's umask (reading it means setting it: it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_not_folder(path) -> None:
    """A file about to be written must not be a folder (``os.replace`` would fail only after the work)."""
    if os.path.isdir(path):
        raise ValueError(f"expected a file path to write, got the folder {path}")


@contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    ``suffix`` keeps an ending some writers insist on (Keras wants ``.weights.h5``).  The file gets the mode
    an ordinary ``open(path, "w")`` would give it (0666 less the umask), not ``mkstemp``'s private 0600.
    """
    path = os.fspath(path)
    check_not_folder(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def dumps(obj, **kwargs) -> str:
    """Strict JSON: NaN and infinities are refused (ValueError), never written as bare ``NaN``."""
    return json.dumps(obj, allow_nan=False, sort_keys=True, **kwargs)


def write_json(path, obj) -> None:
    text = dumps(obj, indent=2) + "\n"  # before anything is written: a refused value leaves no file
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def read_json(path, what: str = "a JSON file"):
    """The content of a JSON file; a file that cannot be read or parsed is a ValueError naming it."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"), parse_constant=_refuse_constant)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"expected {os.fspath(path)} to be {what}, got one that cannot be read as JSON "
                         f"({first_line(err)})") from err


def _refuse_constant(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (frameworks quote C++ tracebacks below it)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if lines and lines[0].startswith("Traceback"):  # MXNet quotes its C++ stack first, the fault last
        lines = lines[-1:]
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def clean_temporaries(folder) -> None:
    """Remove the ``.tmp-*`` files a killed writer left in ``folder`` (call it holding the folder's lock)."""
    for path in glob.glob(os.path.join(glob.escape(os.fspath(folder)), TMP_PREFIX + "*")):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


@contextmanager
def folder_lock(folder, wait: bool, busy: str = "") -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (``flock`` on ``folder/.nin.lock``) for the block.

    ``wait=False``: a folder another process holds is a ValueError (``busy`` says what holds it);
    ``wait=True``: wait for it.  The lock goes with the process, so a killed holder never leaves it stuck.
    """
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise ValueError(f"expected {folder} to be free, got a folder another process is writing into"
                             + (f" ({busy})" if busy else "")) from None
        yield
    finally:
        os.close(fd)


def check_writable_folder(folder, need_bytes: int = 0, option: str = "--out") -> None:
    """Fail now, not after hours of work, when ``folder`` cannot take what will be written into it: a file
    in its place, a folder that cannot be created or written, or less free space than ``need_bytes``."""
    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"expected {option} to be a folder, got the file {folder}")
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
        stat = os.statvfs(folder)
    except OSError as err:
        raise ValueError(f"expected {option} {folder} to be a writable folder, got {why(err)}") from err
    free = stat.f_bavail * stat.f_frsize
    if free < need_bytes:
        raise ValueError(f"expected {option} {folder} to have at least {need_bytes / 2**20:,.1f} MiB free for "
                         f"its checkpoints, got {free / 2**20:,.1f} MiB")


def why(err: OSError, file: bool = True) -> str:
    """An OSError in words ("no space left on device", "permission denied"), with the file when it has one
    (and ``file``)."""
    text = os.strerror(err.errno).lower() if err.errno else first_line(err)
    return text + (f" ({err.filename})" if file and getattr(err, "filename", None) else "")

