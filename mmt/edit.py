"""Edits of a piece: regions (parts x bars) the model rewrites, every other note kept as it was.

A region is a set of parts (instruments of the piece, or new ones to add; `all`: every part
of the piece) and a range of bars, 1-based and inclusive, in the piece's own bars (its
meter; a pickup is no bar). An open end (`cello@5-`) runs to the piece's last bar; bars past
the end continue the piece. Written as text: `PARTS@BARS`, e.g. `cello@5-8`, `violin,viola@3`,
`flute@1-`, `all@9-12`.

For the model a region is a prompt (the header, the notes before the region's first bar)
and control rows (every kept note from there on: the other parts inside the region, every
part after it); the sampler writes the region's parts from its first bar to its end
(`plan_region`). What the user keeps is not the rows: `merge` writes the source's own notes
back outside the region (ticks, velocities, programs, track names, tempo, meter and keys as
in the source) and adds the new notes, at the source's ticks per beat.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import numpy as np

from mmt.augment import region_layout
from mmt.constants import DRUM_PROGRAM, DRUMS, Field, RowType
from mmt.encoding import DEFAULT_VELOCITY, Encoding, as_controls, encode, onsets
from mmt.errors import GenerationError
from mmt.meter import Meter

ALL_PARTS = "all"


@dataclass(frozen=True)
class Region:
    """Parts x bars to rewrite: `parts` (instrument names or GM programs, or `("all",)`), bars
    `first_bar` to `last_bar` (1-based, inclusive; None: to the piece's last bar)."""

    parts: tuple[str, ...]
    first_bar: int
    last_bar: int | None = None

    def __str__(self) -> str:
        last = "" if self.last_bar is None else self.last_bar
        return f"{','.join(self.parts)}@{self.first_bar}-{last}"

    @property
    def every_part(self) -> bool:
        return self.parts == (ALL_PARTS,)


_SPELLING = re.compile(r"\s*([^@]+?)\s*@\s*(\d+)\s*(?:(-)\s*(\d+)?)?\s*")


def parse_region(value) -> Region:
    """A `Region` from its text (`cello@5-8`, `flute@1-`, `all@9-12`, `violin,viola@3`), a
    `Region`, or a (parts, first, last) tuple; `GenerationError` naming `edit` otherwise."""
    if isinstance(value, Region):
        parts, first, last = value.parts, value.first_bar, value.last_bar
    elif isinstance(value, str):
        match = _SPELLING.fullmatch(value)
        if not match:
            raise GenerationError(f"edit must look like PARTS@BARS (cello@5-8, flute@1-, all@9-12), got {value!r}",
                                  argument="edit")
        parts = tuple(part.strip() for part in match.group(1).split(",") if part.strip())
        first = int(match.group(2))
        last = int(match.group(4)) if match.group(4) else (None if match.group(3) else first)
    else:
        try:
            parts, first, last = value
        except (TypeError, ValueError):
            raise GenerationError(f"edit must be PARTS@BARS or (parts, first bar, last bar), got {value!r}",
                                  argument="edit") from None
        parts = (parts,) if isinstance(parts, (str, int)) else tuple(parts)
    parts = tuple(str(part).strip().lower() if str(part).strip().lower() == ALL_PARTS else str(part).strip()
                  for part in parts)
    if not parts or any(not part for part in parts):
        raise GenerationError(f"edit names no part: {value!r}", argument="edit")
    if ALL_PARTS in parts and len(parts) > 1:
        raise GenerationError(f"edit: '{ALL_PARTS}' stands alone (every part of the piece), got {value!r}",
                              argument="edit")
    whole = (isinstance(first, (int, np.integer)) and not isinstance(first, bool)
             and (last is None or isinstance(last, (int, np.integer)) and not isinstance(last, bool)))
    if not whole or first < 1 or (last is not None and last < first):
        raise GenerationError(f"edit bars must be whole bars with 1 <= first <= last, got {value!r}",
                              argument="edit")
    return Region(parts, int(first), None if last is None else int(last))


# ---------------------------------------------------------------------- bars
def bars_to_beats(meter: Meter, bars: float) -> float:
    """Where the first `bars` bars of a piece end, in beats (a pickup comes on top: it is no bar).

    Whole bars follow the meter's time signatures (`Meter.iter_bars`); a fraction is that
    share of the next bar.
    """
    whole = int(bars)
    skip = 1 if meter.pickup > 0 else 0
    start = meter.bar_start(whole + skip)
    fraction = bars - whole
    return start + fraction * meter.beats_per_bar(start) if fraction else start


def piece_bars(meter: Meter, end_beats: float) -> int:
    """How many bars a piece whose music ends at `end_beats` fills (a pickup is no bar): the bars
    that begin before the end. An 8-bar melody in 3/4 ending at beat 24 fills 8."""
    starts, _ = meter.bars(end_beats)
    return max(len(starts) - (1 if meter.pickup > 0 else 0), 0)


def cut_music(music, beats: float):
    """A copy of `music` without the notes starting at or after `beats`."""
    out = copy.deepcopy(music)
    limit = round(beats * music.resolution)
    for track in out.tracks:
        track.notes = [note for note in track.notes if note.time < limit]
    return out


def end_of_music(music, resolution: int) -> float:
    """The beat where the last note of `music` stops sounding (0 without notes)."""
    ends = [note.time + note.duration for track in music.tracks for note in track.notes]
    return max(ends, default=0) / (music.resolution or resolution)


# ---------------------------------------------------------------------- one region for the sampler
def instrument_of(track, encoding: Encoding) -> int:
    """A track's instrument code (0: a program the encoding does not model)."""
    return int(encoding.program_codes[DRUM_PROGRAM if track.is_drum else int(track.program)])


def select_parts(region: Region, music, encoding: Encoding) -> tuple[list[int], list[int]]:
    """(indices of the piece's tracks the region rewrites, the instrument codes it writes; sorted).

    A part is a track of the piece named so (case-insensitive: `tenor` in a chorale), else an
    instrument (name or GM program): every track of it, or a new part when the piece has none;
    `all` is every track of an instrument the model knows.
    """
    codes = [instrument_of(track, encoding) for track in music.tracks]
    if region.every_part:
        tracks = [i for i, code in enumerate(codes) if code and music.tracks[i].notes]
        return tracks, sorted({codes[i] for i in tracks})
    tracks, write = set(), set()
    for part in region.parts:
        named = [i for i, track in enumerate(music.tracks) if (track.name or "").strip().lower() == part.lower()]
        if named:
            tracks.update(i for i in named if codes[i])
            write.update(codes[i] for i in named if codes[i])
            continue
        try:
            code = encoding.instrument_code(int(part) if part.isdigit() else part)
        except ValueError as error:  # neither a track's name nor an instrument
            names = ", ".join(track.name for track in music.tracks if track.name) or "none named"
            raise GenerationError(f"edit {region}: {part!r} is no part of the piece (its parts: {names}); {error}",
                                  argument="edit") from None
        tracks.update(i for i, c in enumerate(codes) if c == code)
        write.add(code)
    return sorted(tracks), sorted(write)


@dataclass(frozen=True)
class RegionPlan:
    """What the sampler gets for one region: the prompt rows (start-of-song, the header, start-of-notes,
    the notes before the region), the kept notes from the region's start on as control rows (None:
    none), the instruments to write, and the region (as asked, and in beats); `tracks`: the source's
    tracks whose notes in the region are rewritten."""

    region: Region
    prompt: np.ndarray
    controls: np.ndarray | None
    write: list[int]
    tracks: list[int]
    start_beats: float
    end_beats: float
    last_bar_beats: float   # where the region's last bar starts: the sampler writes up to there at least


def region_beats(region: Region, meter: Meter, music, encoding: Encoding) -> tuple[float, float, float]:
    """(start, end, start of the last bar) of a region in beats; an open end is the piece's last bar
    (or the region's first)."""
    last = region.last_bar
    if last is None:
        last = max(piece_bars(meter, end_of_music(music, encoding.resolution)), region.first_bar)
    return bars_to_beats(meter, region.first_bar - 1), bars_to_beats(meter, last), bars_to_beats(meter, last - 1)


def _without_region(music, tracks: list[int], start: float, end: float):
    """A copy of `music` without the notes of `tracks` that start in [start, end) beats."""
    out = copy.deepcopy(music)
    start_tick, end_tick = round(start * music.resolution), round(end * music.resolution)
    for index in tracks:
        out.tracks[index].notes = [n for n in out.tracks[index].notes if not start_tick <= n.time < end_tick]
    return out


def plan_region(music, region: Region, encoding: Encoding) -> RegionPlan:
    """The prompt, controls and parts to write for `region` of `music` (see the module docstring).

    The header declares the parts to write and the parts that play before the region, as the
    training data's region kind lays a region out (`mmt.augment.region_layout`).
    """
    meter = Meter.from_music(music)
    tracks, write = select_parts(region, music, encoding)
    if not write:
        raise GenerationError(f"edit {region}: the piece has no part this model knows", argument="edit")
    start, end, last_bar = region_beats(region, meter, music, encoding)
    song = encode(_without_region(music, tracks, start, end), encoding)
    notes = song[song[:, Field.TYPE] == RowType.NOTE]
    # training's layout of a region (`region_layout`); the region's own notes are out of `notes`
    # already (by track: parts of one instrument are told apart), so every note from the start on is given
    start_tick = round(start * encoding.resolution)
    given, declared = region_layout(notes, encoding.resolution, start_tick, start_tick, write)
    before, kept = notes[~given], notes[given]
    head = np.zeros((len(declared) + 2, 6), dtype=np.int64)
    head[0, Field.TYPE] = RowType.START_OF_SONG
    head[1:-1, Field.TYPE] = RowType.INSTRUMENT
    head[1:-1, Field.INSTRUMENT] = declared
    head[-1, Field.TYPE] = RowType.START_OF_NOTES
    return RegionPlan(region, np.vstack([head, before]), as_controls(kept) if len(kept) else None, write, tracks,
                      start, end, last_bar)


# ---------------------------------------------------------------------- the piece the user keeps
def merge(source, new_notes: np.ndarray, plan: RegionPlan, encoding: Encoding):
    """`source` (a `muspy.Music`) with the region's old notes replaced by `new_notes` (note rows).

    Every other note, track (program, name, drum flag), tempo, time and key signature and the
    ticks per beat stay as in the source; the region's tracks lose their notes starting inside
    it. A new note joins the first of the region's tracks of its instrument, else the first
    track of its instrument, else a new track named after the instrument; it gets the
    decoder's velocity.
    """
    import muspy

    music = _without_region(source, plan.tracks, plan.start_beats, plan.end_beats)
    resolution = music.resolution
    tracks: dict[int, object] = {}
    for index in plan.tracks + list(range(len(music.tracks))):
        tracks.setdefault(instrument_of(music.tracks[index], encoding), music.tracks[index])
    durations = np.asarray(encoding.known_durations)
    scale = resolution / encoding.resolution
    onset = np.rint(onsets(new_notes, encoding.resolution) * scale).astype(np.int64)
    length = np.maximum(np.rint(durations[new_notes[:, Field.DURATION] - 1] * scale), 1).astype(np.int64)
    written, new = set(), set()
    for row, time, ticks in zip(new_notes.tolist(), onset.tolist(), length.tolist()):
        code = row[Field.INSTRUMENT]
        if code not in tracks:
            name = encoding.instruments[code - 1]
            tracks[code] = muspy.Track(program=encoding.instrument_programs[code - 1], is_drum=name == DRUMS,
                                       name=name)
            music.tracks.append(tracks[code])
        note = muspy.Note(time=time, pitch=row[Field.PITCH] - 1, duration=ticks, velocity=DEFAULT_VELOCITY)
        tracks[code].notes.append(note)
        written.add(code)
        new.add(id(note))
    for code in written:
        tracks[code].notes = _settled(tracks[code].notes, new)
    return music


def _settled(notes: list, new: set) -> list:
    """A track's notes sorted, the new ones (ids in `new`) fitted around the kept ones.

    In a MIDI file two sounding notes of one key are paired with their note-offs by order, so a
    kept note would come back with a new one's end: a new note that would still sound when the
    next note of its pitch starts ends there, and one starting with a kept note of its pitch is
    left out (a doubling of it).
    """
    kept = {(note.time, note.pitch) for note in notes if id(note) not in new}
    notes = sorted((note for note in notes if id(note) not in new or (note.time, note.pitch) not in kept),
                   key=lambda note: (note.time, note.pitch, note.duration))
    following: dict[int, int] = {}
    for note in reversed(notes):
        later = following.get(note.pitch)
        if id(note) in new and later is not None and note.time < later < note.time + note.duration:
            note.duration = later - note.time
        if note.time != later:
            following[note.pitch] = note.time
    return notes


def drawn_notes(sample: np.ndarray, plan: RegionPlan, encoding: Encoding) -> np.ndarray:
    """The note rows the model drew in a sample of `plan` (those starting in the region: the prompt's
    notes start before it, the kept notes come back as control rows)."""
    notes = sample[sample[:, Field.TYPE] == RowType.NOTE]
    return notes[onsets(notes, encoding.resolution) >= round(plan.start_beats * encoding.resolution)]
