"""Constraints that keep written parts sounding like their instruments, and what a sample met.

`PartConstraints` says what the sampler (`mmt.sampling.sample`) holds the model's new notes
to; each constraint can be loosened or switched off:

- `ranges`: each written part keeps to its instrument's usual range, the table
  `mmt.constants.INSTRUMENT_REGISTERS` (e.g. violin G3-A7 55-105, viola C3-E6 48-88, cello
  C2-A5 36-81, contrabass E1-G4 28-67, flute C4-C7 60-96), widened by `range_widen`
  semitones on each side. Instruments the table lacks (drums, leads, pads...) keep only the
  model's own data range. A pitch mask.
- `no_crossing`: in an ensemble, a written part does not go above the part above it in its
  own family (`PART_FAMILIES`: strings, woodwinds, saxophones, brass). Within a family the
  parts are ordered by the middle of their instrument's usual range (`part_order`: cello
  under viola under violin; bassoon under clarinet under oboe under flute); parts of
  different families cross freely (a flute over or under the violins is orchestration, not a
  fault); chordal and ensemble instruments (`FREE_PARTS`: piano, harp, guitars, organs,
  strings, voices, brasses) and instruments without a range take no part. At a new note's
  onset its pitch may not exceed the lowest pitch sounding in the nearest sounding part
  above, nor fall below the highest pitch sounding in the nearest sounding part below (a
  unison is no crossing). Given notes (the prompt's, kept parts) count as
  parts too. A pitch mask; the sampler also prefers, at an onset, the parts that still have
  an allowed pitch there.
- `key`: "TONIC:MODE" (e.g. "D:major", "F#:minor"); out-of-key pitches of the written
  parts (drums aside) get `key_strength` subtracted from their logit (2: about 7 times less
  likely). A minor key holds the natural minor scale and its raised seventh. None: off.
  `mmt.request` defaults it to the source's key signature (or its estimated key).
- `density`: notes per bar the sampler steers each written part towards: at a note's
  instrument draw, a part behind `density` notes per bar since the new music began gets
  `DENSITY_STRENGTH` times its deficit (in notes, at most 4) added to its logit, a part
  ahead the same taken off; and the time steps follow the parts' mean deficit `d`: behind,
  each beat further from the last note's onset costs `d` at the beat and position draws
  (more chords, shorter steps); ahead, moving on from it gains `|d|`. None: off.

A row whose pitch mask the constraints empty falls back to the instrument's usual range
alone, then to the model's range: the note then shows in `measure` as out of range or as a
crossing. `measure` reports, per sample and written part, what was met.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import asdict, dataclass

import numpy as np

from mmt.constants import DRUMS, INSTRUMENT_REGISTERS, PITCH_NAMES, Field, RowType
from mmt.errors import GenerationError

MAX_WIDEN = 48
MAX_KEY_STRENGTH = 20.0
MAX_DENSITY = 64.0
DENSITY_STRENGTH = 2.0

FREE_PARTS: frozenset[str] = frozenset({
    "piano", "harpsichord", "organ", "church-organ", "nylon-string-guitar", "steel-string-guitar", "harp",
    "strings", "voices", "brasses",
})
"""Instruments that span the registers of several parts (two hands, chords, sections): no
place in the no-crossing order."""

PART_FAMILIES: dict[str, tuple[str, ...]] = {
    "strings": ("violin", "viola", "cello", "contrabass"),
    "woodwinds": ("piccolo", "flute", "recorder", "oboe", "english-horn", "clarinet", "bassoon"),
    "saxophones": ("soprano-saxophone", "alto-saxophone", "tenor-saxophone", "baritone-saxophone"),
    "brass": ("trumpet", "horn", "trombone", "tuba"),
    "bass": ("bass",),
}
"""The families within which parts keep their order (`no_crossing`); across families parts cross freely."""
FAMILY_OF: dict[str, str] = {name: family for family, names in PART_FAMILIES.items() for name in names}

MODES = ("major", "minor")
_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10, 11)}
_FLATS = {"DB": 1, "EB": 3, "FB": 4, "GB": 6, "AB": 8, "BB": 10, "CB": 11}


def parse_key(text: str) -> tuple[int, str]:
    """("D:major" | "d minor" | "Bb:minor") -> (tonic pitch class, mode), or a GenerationError."""
    match = re.fullmatch(r"\s*([A-Ga-g])([#b]?)\s*[: ]\s*(major|minor)\s*", str(text), flags=re.IGNORECASE)
    if not match:
        raise GenerationError(f"key must look like C:major or F#:minor (a request also takes \"source\"), got {text!r}",
                              argument="key")
    letter, accidental, mode = match.groups()
    tonic = PITCH_NAMES.index(letter.upper())
    tonic = (tonic + 1) % 12 if accidental == "#" else (tonic - 1) % 12 if accidental == "b" else tonic
    return tonic, mode.lower()


def key_name(tonic: int, mode: str) -> str:
    """(2, "major") -> "D:major"."""
    return f"{PITCH_NAMES[tonic % 12]}:{mode}"


def key_pitch_classes(key: str) -> frozenset[int]:
    """The pitch classes in `key` (a minor key: natural minor and its raised seventh)."""
    tonic, mode = parse_key(key)
    return frozenset((tonic + step) % 12 for step in _SCALES[mode])


# Krumhansl & Kessler (1982) key profiles, tonic first
_PROFILES = {"major": (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88),
             "minor": (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)}


def estimate_key(pitches, durations=None) -> str | None:
    """The key whose Krumhansl-Kessler profile correlates best with the duration-weighted pitch-class
    histogram (the Krumhansl-Schmuckler method); None without pitches."""
    pitches = np.asarray(pitches, dtype=np.int64)
    if len(pitches) == 0:
        return None
    weights = np.ones(len(pitches)) if durations is None else np.asarray(durations, dtype=float)
    histogram = np.bincount(pitches % 12, weights=weights, minlength=12)
    if not histogram.std() > 0:
        return None
    best, name = -math.inf, None
    for mode, profile in _PROFILES.items():
        for tonic in range(12):
            score = np.corrcoef(histogram, np.roll(profile, tonic))[0, 1]
            if score > best:
                best, name = score, key_name(tonic, mode)
    return name


def usual_range(instrument: str, widen: int = 0) -> tuple[int, int] | None:
    """An instrument's usual range (MIDI pitches) widened by `widen` semitones a side; None off the table."""
    if instrument not in INSTRUMENT_REGISTERS:
        return None
    low, high = INSTRUMENT_REGISTERS[instrument]
    return max(low - widen, 0), min(high + widen, 127)


def part_order(instruments) -> dict[str, int]:
    """The instruments that take part in the no-crossing order -> their place, lowest first
    (by the middle of the usual range; equal middles by name). Only places within one family
    (`FAMILY_OF`) are compared."""
    ranked = sorted((sum(INSTRUMENT_REGISTERS[name]) / 2, name) for name in set(instruments)
                    if name in INSTRUMENT_REGISTERS and name in FAMILY_OF)
    return {name: place for place, (_, name) in enumerate(ranked)}


def family_index(name: str) -> int:
    """The index of `name`'s family in `PART_FAMILIES` (-1: none)."""
    family = FAMILY_OF.get(name)
    return -1 if family is None else list(PART_FAMILIES).index(family)


@dataclass(frozen=True)
class PartConstraints:
    """What written parts keep to (see the module docstring); checked when built.

    Attributes:
        ranges: keep each written part to its instrument's usual range (`usual_range`).
        range_widen: semitones the usual ranges are widened by on each side, 0 to `MAX_WIDEN`.
        no_crossing: a written part stays under the part above it and over the part below.
        key: "TONIC:MODE" whose out-of-key pitches are made less likely; None: off.
        key_strength: the logit penalty of an out-of-key pitch, 0 to `MAX_KEY_STRENGTH`.
        density: notes per bar each written part is steered towards; None: off.
    """

    ranges: bool = True
    range_widen: int = 0
    no_crossing: bool = True
    key: str | None = None
    key_strength: float = 2.0
    density: float | None = None

    def __post_init__(self) -> None:
        for name in ("ranges", "no_crossing"):
            if not isinstance(getattr(self, name), bool):
                raise GenerationError(f"{name} must be true or false, got {getattr(self, name)!r}", argument=name)
        widen = self.range_widen
        if not (isinstance(widen, int) and not isinstance(widen, bool) and 0 <= widen <= MAX_WIDEN):
            raise GenerationError(f"range_widen must be an integer from 0 to {MAX_WIDEN} (semitones), got {widen!r}",
                                  argument="range_widen")
        if self.key is not None:
            object.__setattr__(self, "key", key_name(*parse_key(self.key)))
        if not _number_in(self.key_strength, 0, MAX_KEY_STRENGTH):
            raise GenerationError(f"key_strength must be a number from 0 to {MAX_KEY_STRENGTH:g}, "
                                  f"got {self.key_strength!r}", argument="key_strength")
        if self.density is not None and not (_number_in(self.density, 0, MAX_DENSITY) and self.density > 0):
            raise GenerationError(f"density must be a number of notes per bar in (0, {MAX_DENSITY:g}] or null (off), "
                                  f"got {self.density!r}", argument="density")

    @classmethod
    def from_mapping(cls, values) -> "PartConstraints":
        """From a mapping of the fields; an unknown name is refused, naming the known ones."""
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise GenerationError(f"unknown constraint(s) {', '.join(map(str, unknown))}; "
                                  f"constraints are {', '.join(cls.__dataclass_fields__)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)

    def pitch_range(self, instrument: str) -> tuple[int, int] | None:
        """The range the sampler keeps `instrument`'s new notes to (None: no range of its own or ranges off)."""
        return usual_range(instrument, self.range_widen) if self.ranges else None


def _number_in(value, low: float, high: float) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            and low <= value <= high)


# ---------------------------------------------------------------------- what a sample met
def measure(codes: np.ndarray, encoding, constraints: PartConstraints | None = None, *, prompt_notes: int = 0,
            start_beats: float = 0.0, end_beats: float | None = None, max_beats: float | None = None,
            beats_per_bar: float = 4.0) -> dict:
    """Per written part of one sample, what its new notes met; plain JSON-ready values.

    The new notes are the note rows after the first `prompt_notes` (the prompt's); the given
    notes (the prompt's and the control rows) count as parts for crossings. For each
    instrument with new notes:

    - `notes`: its new notes;
    - `in_range`: share of them inside its usual range widened by `range_widen`
      (`usual_range`; measured also with `ranges` off); None for instruments off the table;
    - `crossings`: onsets of its new notes where one of them lies above the lowest pitch
      sounding in the nearest sounding part above or below the highest pitch sounding in
      the nearest sounding part below, of its own family (the sampler's `no_crossing` rule,
      `part_order`);
      None for an instrument outside the order;
    - `out_of_key`: share of them outside `key` (None without a key, or for drums);
    - `notes_per_bar`: its new notes over the bars from `start_beats` to `end_beats`
      (default: where the sample's last new note ends, at most `max_beats`), in bars of
      `beats_per_bar` beats, a bar begun counted whole (`bars` in the result).
    """
    constraints = constraints or PartConstraints()
    codes = np.asarray(codes, dtype=np.int64)
    resolution = encoding.resolution
    types = codes[:, Field.TYPE]
    note_rows = codes[types == RowType.NOTE]
    new = note_rows[prompt_notes:]
    given = np.vstack([note_rows[:prompt_notes], codes[types == RowType.CONTROL]])
    every = np.vstack([given, new])
    onset = (every[:, Field.BEAT] - 1) * resolution + every[:, Field.POSITION] - 1
    end = onset + np.asarray(encoding.known_durations, dtype=np.int64)[every[:, Field.DURATION] - 1]
    pitch = every[:, Field.PITCH] - 1
    names = np.array([encoding.instruments[code - 1] for code in every[:, Field.INSTRUMENT]], dtype=object)
    is_new = np.arange(len(every)) >= len(given)
    order = part_order(names)
    place = np.array([order.get(name, -1) for name in names], dtype=np.int64)
    family = np.array([family_index(name) for name in names], dtype=np.int64)
    if end_beats is None:
        end_beats = float(end[is_new].max()) / resolution if is_new.any() else start_beats
        end_beats = end_beats if max_beats is None else min(end_beats, max_beats)
    bars = math.ceil(max(end_beats - start_beats, 0.0) / beats_per_bar - 1e-9)
    in_key = None if constraints.key is None else key_pitch_classes(constraints.key)
    parts = {}
    for name in dict.fromkeys(names[is_new]):
        mine = is_new & (names == name)
        bounds = usual_range(name, constraints.range_widen)
        in_range = None if bounds is None else _share((pitch[mine] >= bounds[0]) & (pitch[mine] <= bounds[1]))
        crossings = None
        if name in order:
            crossed = {int(t) for t in np.unique(onset[mine])
                       if _crosses(pitch[mine & (onset == t)], order[name],
                                         (onset <= t) & (end > t) & (family == family_index(name)), place, pitch)}
            crossings = len(crossed)
        out_of_key = None
        if in_key is not None and name != DRUMS:
            out_of_key = _share(~np.isin(pitch[mine] % 12, list(in_key)))
        count = int(mine.sum())
        parts[name] = {"notes": count, "in_range": in_range, "crossings": crossings, "out_of_key": out_of_key,
                       "notes_per_bar": round(count / bars, 4) if bars > 0 else None}
    return {"parts": parts, "bars": bars}


def measure_region(codes: np.ndarray, encoding, write, start_beats: float, end_beats: float,
                   constraints: PartConstraints | None = None, *, beats_per_bar: float = 4.0) -> dict:
    """`measure` of the notes of the instrument codes `write` that start in `[start_beats, end_beats)`,
    every other note and control row of `codes` given: what a region's part met, whether its notes
    were written by the model or are the real ones of a piece (`mmt evaluate`'s edit mode,
    benchmarks/edit.py)."""
    codes = np.asarray(codes, dtype=np.int64)
    rows = codes[np.isin(codes[:, Field.TYPE], (RowType.NOTE, RowType.CONTROL))].copy()
    rows[:, Field.TYPE] = RowType.NOTE
    tick = (rows[:, Field.BEAT] - 1) * encoding.resolution + rows[:, Field.POSITION] - 1
    region = ((tick >= round(start_beats * encoding.resolution)) & (tick < round(end_beats * encoding.resolution))
              & np.isin(rows[:, Field.INSTRUMENT], list(write)))
    return measure(np.vstack([rows[~region], rows[region]]), encoding, constraints, prompt_notes=int((~region).sum()),
                   start_beats=start_beats, end_beats=end_beats, beats_per_bar=beats_per_bar)


def _crosses(pitches: np.ndarray, mine: int, sounding: np.ndarray, place: np.ndarray, pitch: np.ndarray) -> bool:
    """Whether any of `pitches` (one part's new notes at one onset) lies above the part above or below the
    part below among the `sounding` notes (the nearest places of `place` above and below `mine`)."""
    above = sounding & (place > mine)
    below = sounding & (place >= 0) & (place < mine)
    if above.any():
        nearest = place[above].min()
        if pitches.max() > pitch[above & (place == nearest)].min():
            return True
    if below.any():
        nearest = place[below].max()
        if pitches.min() < pitch[below & (place == nearest)].max():
            return True
    return False


def _share(flags: np.ndarray) -> float | None:
    return round(float(np.mean(flags)), 4) if len(flags) else None


def source_key(music=None, pitches=(), durations=None) -> str | None:
    """The key a source is in: its first key signature with a root and mode, else the key estimated
    from its `pitches` (`estimate_key`); None without either."""
    for signature in getattr(music, "key_signatures", None) or []:
        if signature.root is not None and signature.mode in MODES:
            return key_name(signature.root, signature.mode)
    return estimate_key(pitches, durations)


def request_constraints(values, music=None, given: np.ndarray | None = None, encoding=None) -> PartConstraints:
    """The `PartConstraints` of a request's `constraints` mapping: `key` defaults to "source", the
    source's key (`source_key` of `music` or, without a signature, of the `given` rows' pitches;
    none in a mode without a source)."""
    values = {"key": "source", **values}
    if values["key"] == "source":
        pitches, durations = (), None
        if given is not None and len(given):
            notes = given[np.isin(given[:, Field.TYPE], (RowType.NOTE, RowType.CONTROL))]
            notes = notes[[encoding.instruments[code - 1] != DRUMS for code in notes[:, Field.INSTRUMENT]]]
            pitches = notes[:, Field.PITCH] - 1
            durations = np.asarray(encoding.known_durations)[notes[:, Field.DURATION] - 1]
        values["key"] = source_key(music, pitches, durations)
    return PartConstraints.from_mapping(values)
