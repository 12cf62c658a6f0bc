"""A prepared data directory (what `mmt prepare` writes), read in one place.

Layout: `notes/<id>.npy` (N x 5 int: beat, position, pitch, duration, program; program
128 marks drums), `meters/<id>.json` (time signatures and tempos, `mmt.meter.Meter`),
one id list per split (`train.txt`, `valid.txt`, `test.txt`) and `encoding.json` (the encoding whose resolution the notes use). Training, evaluation and
the demo all read it through `PreparedData`, which names the file and the reason when
something is missing or malformed.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import numpy as np

from mmt.encoding import Encoding, decode, encode_notes
from mmt.errors import MMTError
from mmt.meter import Meter, load_piece_meter

SPLITS = ("train", "valid", "test")
ENCODING_FILE = "encoding.json"


class DataError(MMTError, ValueError):
    """A prepared directory, split list or notes file is missing or malformed."""


class PreparedData:
    """The pieces of a prepared directory.

    Args:
        root: the directory `mmt prepare` wrote.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: no such prepared data directory (run `mmt prepare`)")

    @property
    def encoding_path(self) -> Path:
        return self.root / ENCODING_FILE

    @cached_property
    def encoding(self) -> Encoding:
        """The encoding the notes were prepared with (`encoding.json`)."""
        if not self.encoding_path.is_file():
            raise DataError(f"{self.encoding_path}: no such file (is {self.root} a prepared data directory?)")
        return Encoding.load(self.encoding_path)

    def split(self, name: str) -> list[str]:
        """Piece ids of split `name` (`<root>/<name>.txt`, one per line), in file order."""
        if not name or Path(name).name != name:
            raise DataError(f"a split is named by its list file's stem (e.g. {', '.join(SPLITS)}), got {name!r}")
        path = self.root / f"{name}.txt"
        if not path.is_file():
            raise DataError(f"{path}: no such split file (run `mmt prepare`)")
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def notes(self, piece_id: str) -> np.ndarray:
        """The stored notes of a piece (N x 5 int64); a missing or malformed file raises naming it."""
        path = self.root / "notes" / f"{piece_id}.npy"
        try:
            notes = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise DataError(f"{path}: no such notes file") from None
        except (OSError, ValueError) as error:
            raise DataError(f"{path}: cannot read ({error})") from error
        if notes.ndim != 2 or notes.shape[1] != 5 or not np.issubdtype(notes.dtype, np.integer):
            raise DataError(f"{path}: expected an integer (N x 5) notes array, got {notes.dtype} {notes.shape}")
        return notes.astype(np.int64, copy=False)

    def codes(self, piece_id: str) -> np.ndarray:
        """A piece's rows under the directory's encoding."""
        return encode_notes(self.notes(piece_id), self.encoding)

    def meter(self, piece_id: str) -> Meter | None:
        """A piece's time signatures and tempos (`meters/<id>.json`); None for a directory prepared
        before meters were kept."""
        return load_piece_meter(self.root, piece_id)

    def music(self, piece_id: str):
        """A piece as `muspy.Music` with its meter, through the directory's encoding (as a model sees it)."""
        return decode(self.codes(piece_id), self.encoding, meter=self.meter(piece_id))
