"""Atomic file writes (a temp file in the same folder, then a rename; figures as PNG too), JSON files read
with clear errors, and a file's SHA-256."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as hex (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_mode(directory: bool = False) -> int:
    """Permissions of a newly created file (0o666 & ~umask) or folder (0o777 & ~umask).

    What a plain `open(path, "w")` or `mkdir` gives; temp files and folders start at 0o600 / 0o700.
    """
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.

    A crash or an exception inside the block leaves `path` as it was before. The file gets
    the permissions a plain `open(path, "w")` would give (the temp file's are 0o600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, default_mode())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_atomic(path: str | os.PathLike, writer: Callable[[Path], object]) -> Path:
    """Call `writer(tmp_path)` and move the result onto `path` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write a matplotlib figure to `path` as PNG atomically, then close it (closed on failure too)."""
    import matplotlib.pyplot as plt

    try:
        return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


def replace_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically through `.<name>.tmp` beside it, then a rename.

    Cheaper than `write_atomic` (a fixed temp name, no chmod: the file gets the permissions
    of a plain open), for a writer no other process races on `path` (one holding a lock on
    its folder). A crash leaves `path` as it was, and maybe the temp file.
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically (UTF-8)."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json(path: str | os.PathLike, error: type[Exception], what: str):
    """The parsed JSON of a file; a missing or unparsable one raises `error` naming the file.

    `what` names the kind of file in the message ("no such encoding file").
    """
    import json

    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: no such {what} file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as cause:
        raise error(f"{path}: not valid JSON ({cause})") from cause
