"""Pop1K7 (Hsiao et al., Compound Word Transformer): 1,747 pop piano covers as MIDI.

The release has three versions of the MIDI files, in folders `midi_analyzed/`,
`midi_synchronized/` and `midi_transcribed/` (each `src_XXX/<n>.mid`). Only one version
is read: `midi_analyzed` when present (beat-synchronized, with analysis markers), else
`midi_synchronized`, else `midi_transcribed` (not beat-aligned). SRC may be the
Pop1K7 folder or any folder above it; the version folder is found by name.
Ids and the 80/10/10 split come from the path inside the version folder, so they do
not depend on which version was read.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmt.data_prep.sources import MIDI_SUFFIXES, Source, check_root, hash_split, make_unique, path_id, relative, walk

NAME = "pop1k7"
VERSIONS = ("midi_analyzed", "midi_synchronized", "midi_transcribed")


def find_version(root: Path) -> Path:
    """The preferred version folder under `root` (or `root` itself when it is one)."""
    for version in VERSIONS:
        if root.name == version:
            return root
        found = sorted(p for p in root.rglob(version) if p.is_dir())
        if found:
            return found[0]
    raise FileNotFoundError(f"{root}: no {', '.join(VERSIONS)} folder (is this the Pop1K7 release?)")


def list_sources(src: str | os.PathLike) -> list[Source]:
    root = check_root(src)
    folder = find_version(root)
    sources = []
    for path in walk(folder, MIDI_SUFFIXES):
        inner = relative(path, folder)
        sources.append(Source(relative(path, root), path, path_id(inner), hash_split(inner)))
    return make_unique(sources)
