"""Field names, row types, the program -> instrument table and the known durations.

The instrument grouping and the duration table follow the original Multitrack Music
Transformer (Dong et al., ICASSP 2023); `drums` is added as an instrument of its own
(the original dropped drum tracks).
"""

from __future__ import annotations

from enum import IntEnum

FIELDS: tuple[str, ...] = ("type", "beat", "position", "pitch", "duration", "instrument")


class Field(IntEnum):
    """Column index of each field in a code array (L x 6)."""

    TYPE = 0
    BEAT = 1
    POSITION = 2
    PITCH = 3
    DURATION = 4
    INSTRUMENT = 5


ROW_ORDER: tuple[Field, ...] = (Field.TYPE, Field.BEAT, Field.POSITION, Field.INSTRUMENT, Field.PITCH, Field.DURATION)
"""The order the sampler draws a row's fields in (the instrument before the pitch, so that the
pitch can keep to the instrument's range); a row-conditioned model's head for a field reads the
fields before it here (`mmt.model.MusicTransformer`)."""

NOTE_COLUMNS: tuple[str, ...] = ("beat", "position", "pitch", "duration", "program")

PITCH_SHIFT: tuple[int, int] = (-5, 6)
"""The semitones a training item's pitches move by, one shift drawn from low..high (`Augmentation.pitch_shift`)."""

REMAP_SPLITS: tuple[str, ...] = ("random", "voices")
"""How the training augmentation splits a relabelled item's chordal part (`mmt.augment.remap_instruments`)."""

TAKEOVER_SHARE: tuple[float, float] = (0.2, 0.6)
"""The share of an item's note rows that a simulated take-over covers, drawn uniformly between
these (`mmt.augment.takeover_inputs`; `Augmentation.takeover_share`)."""


class NoteCol(IntEnum):
    """Column index of each field in a notes array (N x 5) as data prep stores it."""

    BEAT = 0
    POSITION = 1
    PITCH = 2
    DURATION = 3
    PROGRAM = 4


class RowType(IntEnum):
    """Type codes; 0 is reserved for "undefined" (padding), as in every field."""

    UNDEFINED = 0
    START_OF_SONG = 1
    INSTRUMENT = 2
    START_OF_NOTES = 3
    NOTE = 4
    END_OF_SONG = 5
    CONTROL = 6  # a given note (accompaniment, infill); only in encodings with `anticipation` set


TYPE_NAMES: tuple[str, ...] = (
    "undefined",
    "start-of-song",
    "instrument",
    "start-of-notes",
    "note",
    "end-of-song",
    "control",
)

# A notes array marks drum notes with this pseudo-program (GM programs are 0..127).
DRUM_PROGRAM = 128
DRUMS = "drums"

KNOWN_DURATIONS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    15, 16, 18, 20, 21, 24, 30, 36, 40, 42, 48, 60, 72, 84, 96, 120, 144, 168, 192, 384,
)

_GROUPS: tuple[tuple[str | None, int], ...] = (
    # (instrument name or None for "not modelled", number of consecutive programs)
    ("piano", 4), ("electric-piano", 2), ("harpsichord", 1), ("clavinet", 1),
    ("celesta", 1), ("glockenspiel", 1), ("music-box", 1), ("vibraphone", 1),
    ("marimba", 1), ("xylophone", 1), ("tubular-bells", 1), ("dulcimer", 1),
    ("organ", 3), ("church-organ", 1), ("organ", 1), ("accordion", 1),
    ("harmonica", 1), ("bandoneon", 1),
    ("nylon-string-guitar", 1), ("steel-string-guitar", 1), ("electric-guitar", 6),
    ("bass", 1), ("electric-bass", 3), ("slap-bass", 2), ("synth-bass", 2),
    ("violin", 1), ("viola", 1), ("cello", 1), ("contrabass", 1), ("strings", 2),
    ("harp", 1), ("timpani", 1),
    ("strings", 2), ("synth-strings", 2), ("voices", 3), ("orchestra-hit", 1),
    ("trumpet", 1), ("trombone", 1), ("tuba", 1), ("trumpet", 1), ("horn", 1),
    ("brasses", 1), ("synth-brasses", 2),
    ("soprano-saxophone", 1), ("alto-saxophone", 1), ("tenor-saxophone", 1),
    ("baritone-saxophone", 1), ("oboe", 1), ("english-horn", 1), ("bassoon", 1),
    ("clarinet", 1),
    ("piccolo", 1), ("flute", 1), ("recorder", 1), ("pan-flute", 1), (None, 3),
    ("ocarina", 1),
    ("lead", 8), ("pad", 8), (None, 8),
    ("sitar", 1), ("banjo", 1), ("shamisen", 1), ("koto", 1), ("kalimba", 1),
    ("bag-pipe", 1), ("violin", 1), ("shehnai", 1),  # 110 is the fiddle
    (None, 5), ("melodic-tom", 1), ("synth-drums", 2), (None, 8),
)

PROGRAM_INSTRUMENT: tuple[str | None, ...] = tuple(
    name for name, count in _GROUPS for _ in range(count)
)
"""GM program (0..127) -> instrument name; None for programs the model does not use."""

# The program a decoded instrument plays: its first program, except where a later one
# is the usual sound of the group (string ensemble rather than tremolo strings).
INSTRUMENT_PROGRAM: dict[str, int] = {}
for _program, _name in enumerate(PROGRAM_INSTRUMENT):
    if _name is not None:
        INSTRUMENT_PROGRAM.setdefault(_name, _program)
INSTRUMENT_PROGRAM["strings"] = 48
INSTRUMENT_PROGRAM[DRUMS] = 0

INSTRUMENTS: tuple[str, ...] = tuple(INSTRUMENT_PROGRAM)
"""The 64 instrument names of the original MMT, then `drums`."""

INSTRUMENT_REGISTERS: dict[str, tuple[int, int]] = {
    "piano": (21, 108), "harpsichord": (29, 89), "organ": (36, 96), "church-organ": (24, 96),
    "nylon-string-guitar": (40, 83), "steel-string-guitar": (40, 86), "harp": (24, 103),
    "violin": (55, 105), "viola": (48, 88), "cello": (36, 81), "contrabass": (28, 67), "strings": (28, 103),
    "voices": (40, 84), "piccolo": (74, 108), "flute": (60, 96), "recorder": (72, 98), "oboe": (58, 91),
    "english-horn": (52, 81), "clarinet": (50, 94), "bassoon": (34, 75), "soprano-saxophone": (56, 87),
    "alto-saxophone": (49, 80), "tenor-saxophone": (44, 75), "baritone-saxophone": (36, 68),
    "horn": (34, 77), "trumpet": (54, 84), "trombone": (40, 72), "tuba": (28, 62), "brasses": (28, 84),
    "bass": (28, 67),
}
"""The sounding range (lowest, highest MIDI pitch) of the instruments a user is likely to ask
for, as orchestration tables give them (e.g. violin G3-A7, viola C3-E6, cello C2-A5, flute C4-C7,
B-flat clarinet D3-B-flat6 sounding, tuba E1-D4, voices: a bass's E2 to a soprano's C6). Used by
the training augmentation that relabels parts as other instruments (`mmt.augment.remap_instruments`)
and by the sampler's range constraint (`mmt.constraints.PartConstraints.ranges`)."""

REMAP_ENSEMBLES: dict[str, tuple[str, ...]] = {
    "string quartet": ("violin", "viola", "cello", "contrabass"),
    "piano and strings": ("piano", "violin", "viola", "cello"),
    "wind quintet": ("flute", "oboe", "clarinet", "bassoon", "horn"),
    "brass": ("trumpet", "horn", "trombone", "tuba"),
    "saxophones": ("soprano-saxophone", "alto-saxophone", "tenor-saxophone", "baritone-saxophone"),
    "voices and keyboard": ("voices", "piano", "organ"),
    "band": ("steel-string-guitar", "piano", "bass"),
}
"""Ensembles that chamber and band music is written for. The relabelling augmentation draws an
item's instruments from one of them (`Augmentation.remap_ensemble`). Drawn from every instrument
of `INSTRUMENT_REGISTERS`, 3,000 items drawn as the bundled model's training mix draws them
held three or more of flute, oboe, clarinet and bassoon 5 times and all four never: a model
asked for those four had not seen them together. With `remap_ensemble` 0.5: 49 and 5 times,
and 846 items (not 106) whose two or more instruments all belong to one of these ensembles."""

INSTRUMENT_ALIASES: dict[str, str] = {
    "acoustic-guitar": "steel-string-guitar", "guitar": "steel-string-guitar",
    "classical-guitar": "nylon-string-guitar", "spanish-guitar": "nylon-string-guitar",
    "grand-piano": "piano", "keyboard": "piano", "keys": "piano",
    "fiddle": "violin", "violoncello": "cello", "double-bass": "contrabass", "upright-bass": "contrabass",
    "string-ensemble": "strings", "string-orchestra": "strings",
    "voice": "voices", "vocals": "voices", "choir": "voices", "singer": "voices",
    "french-horn": "horn", "horns": "horn", "brass": "brasses", "cor-anglais": "english-horn",
    "sax": "alto-saxophone", "saxophone": "alto-saxophone",
    "bagpipe": "bag-pipe", "bagpipes": "bag-pipe",
    "drum": "drums", "drum-kit": "drums", "drumkit": "drums", "percussion": "drums",
}
"""Other names users give instruments -> the instrument they mean (names are matched
case-insensitively, with spaces or underscores read as hyphens)."""

PITCH_NAMES: tuple[str, ...] = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def pitch_name(pitch: int) -> str:
    """Scientific pitch name of a MIDI pitch, e.g. 60 -> "C4"."""
    return f"{PITCH_NAMES[pitch % 12]}{pitch // 12 - 1}"
