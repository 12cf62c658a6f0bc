"""SI (MusDr's structureness indicator): the scape plot by hand, and on rendered audio."""

from __future__ import annotations

import math

import muspy
import numpy as np
import pytest

from mmt.analysis.structure import (
    SAMPLE_RATE,
    SI_METRICS,
    fitness_scape_plot,
    render_audio,
    si_unavailable_reason,
    structure_indicators,
    structureness,
)


def alternating_ssm(n: int, period: int) -> np.ndarray:
    """A thresholded SSM of a piece repeating a `period`-frame pattern: 1 where frames match, -2 elsewhere."""
    i = np.arange(n)
    return np.where((i[:, None] - i[None, :]) % period == 0, 1.0, -2.0)


def test_fitness_of_a_repeated_pattern_by_hand():
    # ABABAB (6 frames). Segment "AB" (start 0, length 2): 3 paths of 2 cells of similarity 1:
    # score 6, cells 6, coverage 6; normalised score (6 - 2) / 6, coverage (6 - 2) / 6 -> fitness 2/3.
    # "BA" (start 1): 2 paths -> score (4 - 2) / 4 = 1/2, coverage (4 - 2) / 6 = 1/3 -> fitness 2/5.
    # "A" (length 1): 3 one-cell paths -> (3 - 1) / 3 and (3 - 1) / 6 -> fitness 4/9.
    plot = fitness_scape_plot(alternating_ssm(6, 2))
    assert plot[1, :5] == pytest.approx([2 / 3, 2 / 5, 2 / 3, 2 / 5, 2 / 3])
    assert plot[0] == pytest.approx([4 / 9] * 6)
    assert plot[5, 0] == 0.0  # the whole piece covers only itself
    # a segment that repeats once in 8 frames (period 4), length 4: score_n = coverage_n = 1/2
    assert fitness_scape_plot(alternating_ssm(8, 4))[3, 0] == pytest.approx(0.5)


def test_fitness_is_computed_only_for_the_lengths_asked():
    plot = fitness_scape_plot(alternating_ssm(6, 2), min_length=2, max_length=2)
    assert plot[0].tolist() == [0.0] * 6 and plot[1, 0] == pytest.approx(2 / 3)


def test_structureness_reads_the_lengths_of_its_timescale():
    # 2 frames a second: SI(3, 8) reads lengths 6..16 frames (rows 5..15), SI(8, 15) rows 15..29
    plot = np.zeros((40, 40))
    plot[4, 0] = 0.9   # 2.5 s: in no range
    plot[5, 3] = 0.3   # 3 s
    plot[15, 0] = 0.5  # 8 s: the end of short, the start of mid (the ranges share their bounds)
    plot[29, 1] = 0.7  # 15 s: the end of mid, the start of long
    plot[30, 2] = 0.6  # 15.5 s: long
    assert structureness(plot, 3, 8) == 0.5
    assert structureness(plot, 8, 15) == 0.7
    assert structureness(plot, 15, 128) == 0.7
    assert structureness(np.zeros((10, 10)), 8, 15) == 0.0  # a piece shorter than the timescale


def phrase_music(repeat: bool, seed: int = 0) -> muspy.Music:
    """Six 8-beat phrases of 16 eighth notes at 120 qpm (4 s each): one phrase six times, or random notes."""
    rng = np.random.default_rng(seed)
    phrase = rng.integers(55, 80, 16)
    notes = []
    for k in range(6):
        pitches = phrase if repeat else rng.integers(55, 80, 16)
        notes += [muspy.Note(time=k * 96 + 6 * i, pitch=int(p), duration=6, velocity=80) for i, p in enumerate(pitches)]
    return muspy.Music(resolution=12, tempos=[muspy.Tempo(0, 120.0)], tracks=[muspy.Track(program=0, notes=notes)])


@pytest.mark.skipif(si_unavailable_reason() is not None, reason=str(si_unavailable_reason()))
def test_a_repeated_phrase_is_more_structured_than_random_notes():
    repeated = structure_indicators(phrase_music(repeat=True))
    random = structure_indicators(phrase_music(repeat=False))
    assert list(repeated) == list(SI_METRICS)
    # 4 s phrases repeated over 24 s: a strong short-timescale structure; random notes have little
    assert repeated["si_short"] > 0.6 and random["si_short"] < 0.35
    assert repeated["si_mid"] > random["si_mid"]
    # a time signature long after the last note does not lengthen the audio with silence
    late = phrase_music(repeat=True)
    late.time_signatures.append(muspy.TimeSignature(time=12 * 1000, numerator=3, denominator=4))
    assert len(render_audio(late)) / SAMPLE_RATE < 30
    assert structure_indicators(late) == repeated
    empty = structure_indicators(muspy.Music(resolution=12, tracks=[muspy.Track(program=0)]))
    assert all(math.isnan(value) for value in empty.values())
