"""A piece's meter: its time signatures and tempos, in quarter-note beats.

The codes hold notes only; the meter travels beside them (a prepared piece keeps it in
`meters/<id>.json`), so bars, continuations and decoded files follow the piece's own time
signature and tempo instead of assuming 4/4.

    meter = Meter.from_music(music)          # what a piece states
    decoded = mmt.decode(codes, encoding, meter=meter)   # decoded MIDI carries it
    meter.apply(other_music)                 # or put it on any Music
    meter.bar_start(8)                       # the beat where bar 8 starts (after 8 bars)

Bars: a pickup (anacrusis) of p beats is a first bar of p beats; then the first time
signature applies (from beat 0 without a pickup; 4/4 when the piece states none), each
later one starts a new bar at its own beat (cutting the current bar short), and a bar of
n/d lasts `n * 4 / d` quarter-note beats.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import muspy
import numpy as np

from mmt.files import read_json, write_text_atomic

DEFAULT_TIME_SIGNATURE: tuple[int, int] = (4, 4)
METER_DIR = "meters"
"""Folder of a prepared data directory holding `<id>.json`, one meter per piece."""


class MeterError(ValueError):
    """A meter file or specification is invalid."""


@dataclass(frozen=True)
class Meter:
    """Time signatures and tempos of a piece (frozen; beats are quarter-note beats).

    Attributes:
        time_signatures: (beat, numerator, denominator), sorted by beat. Empty: the piece
            states none (bars of 4/4).
        tempos: (beat, quarter notes per minute, to a thousandth), sorted by beat. Empty:
            the piece states none (players assume 120).
        pickup: beats before the first bar line (an anacrusis); 0 for none.
    """

    time_signatures: tuple[tuple[float, int, int], ...] = ()
    tempos: tuple[tuple[float, float], ...] = ()
    pickup: float = 0.0

    def __post_init__(self) -> None:
        signatures = {}
        for item in self.time_signatures:
            beat, numerator, denominator = item
            if not (math.isfinite(beat) and beat >= 0) or int(numerator) < 1 or int(denominator) < 1:
                raise MeterError(f"bad time signature {tuple(item)!r}: need beat >= 0, numerator and denominator >= 1")
            signatures[float(beat)] = (int(numerator), int(denominator))  # a later one at the same beat wins
        tempos = {}
        for item in self.tempos:
            beat, qpm = item
            if not (math.isfinite(beat) and beat >= 0) or not (math.isfinite(qpm) and qpm > 0):
                raise MeterError(f"bad tempo {tuple(item)!r}: need beat >= 0 and qpm > 0")
            tempos[float(beat)] = round(float(qpm), 3)  # MIDI keeps whole microseconds per beat
        if not (math.isfinite(self.pickup) and self.pickup >= 0):
            raise MeterError(f"bad pickup {self.pickup!r}: need beats >= 0")
        object.__setattr__(self, "pickup", float(self.pickup))
        object.__setattr__(self, "time_signatures", tuple((b, *signatures[b]) for b in sorted(signatures)))
        object.__setattr__(self, "tempos", tuple((b, tempos[b]) for b in sorted(tempos)))

    # ------------------------------------------------------------------ Music
    @classmethod
    def from_music(cls, music: muspy.Music) -> "Meter":
        """The time signatures, tempos and pickup a `muspy.Music` states (ticks -> beats).

        The pickup is read from the bar lines (`music.barlines`, which `mmt.read_music`
        sets for a score that opens with one): a first bar line after 0 that comes
        before the first bar's end.
        """
        resolution = music.resolution or 1
        meter = cls.from_ticks([(ts.time, ts.numerator, ts.denominator) for ts in music.time_signatures],
                               [(tempo.time, tempo.qpm) for tempo in music.tempos], resolution)
        lines = sorted(barline.time for barline in music.barlines if barline.time > 0)
        if lines and lines[0] / resolution < meter.beats_per_bar(0.0):
            meter = dataclasses.replace(meter, pickup=lines[0] / resolution)
        return meter

    @classmethod
    def from_ticks(cls, time_signatures, tempos, resolution: int) -> "Meter":
        """A meter from (tick, numerator, denominator) and (tick, qpm) maps at `resolution` ticks per beat."""
        resolution = resolution or 1
        return cls(time_signatures=tuple((max(tick, 0) / resolution, n, d) for tick, n, d in time_signatures),
                   tempos=tuple((max(tick, 0) / resolution, qpm) for tick, qpm in tempos))

    def apply(self, music: muspy.Music) -> muspy.Music:
        """Replace `music`'s time signatures, tempos and bar lines by this meter's (in place); returns `music`.

        Beats become ticks at `music.resolution` (rounded). With no tempo stated, `music`
        keeps none. The bar lines are those of the pickup (at 0 and at its end), else none.
        MIDI files keep time signatures and tempos, not bar lines.
        """
        resolution = music.resolution
        music.time_signatures = [
            muspy.TimeSignature(time=round(beat * resolution), numerator=n, denominator=d)
            for beat, n, d in self.time_signatures
        ]
        music.tempos = [muspy.Tempo(time=round(beat * resolution), qpm=qpm) for beat, qpm in self.tempos]
        music.barlines = ([muspy.Barline(time=0), muspy.Barline(time=round(self.pickup * resolution))]
                          if self.pickup > 0 else [])
        return music

    # ------------------------------------------------------------------ bars
    def time_signature_at(self, beat: float = 0.0) -> tuple[int, int]:
        """(numerator, denominator) in force at `beat` (the first one also before it and in a pickup; 4/4 by default)."""
        current = self.time_signatures[0][1:] if self.time_signatures else DEFAULT_TIME_SIGNATURE
        for start, numerator, denominator in self.time_signatures:
            if start > beat:
                break
            current = (numerator, denominator)
        return current

    def beats_per_bar(self, beat: float = 0.0) -> float:
        """Quarter-note beats in a bar of the time signature in force at `beat` (3/4: 3, 6/8: 3)."""
        numerator, denominator = self.time_signature_at(beat)
        return numerator * 4 / denominator

    def iter_bars(self) -> Iterator[tuple[float, float]]:
        """(start beat, length in beats) of every bar from beat 0 on, without end.

        The last bar before a time-signature change is cut short at the change.
        """
        changes = [(b, n * 4 / d) for b, n, d in self.time_signatures] or [(0.0, 4.0)]
        changes[0] = (0.0, changes[0][1])
        if self.pickup > 0:
            starts = {0.0: self.pickup}
            for beat, length in changes:  # the bars of a signature stated before the pickup's end start there
                starts[max(beat, self.pickup)] = length
            changes = sorted(starts.items())
        for k, (start, length) in enumerate(changes):
            stop = changes[k + 1][0] if k + 1 < len(changes) else math.inf
            for index in itertools.count():
                bar = start + index * length
                if bar >= stop:
                    break
                yield bar, min(length, stop - bar)

    def bars(self, end: float) -> tuple[np.ndarray, np.ndarray]:
        """Start beats and lengths (beats) of the bars that begin before `end` (float arrays)."""
        pairs = list(itertools.takewhile(lambda bar: bar[0] < end, self.iter_bars()))
        table = np.array(pairs, dtype=np.float64).reshape(-1, 2)
        return table[:, 0], table[:, 1]

    def bar_ticks(self, end: int, resolution: int) -> tuple[np.ndarray, np.ndarray]:
        """`bars` in ticks at `resolution`: start ticks and lengths (at least 1) of the bars before tick `end`."""
        starts, lengths = self.bars(end / resolution)
        return (np.rint(starts * resolution).astype(np.int64),
                np.maximum(np.rint(lengths * resolution), 1).astype(np.int64))

    def bar_start(self, n: int) -> float:
        """The beat where bar `n` (0-based) starts: the length of the first `n` bars."""
        if n < 0:
            raise ValueError(f"bar index must be >= 0, got {n}")
        return next(itertools.islice(self.iter_bars(), n, None))[0]

    def bar_floor(self, beat: float) -> float:
        """The last bar line at or before `beat` (0 for beats up to the first bar's end)."""
        floor = 0.0
        for start, _ in itertools.takewhile(lambda bar: bar[0] <= beat, self.iter_bars()):
            floor = start
        return floor

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {"time_signatures": [list(ts) for ts in self.time_signatures],
                "tempos": [list(t) for t in self.tempos], "pickup": self.pickup}

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "Meter":
        if not isinstance(data, dict):
            raise MeterError(f"{source}: a meter is a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"time_signatures", "tempos", "pickup"})
        if unknown:
            raise MeterError(f"{source}: unknown meter key(s): {', '.join(unknown)}")
        try:
            return cls(time_signatures=tuple(tuple(ts) for ts in data.get("time_signatures", ())),
                       tempos=tuple(tuple(t) for t in data.get("tempos", ())),
                       pickup=float(data.get("pickup", 0.0)))
        except (TypeError, ValueError) as error:
            raise MeterError(f"{source}: {error}") from None

    def to_json(self) -> str:
        """The text of a meter file (one line of JSON)."""
        return json.dumps(self.to_dict()) + "\n"

    def save(self, path: str | os.PathLike) -> Path:
        """Write the meter as JSON, atomically."""
        return write_text_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Meter":
        """Read a meter file; errors name the file."""
        return cls.from_dict(read_json(path, MeterError, "meter"), source=str(path))


def meter_path(data_dir: str | os.PathLike, piece_id: str) -> Path:
    """Where a prepared data directory keeps a piece's meter: `meters/<id>.json`."""
    return Path(meter_file(data_dir, piece_id))


def meter_file(data_dir: str | os.PathLike, piece_id: str) -> str:
    """`meter_path` as a str (cheaper where every piece's files are named: data preparation)."""
    return os.path.join(os.fspath(data_dir), METER_DIR, f"{piece_id}.json")


def load_piece_meter(data_dir: str | os.PathLike, piece_id: str) -> Meter | None:
    """A prepared piece's meter; None when the directory was prepared before meters were kept.

    Raises MeterError naming the file when it exists but is damaged.
    """
    path = meter_path(data_dir, piece_id)
    if not path.is_file():
        return None
    return Meter.load(path)
