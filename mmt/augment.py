"""Training augmentation: the functions that vary a training item, and the take-over of a step's inputs.

Their settings are one frozen dataclass, `mmt.config.Augmentation` (the `data:` section of a
config); `mmt.data.make_item` applies the item-level ones in this order:

1. a pitch shift (`pitch_shift_bounds`, `shift_pitches`) and a random start beat;
2. relabelled instruments (`remap_instruments`, from the registers of one ensemble with
   probability `remap_ensemble`: `ensemble_registers`);
3. control rows (`select_controls`; some parts over a span: `select_region`);
4. a rest of one part (`rest_part`).

Training adds a simulated take-over to each step's inputs, its targets unchanged
(`step_takeover`, drawn from the step).

Each draws from the generator it is given; the dataset's generator of item i is a pure
function of (seed, epoch, i), the take-over's of (seed, step, rank), so workers, resumed
runs and several processes all draw the same.
"""

from __future__ import annotations

import numpy as np

from mmt.config import Augmentation
from mmt.constants import (DRUM_PROGRAM, INSTRUMENT_REGISTERS, REMAP_ENSEMBLES, REMAP_SPLITS, TAKEOVER_SHARE, Field,
                           NoteCol, RowType)
from mmt.encoding import Encoding, onsets, song_with_controls


# ---------------------------------------------------------------------- pitch shift
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


# ---------------------------------------------------------------------- relabelled instruments
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
                      measured: int | None = None, split: str = "random", order: bool = False) -> np.ndarray:
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
       instrument can play keeps its program and its pitches;
    4. with `order`: the parts that took instruments of one family (`mmt.constraints.PART_FAMILIES`)
       trade them so that the lowest part (by mean pitch) has the instrument lowest in the
       no-crossing order (`mmt.constraints.part_order`: a chorale's bass the cello, its soprano
       the violin), when every one of them still fits its new instrument (each then moves by
       the fitting octave move nearest its drawn one); so that the model sees cellos under
       violas under violins, as users ask for them.

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
    taken: dict[str, tuple[np.ndarray, int]] = {}  # instrument -> (its part's notes, the move drawn)
    for chosen in rng.permutation(parts):
        members = part == chosen
        low, high = int(pitch[members & seen].min()), int(pitch[members & seen].max())
        fits = {name: _moves(registers[name], low, high) for name in registers if name not in taken}
        names = [name for name, moves in fits.items() if moves]
        if not names:  # (a split part so rejoins its program)
            continue
        name = names[int(rng.integers(len(names)))]
        taken[name] = (members, fits[name][int(rng.integers(len(fits[name])))])
    if order:
        taken = _in_register_order(taken, pitch, seen, registers)
    for name, (members, move) in taken.items():
        program[members] = encoding.instrument_programs[encoding.instruments.index(name)]
        pitch[members] = np.clip(pitch[members] + move, 0, 127)
    return notes


def _moves(register: tuple[int, int], low: int, high: int) -> list[int]:
    """The octave moves (`OCTAVE_MOVES`) that bring pitches `low`..`high` into `register`."""
    return [move for move in OCTAVE_MOVES if register[0] <= low + move and high + move <= register[1]]


def _in_register_order(taken: dict, pitch: np.ndarray, seen: np.ndarray, registers: dict) -> dict:
    """`taken` (instrument -> (part notes, move)) with each family's instruments traded so that they
    follow their parts' mean pitches (see `remap_instruments`, step 4)."""
    from mmt.constraints import FAMILY_OF, part_order

    result = dict(taken)
    for family in dict.fromkeys(FAMILY_OF.get(name) for name in taken):
        names = [name for name in taken if family is not None and FAMILY_OF.get(name) == family]
        if len(names) < 2:
            continue
        place = part_order(names)
        instruments = sorted(names, key=place.__getitem__)
        parts = sorted((taken[name] for name in names), key=lambda entry: pitch[entry[0] & seen].mean())
        traded = {}
        for name, (members, drawn) in zip(instruments, parts):
            moves = _moves(registers[name], int(pitch[members & seen].min()), int(pitch[members & seen].max()))
            if not moves:
                break
            traded[name] = (members, min(moves, key=lambda move: (abs(move), move != drawn)))
        else:
            result.update(traded)
    return result


def ensemble_registers(rng: np.random.Generator) -> dict[str, tuple[int, int]]:
    """The registers of the instruments of one of `REMAP_ENSEMBLES`, drawn uniformly."""
    ensemble = REMAP_ENSEMBLES[list(REMAP_ENSEMBLES)[int(rng.integers(len(REMAP_ENSEMBLES)))]]
    return {name: INSTRUMENT_REGISTERS[name] for name in ensemble}


# ---------------------------------------------------------------------- rests, take-over, controls
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
    and one instrument takes the piece over (CHANGELOG.md, 2026-11-24);
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
    them over (CHANGELOG.md, 2026-11-24). Measured there: 900 steps of it with
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


CONTROL_KINDS: tuple[str, ...] = ("instruments", "spans", "suffix")  # drawn uniformly
REGION_KINDS: tuple[str, ...] = ("regions", "new_part")  # drawn with `Augmentation.regions`
SPAN_BEATS = (1, 8)  # a control span lasts 1..8 beats
SPAN_GAP_BEATS = 16.0  # mean beats between spans (exponential)
REGION_BEATS = (4, 16)  # a region lasts 4..16 beats, rounded up to a bar line when the bars are known
NEW_PART = 0.25  # the share of region items in which one part is written from a line to the item's end
NEW_PART_FROM_START = 0.5  # ... and the share of those in which it is written from the item's start


def select_controls(codes: np.ndarray, encoding: Encoding, rng: np.random.Generator, regions: float = 0.0,
                    bars: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Which notes of a song become control rows, drawn from `rng` (as the Anticipatory Music
    Transformer's training data, in beats).

    A song with two or more instruments takes, with probability `regions`, a region kind
    (`select_region`: some parts written over a span, everything else given). Otherwise one
    kind is drawn uniformly among those the song allows:
    - "instruments" (two or more instruments): a random non-empty proper subset of the
      instruments is given (accompaniment); the header declares the others;
    - "spans": the notes of random spans of 1..8 beats, a mean of 16 beats apart, are given;
    - "suffix": every note from a random onset on is given (infilling: the gap is what the
      model writes before it).
    With `regions` 0 nothing more is drawn than before it existed.

    Args:
        bars: the item's bar lines in ticks (for the region kinds; None: every beat is one).

    Returns:
        (one flag per note row, the header's instrument codes, the kind).
    """
    notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
    instruments = np.unique(notes[:, Field.INSTRUMENT])
    if regions > 0 and len(instruments) > 1 and rng.random() < regions:
        return select_region(notes, encoding.resolution, rng, bars)
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


def select_region(notes: np.ndarray, resolution: int, rng: np.random.Generator, bars: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, str]:
    """Some parts written over a span, every other note given: the layout of an edit region
    ("rewrite the cello in bars 5-8", "add a flute from bar 9"), drawn from `rng`.

    `notes`: note rows of two or more instruments. Lines are `bars` (bar starts in ticks; the
    item's start is one too) or, without them, every beat. One of two kinds:
    - "regions" (1 - `NEW_PART`): the span starts at the last line at or before a note drawn
      uniformly and lasts 4..16 beats (`REGION_BEATS`), up to the next line; the written
      parts are a random non-empty proper subset of the instruments with a note in the span
      (the one such instrument, when only one plays there);
    - "new_part" (`NEW_PART`): one instrument, drawn uniformly, is written from the item's
      start (`NEW_PART_FROM_START`) or from the last line at or before one of its notes
      drawn uniformly, to the item's end.

    The layout is `region_layout`'s, as an edit builds it at generation.

    Returns:
        (one flag per note row: given, the header's instrument codes, the kind).
    """
    instrument = notes[:, Field.INSTRUMENT]
    instruments = np.unique(instrument)
    tick = onsets(notes, resolution)
    lines = np.arange(0, int(tick.max()) + 1, resolution) if bars is None else np.union1d(0, bars)

    def line_before(at: int) -> int:
        return int(lines[np.searchsorted(lines, at, side="right") - 1])

    if rng.random() < NEW_PART:
        kind = "new_part"
        written = instruments[[int(rng.integers(len(instruments)))]]
        own = tick[instrument == written[0]]
        start = 0 if rng.random() < NEW_PART_FROM_START else line_before(int(own[rng.integers(len(own))]))
        stop = int(tick.max()) + 1
    else:
        kind = "regions"
        start = line_before(int(tick[rng.integers(len(tick))]))
        length = int(rng.integers(REGION_BEATS[0], REGION_BEATS[1] + 1)) * resolution
        later = lines[lines >= start + length]
        stop = int(later[0]) if len(later) else start + length
        playing = np.unique(instrument[(tick >= start) & (tick < stop)])
        written = rng.choice(playing, 1 + int(rng.integers(max(len(playing) - 1, 1))), replace=False)
    return (*region_layout(notes, resolution, start, stop, written), kind)


def region_layout(notes: np.ndarray, resolution: int, start: int, stop: int, written
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Which of `notes` (note rows) are given, and the header, when the parts `written`
    (instrument codes; new ones too) are written from tick `start` to `stop` (excluded).

    The notes before `start` stay note rows (the prompt); from `start` on every note is
    given except the written parts' before `stop` (the model's targets). The header declares
    the written parts and the instruments of the notes before `start` (every note row's
    instrument, as the grammar asks; a span from the start declares just the written parts,
    as accompaniment does; every part written is infilling's layout).

    Returns:
        (one flag per note row: given, the header's instrument codes).
    """
    instrument = notes[:, Field.INSTRUMENT]
    tick = onsets(notes, resolution)
    given = (tick >= start) & ~((tick < stop) & np.isin(instrument, written))
    return given, np.union1d(written, instrument[tick < start]).astype(np.int64)


# ---------------------------------------------------------------------- drawn with the settings
def random_shift(notes: np.ndarray, augmentation: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """`notes` moved by one shift drawn uniformly from `augmentation.pitch_shift`, narrowed to the
    shifts that keep every pitched note in 0..127 (`pitch_shift_bounds`)."""
    low, high = pitch_shift_bounds(notes, *augmentation.pitch_shift)
    return shift_pitches(notes, int(rng.integers(low, high + 1)))


def maybe_remap(notes: np.ndarray, encoding: Encoding, augmentation: Augmentation, rng: np.random.Generator,
                measured: int | None = None) -> np.ndarray:
    """With probability `instrument_remap`, `notes` relabelled (`remap_instruments`, split as
    `remap_split` says), their instruments those of one ensemble with probability
    `remap_ensemble` (`ensemble_registers`); otherwise `notes`."""
    p = augmentation.instrument_remap
    if not (p > 0 and rng.random() < p):
        return notes
    registers = INSTRUMENT_REGISTERS
    if augmentation.remap_ensemble > 0 and rng.random() < augmentation.remap_ensemble:
        registers = ensemble_registers(rng)
    return remap_instruments(notes, encoding, rng, registers, measured=measured, split=augmentation.remap_split,
                             order=augmentation.remap_order)


def maybe_controls(codes: np.ndarray, encoding: Encoding, augmentation: Augmentation,
                   rng: np.random.Generator, bars: np.ndarray | None = None) -> np.ndarray:
    """With probability `controls`, the song with some notes as control rows (`select_controls`,
    a region kind with probability `regions`, its spans ending on `bars` when given),
    interleaved an anticipation interval ahead of their time (`mmt.encoding.song_with_controls`)."""
    p = augmentation.controls
    if not (p > 0 and rng.random() < p):
        return codes
    given, header, _ = select_controls(codes, encoding, rng, augmentation.regions, bars)
    return song_with_controls(codes, given, encoding, header)


def maybe_rest(codes: np.ndarray, encoding: Encoding, augmentation: Augmentation,
               rng: np.random.Generator) -> np.ndarray:
    """With probability `rests`, the song with one part resting a while (`rest_part`)."""
    p = augmentation.rests
    if not (p > 0 and rng.random() < p):
        return codes
    return rest_part(codes, encoding, rng)


def step_takeover(codes, mask, augmentation: Augmentation | None, seed: int, step: int, rank: int = 0):
    """A training step's inputs with simulated take-overs (`takeover_inputs`), or None: the codes themselves.

    Drawn from (seed, step, rank), so a resumed run draws what an uninterrupted one did.
    None also without `augmentation` or with its `takeover` 0.
    """
    if augmentation is None or augmentation.takeover == 0:
        return None
    rng = np.random.default_rng([seed, step, rank])
    return takeover_inputs(codes, mask, augmentation.takeover, rng, augmentation.takeover_share)
