"""The run-directory lock: RUN/.tunesmith.lock, held by the one process that writes RUN.

The lock itself is an exclusive `fcntl.flock` on that file, taken without waiting: the kernel releases it
when its holder ends in any way (kill -9 and power loss included), so a second run into RUN is refused
while the first lives and never afterwards. The file's text, {"pid", "host", "started"}, only names the
holder for the refusal message (and, in a multi-process run, where only the main process locks RUN, how
many processes it leads). A lock file that no live process holds was left by a run that was killed:
it is reported in one note and taken over. On every exit of the holder (success, error, SIGINT/SIGTERM
checkpoint exit) the file is removed, then the lock released.

(flock works on local file systems and on NFS, where Linux maps it to a POSIX byte-range lock.)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable

from tunesmith.artifacts import os_reason
from tunesmith.errors import RunError
from tunesmith.train.distributed import world_size

LOCK_NAME = ".tunesmith.lock"
_ATTEMPTS = 5  # a holder removing its file between our open and our flock makes us open again


class RunLock:
    """`with RunLock(directory):` hold RUN/.tunesmith.lock; RunError (one line, naming the holder) if held."""

    def __init__(self, directory: str | Path, echo: Callable[[str], None] = print):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.echo = echo
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        for _ in range(_ATTEMPTS):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = describe(read_holder(self.path))
                raise RunError(f"{self.directory} is in use by another tunesmith run ({holder}); "
                               f"wait for it to finish, or choose another --output") from None
            except OSError as exc:
                os.close(fd)
                raise RunError(f"cannot lock {self.path} ({os_reason(exc)})") from None
            if not _is_current(fd, self.path):  # its holder removed it after our open: lock the new one
                os.close(fd)
                continue
            left = _read_fd(fd)
            if left:
                self.echo(f"note: {self.path} was left by a run that is no longer running ({describe(left)}): "
                          f"taking it over")
            try:
                holder = {"pid": os.getpid(), "host": socket.gethostname(),
                          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                if world_size() > 1:  # the main process of a multi-process run (only it locks RUN)
                    holder["processes"] = world_size()
                _write_fd(fd, holder)
            except OSError as exc:
                os.close(fd)
                raise RunError(f"cannot lock {self.path} ({os_reason(exc)})") from None
            self._fd = fd
            return
        raise RunError(f"cannot lock {self.path} (other processes keep replacing it)")

    def release(self) -> None:
        """Remove the lock file, then let the lock go (in this order: nobody can lock a file about to vanish)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if _is_current(self._fd, self.path):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunError(f"cannot lock {self.path} ({os_reason(exc)})") from None


def read_holder(path: Path) -> dict:
    """What the lock file says about its holder ({} when unreadable or still empty)."""
    try:
        return _parse(path.read_bytes())
    except OSError:
        return {}


def describe(holder: dict) -> str:
    if not holder.get("pid"):
        return "a process that is just starting"
    since = f", since {holder['started']}" if holder.get("started") else ""
    ranks = f", main of {holder['processes']} processes" if holder.get("processes") else ""
    return f"pid {holder['pid']} on {holder.get('host', 'an unknown host')}{ranks}{since}"


def _is_current(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except OSError:
        return False


def _read_fd(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return _parse(b"".join(chunks))


def _write_fd(fd: int, holder: dict) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(holder) + "\n").encode())
    os.fsync(fd)


def _parse(data: bytes) -> dict:
    try:
        holder = json.loads(data) if data.strip() else {}
    except (ValueError, UnicodeDecodeError):
        return {"pid": "unknown"}  # not ours to read: still a lock file someone left
    return holder if isinstance(holder, dict) else {"pid": "unknown"}
