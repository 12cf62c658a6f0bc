"""What every dataset reader returns: a sorted list of `Source`s, and the helpers to build it.

A reader only lists files; reading, cleaning, filtering and writing happen once, in
`mmt.data_prep.pipeline`, for every dataset alike.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from mmt.data_prep.filters import PrepareError
from mmt.prepared import SPLITS  # the one definition of the split names
from mmt.io import MIDI_SUFFIXES, SUFFIXES


@dataclass(frozen=True)
class Source:
    """One source file of a dataset.

    Attributes:
        rel: its path relative to the dataset root, with "/" separators (the manifest's `source`).
        path: where to read it.
        id: the name of its notes file (`notes/<id>.npy`); unique among a listing's ok files.
        split: "train", "valid" or "test".
        skip: a reason to record it as skipped without reading it (a duplicate, not music), or "".
        piece: which piece of a file holding several (0-based; abc tunes), as `read_music` takes it.
    """

    rel: str
    path: Path
    id: str
    split: str
    skip: str = ""
    piece: int = 0


def path_bytes(text: str) -> bytes:
    """A path as the bytes the file system holds, also for names that are not UTF-8.

    `os` decodes such names with lone surrogates ("\\udcff" for the byte 0xff), which
    plain UTF-8 refuses to encode; "surrogateescape" gives the original bytes back.
    """
    return text.encode("utf-8", "surrogateescape")


def digest(text: str, salt: str = "") -> int:
    """A stable integer hash of `text` (SHA-256; Python's `hash` changes between runs)."""
    return int(hashlib.sha256(path_bytes(salt + text)).hexdigest()[:16], 16)


def hash_split(rel: str) -> str:
    """80/10/10 split from the SHA-256 of the relative path: deterministic, stable when files are added."""
    bucket = digest(rel, "split:") % 10
    return "train" if bucket < 8 else "valid" if bucket == 8 else "test"


def shard_of(rel: str, n_shards: int) -> int:
    """The shard (0-based) that prepares `rel` when a run is split `n_shards` ways."""
    return digest(rel, "shard:") % n_shards


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def path_id(rel: str) -> str:
    """A readable file-name-safe id from a relative path: "bach/bwv66.6.mxl" -> "bach__bwv66.6.mxl".

    Characters other than letters, digits, ".", "_" and "-" become "_"; ids longer than
    100 characters are cut and end with a hash of the path so they stay distinct.
    """
    slug = "__".join(_UNSAFE.sub("_", part) for part in rel.split("/")).lstrip(".") or "_"
    if len(slug) > 100:
        slug = f"{slug[:80]}-{hashlib.sha256(path_bytes(rel)).hexdigest()[:12]}"
    return slug


def relative(path: Path, root: Path) -> str:
    """`path` relative to `root` with "/" separators."""
    text, prefix = os.fspath(path), os.path.join(os.fspath(root), "")
    if text.startswith(prefix) and len(text) > len(prefix):  # a walked path: plain string work (listing Lakh)
        rest = text[len(prefix):]
        return rest if os.sep == "/" else rest.replace(os.sep, "/")
    return Path(path).relative_to(root).as_posix()


def walk(root: Path, suffixes: tuple[str, ...] = SUFFIXES) -> list[Path]:
    """Files under `root` whose suffix (any case) is in `suffixes`, sorted; hidden files and folders skipped.

    A folder under `root` that cannot be listed (no permission) is in the list itself, so
    that preparation records it as failed with the reason rather than silently leaving
    its files out. Files that are not regular files (FIFOs, devices) are listed too and
    recorded as failed by preparation.

    Raises:
        PrepareError: when `root` itself cannot be listed.
    """
    found, unlisted = [], []

    def on_error(error: OSError) -> None:
        if Path(error.filename) == Path(root):
            raise PrepareError(f"{root}: cannot list the dataset folder ({error.strerror or error})")
        unlisted.append(Path(error.filename))

    for folder, dirs, files in os.walk(root, onerror=on_error):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        base = Path(folder)  # one parse per folder: `base / name` parses only the name (listing Lakh)
        found.extend(base / name for name in files
                     if not name.startswith(".") and os.path.splitext(name)[1].lower() in suffixes)
    return sorted(found + unlisted, key=lambda p: relative(p, root))


def check_root(src: str | os.PathLike) -> Path:
    """The dataset folder `src`; a missing one raises FileNotFoundError naming it."""
    root = Path(src)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such dataset folder")
    return root


def make_unique(sources: list[Source]) -> list[Source]:
    """Give sources whose ids clash (among those not skipped) ids that end with a path hash."""
    counts: dict[str, int] = {}
    for source in sources:
        if not source.skip:
            counts[source.id] = counts.get(source.id, 0) + 1
    out = []
    for source in sources:
        if not source.skip and counts[source.id] > 1:
            suffix = hashlib.sha256(path_bytes(source.rel)).hexdigest()[:12]
            source = dataclasses.replace(source, id=f"{source.id[:80]}-{suffix}")
        out.append(source)
    return out


def folder_sources(root: Path, suffixes: tuple[str, ...] = SUFFIXES) -> list[Source]:
    """Every music file under `root`, ids from paths, 80/10/10 hash split (the `folder` dataset)."""
    sources = []
    for path in walk(root, suffixes):
        rel = relative(path, root)
        sources.append(Source(rel, path, path_id(rel), hash_split(rel)))
    return make_unique(sources)


__all__ = [
    "MIDI_SUFFIXES", "SPLITS", "Source", "check_root", "digest", "folder_sources", "hash_split", "path_bytes",
    "make_unique", "path_id", "relative", "shard_of", "walk",
]
