"""Lakh MIDI (LMD-full or LMD-matched): `*.mid` files named by their MD5, in nested folders.

Layouts: `lmd_full/<first hex digit>/<md5>.mid` and
`lmd_matched/<A>/<B>/<C>/<MSD track id>/<md5>.mid` (one MIDI file may be matched to
several tracks, so the same MD5 appears in several folders).

The id of a file is its MD5 (from the name when the name is one, else computed from the
content). The split follows the Anticipatory Music Transformer (Thickstun et al., 2023):
by the first hex digit of the MD5, 0-d train, e valid, f test. A second file with an MD5
already listed is recorded as skipped ("duplicate of ...").
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from mmt.data_prep.sources import MIDI_SUFFIXES, Source, check_root, path_bytes, relative, walk

NAME = "lmd"
_MD5 = re.compile(r"^[0-9a-f]{32}$")


def md5_split(md5: str) -> str:
    """Lakh split rule: first hex digit 0-d -> train, e -> valid, f -> test."""
    first = md5[0].lower()
    if first not in "0123456789abcdef":
        raise ValueError(f"not an MD5 hex digest: {md5!r}")
    return "valid" if first == "e" else "test" if first == "f" else "train"


def file_md5(path: Path) -> str:
    """MD5 of the file's name when it is one, else of its content.

    A path that cannot be read (a FIFO or a device, which would block or never end, a
    folder that could not be listed, a file without read permission) gets the MD5 of the
    path instead; preparation records it as failed with the reason.
    """
    stem = path.stem.lower()
    if _MD5.match(stem):
        return stem
    if path.is_file():
        digest = hashlib.md5()
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            return digest.hexdigest()
        except OSError:
            pass
    return hashlib.md5(path_bytes(str(path))).hexdigest()


def list_sources(src: str | os.PathLike) -> list[Source]:
    root = check_root(src)
    sources, seen = [], {}
    for path in walk(root, MIDI_SUFFIXES):
        rel = relative(path, root)
        md5 = file_md5(path)
        skip = f"duplicate of {seen[md5]}" if md5 in seen else ""
        seen.setdefault(md5, rel)
        sources.append(Source(rel, path, md5, md5_split(md5), skip))
    return sources
