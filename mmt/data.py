"""The training Dataset: prepared notes -> (augmented, windowed, cropped) code arrays.

A prepared directory (written by `mmt prepare`) holds `notes/<id>.npy` (N x 5 int:
beat, position, pitch, duration, program; program 128 marks drums), one id list per
split (`train.txt`, `valid.txt`, `test.txt`) and `encoding.json`.

Each item is built from the stored notes on demand:

1. augmentation (when `augment`): every pitched note moves by one shift drawn from
   `pitch_shift` (default -5..+6 semitones), narrowed so that no pitch leaves 0..127;
   drums are never shifted;
2. beat window: a piece spanning more than `max_beat` beats keeps only `max_beat`
   beats, starting at a random beat that holds a note onset (at beat 0 without
   augmentation); beats are shifted so the window starts at beat 0; then (when augmenting,
   with probability `remap`) the parts are relabelled as other instruments whose register
   holds them (`remap_instruments`);
3. encoding with `mmt.encode_notes`;
4. control selection (when `controls` > 0 and augmenting): with probability `controls`
   some notes become control rows (`select_controls`: whole instruments, random time
   spans, or everything from a random beat on), interleaved an anticipation interval
   ahead of their time (`mmt.encoding.song_with_controls`), so that one model learns
   the unconditioned, instrument, continuation, accompaniment and infilling layouts;
5. cropping to `max_seq_len` rows: the most notes that fit with start-of-song, the
   header of the instruments those notes use, and start-of-notes; end-of-song is kept
   only when the piece really ends there (no note was cut by the window or the crop);
6. a rest (when augmenting, with probability `rests`): one part falls silent for a few bars
   and plays again before the item ends (`rest_part`).

Training may also show the model a simulated take-over in its inputs, its targets unchanged
(`takeover_inputs`, drawn per batch from the step: `DataConfig.takeover`).

The randomness of item i is a pure function of (seed, epoch, i), so workers, resumed
runs and several processes all see the same items.
"""

from __future__ import annotations

import os

import numpy as np

from mmt.constants import (DRUM_PROGRAM, INSTRUMENT_REGISTERS, REMAP_ENSEMBLES, REMAP_SPLITS, TAKEOVER_SHARE, Field,
                           NoteCol, RowType)
from mmt.encoding import Encoding, encode_notes, onsets, song_with_controls
from mmt.prepared import DataError, PreparedData

DEFAULT_PITCH_SHIFT = (-5, 6)


# ---------------------------------------------------------------------- pure steps
def pitch_shift_bounds(notes: np.ndarray, low: int, high: int) -> tuple[int, int]:
    """The shifts in `low..high` (inclusive) that keep every pitched note in 0..127.

    Drums (program 128) do not count: they are never shifted. With no pitched note
    every shift in the range is allowed. Since stored pitches lie in 0..127, the
    result always contains 0 when `low <= 0 <= high`.
    """
    pitched = notes[notes[:, NoteCol.PROGRAM] != DRUM_PROGRAM, NoteCol.PITCH]
    if len(pitched) == 0:
        return low, high
    return max(low, -int(pitched.min())), min(high, 127 - int(pitched.max()))


def shift_pitches(notes: np.ndarray, shift: int) -> np.ndarray:
    """A copy of `notes` with every non-drum pitch moved by `shift` semitones."""
    shifted = notes.copy()
    pitched = shifted[:, NoteCol.PROGRAM] != DRUM_PROGRAM
    shifted[pitched, NoteCol.PITCH] += shift
    return shifted


REMAP_SPLIT = 0.75    # the probability that a relabelled item first splits its chordal part by register ("random")
MAX_PARTS = 4         # a split makes the item's pitched parts at most this many
CHORDAL_SHARE = 0.5   # a part is chordal when at least this share of its notes start with another of its notes
OCTAVE_MOVES = (0, -12, 12)  # a relabelled part may sound an octave lower or higher (a bass line on the contrabass)
DRUM_PART = 0.2       # the probability that a relabelled item without drums turns one of its parts into drums
DRUM_SOUNDS = (36, 38, 42)  # GM bass drum, snare, closed hi-hat: a drummed part's low, middle and high thirds


def onset_sizes(notes: np.ndarray) -> np.ndarray:
    """For each of `notes`, how many of them start at its (beat, position)."""
    if len(notes) == 0:
        return np.zeros(0, dtype=np.int64)
    _, inverse, counts = np.unique(notes[:, [NoteCol.BEAT, NoteCol.POSITION]], axis=0, return_inverse=True,
                                   return_counts=True)
    return counts[inverse.ravel()]


def chordal_share(notes: np.ndarray) -> float:
    """The share of `notes` that start at the same (beat, position) as another of them (0 when empty)."""
    return float(np.mean(onset_sizes(notes) > 1)) if len(notes) else 0.0


def voice_lines(notes: np.ndarray, n: int, measured: np.ndarray | None = None) -> np.ndarray:
    """Which of `n` voices (0: the lowest) each of `notes` is in, as a chorale's parts are read.

    At an onset with exactly n notes, the k-th lowest is voice k; every other note joins the
    voice whose mean pitch (over those full onsets) is nearest. Means are taken over the notes
    `measured` marks (all: None). Without a full onset, the voices are the pitch quantiles.
    """
    measured = np.ones(len(notes), dtype=bool) if measured is None else measured
    pitch = notes[:, NoteCol.PITCH]
    order = np.lexsort((pitch, notes[:, NoteCol.POSITION], notes[:, NoteCol.BEAT]))
    onset = notes[order][:, [NoteCol.BEAT, NoteCol.POSITION]]
    starts = np.flatnonzero(np.r_[True, np.any(onset[1:] != onset[:-1], axis=1)])
    lengths = np.diff(np.r_[starts, len(notes)])
    rank, size = np.empty(len(notes), dtype=np.int64), np.empty(len(notes), dtype=np.int64)
    rank[order] = np.arange(len(notes)) - np.repeat(starts, lengths)
    size[order] = np.repeat(lengths, lengths)  # `onset_sizes`, from this grouping
    full = (size == n) & measured
    if not full.any():
        cuts = np.quantile(pitch[measured], np.arange(1, n) / n, method="nearest")
        return np.searchsorted(cuts, pitch, side="right")
    means = np.array([pitch[full & (rank == k)].mean() for k in range(n)])
    return np.where(size == n, rank, np.abs(pitch[:, None] - means[None, :]).argmin(-1))


def voice_count(notes: np.ndarray) -> int:
    """The voices of a part: the median, over its notes, of how many notes start with each (a
    four-part chorale: 4; a melody: 1); 0 when empty."""
    return int(np.median(onset_sizes(notes))) if len(notes) else 0


def remap_instruments(notes: np.ndarray, encoding: Encoding, rng: np.random.Generator,
                      registers: dict[str, tuple[int, int]] = INSTRUMENT_REGISTERS,
                      measured: int | None = None, split: str = "random") -> np.ndarray:
    """A copy of `notes` whose parts play other instruments, each within its register.

    So that a model sees every instrument a user may ask for, in every combination, although
    the corpus has mostly voices, strings and piano (and gives a chorale's four voices one
    instrument, `voices`):

    1. split (`split` "random": with probability `REMAP_SPLIT`; "voices": always; when the
       notes have fewer than `MAX_PARTS` pitched programs): the pitched program with the most
       notes, if it is chordal (at least `CHORDAL_SHARE` of its notes start together with
       another of its notes: a chorale, a keyboard part), becomes m parts cut at the pitch
       quantiles 1/m, ..., (m-1)/m of its notes (part 0: the lowest), m drawn from
       2..MAX_PARTS - programs + 1 ("random"); or ("voices") into its `voice_count` voices
       within those bounds, each note in its voice (`voice_lines`): a chorale's four voices
       become four lines, one note at a time each, so that no relabelled trumpet learns to
       play the whole chorale's chords;
    2. drums (with probability `DRUM_PART`, when the notes have no drums and two or more
       parts): one part drawn uniformly becomes a drum part that plays its rhythm, its low,
       middle and high pitch thirds on the bass drum, snare and closed hi-hat (`DRUM_SOUNDS`),
       so that a model trained on a corpus without drums learns to play a drum kit it is given;
    3. relabel: the other parts, in random order, each take an instrument no other part has taken,
       drawn uniformly among those of `registers` whose range holds every pitch of the part as
       it is or moved by an octave (`OCTAVE_MOVES`: as orchestrators double a line an octave
       apart; it also shows the model a line in other octaves over the same harmony); the
       part moves by one of the moves that fit, drawn uniformly. A part that no free
       instrument can play keeps its program and its pitches.

    Parts, their chords, quantiles and ranges are those of the first `measured` notes (all:
    None), the notes a training item keeps after its crop; later notes follow their part.
    The piece's own drums (program 128) are never split, relabelled or given to a part.
    """
    notes = notes.copy()
    program = notes[:, NoteCol.PROGRAM]
    pitch = notes[:, NoteCol.PITCH]
    seen = np.zeros(len(notes), dtype=bool)
    seen[:measured] = True
    pitched = program != DRUM_PROGRAM
    part = np.where(pitched, program, -1)
    programs, counts = np.unique(program[pitched & seen], return_counts=True)
    if len(programs) == 0:
        return notes
    if split not in REMAP_SPLITS:
        raise ValueError(f"split must be one of {', '.join(REMAP_SPLITS)}, got {split!r}")
    if len(programs) < MAX_PARTS and (split == "voices" or rng.random() < REMAP_SPLIT):
        biggest = program == programs[np.argmax(counts)]
        if chordal_share(notes[biggest & seen]) >= CHORDAL_SHARE:
            most = MAX_PARTS - len(programs) + 1
            if split == "voices":
                n_parts = int(np.clip(voice_count(notes[biggest & seen]), 2, most))
                part[biggest] = DRUM_PROGRAM + 1 + voice_lines(notes[biggest], n_parts, seen[biggest])
            else:
                n_parts = int(rng.integers(2, most + 1))
                cuts = np.quantile(pitch[biggest & seen], np.arange(1, n_parts) / n_parts, method="nearest")
                part[biggest] = DRUM_PROGRAM + 1 + np.searchsorted(cuts, pitch[biggest], side="right")
    parts = np.unique(part[pitched & seen])
    if len(parts) > 1 and np.all(pitched) and rng.random() < DRUM_PART:
        drummed = part == parts[int(rng.integers(len(parts)))]
        cuts = np.quantile(pitch[drummed & seen], [1 / 3, 2 / 3], method="nearest")
        pitch[drummed] = np.asarray(DRUM_SOUNDS)[np.searchsorted(cuts, pitch[drummed])]
        program[drummed] = DRUM_PROGRAM
        parts = parts[parts != part[drummed][0]]
    taken: set[str] = set()
    for chosen in rng.permutation(parts):
        members = part == chosen
        low, high = int(pitch[members & seen].min()), int(pitch[members & seen].max())
        fits = {name: [move for move in OCTAVE_MOVES if registers[name][0] <= low + move
                       and high + move <= registers[name][1]] for name in registers if name not in taken}
        names = [name for name, moves in fits.items() if moves]
        if not names:  # (a split part so rejoins its program)
            continue
        name = names[int(rng.integers(len(names)))]
        taken.add(name)
        program[members] = encoding.instrument_programs[encoding.instruments.index(name)]
        pitch[members] = np.clip(pitch[members] + fits[name][int(rng.integers(len(fits[name])))], 0, 127)
    return notes


def ensemble_registers(rng: np.random.Generator) -> dict[str, tuple[int, int]]:
    """The registers of the instruments of one of `REMAP_ENSEMBLES`, drawn uniformly."""
    ensemble = REMAP_ENSEMBLES[list(REMAP_ENSEMBLES)[int(rng.integers(len(REMAP_ENSEMBLES)))]]
    return {name: INSTRUMENT_REGISTERS[name] for name in ensemble}


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


REST_BEATS = (4, 32)  # a part's rest lasts 4..32 beats


def rest_part(codes: np.ndarray, encoding: Encoding, rng: np.random.Generator,
              beats: tuple[int, int] = REST_BEATS) -> np.ndarray:
    """A copy of a song's codes in which one part rests for a while and then plays again.

    One instrument, drawn uniformly among those with note rows, loses its notes
    from one of its onsets for a number of beats drawn uniformly from `beats`; the onset is
    drawn uniformly among its onsets that have a note of it after the rest, so that the part
    always plays again within the song. A song with fewer than two instruments, or whose
    drawn part has no such onset, comes back unchanged. Control rows and the header stay.

    Why: taught only on pieces whose declared parts play throughout, a model that has let one
    instrument go quiet for a few notes while it samples reads the silence as the part's end,
    and one instrument takes the piece over (`benchmarks/results/instrument-coverage.md`);
    parts that rest and come back are meant to teach it that a declared instrument returns.
    Measured there: 2,000 steps with `rests: 0.5` delayed the take-over a little, did not stop it.
    """
    is_note = codes[:, Field.TYPE] == RowType.NOTE
    instruments = np.unique(codes[is_note, Field.INSTRUMENT])
    if len(instruments) < 2:
        return codes
    chosen = instruments[int(rng.integers(len(instruments)))]
    part = is_note & (codes[:, Field.INSTRUMENT] == chosen)
    tick = onsets(codes, encoding.resolution)
    length = int(rng.integers(beats[0], beats[1] + 1)) * encoding.resolution
    starts = np.unique(tick[part])
    starts = starts[starts + length <= tick[part].max()]
    if len(starts) == 0:
        return codes
    start = int(starts[rng.integers(len(starts))])
    silent = part & (tick >= start) & (tick < start + length)
    return codes[~silent]


TAKEOVER_MIN_NOTES = 20  # of items with at least this many note rows


def takeover_inputs(codes, mask, p: float, rng: np.random.Generator,
                    share: tuple[float, float] = TAKEOVER_SHARE):
    """A copy of a batch's codes in which some items show one instrument playing a stretch alone.

    For each item of the batch (B, L, 6) with `TAKEOVER_MIN_NOTES` (20) or more note rows of two or
    more instruments, with probability `p`: a run of consecutive note rows, a share of them drawn
    uniformly from `share`, starting at a uniformly drawn note row, gets one of the item's
    instruments (drawn uniformly) in its instrument field. Nothing else changes. `mask` (B, L):
    True on real rows.

    Training reads the copy as its *inputs* and the true codes as its targets (`compute_loss`'s
    `inputs`), so the model learns to bring the other parts back after a stretch in which one
    instrument seemed to have everything: what its own samples look like when one instrument takes
    them over (`benchmarks/results/instrument-coverage.md`). Measured there: 900 steps of it with
    p 0.5 raised the share of free-running samples in which every requested instrument plays from
    35% to 67%, and the parts' top lines step further.
    """
    out = codes.clone()
    for item in range(codes.shape[0]):
        if rng.random() >= p:
            continue
        rows = ((codes[item, :, Field.TYPE] == RowType.NOTE) & mask[item]).nonzero().flatten()
        n = len(rows)
        instruments = codes[item, rows, Field.INSTRUMENT].unique()
        if n < TAKEOVER_MIN_NOTES or len(instruments) < 2:
            continue
        length = int(rng.integers(int(share[0] * n), int(share[1] * n) + 1))
        start = int(rng.integers(0, n - length + 1))
        out[item, rows[start:start + length], Field.INSTRUMENT] = instruments[int(rng.integers(len(instruments)))]
    return out


CONTROL_KINDS: tuple[str, ...] = ("instruments", "spans", "suffix")
SPAN_BEATS = (1, 8)  # a control span lasts 1..8 beats
SPAN_GAP_BEATS = 16.0  # mean beats between spans (exponential)


def select_controls(codes: np.ndarray, encoding: Encoding, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray, str]:
    """Which notes of a song become control rows, drawn from `rng` (as the Anticipatory Music
    Transformer's training data, in beats).

    One kind is drawn uniformly among those the song allows:
    - "instruments" (two or more instruments): a random non-empty proper subset of the
      instruments is given (accompaniment); the header declares the others;
    - "spans": the notes of random spans of 1..8 beats, a mean of 16 beats apart, are given;
    - "suffix": every note from a random onset on is given (infilling: the gap is what the
      model writes before it).

    Returns:
        (one flag per note row, the header's instrument codes, the kind).
    """
    notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
    instruments = np.unique(notes[:, Field.INSTRUMENT])
    kinds = [kind for kind in CONTROL_KINDS if kind != "instruments" or len(instruments) > 1]
    kind = kinds[int(rng.integers(len(kinds)))]
    tick = onsets(notes, encoding.resolution)
    if kind == "instruments":
        chosen = rng.choice(instruments, 1 + int(rng.integers(len(instruments) - 1)), replace=False)
        given = np.isin(notes[:, Field.INSTRUMENT], chosen)
        return given, instruments[~np.isin(instruments, chosen)], kind
    if kind == "suffix":
        start = tick[int(rng.integers(len(tick)))] if len(tick) else 0
        return tick >= start, instruments, kind
    given = np.zeros(len(notes), dtype=bool)
    end = int(tick.max()) + 1 if len(tick) else 0
    at = rng.exponential(SPAN_GAP_BEATS) * encoding.resolution
    while at < end:
        length = int(rng.integers(SPAN_BEATS[0], SPAN_BEATS[1] + 1)) * encoding.resolution
        given |= (tick >= at) & (tick < at + length)
        at += length + rng.exponential(SPAN_GAP_BEATS) * encoding.resolution
    return given, instruments, kind


def make_item(
    notes: np.ndarray,
    encoding: Encoding,
    max_seq_len: int,
    max_beat: int | None = None,
    rng: np.random.Generator | None = None,
    pitch_shift: tuple[int, int] = DEFAULT_PITCH_SHIFT,
    controls: float = 0.0,
    remap: float = 0.0,
    remap_split: str = "random",
    rests: float = 0.0,
    remap_ensemble: float = 0.0,
) -> np.ndarray:
    """One training item from a notes array: augment (when `rng` is given), window, relabel the
    parts as other instruments (with probability `remap`, when `rng` is given;
    `remap_instruments`, splitting a chordal part as `remap_split` says, the instruments those
    of one ensemble with probability `remap_ensemble`: `ensemble_registers`), encode, select
    controls (with probability `controls`, when `rng` is given), crop, let a part rest (with
    probability `rests`, when `rng` is given; `rest_part`).

    Without `rng` the window starts at beat 0, pitches stay as they are, the instruments are the
    piece's own and no note is a control.
    """
    notes = np.asarray(notes, dtype=np.int64).reshape(-1, 5)
    max_beat = encoding.max_beat if max_beat is None else max_beat
    start = 0
    if rng is not None:
        low, high = pitch_shift_bounds(notes, *pitch_shift)
        notes = shift_pitches(notes, int(rng.integers(low, high + 1)))
        starts = window_starts(notes, max_beat)
        start = int(starts[rng.integers(len(starts))])
    notes, ends = beat_window(notes, start, max_beat)
    if rng is not None and remap > 0 and rng.random() < remap:
        registers = INSTRUMENT_REGISTERS
        if remap_ensemble > 0 and rng.random() < remap_ensemble:
            registers = ensemble_registers(rng)
        notes = remap_instruments(notes, encoding, rng, registers, measured=max_seq_len, split=remap_split)
    codes = encode_notes(notes, encoding)
    if rng is not None and controls > 0 and rng.random() < controls:
        given, header, _ = select_controls(codes, encoding, rng)
        codes = song_with_controls(codes, given, encoding, header)
    codes = crop_codes(codes, max_seq_len, ends=ends)
    if rng is not None and rests > 0 and rng.random() < rests:
        codes = rest_part(codes, encoding, rng)
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
        augment: random pitch shift and random start beat.
        seed: the seed; item i of epoch e uses `np.random.default_rng([seed, e, i])`.
        pitch_shift: inclusive range of semitone shifts used when augmenting.
        controls: when augmenting, the probability that an item gets control rows
            (`select_controls`); needs an encoding with `anticipation` set.
        remap: when augmenting, the probability that an item's parts are relabelled as
            other instruments (`remap_instruments`).
        remap_split: how a relabelled item splits a chordal part: "random" or "voices"
            (`remap_instruments`).

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
        augment: bool = False,
        seed: int = 0,
        pitch_shift: tuple[int, int] = DEFAULT_PITCH_SHIFT,
        controls: float = 0.0,
        remap: float = 0.0,
        remap_split: str = "random",
        rests: float = 0.0,
        remap_ensemble: float = 0.0,
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
        low, high = (int(v) for v in pitch_shift)
        if low > 0 or high < 0:
            raise DataError(f"pitch_shift must contain 0, got ({low}, {high})")
        for name, value in (("controls", controls), ("remap", remap), ("rests", rests),
                            ("remap_ensemble", remap_ensemble)):
            if not 0 <= value <= 1:
                raise DataError(f"{name} must be a probability in 0..1, got {value}")
        if controls > 0 and not encoding.knows_controls:
            raise DataError("controls > 0 needs an encoding with control rows (set its anticipation)")
        if remap_split not in REMAP_SPLITS:
            raise DataError(f"remap_split must be one of {', '.join(REMAP_SPLITS)}, got {remap_split!r}")
        self.remap_ensemble = float(remap_ensemble)
        self.controls = float(controls)
        self.remap = float(remap)
        self.rests = float(rests)
        self.remap_split = remap_split
        self.split = split
        self.encoding = encoding
        self.max_seq_len = int(max_seq_len)
        self.max_beat = max_beat
        self.augment = bool(augment)
        self.seed = int(seed)
        self.pitch_shift = (low, high)
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
        rng = self.rng(index) if self.augment else None
        return make_item(
            self.load_notes(index), self.encoding, self.max_seq_len, self.max_beat, rng, self.pitch_shift,
            self.controls, self.remap, self.remap_split, self.rests, self.remap_ensemble)


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
