"""The training Dataset: prepared notes -> (augmented, windowed, cropped) code arrays.

A prepared directory (written by `mmt prepare`) holds `notes/<id>.npy` (N x 5 int:
beat, position, pitch, duration, program; program 128 marks drums), one id list per
split (`train.txt`, `valid.txt`, `test.txt`) and `encoding.json`.

Each item is built from the stored notes on demand (`make_item`); the steps marked
"augmenting" run only with an `augment` (`mmt.config.Augmentation`) and draw as its
settings say, with the functions of `mmt.augment`:

1. a pitch shift (augmenting): every pitched note moves by one shift drawn from
   `pitch_shift` (default -5..+6 semitones), narrowed so that no pitch leaves 0..127;
   drums are never shifted;
2. beat window: a piece spanning more than `max_beat` beats keeps only `max_beat`
   beats, starting at a random beat that holds a note onset (at beat 0 without
   augmentation); beats are shifted so the window starts at beat 0; then (augmenting,
   with probability `instrument_remap`) the parts are relabelled as other instruments
   whose register holds them (`mmt.augment.remap_instruments`);
3. encoding with `mmt.encode_notes`;
4. control selection (augmenting, with probability `controls`): some notes become control
   rows (`mmt.augment.select_controls`: whole instruments, random time spans, or
   everything from a random beat on; with probability `regions`, some parts written over
   a span of the piece's bars and every other note given), interleaved an anticipation
   interval ahead of their time (`mmt.encoding.song_with_controls`), so that one model learns
   the unconditioned, instrument, continuation, accompaniment and infilling layouts;
5. cropping to `max_seq_len` rows: the most notes that fit with start-of-song, the
   header of the instruments those notes use, and start-of-notes; end-of-song is kept
   only when the piece really ends there (no note was cut by the window or the crop);
6. a rest (augmenting, with probability `rests`): one part falls silent for a few bars
   and plays again before the item ends (`mmt.augment.rest_part`).

Training may also show the model a simulated take-over in its inputs, its targets unchanged
(`mmt.augment.step_takeover`, drawn per batch from the step: `Augmentation.takeover`).

The randomness of item i is a pure function of (seed, epoch, i), so workers, resumed
runs and several processes all see the same items.
"""

from __future__ import annotations

import os

import numpy as np

from mmt.augment import maybe_controls, maybe_remap, maybe_rest, random_shift
from mmt.config import Augmentation
from mmt.constants import DRUM_PROGRAM, Field, NoteCol, RowType
from mmt.encoding import Encoding, encode_notes
from mmt.meter import Meter
from mmt.prepared import DataError, PreparedData


# ---------------------------------------------------------------------- pure steps
def beat_window(notes: np.ndarray, start: int, n_beats: int) -> tuple[np.ndarray, bool]:
    """Notes with onset beat in `start .. start + n_beats - 1`, moved to start at beat 0.

    Returns:
        (window notes, whether the piece ends inside the window, i.e. no note lies after it)
    """
    beat = notes[:, NoteCol.BEAT]
    inside = (beat >= start) & (beat < start + n_beats)
    window = notes[inside].copy()
    window[:, NoteCol.BEAT] -= start
    ends = not np.any(beat >= start + n_beats)
    return window, ends


def window_bar_lines(meter: Meter, start: int, n_beats: int, resolution: int) -> np.ndarray:
    """The bar lines of `meter` inside the window of `n_beats` beats from beat `start`, in the
    window's ticks (as `beat_window` moves it to start at 0)."""
    starts, _ = meter.bar_ticks((start + n_beats) * resolution, resolution)
    lines = starts - start * resolution
    return lines[lines >= 0]


def window_starts(notes: np.ndarray, n_beats: int) -> np.ndarray:
    """Start beats a window of `n_beats` may take: beats holding an onset, up to the last full window.

    A piece that fits in `n_beats` beats has the single start 0.
    """
    beat = notes[:, NoteCol.BEAT]
    if len(beat) == 0 or beat.max() < n_beats:
        return np.zeros(1, dtype=np.int64)
    last_start = int(beat.max()) - n_beats + 1
    starts = np.unique(beat[beat <= last_start])
    return starts if len(starts) else np.zeros(1, dtype=np.int64)


def crop_codes(codes: np.ndarray, max_seq_len: int, ends: bool = True) -> np.ndarray:
    """Crop a song (as `encode_notes` returns it) to at most `max_seq_len` rows.

    Keeps the first k rows after start-of-notes (notes and control rows), with k the largest
    count such that start-of-song, the header of the instruments among the notes of those
    k rows, start-of-notes and the k rows fit. End-of-song
    is kept only when every note fits with it and `ends` says the piece ends there.

    Args:
        codes: a complete song: SOS, instrument rows, SON, note rows, EOS.
        max_seq_len: the most rows to return (at least 3: SOS, one instrument, SON).
        ends: False when notes after these were already cut (e.g. by a beat window).
    """
    if max_seq_len < 3:
        raise ValueError(f"max_seq_len must be >= 3, got {max_seq_len}")
    row_type = codes[:, Field.TYPE]
    son = int(np.flatnonzero(row_type == RowType.START_OF_NOTES)[0])
    header = codes[1:son]
    body = codes[son + 1:]
    body = body[(body[:, Field.TYPE] == RowType.NOTE) | (body[:, Field.TYPE] == RowType.CONTROL)]
    if ends and len(codes) <= max_seq_len:
        return codes
    if not ends and len(codes) - 1 <= max_seq_len:
        return codes[:-1]
    # h(k) = distinct instruments among the notes of the first k rows; 2 + h(k) + k grows with k.
    is_note = body[:, Field.TYPE] == RowType.NOTE
    instrument = np.where(is_note, body[:, Field.INSTRUMENT], -1)
    _, first = np.unique(instrument, return_index=True)
    is_first = np.zeros(len(body), dtype=np.int64)
    is_first[first] = 1
    is_first[~is_note] = 0
    k = np.arange(len(body) + 1)
    length = 2 + np.concatenate([[0], np.cumsum(is_first)]) + k
    n_keep = int(k[length <= max_seq_len].max())
    kept = body[:n_keep]
    used = np.unique(kept[kept[:, Field.TYPE] == RowType.NOTE, Field.INSTRUMENT])
    header = header[np.isin(header[:, Field.INSTRUMENT], used)]
    return np.concatenate([codes[:1], header, codes[son:son + 1], kept])


def make_item(
    notes: np.ndarray,
    encoding: Encoding,
    max_seq_len: int,
    max_beat: int | None = None,
    rng: np.random.Generator | None = None,
    augmentation: Augmentation = Augmentation(),
    meter: Meter | None = None,
) -> np.ndarray:
    """One training item from a notes array: when `rng` is given, varied as `augmentation` says
    (`mmt.augment`: a pitch shift and a random start beat, relabelled instruments, control rows,
    a part's rest), windowed, encoded and cropped.

    `meter`: the piece's, so that region spans (`augmentation.regions`) end on its bar lines
    (`window_bar_lines`); None: on beats.

    Without `rng` the window starts at beat 0, pitches stay as they are, the instruments are the
    piece's own and no note is a control.
    """
    notes = np.asarray(notes, dtype=np.int64).reshape(-1, 5)
    max_beat = encoding.max_beat if max_beat is None else max_beat
    start = 0
    if rng is not None:
        notes = random_shift(notes, augmentation, rng)
        starts = window_starts(notes, max_beat)
        start = int(starts[rng.integers(len(starts))])
    notes, ends = beat_window(notes, start, max_beat)
    if rng is not None:
        notes = maybe_remap(notes, encoding, augmentation, rng, measured=max_seq_len)
    codes = encode_notes(notes, encoding)
    if rng is not None:
        bars = None if meter is None else window_bar_lines(meter, start, max_beat, encoding.resolution)
        codes = maybe_controls(codes, encoding, augmentation, rng, bars)
    codes = crop_codes(codes, max_seq_len, ends=ends)
    if rng is not None:
        codes = maybe_rest(codes, encoding, augmentation, rng)
    return codes


def pitch_ranges(data: PreparedData, ids: list[str], encoding: Encoding, max_pieces: int = 20_000,
                 coverage: float = 0.998, seed: int = 0) -> dict[str, tuple[int, int]]:
    """Each instrument's pitch range in the data: instrument name -> (low, high) MIDI pitch.

    The range is the central `coverage` share of the instrument's notes (the 0.1st to
    99.9th percentile by default), so a few stray or mislabelled notes do not stretch it;
    read from at most `max_pieces` pieces (a seeded random choice; every piece of a split
    the music21 corpus's size, about 4 s for its 11,893, so that instruments only a few
    pieces have, which a data mix may weight up, get a range too). Drums are left out
    (their pitches name sounds, not registers).
    """
    chosen = ids if len(ids) <= max_pieces else sorted(np.random.default_rng(seed).choice(ids, max_pieces, False))
    pitches: dict[str, list[np.ndarray]] = {}
    for piece in chosen:
        notes = data.notes(piece)
        for program in np.unique(notes[:, NoteCol.PROGRAM]):
            if program == DRUM_PROGRAM:
                continue
            name = encoding.program_instrument[int(program)]
            if name is not None:
                pitches.setdefault(name, []).append(notes[notes[:, NoteCol.PROGRAM] == program, NoteCol.PITCH])
    tail = (1 - coverage) / 2 * 100
    ranges = {}
    for name, parts in sorted(pitches.items()):
        values = np.concatenate(parts)
        low, high = np.percentile(values, [tail, 100 - tail], method="nearest")
        ranges[name] = (int(low), int(high))
    return ranges


# ---------------------------------------------------------------------- dataset
class MusicDataset:
    """Code arrays of one split of a prepared directory, for training.

    Args:
        prepared_dir: a directory written by `mmt prepare`.
        split: "train", "valid" or "test" (reads `<split>.txt`).
        encoding: the encoding to build codes with; its resolution must match the
            prepared directory's `encoding.json` (None: use that file).
        max_seq_len: the most rows an item has.
        max_beat: the most beats an item spans (default and upper bound: `encoding.max_beat`).
        augment: how items are varied (`mmt.config.Augmentation`; True: its defaults, a pitch
            shift and a random start beat); None or False: every item as stored, from beat 0.
            Its `controls` > 0 needs an encoding with `anticipation` set.
        seed: the seed; item i of epoch e uses `np.random.default_rng([seed, e, i])`.

    `ds[i]` is an int64 array (L <= max_seq_len, 6). Works with `torch.utils.data.DataLoader`
    (map-style) and `collate`.
    """

    def __init__(
        self,
        prepared_dir: str | os.PathLike,
        split: str,
        encoding: Encoding | None,
        max_seq_len: int,
        max_beat: int | None = None,
        augment: Augmentation | bool | None = None,
        seed: int = 0,
    ) -> None:
        self.data = PreparedData(prepared_dir)
        self.ids = self.data.split(split)
        stored = self.data.encoding if self.data.encoding_path.is_file() else None
        if encoding is None:
            encoding = self.data.encoding  # raises naming the missing file
        if stored is not None and stored.resolution != encoding.resolution:
            raise DataError(
                f"{self.data.encoding_path}: notes were prepared at resolution {stored.resolution}, "
                f"but the encoding has resolution {encoding.resolution}"
            )
        if max_seq_len < 3:
            raise DataError(f"max_seq_len must be >= 3, got {max_seq_len}")
        max_beat = encoding.max_beat if max_beat is None else int(max_beat)
        if not 1 <= max_beat <= encoding.max_beat:
            raise DataError(f"max_beat must be in 1..{encoding.max_beat} (the encoding's max_beat), got {max_beat}")
        if int(seed) < 0:
            raise DataError(f"seed must be >= 0, got {seed}")
        if isinstance(augment, bool):
            augment = Augmentation() if augment else None
        if augment is not None and not isinstance(augment, Augmentation):
            raise DataError(f"augment must be an Augmentation, True, False or None, got {augment!r}")
        if augment is not None and augment.controls > 0 and not encoding.knows_controls:
            raise DataError("controls > 0 needs an encoding with control rows (set its anticipation)")
        self.augment: Augmentation | None = augment
        self.split = split
        self.encoding = encoding
        self.max_seq_len = int(max_seq_len)
        self.max_beat = max_beat
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose random augmentations the items use."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The generator of item `index` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def load_notes(self, index: int) -> np.ndarray:
        """The stored notes of item `index` (N x 5 int64); a malformed file raises naming it."""
        return self.data.notes(self.ids[index])

    def __getitem__(self, index: int) -> np.ndarray:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index = index % len(self)
        if self.augment is None:
            return make_item(self.load_notes(index), self.encoding, self.max_seq_len, self.max_beat)
        # the meter only matters to regions; others are not slowed by reading it
        meter = self.data.meter(self.ids[index]) if self.augment.regions > 0 else None
        return make_item(self.load_notes(index), self.encoding, self.max_seq_len, self.max_beat, self.rng(index),
                         self.augment, meter)


def collate(batch: list[np.ndarray]) -> dict:
    """Stack code arrays into a right-padded batch.

    Returns:
        {"codes": LongTensor (B, L, 6), zeros after each item's end;
         "mask": BoolTensor (B, L), True on real rows}, L = the longest item.
    """
    import torch

    if not batch:
        raise ValueError("collate needs at least one item")
    length = max(len(codes) for codes in batch)
    codes = torch.zeros((len(batch), length, 6), dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.bool)
    for row, item in enumerate(batch):
        item = np.asarray(item)
        if item.ndim != 2 or item.shape[1] != 6:
            raise ValueError(f"collate: item {row} must have shape (L, 6), got {item.shape}")
        codes[row, : len(item)] = torch.from_numpy(item.astype(np.int64, copy=False))
        mask[row, : len(item)] = True
    return {"codes": codes, "mask": mask}
