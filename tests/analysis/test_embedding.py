"""Learned-embedding analysis: cosine similarity, PCA, the octave score."""

from __future__ import annotations

import numpy as np
import pytest

from mmt.analysis.embedding import (
    cosine_similarity,
    duration_labels,
    embedding_weights,
    interval_similarity,
    octave_bump,
    octave_score,
    pca_2d,
    pitch_tables,
    plot_interval_lines,
    plot_pitch_pca,
)
from tests.factories import tiny_model


def pitch_class_embedding(dim: int = 12) -> np.ndarray:
    """Every pitch gets the one-hot vector of its pitch class: pitches 12 apart are equal."""
    weights = np.zeros((128, dim))
    weights[np.arange(128), np.arange(128) % 12] = 1.0
    return weights


def test_cosine_similarity_by_hand():
    weights = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [-2.0, 0.0]])
    r = 1 / np.sqrt(2)
    expected = np.array([[1, r, 0, -1], [r, 1, 0, -r], [0, 0, 0, 0], [-1, -r, 0, 1]])
    np.testing.assert_allclose(cosine_similarity(weights), expected)


def test_octave_score_of_pitch_class_embedding_is_hand_computed_value():
    # In 21..108 (88 pitches) there are 88*87/2 = 3828 pairs: 76 an octave apart (similarity 1),
    # and among the 3752 others, 64+52+40+28+16+4 = 204 two or more octaves apart (also 1);
    # every other pair is orthogonal. Score = 1 - 204/3752.
    weights = pitch_class_embedding()
    assert octave_score(weights) == pytest.approx(1 - 204 / 3752)
    # Cosine similarity ignores rotations and scale.
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(12, 12)))
    assert octave_score(3.0 * weights @ rotation) == pytest.approx(1 - 204 / 3752)


def test_octave_score_high_with_noisy_octave_embedding():
    rng = np.random.default_rng(1)
    classes = rng.normal(size=(12, 64))
    weights = classes[np.arange(128) % 12] + 0.1 * rng.normal(size=(128, 64))
    assert octave_score(weights) > 0.85


@pytest.mark.parametrize("seed", range(5))
def test_octave_score_about_zero_for_random_embeddings(seed):
    # With dim 256 one pair's cosine has standard deviation 1/16; the mean over the 76 octave
    # pairs has about 1/16/sqrt(76) = 0.007, so 0.03 is over 4 standard deviations.
    weights = np.random.default_rng(seed).normal(size=(128, 256))
    assert abs(octave_score(weights)) < 0.03


def test_octave_score_range_is_checked():
    with pytest.raises(ValueError, match="pitch range"):
        octave_score(pitch_class_embedding(), low=60, high=70)
    with pytest.raises(ValueError, match="pitch range"):
        octave_score(pitch_class_embedding(), low=21, high=128)


def test_interval_similarity_of_pitch_class_embedding():
    values = interval_similarity(pitch_class_embedding(), max_interval=24)
    expected = np.zeros(24)
    expected[[11, 23]] = 1.0  # 12 and 24 semitones
    np.testing.assert_allclose(values, expected)


def test_pca_of_points_on_a_line_has_one_component():
    direction = np.array([1.0, 2.0, 2.0]) / 3
    weights = np.outer(np.arange(5.0), direction) + np.array([7.0, 0.0, 1.0])
    points, ratio = pca_2d(weights)
    np.testing.assert_allclose(ratio, [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(np.abs(points[:, 0]), np.abs(np.arange(5.0) - 2.0))
    np.testing.assert_allclose(points[:, 1], 0.0, atol=1e-12)


def test_duration_labels_are_fractions_of_a_beat():
    assert duration_labels([1, 6, 12, 18, 48], 12) == ["1/12", "1/2", "1", "3/2", "4"]


def test_embedding_weights_drop_the_undefined_row(tmp_path):
    model = tiny_model("absolute", max_seq_len=16, dropout=0.1)
    weights = embedding_weights(model, "pitch")
    assert weights.shape == (128, 32)
    np.testing.assert_allclose(weights[60], model.field_embedding("pitch").weight[61].detach().double().numpy())
    path = plot_pitch_pca(weights, tmp_path / "pca.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pitch_tables_name_every_table_of_pitch_vectors(tmp_path):
    plain = pitch_tables(tiny_model("rotary", max_seq_len=16))
    assert list(plain) == ["input embedding", "output head"]
    model = tiny_model("rotary", max_seq_len=16, row_conditioning=True)
    tables = pitch_tables(model)
    assert list(tables) == ["input embedding", "output head", "row condition"]
    assert all(table.shape == (128, 32) for table in tables.values())
    np.testing.assert_allclose(tables["output head"][60], model.heads[3].weight[61].detach().double().numpy())
    np.testing.assert_allclose(tables["row condition"][60], model.conditions[4].weight[61].detach().double().numpy())
    path = plot_interval_lines({"pitch classes": pitch_class_embedding(), **tables}, tmp_path / "lines.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tied = tiny_model("rotary", max_seq_len=16, tie_pitch=True)
    assert list(pitch_tables(tied)) == ["input embedding"]  # the head is the same table


def test_octave_bump_is_one_for_pitch_classes_and_about_zero_for_a_smooth_table():
    assert octave_bump(pitch_class_embedding()) == pytest.approx(1.0)
    # pitch p at angle p * pi / 48 on a circle: s(i) = cos(i pi / 48), neighbours alike, no octave peak
    angle = np.arange(128) * np.pi / 48
    smooth = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    expected = np.cos(np.pi / 4) * (1 - np.cos(np.pi / 48))  # s(12) - (s(11) + s(13)) / 2
    assert octave_bump(smooth) == pytest.approx(expected) and expected == pytest.approx(0.0015139, abs=1e-7)
    assert octave_score(smooth) > 0.4  # the octave score reads this smoothness as octaves
