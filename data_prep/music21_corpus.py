"""The corpus bundled with music21 (MusicXML, mxl, kern, abc): the library's default dataset.

SRC `-` means the installed corpus (`music21.corpus.getPaths()`, read offline); a folder
holding a copy of it works too. Sources are the corpus files, relative to the corpus
root (e.g. "bach/bwv66.6.mxl"). Roman-numeral analyses (`.rntxt`) are chord analyses,
not music, and are recorded as skipped. A file holding several pieces (many abc files)
contributes its first piece, as `mmt.read_music` reads it.
Split: 80/10/10 from a hash of the relative path.
"""

from __future__ import annotations

import os
from pathlib import Path

from data_prep.sources import SUFFIXES, Source, check_root, hash_split, make_unique, path_id, relative, walk

NAME = "music21"
ANALYSIS_SUFFIXES = (".rntxt",)
BUNDLED = "-"


def corpus_root() -> Path:
    """The folder of music21's bundled corpus."""
    import music21

    return Path(music21.common.getCorpusFilePath())


def list_sources(src: str | os.PathLike) -> list[Source]:
    if str(src) == BUNDLED:
        import music21

        root = corpus_root()
        paths = sorted(Path(p) for p in music21.corpus.getPaths())
        paths = [p for p in paths if p.suffix.lower() in SUFFIXES + ANALYSIS_SUFFIXES]
    else:
        root = check_root(src)
        paths = walk(root, SUFFIXES + ANALYSIS_SUFFIXES)
    sources = []
    for path in paths:
        try:
            rel = relative(path, root)
        except ValueError:  # a local corpus outside the bundled one
            rel = path.as_posix().lstrip("/")
        skip = "roman-numeral analysis (.rntxt), not music" if path.suffix.lower() in ANALYSIS_SUFFIXES else ""
        sources.append(Source(rel, path, path_id(rel), hash_split(rel), skip))
    return make_unique(sorted(sources, key=lambda s: s.rel))
