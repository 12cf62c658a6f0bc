"""The corpus bundled with music21 (MusicXML, mxl, kern, abc): the library's default dataset.

SRC `-` means the installed corpus (`music21.corpus.getPaths()`, read offline); a folder
holding a copy of it works too. Sources are the corpus files, relative to the corpus
root (e.g. "bach/bwv66.6.mxl"). Roman-numeral analyses (`.rntxt`) are chord analyses,
not music, and are recorded as skipped. A file holding several pieces (86 abc files of
the bundled corpus hold 12,978 tunes) contributes its first piece.

The dataset `music21-tunes` (`list_sources(src, every_tune=True)`) lists every tune of
those files instead: 15,026 sources for the bundled corpus. A file's first tune keeps
the file's path as its source; tune k > 1 is "<path>#k" (e.g.
"essenFolksong/altdeu10.abc#2"). The default `music21` listing is the one the bundled
model was trained and the demo runs on.

Split: 80/10/10 from a hash of the source (each tune on its own).
"""

from __future__ import annotations

import os
from pathlib import Path

from mmt.data_prep.sources import SUFFIXES, Source, check_root, hash_split, make_unique, path_id, relative, walk
from mmt.io import abc_tune_count

NAME = "music21"
ANALYSIS_SUFFIXES = (".rntxt",)
BUNDLED = "-"


def corpus_root() -> Path:
    """The folder of music21's bundled corpus."""
    import music21

    return Path(music21.common.getCorpusFilePath())


def list_sources(src: str | os.PathLike, every_tune: bool = False) -> list[Source]:
    """The corpus files at `src` (`-`: the bundled corpus); with `every_tune`, every tune of its abc files."""
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
        if every_tune and path.suffix.lower() == ".abc":
            for piece in range(1, _tune_count(path)):
                tune = f"{rel}#{piece + 1}"
                sources.append(Source(tune, path, path_id(tune), hash_split(tune), piece=piece))
    return make_unique(sorted(sources, key=lambda s: s.rel))


def _tune_count(path: Path) -> int:
    try:
        return abc_tune_count(path)
    except OSError:  # unreadable: its first piece is listed, and fails with the reason when read
        return 1
