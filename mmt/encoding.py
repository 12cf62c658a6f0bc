"""The tuple encoding: `Encoding`, `encode`, `encode_notes`, `decode`.

A song is a sequence of rows `(type, beat, position, pitch, duration, instrument)`:
start-of-song, one instrument row per distinct instrument (sorted by code),
start-of-notes, the notes sorted by (beat, position, pitch, duration, instrument),
end-of-song. Every field reserves code 0 for "undefined"; value v of a field has code
v + 1 (beat, position, pitch) or its 1-based index in a table (duration, instrument).

Control rows (type `RowType.CONTROL`, in encodings whose `anticipation` is set) carry
given notes (accompaniment, infill) with a note's fields; `anticipate` places them among
the notes an anticipation interval ahead of their time (see its docstring for the rule).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import muspy
import numpy as np

from mmt.constants import (
    DRUM_PROGRAM,
    DRUMS,
    FIELDS,
    INSTRUMENT_ALIASES,
    INSTRUMENT_PROGRAM,
    INSTRUMENTS,
    KNOWN_DURATIONS,
    PROGRAM_INSTRUMENT,
    Field,
    NoteCol,
    RowType,
    TYPE_NAMES,
)
from mmt.errors import MMTError
from mmt.files import read_json, write_text_atomic
from mmt.meter import Meter

DEFAULT_TEMPO = 100.0
DEFAULT_VELOCITY = 64


class EncodingError(MMTError, ValueError):
    """An encoding file or specification is invalid."""


@dataclass(frozen=True)
class Encoding:
    """How notes become integer rows; every vocabulary size is derived from it.

    Attributes:
        resolution: ticks per quarter-note beat (position takes 0..resolution-1).
        max_beat: beats 0..max_beat-1 can be encoded.
        known_durations: durations in ticks that a note may take, increasing.
        program_instrument: GM program 0..127 -> instrument name (None: not modelled).
        instruments: instrument names in code order (code = index + 1).
        instrument_programs: the GM program each instrument is decoded to.
        anticipation: None: no control rows (the type field has 6 codes, as every encoding
            before controls). A number of beats >= 0: the control row type exists (7 type
            codes, the new one last so the others keep their meaning) and control rows sit
            this many beats ahead of their time (`anticipate`). A file without this key
            (written before controls) loads as None.
    """

    resolution: int = 12
    max_beat: int = 1024
    known_durations: tuple[int, ...] = KNOWN_DURATIONS
    program_instrument: tuple[str | None, ...] = PROGRAM_INSTRUMENT
    instruments: tuple[str, ...] = INSTRUMENTS
    instrument_programs: tuple[int, ...] = tuple(INSTRUMENT_PROGRAM[n] for n in INSTRUMENTS)
    anticipation: float | None = None

    def __post_init__(self) -> None:
        for name in ("known_durations", "program_instrument", "instruments", "instrument_programs"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.resolution < 1:
            raise EncodingError(f"resolution must be >= 1, got {self.resolution}")
        if self.max_beat < 1:
            raise EncodingError(f"max_beat must be >= 1, got {self.max_beat}")
        durations = np.asarray(self.known_durations)
        if len(durations) == 0 or durations[0] < 1 or np.any(np.diff(durations) <= 0):
            raise EncodingError("known_durations must be positive and strictly increasing")
        if len(self.program_instrument) != 128:
            raise EncodingError(
                f"program_instrument must have 128 entries, got {len(self.program_instrument)}"
            )
        unknown = sorted({n for n in self.program_instrument if n is not None} - set(self.instruments))
        if unknown:
            raise EncodingError(f"program_instrument names unknown instruments: {unknown}")
        if DRUMS not in self.instruments:
            raise EncodingError(f"instruments must include {DRUMS!r}")
        if len(set(self.instruments)) != len(self.instruments):
            raise EncodingError("instruments must be distinct")
        if len(self.instrument_programs) != len(self.instruments):
            raise EncodingError("instrument_programs must have one program per instrument")
        if self.anticipation is not None:
            if isinstance(self.anticipation, bool) or not isinstance(self.anticipation, (int, float)) \
                    or not np.isfinite(self.anticipation) or self.anticipation < 0:
                raise EncodingError(f"anticipation must be a number of beats >= 0 or null, got {self.anticipation!r}")
            object.__setattr__(self, "anticipation", float(self.anticipation))

    @property
    def knows_controls(self) -> bool:
        """Whether the type field has the control row type (models trained with anticipation)."""
        return self.anticipation is not None

    @property
    def anticipation_ticks(self) -> int:
        """The anticipation interval in ticks (0 for an encoding without controls)."""
        return round((self.anticipation or 0.0) * self.resolution)

    # ------------------------------------------------------------------ vocabulary
    @property
    def dimensions(self) -> tuple[str, ...]:
        """The field names, in column order."""
        return FIELDS

    @cached_property
    def n_tokens(self) -> dict[str, int]:
        """Vocabulary size of each field, code 0 ("undefined") included."""
        return {
            "type": len(TYPE_NAMES) if self.knows_controls else RowType.CONTROL,
            "beat": self.max_beat + 1,
            "position": self.resolution + 1,
            "pitch": 128 + 1,
            "duration": len(self.known_durations) + 1,
            "instrument": len(self.instruments) + 1,
        }

    @cached_property
    def program_codes(self) -> np.ndarray:
        """Program 0..128 (128 = drums) -> instrument code (0 where not modelled)."""
        index = {name: i + 1 for i, name in enumerate(self.instruments)}
        codes = [index[name] if name is not None else 0 for name in self.program_instrument]
        return np.array(codes + [index[DRUMS]], dtype=np.int64)

    def instrument_code(self, name_or_program: str | int) -> int:
        """Code of an instrument given by name (e.g. "violin", "Violin", "french horn": case-insensitive,
        spaces as hyphens, `INSTRUMENT_ALIASES` understood) or GM program (e.g. 40)."""
        if isinstance(name_or_program, (int, np.integer)):
            program = int(name_or_program)
            if not 0 <= program <= DRUM_PROGRAM:
                raise EncodingError(f"program must be in 0..127 (or {DRUM_PROGRAM} for drums), got {program}")
            code = int(self.program_codes[program])
            if code == 0:
                raise EncodingError(f"program {program} maps to no instrument of this encoding")
            return code
        name = str(name_or_program).strip().lower().replace(" ", "-").replace("_", "-")
        name = INSTRUMENT_ALIASES.get(name, name)
        if name not in self.instruments:
            raise EncodingError(f"unknown instrument {name_or_program!r}{self._did_you_mean(name)} "
                                "(all names: mmt instruments)")
        return self.instruments.index(name) + 1

    @property
    def instrument_aliases(self) -> dict[str, str]:
        """The `INSTRUMENT_ALIASES` that name an instrument of this encoding (alias -> instrument)."""
        return {alias: name for alias, name in INSTRUMENT_ALIASES.items() if name in self.instruments}

    def _did_you_mean(self, name: str) -> str:
        """The hint after an unknown name: up to three known names or aliases closest to it, or nothing."""
        close = difflib.get_close_matches(name, [*self.instruments, *self.instrument_aliases], n=3)
        if not close:
            return ""
        listed = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
        return f"; did you mean {listed}?"

    def snap_durations(self, ticks: np.ndarray) -> np.ndarray:
        """Duration codes (1-based) of the known durations nearest to `ticks` (ties: shorter)."""
        table = np.asarray(self.known_durations)
        ticks = np.asarray(ticks)
        right = np.clip(np.searchsorted(table, ticks), 1, len(table) - 1)
        left = right - 1
        nearer_right = np.abs(table[right] - ticks) < np.abs(ticks - table[left])
        return np.where(nearer_right, right, left) + 1

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        """A JSON-ready dict of every field."""
        return {f.name: list(getattr(self, f.name)) if isinstance(getattr(self, f.name), tuple)
                else getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "Encoding":
        """Build from a dict; unknown or missing keys raise `EncodingError` naming them."""
        if not isinstance(data, dict):
            raise EncodingError(f"{source}: expected a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        data = {"anticipation": None, **data}  # files written before control rows
        unknown = sorted(set(data) - names)
        if unknown:
            raise EncodingError(f"{source}: unknown encoding key(s): {', '.join(unknown)}")
        missing = sorted(names - set(data))
        if missing:
            raise EncodingError(f"{source}: missing encoding key(s): {', '.join(missing)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as error:
            raise EncodingError(f"{source}: {error}") from error

    def save(self, path: str | os.PathLike) -> Path:
        """Write the encoding as JSON (atomically)."""
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Encoding":
        """Read an encoding written by `save`; a bad file raises `EncodingError` naming it."""
        return cls.from_dict(read_json(path, EncodingError, "encoding"), source=str(path))


# ---------------------------------------------------------------------- encoding
def notes_from_music(music: muspy.Music, resolution: int) -> np.ndarray:
    """Notes of every track as an (N x 5) array at `resolution` ticks per beat.

    Columns are `NOTE_COLUMNS` (beat, position, pitch, duration, program); drum tracks get
    program `DRUM_PROGRAM`. Onsets and ends round to the nearest tick and a duration is
    end - onset, at least 1 tick: notes that follow each other still do after rescaling
    (rounding each duration alone made repeated 32nd notes at 480 ticks per beat overlap
    at 12). Notes are in track order, not sorted.
    """
    rows = [(n.time, n.pitch, n.duration, DRUM_PROGRAM if track.is_drum else int(track.program))
            for track in music.tracks for n in track.notes]
    return notes_from_ticks(np.array(rows, dtype=np.int64).reshape(-1, 4), music.resolution, resolution)


def notes_from_ticks(raw: np.ndarray, source_resolution: int, resolution: int) -> np.ndarray:
    """`notes_from_music` of notes given as rows (onset, pitch, duration, program) in ticks at `source_resolution`."""
    raw = np.ascontiguousarray(raw, dtype=np.int64).reshape(-1, 4)
    scale = resolution / (source_resolution or resolution)
    onset = np.round(raw[:, 0] * scale).astype(np.int64)
    end = np.round((raw[:, 0] + raw[:, 2]) * scale).astype(np.int64)
    duration = np.maximum(end - onset, 1)
    notes = np.empty((len(raw), 5), dtype=np.int64)
    notes[:, NoteCol.BEAT] = onset // resolution
    notes[:, NoteCol.POSITION] = onset % resolution
    notes[:, NoteCol.PITCH] = raw[:, 1]
    notes[:, NoteCol.DURATION] = duration
    notes[:, NoteCol.PROGRAM] = raw[:, 3]
    return notes


def _row(row_type: RowType, instrument: int = 0) -> np.ndarray:
    row = np.zeros(6, dtype=np.int64)
    row[Field.TYPE] = row_type
    row[Field.INSTRUMENT] = instrument
    return row


def encode_notes(notes: np.ndarray, encoding: Encoding) -> np.ndarray:
    """Encode an (N x 5) notes array (beat, position, pitch, duration ticks, program).

    Notes are dropped, not errors, when they cannot be encoded: a program the encoding
    does not model, a beat at or past `max_beat`, a pitch outside 0..127 or a position
    outside the beat. Durations snap to the nearest known duration; identical notes
    collapse into one.

    Returns:
        int64 array (L x 6) in column order `FIELDS`.
    """
    notes = np.asarray(notes, dtype=np.int64).reshape(-1, 5)
    program = notes[:, NoteCol.PROGRAM]
    valid_program = (program >= 0) & (program <= DRUM_PROGRAM)
    instrument = np.where(valid_program, encoding.program_codes[np.clip(program, 0, DRUM_PROGRAM)], 0)
    keep = (
        (instrument > 0)
        & (notes[:, NoteCol.BEAT] >= 0)
        & (notes[:, NoteCol.BEAT] < encoding.max_beat)
        & (notes[:, NoteCol.POSITION] >= 0)
        & (notes[:, NoteCol.POSITION] < encoding.resolution)
        & (notes[:, NoteCol.PITCH] >= 0)
        & (notes[:, NoteCol.PITCH] <= 127)
        & (notes[:, NoteCol.DURATION] >= 1)
    )
    notes, instrument = notes[keep], instrument[keep]
    note_rows = np.zeros((len(notes), 6), dtype=np.int64)
    note_rows[:, Field.TYPE] = RowType.NOTE
    note_rows[:, Field.BEAT] = notes[:, NoteCol.BEAT] + 1
    note_rows[:, Field.POSITION] = notes[:, NoteCol.POSITION] + 1
    note_rows[:, Field.PITCH] = notes[:, NoteCol.PITCH] + 1
    note_rows[:, Field.DURATION] = encoding.snap_durations(notes[:, NoteCol.DURATION])
    note_rows[:, Field.INSTRUMENT] = instrument
    # np.unique sorts rows lexicographically: (type, beat, position, pitch, duration, instrument).
    note_rows = np.unique(note_rows, axis=0).reshape(-1, 6)
    header = [_row(RowType.INSTRUMENT, code) for code in np.unique(instrument)]
    return np.vstack(
        [_row(RowType.START_OF_SONG), *header, _row(RowType.START_OF_NOTES), note_rows, _row(RowType.END_OF_SONG)]
    )


def encode(music: muspy.Music, encoding: Encoding) -> np.ndarray:
    """Encode a `muspy.Music` at any resolution (rescaled to the encoding's)."""
    return encode_notes(notes_from_music(music, encoding.resolution), encoding)


# ---------------------------------------------------------------------- control rows
def onsets(rows: np.ndarray, resolution: int) -> np.ndarray:
    """Onset ticks of note or control rows (beat and position codes are value + 1)."""
    return (rows[:, Field.BEAT] - 1) * resolution + rows[:, Field.POSITION] - 1


def as_controls(rows: np.ndarray) -> np.ndarray:
    """Note rows as control rows (the same fields, type `RowType.CONTROL`)."""
    rows = np.array(rows, dtype=np.int64).reshape(-1, 6)
    rows[:, Field.TYPE] = RowType.CONTROL
    return rows


def due_after(notes: np.ndarray, controls: np.ndarray, resolution: int, interval_ticks: int) -> np.ndarray:
    """After how many of `notes` each control row is placed (the interleaving rule).

    The clock is the onset of the latest note row placed (0 before the first). A control
    with onset c is placed as soon as the clock reaches c - interval, after that note and
    before the next; one due at or before 0 comes before every note. The result is the
    number of notes before each control (0..N), or N + 1 for a control the notes never
    reach (c - interval past the last onset: the sampler inserts it when its own notes get
    there; a complete song places it after the last note, before end-of-song).

    Both the training data (`anticipate`) and the sampler (`mmt.sampling`) follow this
    rule, so the model sees controls where it learnt to expect them.
    """
    due = onsets(controls, resolution) - interval_ticks
    first = np.searchsorted(onsets(notes, resolution), due, side="left")  # first note reaching it
    return np.where(due <= 0, 0, first + 1)


def anticipate(notes: np.ndarray, controls: np.ndarray, resolution: int, interval_ticks: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Note rows (in song order) with control rows interleaved by `due_after`'s rule.

    Args:
        notes: note rows in the canonical order (non-decreasing onsets).
        controls: control rows sorted like notes.
        interval_ticks: the anticipation interval.

    Returns:
        (the interleaved rows, the control rows the notes never reach, still to place).

    Example (resolution 1, interval 2): notes at beats 0, 1, 4 and controls at 1, 3, 7
    give: control 1 (due at -1: first), note 0, note 1, control 3 (due at 1: after the
    note at 1), note 4; control 7 (due at 5) is left over.
    """
    notes = np.asarray(notes, dtype=np.int64).reshape(-1, 6)
    controls = np.asarray(controls, dtype=np.int64).reshape(-1, 6)
    slot = due_after(notes, controls, resolution, interval_ticks)
    placed = slot <= len(notes)
    # a stable sort on (slot, rank) puts each control before the note at index `slot`
    keys = np.concatenate([np.arange(len(notes)) * 2 + 1, slot[placed] * 2])
    rows = np.concatenate([notes, controls[placed]])[np.argsort(keys, kind="stable")]
    return rows, controls[~placed]


def song_with_controls(codes: np.ndarray, is_control: np.ndarray, encoding: Encoding,
                       header: np.ndarray | None = None) -> np.ndarray:
    """A song (as `encode_notes` returns it, end-of-song optional) with some notes made control rows.

    Args:
        codes: start-of-song, instrument rows, start-of-notes, note rows, maybe end-of-song.
        is_control: one flag per note row (in order): which notes become control rows.
        encoding: an encoding with `anticipation` set (its interval places the controls).
        header: instrument codes the header declares, the instruments the model writes
            (default: every instrument of the song).

    Returns:
        start-of-song, the header, start-of-notes, the other notes with the controls
        interleaved (`anticipate`), the controls they never reach, and end-of-song when
        `codes` had one.
    """
    if not encoding.knows_controls:
        raise EncodingError("this encoding has no control rows (its anticipation is null)")
    codes = np.asarray(codes, dtype=np.int64)
    row_type = codes[:, Field.TYPE]
    notes = codes[row_type == RowType.NOTE]
    is_control = np.asarray(is_control, dtype=bool)
    if is_control.shape != (len(notes),):
        raise ValueError(f"is_control must flag each of the {len(notes)} notes, got shape {is_control.shape}")
    if header is None:
        header = codes[row_type == RowType.INSTRUMENT, Field.INSTRUMENT]
    header_rows = [_row(RowType.INSTRUMENT, int(code)) for code in np.unique(header)]
    body, left = anticipate(notes[~is_control], as_controls(notes[is_control]), encoding.resolution,
                            encoding.anticipation_ticks)
    end = [_row(RowType.END_OF_SONG)] if np.any(row_type == RowType.END_OF_SONG) else []
    return np.vstack([_row(RowType.START_OF_SONG), *header_rows, _row(RowType.START_OF_NOTES), body, left, *end])


# ---------------------------------------------------------------------- decoding
def valid_rows(codes: np.ndarray, encoding: Encoding) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the header instrument rows and the note rows (control rows included) that `decode` places.

    Instrument rows count before start-of-notes, note rows after it; nothing counts after
    the first end-of-song. A row with an undefined or out-of-range field is ignored.
    """
    codes = np.asarray(codes).reshape(-1, 6)
    row_type = codes[:, Field.TYPE]
    index = np.arange(len(codes))
    eos = np.flatnonzero(row_type == RowType.END_OF_SONG)
    end = eos[0] if len(eos) else len(codes)
    son = np.flatnonzero((row_type == RowType.START_OF_NOTES) & (index < end))
    start = son[0] if len(son) else end
    n_tokens = encoding.n_tokens
    in_range = np.ones(len(codes), dtype=bool)
    for name in ("beat", "position", "pitch", "duration", "instrument"):
        column = codes[:, Field[name.upper()]]
        in_range &= (column >= 1) & (column < n_tokens[name])
    instrument = codes[:, Field.INSTRUMENT]
    header = (row_type == RowType.INSTRUMENT) & (index < start) & (instrument >= 1) & (
        instrument < n_tokens["instrument"]
    )
    is_note = (row_type == RowType.NOTE) | (row_type == RowType.CONTROL)  # given notes decode as notes
    notes = is_note & (index > start) & (index < end) & in_range
    return header, notes


def decode(
    codes: np.ndarray,
    encoding: Encoding,
    tempo: float | None = None,
    velocity: int = DEFAULT_VELOCITY,
    meter: Meter | None = None,
) -> muspy.Music:
    """Decode rows into a `muspy.Music` with one track per instrument.

    Accepts any integer array of width 6 and never raises on bad rows: rows that cannot
    be placed (see `valid_rows`) are skipped, and so is a note that repeats an earlier
    one's beat, position, pitch and instrument (a second note-on of a sounding key).
    Drums decode as a drum track.

    Args:
        tempo: quarter notes per minute (default `DEFAULT_TEMPO`); no time signature is set.
        meter: the piece's time signatures and tempos (`mmt.meter.Meter`), instead of `tempo`.
    """
    if tempo is not None and meter is not None:
        raise ValueError("give tempo or meter, not both (a meter carries its own tempos)")
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != 6:
        raise ValueError(f"codes must have shape (L, 6), got {codes.shape}")
    codes = codes.astype(np.int64, copy=False)
    header, note_mask = valid_rows(codes, encoding)
    notes = codes[note_mask]
    key = notes[:, [Field.BEAT, Field.POSITION, Field.PITCH, Field.INSTRUMENT]]
    notes = notes[np.sort(np.unique(key, axis=0, return_index=True)[1])]
    used = np.union1d(codes[header, Field.INSTRUMENT], notes[:, Field.INSTRUMENT])
    durations = np.asarray(encoding.known_durations)
    tracks = []
    for code in used:
        name = encoding.instruments[code - 1]
        rows = notes[notes[:, Field.INSTRUMENT] == code]
        onset = (rows[:, Field.BEAT] - 1) * encoding.resolution + rows[:, Field.POSITION] - 1
        track_notes = [
            muspy.Note(time=int(t), pitch=int(p), duration=int(d), velocity=velocity)
            for t, p, d in zip(onset, rows[:, Field.PITCH] - 1, durations[rows[:, Field.DURATION] - 1])
        ]
        tracks.append(
            muspy.Track(
                program=encoding.instrument_programs[code - 1],
                is_drum=name == DRUMS,
                name=name,
                notes=track_notes,
            )
        )
    music = muspy.Music(resolution=encoding.resolution, tracks=tracks)
    if meter is not None:
        return meter.apply(music)
    music.tempos = [muspy.Tempo(time=0, qpm=float(DEFAULT_TEMPO if tempo is None else tempo))]
    return music


def describe_rows(codes: np.ndarray, encoding: Encoding) -> list[dict]:
    """Readable values of each row: type name, beat, position, pitch, duration ticks, instrument."""
    codes = np.asarray(codes, dtype=np.int64).reshape(-1, 6)
    n_tokens = encoding.n_tokens

    def value(name: str, code: int):
        if not 1 <= code < n_tokens[name]:
            return ""
        if name == "duration":
            return encoding.known_durations[code - 1]
        if name == "instrument":
            return encoding.instruments[code - 1]
        return code - 1

    rows = []
    for row in codes:
        type_code = int(row[Field.TYPE])
        entry = {"type": TYPE_NAMES[type_code] if 0 <= type_code < len(TYPE_NAMES) else ""}
        for name in FIELDS[1:]:
            entry[name] = value(name, int(row[Field[name.upper()]]))
        rows.append(entry)
    return rows


def grammar_violations(codes: np.ndarray, encoding: Encoding, complete: bool = True) -> list[str]:
    """Ways in which `codes` break the song grammar; an empty list means well-formed.

    The grammar: start-of-song first; instrument rows (distinct, increasing codes);
    start-of-notes; note rows with every field defined and in range, (beat, position)
    never decreasing, instrument declared in the header; end-of-song last (required
    only when `complete`). Non-note rows carry no values in the note fields.
    Control rows may sit among the notes (any instrument, every field defined, their own
    onsets never decreasing); the notes' rules apply to the note rows alone.
    """
    codes = np.asarray(codes).reshape(-1, 6)
    problems: list[str] = []
    row_type = codes[:, Field.TYPE]
    if len(codes) == 0 or row_type[0] != RowType.START_OF_SONG:
        return ["the first row is not start-of-song"]
    son = np.flatnonzero(row_type == RowType.START_OF_NOTES)
    if len(son) != 1:
        return [f"expected one start-of-notes row, found {len(son)}"]
    start = int(son[0])
    header = codes[1:start]
    if np.any(header[:, Field.TYPE] != RowType.INSTRUMENT):
        problems.append("a non-instrument row sits between start-of-song and start-of-notes")
    declared = header[:, Field.INSTRUMENT]
    if np.any(np.diff(declared) <= 0):
        problems.append("header instruments are not distinct and increasing")
    if np.any((declared < 1) | (declared >= encoding.n_tokens["instrument"])):
        problems.append("a header instrument code is out of range")
    body = codes[start + 1:]
    eos = np.flatnonzero(body[:, Field.TYPE] == RowType.END_OF_SONG)
    if len(eos):
        if eos[0] != len(body) - 1:
            problems.append("rows follow end-of-song")
        body = body[: eos[0]]
    elif complete:
        problems.append("no end-of-song row")
    if np.any((body[:, Field.TYPE] != RowType.NOTE) & (body[:, Field.TYPE] != RowType.CONTROL)):
        problems.append("a non-note row sits among the notes")
    notes = body[body[:, Field.TYPE] == RowType.NOTE]
    for kind, rows in (("note", notes), ("control", body[body[:, Field.TYPE] == RowType.CONTROL])):
        for name in FIELDS[1:]:
            column = rows[:, Field[name.upper()]]
            if np.any((column < 1) | (column >= encoding.n_tokens[name])):
                problems.append(f"a {kind}'s {name} is undefined or out of range")
        onset = rows[:, Field.BEAT] * (encoding.resolution + 1) + rows[:, Field.POSITION]
        if np.any(np.diff(onset) < 0):
            problems.append(f"{kind} onsets go backwards")
    if not np.all(np.isin(notes[:, Field.INSTRUMENT], declared)):
        problems.append("a note uses an instrument not declared in the header")
    others = codes[(row_type != RowType.NOTE) & (row_type != RowType.CONTROL)]
    if np.any(others[:, Field.BEAT:Field.DURATION + 1] != 0):
        problems.append("a non-note row carries note values")
    return problems
