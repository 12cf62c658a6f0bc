"""Structureness indicator (SI) from audio: SI_short, SI_mid, SI_long, as MusDr defines them.

A piece is rendered to audio (fluidsynth and a GM soundfont, `mmt.io.write_wav`), and

1. chroma: `librosa.feature.chroma_stft` at 22,050 Hz (window 4,410 samples, hop 2,205:
   10 frames a second, no tuning estimation, each frame max-normalised), smoothed with a
   21-frame moving average and kept every 5th frame (2 frames a second), each frame
   scaled to unit length (frames of length <= 0.001 become the uniform unit vector);
2. self-similarity: `S[i, j] = <x_i, x_j>` made transposition-invariant (the maximum over
   the 12 cyclic chroma shifts of one side) and path-enhanced (the maximum over 7 relative
   tempi from 1/2 to 2, log-spaced, and both directions, of the mean over 16 cells along
   the diagonal), then thresholded: the largest 25% of the cells are kept and scaled to
   [0, 1], the rest set to -2; the diagonal set to 1;
3. fitness scape plot (Müller, Jiang and Grosche 2013): for every segment (start,
   length) of the piece, the optimal family of paths of the segment through `S` (dynamic
   programming with an "elevator" column between paths), its score (less the segment's
   trivial self-path) normalised by the family's length in cells, its coverage (less the
   segment's length) normalised by the piece's length, and fitness = their harmonic mean;
4. SI(l, u) = the largest fitness of segments lasting l to u seconds, both included (rows
   `int(2 l) - 1` to `int(2 u) - 1` of the length axis; 0 when the piece is shorter):
   SI_short = SI(3, 8), SI_mid = SI(8, 15), SI_long = SI(15, 128).

SI lies in [0, 1]; higher means a segment of that timescale repeats more (and more
faithfully) across the piece. Every figure above is MusDr's Python pipeline
(`run_python_scapeplot.py` with the FMP notebooks' functions, `compute_structure_indicator`);
this is our own implementation of it. The fitness is computed only for the segment
lengths that some SI reads (3 s and longer).

References:
    Shih-Lun Wu and Yi-Hsuan Yang, "The Jazz Transformer on the Front Line: Exploring the
        Shortcomings of AI-composed Music through Quantitative Measures", ISMIR 2020 (MusDr).
    Meinard Müller, Nanzhu Jiang and Peter Grosche, "A Robust Fitness Measure for Capturing
        Repetitions in Music Recordings With Applications to Audio Thumbnailing", IEEE TASLP
        21(3), 2013.
"""

from __future__ import annotations

import copy
import math
import shutil
import tempfile
from pathlib import Path

import muspy
import numpy as np

SI_METRICS: tuple[str, ...] = ("si_short", "si_mid", "si_long")
SI_TIMESCALES: dict[str, tuple[float, float]] = {"si_short": (3, 8), "si_mid": (8, 15), "si_long": (15, 128)}
"""Seconds (lower, upper) of each SI, MusDr's `--timescale_bounds 3 8 15` (and its upper 128)."""
SI_DESCRIPTIONS: dict[str, str] = {
    "si_short": "MusDr's SI_short: the largest fitness of 3-8 s segments in the fitness scape plot of the piece "
                "rendered to audio (0 to 1); higher: a short segment repeats more across the piece",
    "si_mid": "MusDr's SI_mid: the same for 8-15 s segments",
    "si_long": "MusDr's SI_long: the same for segments of 15 s and longer (0 when the piece is shorter)",
}

SAMPLE_RATE = 22050
CHROMA_WINDOW = 4410
CHROMA_HOP = 2205          # 10 chroma frames a second
SMOOTH_FRAMES = 21
DOWNSAMPLE = 5             # -> 2 feature frames a second
FEATURE_RATE = SAMPLE_RATE / CHROMA_HOP / DOWNSAMPLE
PATH_LENGTH = 16
TEMPO_MIN, TEMPO_MAX, TEMPO_COUNT = 0.5, 2.0, 7
KEEP_FRACTION = 0.25
PENALTY = -2.0
_EPS = 1e-16


class SIUnavailable(RuntimeError):
    """SI needs fluidsynth with a GM soundfont and librosa; one of them is missing."""


def si_unavailable_reason() -> str | None:
    """Why SI cannot be computed here (None when it can)."""
    from mmt.io import audio_available

    if not audio_available():
        return ("SI needs audio: fluidsynth and a GM soundfont are missing "
                "(`apt-get install fluidsynth fluid-soundfont-gm`, or `make audio`)")
    try:
        import librosa  # noqa: F401
    except ImportError:
        return "SI needs librosa for chroma: `pip install librosa soundfile` (the `si` extra: `pip install -e .[si]`)"
    return None


# ---------------------------------------------------------------------- features
def chroma_features(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Smoothed, unit-length chroma at `FEATURE_RATE` frames a second: (12, frames)."""
    import librosa
    from scipy.ndimage import uniform_filter1d

    audio = np.asarray(audio, dtype=np.float32)
    if sample_rate != SAMPLE_RATE:
        audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=SAMPLE_RATE)
    chroma = librosa.feature.chroma_stft(y=audio, sr=SAMPLE_RATE, tuning=0, norm=2,
                                         hop_length=CHROMA_HOP, n_fft=CHROMA_WINDOW)
    # a centred moving average with zeros beyond the ends, then every DOWNSAMPLE-th frame
    smooth = uniform_filter1d(chroma.astype(np.float64), SMOOTH_FRAMES, axis=1, mode="constant")
    features = smooth[:, ::DOWNSAMPLE]
    norms = np.linalg.norm(features, axis=0)
    return np.where(norms > 0.001, features / np.where(norms > 0.001, norms, 1.0), 1 / math.sqrt(12))


def _path_smooth(ssm: np.ndarray, tempo: float, backward: bool) -> np.ndarray:
    """Mean of `PATH_LENGTH` cells along the diagonal of `ssm` with one axis resampled by `tempo`."""
    n = ssm.shape[0]
    width = math.ceil(n / tempo)
    to_resampled = np.maximum(np.rint(np.arange(1, width + 1) / width * n) - 1, 0).astype(np.int64)
    resampled = ssm[:, to_resampled]
    length = PATH_LENGTH
    padded = np.zeros((n + length, width + length))
    total = np.zeros((n, width))
    if backward:
        padded[length:, length:] = resampled
        for lag in range(length):
            total += padded[length - lag:length - lag + n, length - lag:length - lag + width]
    else:
        padded[:n, :width] = resampled
        for lag in range(length):
            total += padded[lag:lag + n, lag:lag + width]
    back = np.maximum(np.rint(np.arange(1, n + 1) / n * width) - 1, 0).astype(np.int64)
    return (total / length)[:, back]


def self_similarity(features: np.ndarray) -> np.ndarray:
    """Transposition-invariant, path-enhanced, thresholded self-similarity matrix (frames x frames)."""
    tempi = np.exp(np.linspace(math.log(TEMPO_MIN), math.log(TEMPO_MAX), TEMPO_COUNT))
    ssm = None
    for shift in range(12):
        raw = np.roll(features, shift, axis=0).T @ features
        for tempo in tempi:
            for backward in (False, True):
                smoothed = _path_smooth(raw, tempo, backward)
                ssm = smoothed if ssm is None else np.maximum(ssm, smoothed)
    ssm = _threshold(ssm)
    np.fill_diagonal(ssm, 1.0)
    return ssm


def _threshold(ssm: np.ndarray) -> np.ndarray:
    """Keep the largest `KEEP_FRACTION` of the cells, scaled to [0, 1]; the others become `PENALTY`."""
    ssm = ssm.copy()
    below = int(round(ssm.size * (1 - KEEP_FRACTION)))
    if below < ssm.size:
        ssm[ssm < np.sort(ssm, axis=None)[below]] = 0
    else:
        ssm[:] = 0
    zero = ssm == 0
    positive = ssm[ssm > 0]
    low = positive.min() if len(positive) else 0.0
    high = ssm.max()
    if high > low:
        ssm = (ssm - low) / (high - low)
        ssm[zero] = PENALTY
    return ssm


# ---------------------------------------------------------------------- fitness scape plot
def _accumulated_scores(ssm: np.ndarray, length: int) -> np.ndarray:
    """Accumulated score matrices of every segment of `length` frames: (segments, N, length + 1).

    Column 0 is the elevator (between paths), column m >= 1 is the segment's frame m - 1.
    A path cell (n, m) comes from (n-1, m-1), (n-1, m-2) or (n-2, m-1).
    """
    n_frames = ssm.shape[0]
    segments = np.lib.stride_tricks.sliding_window_view(ssm, length, axis=1).transpose(1, 0, 2)
    count = segments.shape[0]
    scores = np.full((count, n_frames, length + 1), -np.inf)
    scores[:, 0, 0] = 0.0
    scores[:, 0, 1] = segments[:, 0, 0]
    minus_inf = np.full((count, length - 1), -np.inf)
    for n in range(1, n_frames):
        previous = scores[:, n - 1]
        scores[:, n, 0] = np.maximum(previous[:, 0], previous[:, length])
        scores[:, n, 1] = scores[:, n, 0] + segments[:, n, 0]
        if length > 1:
            two_up = scores[:, n - 2, 1:length] if n >= 2 else minus_inf
            best = np.maximum(np.maximum(previous[:, 1:length], previous[:, 0:length - 1]), two_up)
            scores[:, n, 2:] = segments[:, n, 1:] + best
    return scores


def _path_family(scores: list[list[float]], length: int) -> tuple[int, int, int]:
    """Trace the optimal path family back through one accumulated score matrix.

    Returns (paths, cells in all paths, coverage: the sum of the paths' row spans).
    """
    last = length  # the column of the segment's last frame
    n = len(scores) - 1
    paths = cells = coverage = 0
    span_end = span_start = -1  # rows of the path being traced (-1: none)

    def close() -> None:
        nonlocal paths, coverage
        if span_end >= 0:
            paths += 1
            coverage += span_end - span_start + 1

    if scores[n][last] < scores[n][0]:
        m = 0
    else:
        m = last
        span_end = span_start = n
        cells += 1
    while n > 0 or m > 0:
        if n == 0:
            m -= 1
        elif m == 0:
            if scores[n - 1][last] > scores[n - 1][0]:
                close()
                n, m = n - 1, last
                span_end = span_start = n
                cells += 1
            else:
                n -= 1
        elif m == 1:
            m = 0
        else:
            if n <= 2 and m <= 2:
                options = ((n - 1, m - 1),)
            elif n <= 2:
                options = ((n - 1, m - 1), (n - 1, m - 2))
            elif m <= 2:
                options = ((n - 1, m - 1), (n - 2, m - 1))
            else:
                options = ((n - 1, m - 1), (n - 2, m - 1), (n - 1, m - 2))
            best, cell = -math.inf, None
            for option in options:
                if scores[option[0]][option[1]] > best:
                    best, cell = scores[option[0]][option[1]], option
            if cell is None:  # unreachable cell: no finite predecessor
                break
            n, m = cell
            span_start = n
            cells += 1
    close()
    return paths, cells, coverage


def fitness_scape_plot(ssm: np.ndarray, min_length: int = 1, max_length: int | None = None) -> np.ndarray:
    """Fitness of every segment: `plot[length - 1, start]` (0 where not computed).

    Only segments of `min_length` to `max_length` frames are computed.
    """
    n_frames = ssm.shape[0]
    plot = np.zeros((n_frames, n_frames))
    top = n_frames if max_length is None else min(max_length, n_frames)
    for length in range(max(min_length, 1), top + 1):
        scores = _accumulated_scores(ssm, length)
        for start, matrix in enumerate(scores):
            score = max(matrix[-1, 0], matrix[-1, length])
            paths, cells, coverage = _path_family(matrix.tolist(), length)
            if paths == 0:
                continue
            score_n = (score - length) / (cells + _EPS)
            coverage_n = (coverage - length) / (n_frames + _EPS)
            plot[length - 1, start] = 2 * score_n * coverage_n / (score_n + coverage_n + _EPS)
    return plot


def structureness(plot: np.ndarray, low_s: float, high_s: float, rate: float = FEATURE_RATE) -> float:
    """SI(low, high): the largest fitness of segments lasting `low_s` to `high_s` seconds (0 if none)."""
    first = int(low_s * rate) - 1
    stop = int(high_s * rate)
    if first >= plot.shape[0]:
        return 0.0
    return float(plot[first:stop].max())


# ---------------------------------------------------------------------- pieces
def structure_indicators_from_audio(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> dict[str, float]:
    """SI_short, SI_mid, SI_long of a mono signal (NaN for silence or an empty signal)."""
    features = chroma_features(audio, sample_rate)
    if features.shape[1] < 2 or not np.any(np.asarray(audio)):
        return {name: math.nan for name in SI_METRICS}
    ssm = self_similarity(features)
    low = min(int(lower * FEATURE_RATE) for lower, _ in SI_TIMESCALES.values())
    high = max(int(upper * FEATURE_RATE) for _, upper in SI_TIMESCALES.values())
    plot = fitness_scape_plot(ssm, min_length=low, max_length=high)
    return {name: structureness(plot, *SI_TIMESCALES[name]) for name in SI_METRICS}


def render_audio(music: muspy.Music, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """`music` rendered by fluidsynth (`mmt.io.write_wav`) up to its last note's end, as a mono float signal."""
    import soundfile

    from mmt.io import write_wav

    # Events after the last note would lengthen the MIDI file, and the audio, with silence.
    end = max((note.time + note.duration for track in music.tracks for note in track.notes), default=0)
    music = copy.deepcopy(music)
    for events in (music.time_signatures, music.tempos, music.key_signatures, music.barlines):
        events[:] = [event for event in events if event.time < end]
    folder = Path(tempfile.mkdtemp(prefix="mmt-si-"))
    try:
        path = write_wav(folder / "piece.wav", music, sample_rate=sample_rate)
        audio, _ = soundfile.read(path, dtype="float32", always_2d=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return audio.mean(axis=1)  # mono, as librosa.load makes it


def structure_indicators(music: muspy.Music) -> dict[str, float]:
    """SI_short, SI_mid, SI_long of a piece rendered to audio; NaN for a piece without notes.

    Raises `SIUnavailable` when fluidsynth, a soundfont or librosa is missing.
    """
    reason = si_unavailable_reason()
    if reason:
        raise SIUnavailable(reason)
    if not any(track.notes for track in music.tracks):
        return {name: math.nan for name in SI_METRICS}
    return structure_indicators_from_audio(render_audio(music), SAMPLE_RATE)
