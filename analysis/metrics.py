"""Objective music metrics on a `muspy.Music`: H1, H4, GS, muspy's, descriptive statistics.

Every metric is a pure function `f(music, ...) -> float` that returns NaN where it is
undefined (no notes, too few bars) instead of raising.

Bars. Bars follow the piece's own time signatures (`mmt.meter.Meter.from_music`; 4/4 when
it states none): the first time signature applies from tick 0, each later one starts a new
bar at its own time, and a bar of n/d lasts `n * 4 / d` beats of `music.resolution` ticks.
The piece's bars run from tick 0 to the bar of its last onset (as MusDr, which drops a
trailing bar that holds no onset, only the tail of a held note). A note belongs to the bar
of its onset. To cut a decoded piece by its real bars, decode it with its meter
(`mmt.decode(codes, encoding, meter=...)`).

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

from mmt.meter import Meter

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
    "h1": "MusDr's H1: pitch-class entropy of each bar's notes, mean over bars, bits (0 to 3.58); "
          "higher: more pitch classes mixed within a bar",
    "h4": "MusDr's H4: the same over 4-bar windows sliding by a bar (the whole piece when shorter); "
          "higher: less tonal focus over a phrase",
    "gs": "MusDr's GS: 1 - the share of onset slots (16 per beat) in which two bars differ, mean over all "
          "pairs of bars (0 to 1); higher: the bars share one rhythm",
    "pitch_class_entropy": "muspy's pitch-class entropy of the whole piece, bits; higher: more pitch classes, "
                           "more evenly used",
    "scale_consistency": "muspy's scale consistency: the largest share of notes in one major or minor scale "
                         "(0 to 1); higher: more diatonic",
    "groove_consistency": "muspy's groove consistency: 1 - mean Hamming distance of neighbouring bars' onsets "
                          "on the file's tick grid (0 to 1); higher: steadier rhythm from bar to bar",
    "notes_per_bar": "notes (drums included) per bar; higher: denser",
    "n_instruments": "tracks with at least one note",
    "polyphony": "muspy's polyphony: mean number of pitches sounding when any sounds; higher: fuller chords",
    "empty_bar_rate": "share of bars in which no note sounds [MuseGAN]; higher: more silence",
}

GS_SLOTS_PER_BEAT = 16
"""MusDr's onset grid: 64 positions per 4/4 bar, 16 per quarter-note beat."""


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


def measure_resolution(music: muspy.Music) -> int:
    """Ticks per bar of the piece's first time signature (4/4 when it has none)."""
    return max(1, round(Meter.from_music(music).beats_per_bar(0.0) * music.resolution))


def _bars_to(meter: Meter, last_onset: int, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Bars (start ticks, lengths) from tick 0 to the bar holding tick `last_onset` (none if negative)."""
    return meter.bar_ticks(last_onset + 1, resolution)


def bars(music: muspy.Music) -> tuple[np.ndarray, np.ndarray]:
    """Start ticks and lengths of the piece's bars: from tick 0 to the bar of its last onset.

    Bars follow the piece's time signatures (`Meter.bar_ticks`); a bar cut short by a
    time-signature change is shorter. A trailing bar holding no onset (only the tail of a
    held note) is not counted, as in MusDr.

    Returns:
        (starts, lengths), int64 arrays with one entry per bar (empty with no notes).
    """
    notes = _notes(music)
    last = int(notes.time.max()) if len(notes) else -1
    return _bars_to(Meter.from_music(music), last, music.resolution)


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

    Windows of `W = n_bars` consecutive bars slide one bar at a time over the piece's `B`
    bars (`B - W + 1` windows; bars as in `bars`). In window `w`, `h_w` is the 12-bin
    histogram of the pitch classes (pitch mod 12) of the notes whose onset lies in it (each
    note counts once; drums have no pitch class and are left out), and

    .. math::
        H_w = -\sum_{c=0}^{11} p_w(c) \log_2 p_w(c), \qquad p_w = h_w / \sum_c h_w(c);

    windows without notes are skipped and the metric is the mean of `H_w` over the rest.
    A piece of fewer than `W` bars gets one window, the whole piece (MusDr shrinks the
    window to the piece). NaN when no window has a pitched note. A bar of a repeated C major triad gives log2(3).
    Range [0, log2 12]. Lower: pitches more concentrated in a few classes.

    Reference: Wu and Yang, "The Jazz Transformer on the Front Line", ISMIR 2020 (MusDr,
    `compute_piece_pitch_entropy`).
    """
    if n_bars < 1:
        raise ValueError(f"n_bars must be >= 1, got {n_bars}")
    starts = bar_starts(music)
    notes = _notes(music)
    pitched = ~notes.is_drum
    if len(starts) == 0 or not pitched.any():
        return math.nan
    n_bars = min(n_bars, len(starts))
    histogram = np.zeros((len(starts), 12), dtype=np.int64)
    np.add.at(histogram, (bar_index(starts, notes.time[pitched]), notes.pitch[pitched] % 12), 1)
    cumulative = np.vstack([np.zeros((1, 12), dtype=np.int64), np.cumsum(histogram, axis=0)])
    windows = cumulative[n_bars:] - cumulative[:-n_bars]
    entropies = [_entropy_bits(window) for window in windows if window.sum() > 0]
    return float(np.mean(entropies)) if entropies else math.nan


def onset_grid(music: muspy.Music, slots_per_beat: int = GS_SLOTS_PER_BEAT) -> tuple[np.ndarray, np.ndarray]:
    """Binary onset vector of every bar on a grid of `slots_per_beat` slots per beat.

    Each onset (any track, drums included) goes to the nearest slot of the grid
    (`floor(tick * slots_per_beat / resolution + 1/2)`), then to the bar holding that slot;
    the bars are those of `bars`, measured in slots.

    Returns:
        (grid, lengths): `grid[b, s]` is True when an onset falls `s` slots into bar `b`;
        `grid` has as many columns as the longest bar, and `lengths[b]` is bar `b`'s length
        in slots (64 for 4/4 at 16 slots per beat).
    """
    notes = _notes(music)
    if len(notes) == 0:
        return np.zeros((0, 0), dtype=bool), np.zeros(0, dtype=np.int64)
    slots = np.floor(notes.time * slots_per_beat / music.resolution + 0.5).astype(np.int64)
    starts, lengths = _bars_to(Meter.from_music(music), int(slots.max()), slots_per_beat)
    grid = np.zeros((len(starts), int(lengths.max())), dtype=bool)
    index = bar_index(starts, slots)
    grid[index, np.minimum(slots - starts[index], lengths[index] - 1)] = True
    return grid, lengths


def grooving_similarity(music: muspy.Music, slots_per_beat: int = GS_SLOTS_PER_BEAT) -> float:
    r"""Grooving pattern similarity (GS): mean onset-pattern similarity of all pairs of bars.

    Each bar `b` gets a binary onset vector `g_b` of `Q` slots, 16 per quarter-note beat
    whatever the file's resolution (MusDr's 64 positions of a 4/4 bar; 48 for 3/4): slot
    `s` is 1 when a note of any track, drums included, starts in it (`onset_grid`). Over
    the `B(B-1)/2` pairs of bars `i < j`,

    .. math::
        GS = \frac{2}{B(B-1)} \sum_{i<j} \Big(1 - \frac{1}{Q}\sum_{s=0}^{Q-1} g_i(s) \oplus g_j(s)\Big)

    Every pair is taken (MusDr's code draws 1000 random pairs when a piece has more; their
    mean estimates this one). Bars of different lengths (a time-signature change) are
    compared on the longer bar's slots. Empty bars take part (all-zero vectors). NaN for
    pieces of fewer than two bars. Identical bars give 1; higher is a steadier rhythm.

    Reference: Wu and Yang, "The Jazz Transformer on the Front Line", ISMIR 2020 (MusDr,
    `compute_piece_groove_similarity`).
    """
    grid, lengths = onset_grid(music, slots_per_beat)
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


# ---------------------------------------------------------------------- parts
def crossing_rates(music: muspy.Music, order: list[int]) -> tuple[list[float], float]:
    r"""How often parts cross their neighbours: per adjacent pair of `order` (track indices, the
    lowest part first), and over all pairs.

    At each onset `t` of the piece (a note of any of these tracks starts), a part sounds the
    pitches of its notes with `onset <= t < offset`. For parts `i` (lower) and `i + 1` (upper)
    that both sound at `t`, they cross when `max(pitches of i) > min(pitches of i + 1)` (a
    unison is no crossing). The pair's rate is

    .. math:: r_i = \#(\text{onsets where } i, i+1 \text{ sound and cross}) / \#(\text{onsets where both sound})

    and the rate over all pairs pools them: crossed (pair, onset) cases over the cases where
    the pair sounds, summed over the pairs. NaN where no onset has the pair (or any pair)
    sounding.

    Returns:
        ([r_0, ..., r_{k-2}], the pooled rate).
    """
    tracks = [music.tracks[index] for index in order]
    spans = [np.array([(n.time, n.time + max(n.duration, 1), n.pitch) for n in track.notes], dtype=np.int64)
             .reshape(-1, 3) for track in tracks]
    onsets = np.unique(np.concatenate([span[:, 0] for span in spans])) if spans else np.zeros(0, np.int64)
    low = np.full((len(tracks), len(onsets)), np.iinfo(np.int64).max)
    high = np.full((len(tracks), len(onsets)), -1)
    for k, span in enumerate(spans):
        for start, end, pitch in span:
            at = slice(np.searchsorted(onsets, start), np.searchsorted(onsets, end))
            low[k, at] = np.minimum(low[k, at], pitch)
            high[k, at] = np.maximum(high[k, at], pitch)
    sounding = high >= 0
    both = sounding[:-1] & sounding[1:]
    crossed = both & (high[:-1] > low[1:])
    pairs = [float(crossed[i].sum() / both[i].sum()) if both[i].any() else math.nan for i in range(len(both))]
    return pairs, float(crossed.sum() / both.sum()) if both.any() else math.nan


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
