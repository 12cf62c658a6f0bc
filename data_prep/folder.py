"""Any folder of MIDI, MusicXML (.xml, .musicxml, .mxl), kern or abc files, searched recursively.

Ids come from the relative path ("a/b.mid" -> "a__b.mid"); the split is 80/10/10 from a
hash of the relative path.
"""

from __future__ import annotations

import os

from mmt.data_prep.sources import Source, check_root, folder_sources

NAME = "folder"


def list_sources(src: str | os.PathLike) -> list[Source]:
    return folder_sources(check_root(src))
