"""Exclusive locks on a lock file, for commands that must not write one folder twice at once.

The lock is the kernel's `flock`, so it goes with its holder: a process killed by
SIGKILL holds nothing. Two things could still keep a dead holder's lock alive, and both
are handled here:

- forked children share the parent's open lock file: a worker orphaned by a `kill -9`
  of its parent would go on holding the lock. Every lock this process holds is let go
  in a forked child, at the fork (`os.register_at_fork`).
- a process that got the lock file some other way (an orphan of an older mmt) keeps it
  locked after the holder died. The holder's process id and host are written into the
  lock file; a lock whose recorded holder is a process of this host that no longer
  exists is taken over, and `log` says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

_HELD: set[int] = set()  # descriptors of the locks this process holds


def _let_go_in_child() -> None:
    """In a forked child: point every held lock's descriptor at /dev/null (not close: a
    Python object may close the number later), so the child shares no lock."""
    if not _HELD:
        return
    null = os.open(os.devnull, os.O_RDONLY)
    for fd in _HELD:
        os.dup2(null, fd)
    os.close(null)
    _HELD.clear()


os.register_at_fork(after_in_child=_let_go_in_child)


@dataclass(frozen=True)
class Owner:
    """The process that recorded itself in a lock file."""

    pid: int
    host: str

    def __str__(self) -> str:
        return f"process {self.pid} on {self.host}"

    @property
    def gone(self) -> bool:
        """Whether this is a process of this host that no longer exists."""
        if self.host != socket.gethostname():
            return False  # cannot tell: assume it runs
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # exists, another user's
        return False


class LockHeld(RuntimeError):
    """The lock is held by a live process (`owner`, None when it has not recorded itself yet)."""

    def __init__(self, path: Path, owner: Owner | None) -> None:
        super().__init__(f"{path}: locked by {owner or 'another process'}")
        self.path, self.owner = path, owner


def _read_owner(fd: int) -> Owner | None:
    try:
        pid, host = os.pread(fd, 512, 0).decode("utf-8").split()
        return Owner(int(pid), host)
    except (ValueError, UnicodeDecodeError):
        return None  # empty (the holder is between its lock and its write) or not ours


def _write_owner(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode("utf-8"), 0)


@contextlib.contextmanager
def _folder_locked(folder: Path) -> Iterator[None]:
    """Hold a lock on `folder` itself while a lock file in it is taken or taken over.

    Without it, a process could read the record of the previous (dead) holder while a new
    holder sits between its lock and writing its own record, and take over a live lock.
    """
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _acquire(path: Path, log: Callable[[str], None] | None) -> int:
    """A descriptor of `path` holding its lock, its holder recorded (see `exclusive_lock`)."""
    with _folder_locked(path.parent):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            if owner is None or not owner.gone:
                raise LockHeld(path, owner) from None
            path.unlink()  # whoever still holds the old file keeps it; every later process locks a new one
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if log:
                log(f"{path}: took over the lock of {owner}, which is gone")
        _write_owner(fd)
        return fd


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (created if missing) for the block.

    Args:
        path: the lock file.
        log: where to say that a stale lock (its recorded holder gone) was taken over.

    Raises:
        LockHeld: another live process holds it.
    """
    fd = _acquire(Path(path), log)
    _HELD.add(fd)
    try:
        yield
    finally:
        _HELD.discard(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, command: str, error: type[Exception],
                log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold `<folder>/.lock` while `command` writes the folder; a second writer gets `error`
    naming the folder and, when known, the holder."""
    try:
        with exclusive_lock(Path(folder) / ".lock", log):
            yield
    except LockHeld as held:
        holder = f" ({held.owner})" if held.owner else ""
        raise error(f"{folder}: another `{command}` is writing this folder{holder}") from None
