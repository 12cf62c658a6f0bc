"""Metrics: hand-computed values on tiny pieces, and agreement with muspy's own functions."""

from __future__ import annotations

import math

import muspy
import numpy as np
import pytest

from mmt.analysis import metrics
from mmt.meter import Meter
from mmt.analysis.metrics import (
    METRICS,
    bars,
    compute_metrics,
    empty_bar_rate,
    grooving_similarity,
    n_instruments,
    notes_per_bar,
    pitch_class_entropy_bars,
)

RES = 12  # ticks per beat; a 4/4 bar is 48 ticks
BAR = 4 * RES
C, D, E, F, G = 60, 62, 64, 65, 67


def make_music(*tracks, time_signatures=(), resolution=RES) -> muspy.Music:
    """`tracks`: (program, is_drum, [(time, pitch, duration), ...]); time signatures (time, num, den)."""
    return muspy.Music(
        resolution=resolution,
        time_signatures=[muspy.TimeSignature(time=t, numerator=n, denominator=d) for t, n, d in time_signatures],
        tracks=[
            muspy.Track(
                program=program,
                is_drum=is_drum,
                notes=[muspy.Note(time=t, pitch=p, duration=d, velocity=64) for t, p, d in notes],
            )
            for program, is_drum, notes in tracks
        ],
    )


def piano(notes):
    return (0, False, notes)


def drums(notes):
    return (0, True, notes)


# ---------------------------------------------------------------------- H1, H4
def test_repeated_c_major_triad_bar_has_h1_log2_3():
    triad = [(beat * RES, pitch, RES) for beat in range(4) for pitch in (C, E, G)]
    assert pitch_class_entropy_bars(make_music(piano(triad)), 1) == pytest.approx(math.log2(3))


def test_h1_is_the_mean_over_bars_and_skips_empty_bars():
    # bar 0: C E G (log2 3); bar 1: nothing (skipped); bar 2: C twice (0 bits)
    notes = [(0, C, RES), (0, E, RES), (0, G, RES), (2 * BAR, C, RES), (2 * BAR + RES, C + 12, RES)]
    assert pitch_class_entropy_bars(make_music(piano(notes)), 1) == pytest.approx(math.log2(3) / 2)


def test_h4_windows_slide_one_bar_at_a_time():
    # one note per bar: C D E F D. Window bars 0-3: 4 equal classes -> 2 bits.
    # Window bars 1-4: D E F D -> p = (1/2, 1/4, 1/4) -> 1.5 bits. H4 = 1.75; H1 = 0.
    notes = [(bar * BAR, pitch, RES) for bar, pitch in enumerate([C, D, E, F, D])]
    music = make_music(piano(notes))
    assert pitch_class_entropy_bars(music, 4) == pytest.approx(1.75)
    assert pitch_class_entropy_bars(music, 1) == pytest.approx(0.0)


def test_h4_of_a_piece_shorter_than_four_bars_takes_the_whole_piece():
    # MusDr shrinks the window to the piece: 3 bars C D E -> one window, log2 3 bits
    notes = [(bar * BAR, pitch, RES) for bar, pitch in enumerate([C, D, E])]
    music = make_music(piano(notes))
    assert pitch_class_entropy_bars(music, 4) == pytest.approx(math.log2(3))


def test_a_trailing_bar_holding_only_a_tail_is_not_a_bar():
    # bar 0: C (held through bar 1 and into bar 2) and E; bar 1: G. Bar 2 holds no onset.
    notes = [(0, C, 2 * BAR + RES), (RES, E, RES), (BAR, G, RES)]
    music = make_music(piano(notes))
    assert bars(music)[0].tolist() == [0, BAR]
    # H4 over 2 bars: {C, E, G} -> log2 3; H1: (1 + 0) / 2
    assert pitch_class_entropy_bars(music, 4) == pytest.approx(math.log2(3))
    assert pitch_class_entropy_bars(music, 1) == pytest.approx(0.5)
    # GS of the 2 bars: onsets {0, 16} and {0} of 64 slots -> 1 - 1/64
    assert grooving_similarity(music) == pytest.approx(63 / 64)


def test_h_excludes_drums_and_counts_a_held_note_in_its_onset_bar_only():
    # bar 0: C (held into bar 1) and E; bar 1: G. Drum hits everywhere change nothing.
    notes = [(0, C, 2 * BAR), (RES, E, RES), (BAR, G, RES)]
    hits = [(t, 36, 1) for t in range(0, 2 * BAR, RES)]
    # bar 0: {C, E} -> 1 bit; bar 1: {G} -> 0 bits
    assert pitch_class_entropy_bars(make_music(piano(notes)), 1) == pytest.approx(0.5)
    assert pitch_class_entropy_bars(make_music(piano(notes), drums(hits)), 1) == pytest.approx(0.5)


def test_h_rejects_a_window_of_no_bars():
    with pytest.raises(ValueError, match="n_bars"):
        pitch_class_entropy_bars(make_music(piano([(0, C, RES)])), 0)


# ---------------------------------------------------------------------- GS
def test_identical_bars_have_grooving_similarity_one():
    rhythm = [0, 6, 18, 36]
    notes = [(bar * BAR + t, pitch, 3) for bar, pitch in enumerate([C, E, G]) for t in rhythm]
    assert grooving_similarity(make_music(piano(notes))) == 1.0


def test_two_bars_with_disjoint_onsets():
    # bar 0 onsets at beats 0 and 1, bar 1 at beats 2 and 3: 4 of MusDr's 64 slots differ.
    notes = [(0, C, RES), (12, C, RES), (BAR + 24, C, RES), (BAR + 36, C, RES)]
    assert grooving_similarity(make_music(piano(notes))) == pytest.approx(1 - 4 / 64)


def test_grooving_similarity_averages_every_pair_and_counts_drums():
    # bars A A B (A = {0, 16} from drums, B = {32, 48}): pairs 1, 15/16, 15/16 -> 23/24
    hits = [(0, 36, 1), (12, 36, 1), (BAR, 36, 1), (BAR + 12, 36, 1)]
    notes = [(2 * BAR + 24, C, RES), (2 * BAR + 36, C, RES)]
    assert grooving_similarity(make_music(drums(hits), piano(notes))) == pytest.approx(23 / 24)


def test_onsets_go_to_the_nearest_of_16_slots_per_beat():
    # at 12 ticks per beat: tick 4 (a triplet eighth) -> slot 16 * 4 / 12 = 5.33 -> 5;
    # tick 8 -> 10.67 -> 11; tick 3 (a sixteenth) -> slot 4
    music = make_music(piano([(0, C, 1), (4, C, 1), (8, C, 1), (BAR + 3, C, 1)]))
    grid, lengths = metrics.onset_grid(music)
    assert lengths.tolist() == [64, 64]
    assert [np.flatnonzero(row).tolist() for row in grid] == [[0, 5, 11], [4]]
    # bar 0 {0, 5, 11} vs bar 1 {4}: 4 slots differ
    assert grooving_similarity(music) == pytest.approx(1 - 4 / 64)


@pytest.mark.parametrize("resolution", [12, 16, 480, 10_080])
def test_grooving_similarity_does_not_depend_on_the_resolution(resolution):
    # the same three bars of 4/4 at each resolution; onsets and durations in sixteenths
    sixteenths = [0, 2, 3, 6, 8, 10, 11, 14, 16, 18, 19, 22, 24, 27, 30, 32, 34, 36, 40, 44, 45, 46]
    ticks = resolution // 4
    notes = [(k * ticks, C + k % 5, 2 * ticks) for k in sixteenths]
    music = make_music(piano(notes), resolution=resolution)
    # bars: {0,2,3,6,8,10,11,14}, {0,2,3,6,8,11,14}, {0,2,4,8,12,13,14} in sixteenths;
    # slots that differ (of 64): bars 0-1: 1, bars 0-2: 7, bars 1-2: 6 -> mean 1 - (14/3)/64
    assert grooving_similarity(music) == pytest.approx(1 - 14 / 3 / 64, abs=1e-9)


def test_grooving_similarity_states_its_formula_in_latex():
    assert (r"GS = \frac{2}{B(B-1)} \sum_{i<j} \Big(1 - \frac{1}{Q}\sum_{s=0}^{Q-1} g_i(s) \oplus g_j(s)\Big)"
            in metrics.grooving_similarity.__doc__)


def test_grooving_similarity_of_one_bar_is_nan():
    assert math.isnan(grooving_similarity(make_music(piano([(0, C, RES), (24, E, RES)]))))


# ---------------------------------------------------------------------- bars and time signatures
def test_a_three_four_piece_is_cut_into_bars_of_three_beats():
    # C E G | C C C, one note per beat
    pitches = [C, E, G, C, C + 12, C]
    notes = [(beat * RES, pitch, RES) for beat, pitch in enumerate(pitches)]
    waltz = make_music(piano(notes), time_signatures=[(0, 3, 4)])
    starts, lengths = bars(waltz)
    assert starts.tolist() == [0, 36]
    assert lengths.tolist() == [36, 36]
    # in 3/4: {C, E, G} and {C} -> (log2 3 + 0) / 2; read as 4/4: C E G C and C C -> (1.5 + 0) / 2
    assert pitch_class_entropy_bars(waltz, 1) == pytest.approx(math.log2(3) / 2)
    assert pitch_class_entropy_bars(make_music(piano(notes)), 1) == pytest.approx(0.75)
    # every 3/4 bar has onsets on its three beats: identical grooves
    assert grooving_similarity(waltz) == 1.0
    assert metrics.measure_resolution(waltz) == 36


def test_six_eight_bars_and_a_time_signature_change():
    assert Meter(((0, 6, 8),)).bar_ticks(100, RES)[1].tolist() == [36, 36, 36]
    # 4/4 for two bars, then 3/4; the piece lasts 2 * 48 + 2 * 36 ticks
    change = make_music(piano([(0, C, RES), (2 * BAR + 36 + 24, C, RES)]), time_signatures=[(0, 4, 4), (96, 3, 4)])
    starts, lengths = bars(change)
    assert starts.tolist() == [0, 48, 96, 132]
    assert lengths.tolist() == [48, 48, 36, 36]


def test_notes_per_bar_empty_bar_rate_and_instruments():
    # 4 bars: notes in bar 0 (two tracks) and bar 3; bars 1 and 2 empty
    music = make_music(
        piano([(0, C, RES), (RES, E, RES), (3 * BAR, G, RES)]),
        (40, False, [(0, C + 12, RES), (2 * RES, D, RES)]),
        (41, False, []),
    )
    assert notes_per_bar(music) == pytest.approx(5 / 4)
    assert empty_bar_rate(music) == pytest.approx(0.5)
    assert n_instruments(music) == 2.0
    # a note held from bar 0 through bar 1 keeps bar 1 from being empty
    held = make_music(piano([(0, C, BAR + RES), (3 * BAR, G, RES)]))
    assert empty_bar_rate(held) == pytest.approx(0.25)


# ---------------------------------------------------------------------- undefined input
def test_a_zero_length_note_on_a_bar_line_opens_that_bar():
    music = make_music(piano([(0, C, RES), (BAR, E, 0)]))
    assert bars(music)[0].tolist() == [0, BAR]
    assert grooving_similarity(music) == 1.0  # both bars have one onset, on the downbeat
    assert notes_per_bar(music) == 1.0


@pytest.mark.parametrize(
    "music",
    [muspy.Music(resolution=RES), make_music(piano([])), make_music(piano([]), drums([]))],
    ids=["no-tracks", "empty-track", "two-empty-tracks"],
)
def test_empty_music_gives_nan_not_an_exception(music):
    row = compute_metrics(music)
    assert list(row) == list(METRICS)
    assert row["n_instruments"] == 0.0
    assert all(math.isnan(value) for name, value in row.items() if name != "n_instruments")


def test_drums_only_piece_has_nan_pitch_metrics_but_a_groove():
    hits = [(t, 36, 1) for t in range(0, 2 * BAR, RES)]
    row = compute_metrics(make_music(drums(hits)))
    for name in ("h1", "h4", "pitch_class_entropy", "scale_consistency", "polyphony"):
        assert math.isnan(row[name]), name
    assert row["gs"] == 1.0
    assert row["notes_per_bar"] == 4.0


# ---------------------------------------------------------------------- agreement with muspy
@pytest.mark.parametrize("time_signature,ticks", [(None, 48), ((3, 4), 36)], ids=["4-4", "3-4"])
def test_table_muspy_metrics_equal_muspy_functions(time_signature, ticks):
    rng = np.random.default_rng(7)

    def random_notes(n, low, high):
        times = rng.integers(0, 40 * RES, n)
        return [(int(t), int(p), int(d)) for t, p, d in zip(times, rng.integers(low, high, n), rng.integers(1, 30, n))]

    music = make_music(
        piano(random_notes(60, 48, 84)),
        (33, False, random_notes(25, 28, 52)),
        drums(random_notes(40, 35, 50)),
        time_signatures=[(0, *time_signature)] if time_signature else [],
    )
    row = compute_metrics(music)
    assert row["pitch_class_entropy"] == muspy.pitch_class_entropy(music)
    assert row["scale_consistency"] == muspy.scale_consistency(music)
    assert row["groove_consistency"] == muspy.groove_consistency(music, ticks)
    assert row["polyphony"] == muspy.polyphony(music)
    # and our H over a window spanning the whole piece equals muspy's whole-piece entropy
    n_bars = len(bars(music)[0])
    assert pitch_class_entropy_bars(music, n_bars) == pytest.approx(muspy.pitch_class_entropy(music))


def test_crossing_rates_count_onsets_where_a_lower_part_sounds_above_its_upper_neighbour():
    """Cello, viola, violin (lowest first) over 4 beats: the viola's E4 on beat 1 crosses the violin's
    D4 (one of the 4 onsets where both sound); the cello's G4 on beat 2 crosses the viola's C4
    (one of its 4); a unison (beat 3, viola and violin on C5) is no crossing."""
    from mmt.analysis.metrics import crossing_rates

    def track(pitches):
        return muspy.Track(notes=[muspy.Note(time=12 * beat, pitch=p, duration=12) for beat, p in enumerate(pitches)])

    music = muspy.Music(resolution=12, tracks=[
        track([74, 62, 76, 72]),  # violin
        track([60, 64, 60, 72]),  # viola
        track([48, 48, 67, 48]),  # cello
    ])
    pairs, pooled = crossing_rates(music, [2, 1, 0])
    assert pairs == [0.25, 0.25] and pooled == 0.25  # 2 crossed of the 8 (pair, onset) cases
    assert crossing_rates(music, [2]) == ([], math.nan)
