"""mmt: multitrack symbolic music generation and analysis with token tuples."""

from __future__ import annotations

from mmt.config import ModelConfig, SamplingParams
from mmt.constants import FIELDS, Field, NoteCol, RowType
from mmt.encoding import Encoding, EncodingError, decode, encode, encode_notes, notes_from_music
from mmt.errors import GenerationError, MMTError
from mmt.io import (
    MusicReadError,
    read_music,
    write_csv,
    write_midi,
    write_musicxml,
    write_pianoroll_png,
    write_wav,
)
from mmt.meter import Meter
from mmt.request import GenerationRequest, generate

__version__ = "0.1.0"

# The torch-backed parts load on first use, so the encoding and io stay torch-free.
_LAZY = {
    "MusicTransformer": "mmt.model",
    "load_model": "mmt.checkpoint",
    "save_model": "mmt.checkpoint",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmt' has no attribute {name!r}")


__all__ = [
    "FIELDS", "Field", "NoteCol", "RowType", "ModelConfig", "SamplingParams", "MMTError", "GenerationError",
    "Encoding", "EncodingError", "encode", "encode_notes", "decode", "notes_from_music", "MusicReadError",
    "read_music", "write_csv", "write_midi", "write_musicxml", "write_pianoroll_png", "write_wav", "Meter",
    "GenerationRequest", "generate", *_LAZY,
]
