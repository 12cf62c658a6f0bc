"""Objective music metrics on a `muspy.Music`: H1, H4, GS, muspy's, descriptive statistics.

Every metric is a pure function `f(music, ...) -> float` that returns NaN where it is
undefined (no notes, too few bars) instead of raising.

Bars. A piece spans ticks `[0, end)`, where `end` is the offset of its last note (every
track, drums included; a note lasts at least one tick). Bars follow the piece's time signatures (4/4 when it has none):
the first time signature applies from tick 0, each later one starts a new bar at its own
time, and a bar lasts `numerator * 4 / denominator` beats of `music.resolution` ticks.
So a 3/4 piece is cut into bars of 3 beats. A note belongs to the bar of its onset.

References:
    [MusDr] Shih-Lun Wu and Yi-Hsuan Yang, "The Jazz Transformer on the Front Line:
        Exploring the Shortcomings of AI-composed Music through Quantitative Measures",
        ISMIR 2020 (H1, H4, GS).
    [MusPy] Hao-Wen Dong, Ke Chen, Julian McAuley and Taylor Berg-Kirkpatrick, "MusPy: A
        Toolkit for Symbolic Music Generation", ISMIR 2020 (pitch-class entropy, scale
        consistency, groove consistency, polyphony), as used by the Multitrack Music
        Transformer (Dong et al., ICASSP 2023).
    [MuseGAN] Hao-Wen Dong, Wen-Yi Hsiao, Li-Chia Yang and Yi-Hsuan Yang, "MuseGAN:
        Multi-track Sequential Generative Adversarial Networks for Symbolic Music
        Generation and Accompaniment", AAAI 2018 (empty-bar rate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import muspy
import numpy as np

METRICS: tuple[str, ...] = (
    "h1",
    "h4",
    "gs",
    "pitch_class_entropy",
    "scale_consistency",
    "groove_consistency",
    "notes_per_bar",
    "n_instruments",
    "polyphony",
    "empty_bar_rate",
)
"""The columns of `compute_metrics`, in table order."""

METRIC_DESCRIPTIONS: dict[str, str] = {
    "h1": "pitch-class entropy over 1-bar windows, bits [MusDr]",
    "h4": "pitch-class entropy over 4-bar windows, bits [MusDr]",
    "gs": "grooving pattern similarity over all pairs of bars [MusDr]",
    "pitch_class_entropy": "muspy.pitch_class_entropy: whole-piece pitch-class entropy, bits",
    "scale_consistency": "muspy.scale_consistency: largest in-scale note rate over major/minor scales",
    "groove_consistency": "muspy.groove_consistency: 1 - mean Hamming distance of neighbouring bars",
    "notes_per_bar": "notes (drums included) per bar",
    "n_instruments": "tracks with at least one note",
    "polyphony": "muspy.polyphony: mean number of pitches sounding when any sounds",
    "empty_bar_rate": "fraction of bars in which no note sounds [MuseGAN]",
}

DEFAULT_TIME_SIGNATURE = (4, 4)


# ---------------------------------------------------------------------- notes and bars
@dataclass(frozen=True)
class _Notes:
    """Every note of a Music as parallel arrays (ticks at `music.resolution`)."""

    time: np.ndarray
    end: np.ndarray
    pitch: np.ndarray
    is_drum: np.ndarray

    def __len__(self) -> int:
        return len(self.time)


def _notes(music: muspy.Music) -> _Notes:
    # Notes before tick 0 belong to no bar; they are left out. A note lasts at least a tick.
    rows = [
        (note.time, note.time + max(note.duration, 1), note.pitch, track.is_drum)
        for track in music.tracks
        for note in track.notes
        if note.time >= 0
    ]
    table = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return _Notes(time=table[:, 0], end=table[:, 1], pitch=table[:, 2], is_drum=table[:, 3].astype(bool))


def bar_ticks(numerator: int, denominator: int, resolution: int) -> int:
    """Length of a bar in ticks: `numerator * 4 / denominator` beats of `resolution` ticks.

    A bar of 3/4 at 12 ticks per beat lasts 36 ticks; 6/8 also lasts 36 ticks.
    """
    if numerator < 1 or denominator < 1 or resolution < 1:
        raise ValueError(
            f"time signature {numerator}/{denominator} at resolution {resolution} has no positive bar length"
        )
    return max(1, round(resolution * numerator * 4 / denominator))


def measure_resolution(music: muspy.Music) -> int:
    """Ticks per bar of the piece's first time signature (4/4 when it has none)."""
    signatures = sorted(music.time_signatures, key=lambda ts: ts.time)
    numerator, denominator = (
        (signatures[0].numerator, signatures[0].denominator) if signatures else DEFAULT_TIME_SIGNATURE
    )
    return bar_ticks(numerator, denominator, music.resolution)


def piece_end(music: muspy.Music) -> int:
    """The piece's length in ticks: the latest note offset of any track (0 with no notes)."""
    notes = _notes(music)
    return int(notes.end.max()) if len(notes) else 0


def bars(music: muspy.Music) -> tuple[np.ndarray, np.ndarray]:
    """Start ticks and lengths of the bars covering `[0, piece_end(music))`.

    The first time signature applies from tick 0 (4/4 when there is none); a later one
    starts a new bar at its time, even in the middle of the current bar (which is then
    shorter). The last bar keeps its full length even where the piece ends inside it.

    Returns:
        (starts, lengths), int64 arrays with one entry per bar (empty with no notes).
    """
    end = piece_end(music)
    if end <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    by_time: dict[int, tuple[int, int]] = {}
    for ts in sorted(music.time_signatures, key=lambda ts: ts.time):
        by_time[max(int(ts.time), 0)] = (int(ts.numerator), int(ts.denominator))
    changes = sorted(by_time.items()) or [(0, DEFAULT_TIME_SIGNATURE)]
    changes[0] = (0, changes[0][1])
    starts: list[int] = []
    lengths: list[int] = []
    for k, (time, (numerator, denominator)) in enumerate(changes):
        stop = changes[k + 1][0] if k + 1 < len(changes) else end
        length = bar_ticks(numerator, denominator, music.resolution)
        for start in range(time, min(stop, end), length):
            starts.append(start)
            lengths.append(length if k + 1 == len(changes) else min(length, stop - start))
    return np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int64)


def bar_starts(music: muspy.Music) -> np.ndarray:
    """Start ticks of the piece's bars (see `bars`)."""
    return bars(music)[0]


def bar_index(starts: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """Index of the bar holding each tick (`starts` as returned by `bar_starts`)."""
    return np.searchsorted(starts, ticks, side="right") - 1


def _entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy in bits of a histogram: -sum p log2 p over its non-empty bins."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


# ---------------------------------------------------------------------- MusDr: H1, H4, GS
def pitch_class_entropy_bars(music: muspy.Music, n_bars: int = 1) -> float:
    r"""Pitch-class histogram entropy over windows of `n_bars` bars: H1 (n=1), H4 (n=4).

    Windows of `n_bars` consecutive bars slide one bar at a time over the piece's `B`
    bars (`B - n_bars + 1` windows). In window `w`, `h_w` is the 12-bin histogram of the
    pitch classes (pitch mod 12) of the notes whose onset lies in it (each note counts
    once; drums excluded), and

    .. math::
        H_w = -\sum_{c=0}^{11} p_w(c) \log_2 p_w(c), \qquad p_w = h_w / \sum_c h_w(c);

    windows without notes are skipped and the metric is the mean of `H_w` over the rest.
    NaN when no window has a note (no pitched notes, or fewer than `n_bars` bars).
    A bar of a repeated C major triad gives log2(3). Range [0, log2 12].

    Reference: Wu and Yang, "The Jazz Transformer on the Front Line", ISMIR 2020 (MusDr).
    """
    if n_bars < 1:
        raise ValueError(f"n_bars must be >= 1, got {n_bars}")
    starts = bar_starts(music)
    notes = _notes(music)
    pitched = ~notes.is_drum
    if len(starts) < n_bars or not pitched.any():
        return math.nan
    histogram = np.zeros((len(starts), 12), dtype=np.int64)
    np.add.at(histogram, (bar_index(starts, notes.time[pitched]), notes.pitch[pitched] % 12), 1)
    cumulative = np.vstack([np.zeros((1, 12), dtype=np.int64), np.cumsum(histogram, axis=0)])
    windows = cumulative[n_bars:] - cumulative[:-n_bars]
    entropies = [_entropy_bits(window) for window in windows if window.sum() > 0]
    return float(np.mean(entropies)) if entropies else math.nan


def onset_grid(music: muspy.Music) -> tuple[np.ndarray, np.ndarray]:
    """Binary onset vector of every bar on the music's tick grid.

    Returns:
        (grid, lengths): `grid[b, s]` is True when a note of any track (drums included)
        starts `s` ticks into bar `b`; `grid` has as many columns as the longest bar, and
        `lengths[b]` is bar `b`'s length in ticks (see `bars`).
    """
    starts, lengths = bars(music)
    if len(starts) == 0:
        return np.zeros((0, 0), dtype=bool), lengths
    grid = np.zeros((len(starts), int(lengths.max())), dtype=bool)
    notes = _notes(music)
    index = bar_index(starts, notes.time)
    grid[index, notes.time - starts[index]] = True
    return grid, lengths


def grooving_similarity(music: muspy.Music) -> float:
    r"""Grooving pattern similarity (GS): mean onset-pattern similarity of all pairs of bars.

    Each bar `b` gets a binary onset vector `g_b` on the tick grid (slot `s` is 1 when a
    note of any track, drums included, starts `s` ticks into the bar). For bars `i < j`
    with `Q` slots per bar,

    .. math::
        GS = \frac{2}{B(B-1)} \sum_{i<j} \Big(1 - \frac{1}{Q}\sum_{s=0}^{Q-1} g_i(s) \oplus g_j(s)\Big)

    over all `B(B-1)/2` pairs (deterministic: MusDr samples at most 1000 random pairs;
    we take them all). Bars of different lengths (a time-signature change) are compared
    on the longer bar's slots. Empty bars take part (their vector is all zeros).
    NaN for pieces of fewer than two bars. Identical bars give 1.

    Reference: Wu and Yang, "The Jazz Transformer on the Front Line", ISMIR 2020 (MusDr).
    """
    grid, lengths = onset_grid(music)
    n = len(grid)
    if n < 2:
        return math.nan
    vectors = grid.astype(np.int64)
    overlap = vectors @ vectors.T
    counts = vectors.sum(axis=1)
    hamming = counts[:, None] + counts[None, :] - 2 * overlap
    slots = np.maximum(lengths[:, None], lengths[None, :])
    upper = np.triu_indices(n, k=1)
    return float(np.mean(1.0 - hamming[upper] / slots[upper]))


# ---------------------------------------------------------------------- muspy's metrics
def pitch_class_entropy(music: muspy.Music) -> float:
    r"""Whole-piece pitch-class entropy, `muspy.pitch_class_entropy`.

    .. math:: -\sum_{c=0}^{11} P(c) \log_2 P(c)

    with `P` the normalised pitch-class histogram of every non-drum note. NaN without
    pitched notes. Reference: Dong et al., MusPy (ISMIR 2020); Wu and Yang (ISMIR 2020).
    """
    return float(muspy.pitch_class_entropy(music))


def scale_consistency(music: muspy.Music) -> float:
    r"""Largest in-scale note rate over the 24 major and minor scales, `muspy.scale_consistency`.

    .. math:: \max_{root, mode} \#(\text{notes in scale}) / \#(\text{notes})

    over non-drum notes. NaN without pitched notes. Reference: Dong et al., MusPy
    (ISMIR 2020); Mogren, C-RNN-GAN (2016).
    """
    return float(muspy.scale_consistency(music))


def groove_consistency(music: muspy.Music, ticks_per_measure: int | None = None) -> float:
    r"""Groove consistency, `muspy.groove_consistency`, bars from the time signature.

    .. math:: 1 - \frac{1}{T-1} \sum_{i=1}^{T-1} \frac{d(G_i, G_{i+1})}{R}

    with `G_i` the binary onset vector of measure `i` (all tracks), `d` the Hamming
    distance, `R` ticks per measure and `T` measures (muspy counts
    `end // R + 1`). `R` defaults to the bar length of the piece's first time signature
    (4/4 when none; muspy assumes a constant time signature). NaN for fewer than two
    measures or no notes. Reference: Dong et al., MusPy (ISMIR 2020); Wu and Yang (ISMIR 2020).
    """
    if not any(track.notes for track in music.tracks):
        return math.nan  # muspy raises on a Music without tracks
    if ticks_per_measure is None:
        ticks_per_measure = measure_resolution(music)
    return float(muspy.groove_consistency(music, ticks_per_measure))


def polyphony(music: muspy.Music) -> float:
    r"""Mean number of pitches sounding at the ticks where any sounds, `muspy.polyphony`.

    .. math:: \#(\text{pitch-ticks on}) / \#(\text{ticks with at least one pitch on})

    Drums ignored. NaN without pitched notes. Reference: Dong et al., MusPy (ISMIR 2020).
    """
    if not any(track.notes for track in music.tracks):
        return math.nan  # muspy raises on a Music without tracks
    return float(muspy.polyphony(music))


# ---------------------------------------------------------------------- descriptive statistics
def notes_per_bar(music: muspy.Music) -> float:
    r"""Number of notes of every track (drums included) divided by the number of bars.

    .. math:: \#(\text{notes}) / B

    NaN for a piece without notes (no bars).
    """
    n_bars = len(bar_starts(music))
    if n_bars == 0:
        return math.nan
    return len(_notes(music)) / n_bars


def n_instruments(music: muspy.Music) -> float:
    """Number of tracks with at least one note (a decoded piece has one track per instrument).

    0 for a piece without notes.
    """
    return float(sum(1 for track in music.tracks if track.notes))


def empty_bar_rate(music: muspy.Music) -> float:
    r"""Fraction of the piece's bars in which no note (any track) sounds.

    .. math:: \#(\text{bars with no note sounding}) / B

    A note sounds in the bars that its span `[onset, offset)` meets, so a held note keeps
    a bar from being empty. NaN for a piece without notes. Reference: the empty-bar rate
    of Dong et al., MuseGAN (AAAI 2018).
    """
    starts = bar_starts(music)
    if len(starts) == 0:
        return math.nan
    notes = _notes(music)
    sounding = np.zeros(len(starts) + 1, dtype=np.int64)
    first = bar_index(starts, notes.time)
    last = bar_index(starts, np.maximum(notes.end - 1, notes.time))
    np.add.at(sounding, first, 1)
    np.add.at(sounding, last + 1, -1)
    occupied = np.cumsum(sounding)[:-1] > 0
    return float(1.0 - occupied.mean())


# ---------------------------------------------------------------------- the whole row
def compute_metrics(music: muspy.Music) -> dict[str, float]:
    """Every metric of `METRICS` for one piece, as a dict in table order (NaN where undefined)."""
    return {
        "h1": pitch_class_entropy_bars(music, 1),
        "h4": pitch_class_entropy_bars(music, 4),
        "gs": grooving_similarity(music),
        "pitch_class_entropy": pitch_class_entropy(music),
        "scale_consistency": scale_consistency(music),
        "groove_consistency": groove_consistency(music),
        "notes_per_bar": notes_per_bar(music),
        "n_instruments": n_instruments(music),
        "polyphony": polyphony(music),
        "empty_bar_rate": empty_bar_rate(music),
    }
