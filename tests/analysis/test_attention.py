"""Mean relative attention: a constructed case with a hand-computed answer, and a double loop."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from mmt.analysis.attention import (
    RELATIVE_FIELDS,
    RelativeAttention,
    _highlight,
    group_attention,
    mean_relative_attention,
    musical_groups,
    model_relative_attention,
    offset_range,
    relative_attention_sums,
)
from mmt import Encoding, encode_notes
from mmt.constants import Field, RowType
from tests.factories import tiny_model

# SOS, one instrument, SON, five notes at beats 0, 1, 4, 4, 8, EOS.
NOTE_BEATS = [0, 1, 4, 4, 8]
FIRST_NOTE = 3


def tiny_song() -> np.ndarray:
    rows = [[RowType.START_OF_SONG, 0, 0, 0, 0, 0], [RowType.INSTRUMENT, 0, 0, 0, 0, 1],
            [RowType.START_OF_NOTES, 0, 0, 0, 0, 0]]
    for i, beat in enumerate(NOTE_BEATS):
        rows.append([RowType.NOTE, beat + 1, 1, 61 + i, 4, 1])
    rows.append([RowType.END_OF_SONG, 0, 0, 0, 0, 0])
    return np.array(rows, dtype=np.int64)


def four_beats_back(codes: np.ndarray) -> torch.Tensor:
    """Each note query attends only to the notes exactly 4 beats before it (split evenly);
    every other query attends to start-of-song, which is not a note and so never counted."""
    length = len(codes)
    attn = torch.zeros(length, length)
    beat = codes[:, Field.BEAT]
    for s in range(length):
        keys = [t for t in range(s) if codes[t, Field.TYPE] == RowType.NOTE == codes[s, Field.TYPE]
                and beat[t] - beat[s] == -4]
        if keys:
            attn[s, keys] = 1.0 / len(keys)
        else:
            attn[s, 0] = 1.0
    return attn


def uniform_causal(length: int) -> torch.Tensor:
    """Attention spread evenly over every key t <= s (the query itself included)."""
    return torch.ones(length, length).tril() / torch.arange(1, length + 1)[:, None]


def test_attention_on_keys_four_beats_back_puts_all_gain_at_minus_four():
    codes = tiny_song()
    # 2 layers x 3 heads: heads 0 and 1 look 4 beats back, head 2 is uniform over the past.
    head = torch.stack([four_beats_back(codes), four_beats_back(codes), uniform_causal(len(codes))])
    attention = torch.stack([head, head])[:, None]  # (layers, B=1, heads, L, L)
    result = mean_relative_attention(attention, codes, "beat", Encoding())
    at = {int(k): i for i, k in enumerate(result.offsets)}

    # The 10 note pairs (t < s) have beat offsets x_t - x_s:
    # -1 | -4 -3 | -4 -3 0 | -8 -7 -4 -4  ->  counts -8:1 -7:1 -4:4 -3:2 -1:1 0:1.
    assert result.n_pairs == 10
    expected_baseline = {-8: 0.1, -7: 0.1, -4: 0.4, -3: 0.2, -1: 0.1, 0: 0.1}
    for k, value in expected_baseline.items():
        assert result.baseline[at[k]] == pytest.approx(value)
    assert result.baseline.sum() == pytest.approx(1.0)

    for layer in range(2):
        for h in (0, 1):
            assert result.gamma[layer, h, at[-4]] == pytest.approx(1.0)
            assert result.gain[layer, h, at[-4]] == pytest.approx(0.6)
            assert np.argmax(result.gain[layer, h]) == at[-4]
            others = np.delete(result.gain[layer, h], at[-4])
            assert np.all(others <= 0)
            assert result.gain[layer, h, at[-3]] == pytest.approx(-0.2)

    # Uniform causal head: query row s gives 1/(s+1) to each key; notes sit at rows 3..7.
    total = Fraction(1, 5) + 2 * Fraction(1, 6) + 3 * Fraction(1, 7) + 4 * Fraction(1, 8)
    minus_four = Fraction(1, 6) + Fraction(1, 7) + 2 * Fraction(1, 8)
    assert result.gamma[0, 2, at[-4]] == pytest.approx(float(minus_four / total))
    # Averages: two heads at 0.6 and one uniform head.
    expected_mean = (0.6 + 0.6 + float(minus_four / total) - 0.4) / 3
    assert result.mean_gain[at[-4]] == pytest.approx(expected_mean)
    assert result.gain_per_layer[1, at[-4]] == pytest.approx(expected_mean)


def test_group_attention_of_whole_bars_by_hand():
    codes = tiny_song()
    head = torch.stack([four_beats_back(codes), four_beats_back(codes), uniform_causal(len(codes))])
    attention = torch.stack([head, head])[:, None]
    result = mean_relative_attention(attention, codes, "beat", Encoding())
    summary = group_attention(result, (-4, -8), (-7, -6, -5, -3, -2, -1))

    # Pair baselines: -8: 1/10, -4: 4/10 -> uniform share 0.5. The 4-beats-back heads put
    # everything on -4 (share 1); the uniform causal head gives weight 1/(s+1) to each pair.
    total = Fraction(1, 5) + 2 * Fraction(1, 6) + 3 * Fraction(1, 7) + 4 * Fraction(1, 8)
    uniform_head = {-8: Fraction(1, 8), -7: Fraction(1, 8), -4: Fraction(1, 6) + Fraction(1, 7) + Fraction(2, 8),
                    -3: Fraction(1, 6) + Fraction(1, 7), -1: Fraction(1, 5), 0: Fraction(1, 7)}
    uniform_share = float((uniform_head[-4] + uniform_head[-8]) / total)  # 0.468..: below 0.5
    assert summary.uniform == pytest.approx(0.5)
    assert summary.share == pytest.approx((1 + 1 + uniform_share) / 3)
    assert summary.excess == pytest.approx((2 + uniform_share) / 3 / 0.5 - 1)
    assert (summary.heads_above, summary.n_heads) == (4, 6)
    # The others (-7..-5, -3..-1) hold pairs -7: 1/10, -3: 2/10, -1: 1/10 -> uniform 0.4.
    others_head = float((uniform_head[-7] + uniform_head[-3] + uniform_head[-1]) / total)
    assert summary.others_uniform == pytest.approx(0.4)
    assert summary.others_share == pytest.approx(others_head / 3)
    assert summary.others_excess == pytest.approx(others_head / 3 / 0.4 - 1)
    assert summary.to_dict()["group"] == [-4, -8]
    with pytest.raises(ValueError, match="beat: offsets \\[5000\\]"):
        group_attention(result, (5000,), (-1,))


def test_group_and_others_are_measured_alike():
    """Whole bars back hold few pairs: a mean of per-offset gains ranked them below the
    other beats (0.035 against 0.038) while their share was twice their uniform share.
    Share against uniform share, for both, ranks them consistently."""
    offsets = np.arange(-8, 1)
    baseline = np.array([0.02, 0.02, 0.03, 0.03, 0.05, 0.10, 0.15, 0.30, 0.30])
    gamma = np.array([0.04, 0.02, 0.03, 0.03, 0.10, 0.15, 0.23, 0.40, 0.00])[None, None]
    result = RelativeAttention("beat", offsets, tuple(map(str, offsets)), gamma, baseline, 100, 1)
    summary = group_attention(result, (-4, -8), (-7, -6, -5, -3, -2, -1))
    assert (summary.share, summary.uniform) == (pytest.approx(0.14), pytest.approx(0.07))
    assert summary.excess == pytest.approx(1.0)
    assert (summary.others_share, summary.others_uniform) == (pytest.approx(0.86), pytest.approx(0.63))
    assert summary.others_excess == pytest.approx(0.86 / 0.63 - 1)  # 0.365..
    assert summary.excess > summary.others_excess
    gain = result.mean_gain  # the former, inconsistent comparison
    assert gain[[0, 4]].mean() == pytest.approx(0.035)
    assert gain[[1, 2, 3, 5, 6, 7]].mean() == pytest.approx(0.23 / 6)


def test_musical_groups_offsets():
    groups = {g.name: g for g in musical_groups(resolution=12, beat_window=16, pitch_window=24)}
    assert groups["beat_bars"].group == (-4, -8, -12, -16)
    assert groups["beat_bars"].others == (-15, -14, -13, -11, -10, -9, -7, -6, -5, -3, -2, -1)
    assert groups["pitch_consonant"].group == (0, -7, 7, -12, 12)
    assert len(groups["pitch_consonant"].others) == 49 - 5 and 24 in groups["pitch_octave"].others
    assert groups["position_same"].others == tuple(range(-11, 0)) + tuple(range(1, 12))
    assert (groups["instrument_same"].group, groups["instrument_same"].others) == ((0,), (1,))


def test_bar_colours_mark_whole_bars_octaves_and_fifths():
    assert _highlight("beat", np.array([-8, -5, -4, 0])) == ["tab:red", "tab:blue", "tab:red", "tab:blue"]
    assert _highlight("pitch", np.array([-12, -7, 0, 5, 3, 24])) == [
        "tab:red", "tab:orange", "tab:red", "tab:orange", "tab:blue", "tab:red"]
    assert _highlight("instrument", np.array([0, 1])) == ["tab:red", "tab:blue"]


def test_padding_and_masked_rows_are_not_counted():
    codes = tiny_song()
    length = len(codes)
    head = four_beats_back(codes)[None, None, None]  # (1, 1, 1, L, L)
    alone = relative_attention_sums(head, codes, "beat", Encoding())
    # The same song padded with 4 copies of its last note, masked out.
    padded = np.vstack([codes, np.repeat(codes[-2:-1], 4, axis=0)])
    attn = torch.zeros(1, 1, 1, length + 4, length + 4)
    attn[..., :length, :length] = head
    attn[..., length:, FIRST_NOTE] = 1.0
    mask = torch.zeros(1, length + 4, dtype=torch.bool)
    mask[0, :length] = True
    masked = relative_attention_sums(attn, padded, "beat", Encoding(), mask=mask)
    np.testing.assert_array_equal(masked.counts, alone.counts)
    np.testing.assert_allclose(masked.weighted, alone.weighted)


def double_loop(attention: torch.Tensor, codes: np.ndarray, mask: np.ndarray, field: str, encoding: Encoding):
    """The formula with plain loops over (sequence, query, key)."""
    offsets = offset_range(field, encoding)
    layers, batch, heads, length, _ = attention.shape
    weighted = np.zeros((layers, heads, len(offsets)))
    counts = np.zeros(len(offsets), dtype=np.int64)
    column = Field[field.upper()]
    for b in range(batch):
        for s in range(length):
            for t in range(s):
                pair = [codes[b, r] for r in (s, t)]
                if not (mask[b, s] and mask[b, t]):
                    continue
                if any(row[Field.TYPE] != RowType.NOTE or row[column] < 1 for row in pair):
                    continue
                if field == "instrument":
                    k = int(codes[b, t, column] != codes[b, s, column])
                else:
                    k = int(codes[b, t, column]) - int(codes[b, s, column])
                i = int(np.flatnonzero(offsets == k)[0])
                counts[i] += 1
                weighted[:, :, i] += attention[:, b, :, s, t].double().numpy()
    return weighted, counts


@pytest.mark.parametrize("field", RELATIVE_FIELDS)
def test_vectorized_equals_double_loop(field):
    encoding = Encoding(max_beat=16)
    rng = np.random.default_rng(1)
    batch, length = 3, 14
    codes = np.zeros((batch, length, 6), dtype=np.int64)
    codes[..., Field.TYPE] = rng.choice([RowType.INSTRUMENT, RowType.NOTE, RowType.NOTE, RowType.NOTE],
                                        size=(batch, length))
    codes[..., Field.BEAT] = rng.integers(1, 17, size=(batch, length))
    codes[..., Field.POSITION] = rng.integers(1, 13, size=(batch, length))
    codes[..., Field.PITCH] = rng.integers(0, 129, size=(batch, length))  # some pitch codes 0: undefined
    codes[..., Field.INSTRUMENT] = rng.integers(1, 4, size=(batch, length))
    mask = np.ones((batch, length), dtype=bool)
    mask[1, 10:] = False
    generator = torch.Generator().manual_seed(2)
    scores = torch.randn(2, batch, 3, length, length, generator=generator)
    scores = scores.masked_fill(~torch.ones(length, length, dtype=torch.bool).tril(), float("-inf"))
    attention = scores.softmax(-1)

    sums = relative_attention_sums(attention, torch.from_numpy(codes), field, encoding, torch.from_numpy(mask))
    weighted, counts = double_loop(attention, codes, mask, field, encoding)
    assert counts.sum() > 50
    np.testing.assert_array_equal(sums.counts, counts)
    np.testing.assert_allclose(sums.weighted, weighted, rtol=1e-12, atol=1e-12)

    # Sums of separate batches add up to the sums of the whole batch.
    parts = [relative_attention_sums(attention[:, b:b + 1], codes[b:b + 1], field, encoding,
                                     torch.from_numpy(mask[b:b + 1])) for b in range(batch)]
    added = parts[0] + parts[1] + parts[2]
    np.testing.assert_array_equal(added.counts, sums.counts)
    np.testing.assert_allclose(added.weighted, sums.weighted, rtol=1e-12)
    assert added.n_sequences == 3


def test_instrument_pairs_split_into_same_and_different():
    codes = tiny_song()
    codes[FIRST_NOTE + 1, Field.INSTRUMENT] = 2  # the beat-1 note is on another instrument
    attention = uniform_causal(len(codes))[None, None, None]
    result = mean_relative_attention(attention, codes, "instrument", Encoding())
    assert result.labels == ("same", "different")
    # The beat-1 note is in 4 of the 10 pairs.
    np.testing.assert_allclose(result.baseline, [0.6, 0.4])


def test_model_wrapper_batched_equals_one_at_a_time():
    encoding = Encoding()
    model = tiny_model("absolute", max_seq_len=40)
    rng = np.random.default_rng(3)
    songs = []
    for n_notes in (6, 12, 30):
        notes = np.column_stack([
            np.sort(rng.integers(0, 16, n_notes)), rng.integers(0, 12, n_notes), rng.integers(48, 72, n_notes),
            rng.integers(1, 24, n_notes), rng.choice([0, 40], n_notes),
        ])
        songs.append(encode_notes(notes, encoding))
    one = model_relative_attention(model, songs, batch_size=1)
    batched = model_relative_attention(model, songs, batch_size=3)
    for field in RELATIVE_FIELDS:
        assert one[field].gamma.shape == (2, 4, len(offset_range(field, encoding)))
        np.testing.assert_allclose(np.nansum(one[field].gamma, axis=-1), 1.0)
        assert one[field].baseline.sum() == pytest.approx(1.0)
        assert one[field].n_sequences == 3
        np.testing.assert_array_equal(one[field].baseline, batched[field].baseline)
        np.testing.assert_allclose(one[field].gamma, batched[field].gamma, atol=1e-5)
