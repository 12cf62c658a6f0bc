"""Folder locks: refused while the holder lives, free when it dies, never held by its forked children."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mmt.locks import LockHeld, exclusive_lock

REPO = Path(__file__).resolve().parents[1]
HOST = socket.gethostname()

# Takes the lock, forks a child that lives on, prints the child's id and waits to be killed.
HOLD_AND_FORK = """
import os, sys, time
from mmt.locks import exclusive_lock
with exclusive_lock(sys.argv[1]):
    child = os.fork()
    if child == 0:
        time.sleep(600)
        os._exit(0)
    print(child, flush=True)
    time.sleep(600)
"""


def dead_pid() -> int:
    """The id of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_live_holder_is_named_and_the_lock_is_free_after_the_block(tmp_path):
    path = tmp_path / ".lock"
    with exclusive_lock(path):
        assert path.read_text() == f"{os.getpid()} {HOST}\n"
        with pytest.raises(LockHeld, match=f"^{path}: locked by process {os.getpid()} on {HOST}$"):
            with exclusive_lock(path):
                pass
    with exclusive_lock(path):
        pass


def test_a_lock_whose_recorded_holder_is_gone_is_taken_over_saying_so(tmp_path):
    path, pid = tmp_path / ".lock", dead_pid()
    path.write_text(f"{pid} {HOST}\n")
    with open(path) as orphan:  # an orphan of the dead holder still holds the file's lock
        fcntl.flock(orphan, fcntl.LOCK_EX | fcntl.LOCK_NB)
        messages = []
        with exclusive_lock(path, log=messages.append):
            assert messages == [f"{path}: took over the lock of process {pid} on {HOST}, which is gone"]
            assert path.read_text() == f"{os.getpid()} {HOST}\n"


@pytest.mark.parametrize("record, holder", [
    ("1 some-other-host\n", "process 1 on some-other-host"),  # cannot tell whether it runs: not taken
    ("", "another process"),  # the holder is between its lock and writing its id
])
def test_a_holder_that_may_be_alive_is_not_taken_over(tmp_path, record, holder):
    path = tmp_path / ".lock"
    path.write_text(record)
    with open(path) as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(LockHeld, match=f"^{path}: locked by {holder}$"):
            with exclusive_lock(path):
                pass


def test_a_forked_child_does_not_keep_a_killed_holders_lock(tmp_path):
    path = tmp_path / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_AND_FORK, str(path)], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    child = int(holder.stdout.readline())
    try:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        messages = []
        with exclusive_lock(path, log=messages.append):
            assert messages == []  # free at once: not taken over from the child
    finally:
        os.kill(child, signal.SIGKILL)
        holder.stdout.close()
