"""The music21 corpus with every tune of its multi-tune abc files (see `music21_corpus`)."""

from __future__ import annotations

import os

from mmt.data_prep import music21_corpus
from mmt.data_prep.sources import Source

NAME = "music21-tunes"


def list_sources(src: str | os.PathLike) -> list[Source]:
    return music21_corpus.list_sources(src, every_tune=True)
