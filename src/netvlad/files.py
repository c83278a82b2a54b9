"""General file helpers: atomic writes, and reads of our JSON and .npy files that name a damaged file.

Every step that writes results (checkpoints, reports, exports) writes atomically; every reader of our own JSON and
``.npy`` files turns a damaged one into one :class:`netvlad.errors.BadInputError` naming it.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

SPACE = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
PLACE = {errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT}


class WriteError(OSError):
    """An OSError while writing ``filename``; ``str()`` is one line naming the file and the fix."""

    def __str__(self) -> str:
        if self.errno in SPACE:
            fix = ("free disk space or quota (or raise the file-size limit, `ulimit -f`), or write to another "
                   "filesystem; a rerun continues from what was written")
        elif self.errno in PLACE:
            fix = "choose a writable folder (every part of the path a folder you may write in); a rerun continues"
        else:
            fix = "check the disk and the path; a rerun continues from what was written"
        return f"{self.filename}: cannot write ({self.strerror}); {fix}"


def write_error(error: OSError, path: Path | str) -> WriteError:
    """``error`` as a :class:`WriteError` naming ``path`` (or the file the error named)."""
    if isinstance(error, WriteError):
        return error
    return WriteError(error.errno, error.strerror or str(error), str(error.filename or path))


def cache_root() -> Path:
    """netvlad's cache folder: ``$NETVLAD_CACHE``, else ``$XDG_CACHE_HOME/netvlad``, else ``~/.cache/netvlad``."""
    if os.environ.get("NETVLAD_CACHE"):
        return Path(os.environ["NETVLAD_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "netvlad"


def atomic_write(path: Path | str, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it over ``path``.

    A crash or a full disk leaves the previous file intact. The file gets the permissions ``open(path, "w")``
    would give it (0666 less the process umask).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise write_error(error, path) from None
    try:
        os.fchmod(fd, 0o666 & ~process_umask())  # mkstemp's file is private (0600); ours are like open(path, "w")
    finally:
        os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(error, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def process_umask() -> int:
    """The process's file-creation mask (read from /proc where it can be, so it is never changed meanwhile)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_json(path: Path | str, what: str) -> dict:
    """The JSON object in ``path`` (``what`` names it in errors); BadInputError naming the file otherwise."""
    from netvlad.errors import BadInputError

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = " ".join(str(error).split())
        raise BadInputError(f"{path}: not a readable {what} ({reason}); rebuild it", path=path) from None
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: not a {what} (a JSON {type(data).__name__}, not an object); rebuild it",
                            path=path)
    return data


def load_array(path: Path | str, what: str, mmap_mode: str | None = None):
    """The ``.npy`` array in ``path`` (never unpickled); BadInputError naming the file when it cannot be read."""
    import numpy as np

    from netvlad.errors import BadInputError

    path = Path(path)
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:  # numpy's errors on a damaged file
        if isinstance(error, FileNotFoundError):
            raise FileNotFoundError(f"{path}: {what} not found; rebuild it") from None
        reason = " ".join(str(error).split())[:200]
        raise BadInputError(f"{path}: not a readable {what} ({reason}); rebuild it", path=path) from None


def save_figure(fig, path: Path | str) -> Path:
    """Write a matplotlib figure to ``path`` atomically (its folder made; the format from its suffix) and close it;
    -> the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix[1:] or None))
    finally:
        plt.close(fig)
    return path


class LockTimeout(OSError):
    """Another process held ``filename``'s lock for longer than we were asked to wait."""


@contextmanager
def file_lock(path: Path | str, *, shared: bool = False, timeout: float = 60.0) -> Iterator[None]:
    """Hold an OS lock (``flock``) on the file ``path`` (created if missing) while the block runs.

    Exclusive for a writer, ``shared`` for readers; waits up to ``timeout`` seconds (polling), then raises
    :class:`LockTimeout`. The OS drops the lock when the holder exits or is killed, so a crashed writer never leaves
    a folder locked. Locks are per open file, so two threads of one process exclude each other too. Where the lock
    file cannot be created (a read-only folder) a shared lock is skipped: nobody can write there either.
    """
    import fcntl
    import time

    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        if shared and error.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            yield
            return
        raise write_error(error, path) from None
    try:
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        deadline, pause = time.monotonic() + timeout, 0.001
        while True:
            try:
                fcntl.flock(fd, mode)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(errno.EAGAIN, f"locked by another process for over {timeout:g} s",
                                      str(path)) from None
                time.sleep(pause)
                pause = min(2 * pause, 0.05)
        yield
    finally:
        os.close(fd)  # closing the file releases the lock


def file_checksum(path: Path | str, block: int = 1 << 22) -> tuple[int, int]:
    """(CRC32, size in bytes) of the file at ``path``, read in blocks."""
    crc, size = 0, 0
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
    return crc, size


def refuse_overlaps(outputs: dict[str, Path | str | None], inputs: dict[str, Path | str | None] | None = None
                    ) -> None:
    """Refuse, before anything runs, two outputs that are one path, or an output that is an input (``name -> path``,
    None: not given; names as the caller's user knows them, ``--out`` or ``out``)."""
    from netvlad.errors import BadInputError

    def key(path: Path | str) -> str:
        return os.path.realpath(Path(path).expanduser())

    seen: dict[str, str] = {}
    for name, path in (inputs or {}).items():
        if path is not None:
            seen.setdefault(key(path), f"the input {name}")
    for name, path in outputs.items():
        if path is None:
            continue
        other = seen.get(key(path))
        if other is not None:
            raise BadInputError(f"{path}: {name} would overwrite {other} (the same file); give {name} a path of "
                                "its own", path=path)
        seen[key(path)] = name
