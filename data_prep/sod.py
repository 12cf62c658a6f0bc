"""The Symbolic Orchestral Database (Crestel et al.), as extracted from SOD.zip.

Nested folders of `.mid` and `.xml` (MusicXML) files; other files (the `.csv`
instrumentation tables, text) are ignored. Where a folder holds both `<name>.mid` and a
MusicXML `<name>.xml`/`.mxl`/`.musicxml`, the MusicXML is read (it keeps exact note
values and the part names) and the MIDI is recorded as skipped ("duplicate of ...").
Split: 80/10/10 from a hash of the relative path.
"""

from __future__ import annotations

import os

from mmt.data_prep.sources import Source, check_root, folder_sources
from mmt.io import MIDI_SUFFIXES, MUSICXML_SUFFIXES

NAME = "sod"


def list_sources(src: str | os.PathLike) -> list[Source]:
    sources = folder_sources(check_root(src), MIDI_SUFFIXES + MUSICXML_SUFFIXES)
    scores = {}
    for source in sources:
        if source.path.suffix.lower() in MUSICXML_SUFFIXES:
            scores.setdefault(source.rel.rsplit(".", 1)[0], source.rel)
    out = []
    for source in sources:
        score = scores.get(source.rel.rsplit(".", 1)[0])
        if source.path.suffix.lower() in MIDI_SUFFIXES and score is not None:
            source = Source(source.rel, source.path, source.id, source.split, f"duplicate of {score}")
        out.append(source)
    return out
