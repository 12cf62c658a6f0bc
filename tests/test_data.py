"""MusicDataset and collate: items, augmentation bounds, windowing, cropping, batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmt import Encoding, Field, RowType, encode_notes
from mmt.constants import INSTRUMENT_REGISTERS, REMAP_ENSEMBLES
from mmt.augment import (chordal_share, pitch_shift_bounds, remap_instruments, rest_part, step_takeover,
                         takeover_inputs, voice_count, voice_lines)
from mmt.config import Augmentation, ConfigError
from mmt.data import MusicDataset, beat_window, collate, crop_codes, make_item, window_bar_lines, window_starts
from mmt.encoding import grammar_violations, onsets
from mmt.meter import Meter
from mmt.prepared import DataError
from tests.factories import write_prepared

SOS, INST, SON, NOTE, EOS = 1, 2, 3, 4, 5

# beat, position, pitch, duration (ticks), program; piano 0, violin 40, drums 128
NOTES = np.array(
    [
        [0, 0, 60, 12, 0],
        [1, 0, 64, 12, 40],
        [0, 0, 36, 1, 128],
    ]
)
# Worked out by hand: piano = instrument code 1, violin = 25, drums = 65 (last of 65);
# duration 12 ticks is the 12th known duration, 1 tick the 1st; notes sort by (beat, position, pitch).
NOTES_CODES = np.array(
    [
        [SOS, 0, 0, 0, 0, 0],
        [INST, 0, 0, 0, 0, 1],
        [INST, 0, 0, 0, 0, 25],
        [INST, 0, 0, 0, 0, 65],
        [SON, 0, 0, 0, 0, 0],
        [NOTE, 1, 1, 37, 1, 65],
        [NOTE, 1, 1, 61, 12, 1],
        [NOTE, 2, 1, 65, 12, 25],
        [EOS, 0, 0, 0, 0, 0],
    ]
)


def make_prepared(root, pieces: dict[str, np.ndarray], encoding: Encoding):
    return write_prepared(root, pieces, {"train": list(pieces)}, encoding)


def long_piece(n_beats: int) -> np.ndarray:
    """One piano note (pitch 60 + beat % 12) on every beat, plus a violin note on every 4th beat."""
    rows = [[b, 0, 60 + b % 12, 12, 0] for b in range(n_beats)]
    rows += [[b, 6, 70, 6, 40] for b in range(0, n_beats, 4)]
    return np.array(rows)


# ---------------------------------------------------------------------- items
def test_plain_item_is_the_encoded_notes(tmp_path, encoding):
    ds = MusicDataset(make_prepared(tmp_path, {"a": NOTES}, encoding), "train", encoding, max_seq_len=64)
    assert len(ds) == 1
    item = ds[0]
    assert item.dtype == np.int64
    np.testing.assert_array_equal(item, NOTES_CODES)
    np.testing.assert_array_equal(item, encode_notes(NOTES, encoding))


def test_crop_keeps_header_consistent_and_drops_end_of_song(encoding):
    # 2 + h(k) + k <= 7: k = 2 notes (drums, piano) with 2 header rows = 6 rows.
    cropped = crop_codes(NOTES_CODES, 7)
    np.testing.assert_array_equal(
        cropped,
        [
            [SOS, 0, 0, 0, 0, 0],
            [INST, 0, 0, 0, 0, 1],
            [INST, 0, 0, 0, 0, 65],
            [SON, 0, 0, 0, 0, 0],
            [NOTE, 1, 1, 37, 1, 65],
            [NOTE, 1, 1, 61, 12, 1],
        ],
    )
    assert grammar_violations(cropped, encoding, complete=False) == []
    # 8 rows: every note fits but end-of-song does not.
    np.testing.assert_array_equal(crop_codes(NOTES_CODES, 8), NOTES_CODES[:-1])
    # 9 rows: the whole song, end-of-song included.
    np.testing.assert_array_equal(crop_codes(NOTES_CODES, 9), NOTES_CODES)
    # Cut earlier (ends=False): never an end-of-song, even with room for it.
    np.testing.assert_array_equal(crop_codes(NOTES_CODES, 100, ends=False), NOTES_CODES[:-1])
    # 3 rows: start-of-song, one instrument would need a note; nothing fits but SOS + SON.
    np.testing.assert_array_equal(crop_codes(NOTES_CODES, 3), NOTES_CODES[[0, 4]])
    with pytest.raises(ValueError, match="max_seq_len"):
        crop_codes(NOTES_CODES, 2)


def test_dataset_crops_to_max_seq_len(tmp_path, encoding):
    ds = MusicDataset(make_prepared(tmp_path, {"a": NOTES}, encoding), "train", encoding, max_seq_len=7)
    np.testing.assert_array_equal(ds[0], crop_codes(NOTES_CODES, 7))


def test_beat_window_shifts_and_reports_the_end():
    notes = np.array([[0, 0, 60, 12, 0], [3, 5, 62, 12, 0], [5, 0, 64, 12, 0], [7, 0, 65, 12, 0]])
    window, ends = beat_window(notes, 3, 4)
    np.testing.assert_array_equal(window, [[0, 5, 62, 12, 0], [2, 0, 64, 12, 0]])
    assert not ends
    window, ends = beat_window(notes, 5, 4)
    np.testing.assert_array_equal(window, [[0, 0, 64, 12, 0], [2, 0, 65, 12, 0]])
    assert ends
    np.testing.assert_array_equal(window_starts(notes, 4), [0, 3])  # onset beats <= 7 - 4 + 1
    np.testing.assert_array_equal(window_starts(notes, 8), [0])  # the piece fits


def test_long_piece_without_augmentation_starts_at_beat_zero(tmp_path, encoding):
    notes = long_piece(40)
    ds = MusicDataset(make_prepared(tmp_path, {"a": notes}, encoding), "train", encoding,
                      max_seq_len=1000, max_beat=16)
    item = ds[0]
    note_rows = item[item[:, Field.TYPE] == RowType.NOTE]
    assert note_rows[:, Field.BEAT].min() == 1 and note_rows[:, Field.BEAT].max() == 16
    assert len(note_rows) == 16 + 4
    assert item[-1, Field.TYPE] == RowType.NOTE  # cut by the window: no end-of-song
    assert grammar_violations(item, encoding, complete=False) == []


def test_random_start_beat_shifts_window_to_zero(tmp_path, encoding):
    notes = long_piece(40)
    ds = MusicDataset(make_prepared(tmp_path, {"a": notes}, encoding), "train", encoding,
                      max_seq_len=1000, max_beat=16, augment=True, seed=3)
    seen_ends, starts = set(), set()
    for epoch in range(60):
        ds.set_epoch(epoch)
        item = ds[0]
        assert grammar_violations(item, encoding, complete=False) == []
        note_rows = item[item[:, Field.TYPE] == RowType.NOTE]
        assert note_rows[:, Field.BEAT].min() == 1  # every beat holds a note, so the window starts at 0
        assert note_rows[:, Field.BEAT].max() == 16
        assert len(note_rows) == 16 + 4  # 16 piano notes and one violin note per 4 beats
        has_eos = item[-1, Field.TYPE] == RowType.END_OF_SONG
        seen_ends.add(bool(has_eos))
        # The piano pitch at window beat 0 tells the start (up to the shift); the violin
        # onset positions tell the start modulo 4.
        violin_beats = note_rows[note_rows[:, Field.INSTRUMENT] == 25, Field.BEAT] - 1
        starts.add(int((-violin_beats[0]) % 4))
        if has_eos:
            # only the last window (start 24, beats 24..39) reaches the end
            assert violin_beats[0] == 0
    assert seen_ends == {True, False}
    assert starts == {0, 1, 2, 3}


def test_pitch_shift_bounds():
    notes = np.array([[0, 0, 2, 1, 0], [0, 0, 125, 1, 0], [0, 0, 127, 1, 128], [0, 0, 0, 1, 128]])
    assert pitch_shift_bounds(notes, -5, 6) == (-2, 2)  # drums do not count
    assert pitch_shift_bounds(notes[2:], -5, 6) == (-5, 6)  # drums only: any shift
    assert pitch_shift_bounds(np.array([[0, 0, 60, 1, 0]]), -5, 6) == (-5, 6)


def test_augmentation_stays_in_range_and_leaves_drums(tmp_path, encoding):
    notes = np.array([[0, 0, 2, 12, 0], [1, 0, 125, 12, 0], [0, 0, 36, 1, 128], [2, 0, 42, 1, 128]])
    ds = MusicDataset(make_prepared(tmp_path, {"a": notes}, encoding), "train", encoding,
                      max_seq_len=64, augment=True, seed=1)
    shifts = set()
    for epoch in range(80):
        ds.set_epoch(epoch)
        item = ds[0]
        rows = item[item[:, Field.TYPE] == RowType.NOTE]
        pitches = rows[:, Field.PITCH] - 1
        assert pitches.min() >= 0 and pitches.max() <= 127
        drums = rows[rows[:, Field.INSTRUMENT] == 65]
        np.testing.assert_array_equal(drums[:, Field.PITCH] - 1, [36, 42])
        piano = rows[rows[:, Field.INSTRUMENT] == 1]
        shifts.add(int(piano[0, Field.PITCH] - 1 - 2))
        assert piano[1, Field.PITCH] - 1 - 125 == piano[0, Field.PITCH] - 1 - 2  # one shift per piece
    assert shifts == {-2, -1, 0, 1, 2}


def test_default_shift_range_is_minus5_to_plus6(tmp_path, encoding):
    notes = np.array([[0, 0, 60, 12, 0]])
    ds = MusicDataset(make_prepared(tmp_path, {"a": notes}, encoding), "train", encoding,
                      max_seq_len=64, augment=True)
    shifts = set()
    for epoch in range(200):
        ds.set_epoch(epoch)
        shifts.add(int(ds[0][-2, Field.PITCH] - 1 - 60))
    assert shifts == set(range(-5, 7))


def test_randomness_is_a_function_of_seed_epoch_and_index(tmp_path, encoding):
    pieces = {f"p{i}": long_piece(30 + i) for i in range(4)}
    root = make_prepared(tmp_path, pieces, encoding)

    def items(seed, epoch):
        ds = MusicDataset(root, "train", encoding, max_seq_len=200, max_beat=8, augment=True, seed=seed)
        ds.set_epoch(epoch)
        return [ds[i] for i in reversed(range(len(ds)))][::-1]  # access order must not matter

    first, again = items(0, 2), items(0, 2)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    ds = MusicDataset(root, "train", encoding, max_seq_len=200, max_beat=8, augment=True, seed=0)
    ds.set_epoch(2)
    np.testing.assert_array_equal(ds[1], make_item(pieces["p1"], encoding, 200, 8, np.random.default_rng([0, 2, 1])))
    other_epoch = items(0, 3)
    other_seed = items(1, 2)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other_epoch))
    assert any(not np.array_equal(a, b) for a, b in zip(first, other_seed))


@settings(max_examples=60, deadline=None)
@given(
    notes=st.lists(
        st.tuples(
            st.integers(0, 40), st.integers(0, 11), st.integers(0, 127), st.integers(1, 100),
            st.sampled_from([0, 24, 40, 73, 128, 121]),  # 121 is not modelled
        ),
        max_size=60,
    ),
    max_seq_len=st.integers(3, 80),
    max_beat=st.integers(1, 50),
    seed=st.integers(0, 2**31),
)
def test_items_are_well_formed_prefixes(notes, max_seq_len, max_beat, seed):
    encoding = Encoding()
    notes = np.array(notes, dtype=np.int64).reshape(-1, 5)
    item = make_item(notes, encoding, max_seq_len, max_beat, np.random.default_rng(seed))
    assert len(item) <= max_seq_len
    assert grammar_violations(item, encoding, complete=False) == []
    header = item[item[:, Field.TYPE] == RowType.INSTRUMENT, Field.INSTRUMENT]
    rows = item[item[:, Field.TYPE] == RowType.NOTE]
    np.testing.assert_array_equal(header, np.unique(rows[:, Field.INSTRUMENT]))
    assert rows[:, Field.BEAT].max(initial=1) <= max_beat
    # Without augmentation the item's notes are a prefix of the whole song's notes.
    plain = make_item(notes, encoding, max_seq_len, max_beat)
    full = encode_notes(notes, encoding)
    full_notes = full[full[:, Field.TYPE] == RowType.NOTE]
    plain_notes = plain[plain[:, Field.TYPE] == RowType.NOTE]
    np.testing.assert_array_equal(plain_notes, full_notes[: len(plain_notes)])
    has_eos = plain[-1, Field.TYPE] == RowType.END_OF_SONG
    assert has_eos == (len(full) <= max_seq_len and notes[:, 0].max(initial=0) < max_beat)
    if has_eos:
        np.testing.assert_array_equal(plain, full)


# ---------------------------------------------------------------------- errors
def test_dataset_errors_name_the_problem(tmp_path, encoding):
    root = make_prepared(tmp_path / "d", {"a": NOTES}, encoding)
    with pytest.raises(DataError, match="valid.txt"):
        MusicDataset(root, "valid", encoding, 64)
    with pytest.raises(ValueError, match="split"):
        MusicDataset(root, "dev", encoding, 64)
    with pytest.raises(DataError, match="prepared data directory"):
        MusicDataset(tmp_path / "missing", "train", encoding, 64)
    with pytest.raises(ValueError, match="resolution"):
        MusicDataset(root, "train", Encoding(resolution=24), 64)
    with pytest.raises(ValueError, match="max_beat"):
        MusicDataset(root, "train", encoding, 64, max_beat=encoding.max_beat + 1)
    assert MusicDataset(root, "train", None, 64).encoding == encoding  # read from encoding.json
    np.save(root / "notes" / "a.npy", np.zeros((3, 4), dtype=np.int64))
    with pytest.raises(DataError, match=r"a\.npy: expected an integer \(N x 5\) notes array"):
        MusicDataset(root, "train", encoding, 64)[0]
    (root / "train.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match=r"b\.npy"):
        MusicDataset(root, "train", encoding, 64)[1]


# ---------------------------------------------------------------------- collate
def test_collate_pads_right_and_masks():
    a = np.arange(18).reshape(3, 6) + 1
    b = np.arange(6).reshape(1, 6) + 100
    batch = collate([a, b])
    assert batch["codes"].dtype == torch.long and batch["codes"].shape == (2, 3, 6)
    assert batch["mask"].dtype == torch.bool
    np.testing.assert_array_equal(batch["mask"].numpy(), [[True, True, True], [True, False, False]])
    np.testing.assert_array_equal(batch["codes"][0].numpy(), a)
    np.testing.assert_array_equal(batch["codes"][1, 0].numpy(), [100, 101, 102, 103, 104, 105])
    assert batch["codes"][1, 1:].abs().sum() == 0
    with pytest.raises(ValueError, match="item 1"):
        collate([a, np.zeros((2, 5))])


def test_dataloader_batches(tmp_path, encoding):
    pieces = {"a": NOTES, "b": long_piece(10)}
    ds = MusicDataset(make_prepared(tmp_path, pieces, encoding), "train", encoding, max_seq_len=12)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["codes"].shape == (2, 12, 6)
    assert batch["mask"].sum(dim=1).tolist() == [9, 12]


def test_pitch_ranges_cover_every_piece_of_a_small_split_and_leave_out_drums(tmp_path):
    """Ranges per instrument (0.1st..99.9th percentile); an instrument that one piece of many
    has still gets one; a smaller `max_pieces` reads a seeded choice of the pieces."""
    from mmt.data import pitch_ranges
    from mmt.prepared import PreparedData

    def piece(program, pitches):
        return np.array([[beat, 0, pitch, 12, program] for beat, pitch in enumerate(pitches)])

    pieces = {f"tune{i}": piece(0, range(60, 73)) for i in range(30)}
    pieces["duet"] = np.concatenate([piece(73, [72, 79, 84]), piece(128, [36, 38])])
    root = write_prepared(tmp_path / "data", pieces, {"train": sorted(pieces)})
    data = PreparedData(root)
    assert pitch_ranges(data, sorted(pieces), data.encoding) == {"flute": (72, 84), "piano": (60, 72)}
    # 5 of the 31 pieces: seed 0 draws five tunes (the flute is missed), seed 5 draws the duet
    assert pitch_ranges(data, sorted(pieces), data.encoding, max_pieces=5, seed=0) == {"piano": (60, 72)}
    assert pitch_ranges(data, sorted(pieces), data.encoding, max_pieces=5, seed=5) == {"flute": (72, 84),
                                                                                      "piano": (60, 72)}


# ---------------------------------------------------------------------- instrument remapping
# a chorale: four voices (program 52, "voices") on every beat, soprano 72-74, alto 63-64,
# tenor 55-56, bass 48-50
CHORALE = np.array([[b, 0, p, 12, 52] for b in range(8) for p in (48 + b % 3, 55 + b % 2, 64 - b % 2, 72 + b % 3)])
WINDS = {"flute": (60, 96), "clarinet": (50, 94), "bassoon": (34, 75), "horn": (34, 77)}  # GM 73, 71, 70, 60


def parts(notes: np.ndarray) -> list[tuple[int, int, int]]:
    """(program, lowest pitch, highest pitch) of each program."""
    return [(int(p), int(notes[notes[:, 4] == p, 2].min()), int(notes[notes[:, 4] == p, 2].max()))
            for p in np.unique(notes[:, 4])]


def test_chordal_share_counts_notes_that_start_together():
    notes = np.array([[0, 0, 60, 1, 0], [0, 0, 64, 1, 0], [1, 0, 62, 1, 0], [2, 6, 60, 1, 0], [2, 6, 67, 1, 0],
                      [2, 0, 65, 1, 0]])
    assert chordal_share(notes) == pytest.approx(4 / 6)
    assert chordal_share(CHORALE) == 1.0
    assert chordal_share(notes[:0]) == 0.0


def test_remap_splits_a_chorale_by_register_and_gives_each_part_a_wind_or_drums(encoding):
    # seed 6 splits into three parts at the pitch tertiles: bass 48-50 (flute, an octave up),
    # tenor and alto's 63 55-63 (horn, an octave down), the rest 64-74 (clarinet, an octave up)
    assert parts(remap_instruments(CHORALE, encoding, np.random.default_rng(6), WINDS)) == [
        (60, 43, 51), (71, 76, 86), (73, 60, 62)]
    # seed 4 does not split: the horn plays all four voices an octave down
    assert parts(remap_instruments(CHORALE, encoding, np.random.default_rng(4), WINDS)) == [(60, 36, 62)]
    # seed 0: the bass line is drummed (48, 49, 50 -> bass drum, snare, hi-hat)
    drummed = remap_instruments(CHORALE, encoding, np.random.default_rng(0), WINDS)
    bass = CHORALE[:, 2] <= 50
    np.testing.assert_array_equal(drummed[bass, 4], 128)
    np.testing.assert_array_equal(drummed[bass, 2], np.array(
        [36, 38, 42])[CHORALE[bass, 2] - 48])
    counts, moves, drums = set(), set(), 0
    for seed in range(60):
        remapped = remap_instruments(CHORALE, encoding, np.random.default_rng(seed), WINDS)
        np.testing.assert_array_equal(remapped[:, [0, 1, 3]], CHORALE[:, [0, 1, 3]])  # times and durations stay
        bands = []
        for program, low, high in parts(remapped):
            members = remapped[:, 4] == program
            if program == 128:
                drums += 1
                assert set(remapped[members, 2].tolist()) <= {36, 38, 42}
            else:  # a part no free wind can play keeps its voices
                name = encoding.program_instrument[program]
                assert name == "voices" or WINDS[name][0] <= low and high <= WINDS[name][1]
                move = np.unique(remapped[members, 2] - CHORALE[members, 2])
                assert len(move) == 1 and move[0] in (0, -12, 12)  # a part moves as a whole, by an octave at most
                moves.add(int(move[0]))
            bands.append((CHORALE[members, 2].min(), CHORALE[members, 2].max()))
        bands.sort()
        assert all(a[1] < b[0] for a, b in zip(bands, bands[1:]))  # split by register: no overlap
        counts.add(len(bands))
    assert counts == {1, 2, 3, 4}
    assert moves == {0, -12, 12}
    assert 4 <= drums <= 20  # DRUM_PART 0.2 of the 45 or so items that split (3/4 of 60): about 9 (15 with these seeds)


def test_voice_count_is_the_typical_chord_of_a_part():
    assert voice_count(CHORALE) == 4
    assert voice_count(CHORALE[::4]) == 1  # its bass line alone
    passing = np.vstack([CHORALE, [[b, 6, 50, 6, 52] for b in range(8)]])  # a passing note each beat: still 4 voices
    assert voice_count(passing) == 4 and voice_count(CHORALE[:0]) == 0


def test_voice_lines_read_full_chords_by_rank_and_other_notes_by_nearest_voice():
    notes = np.array([
        [0, 0, 60, 12, 52], [0, 0, 67, 12, 52], [0, 0, 48, 12, 52],  # a full chord: 48, 60, 67 -> voices 0, 1, 2
        [1, 0, 66, 12, 52], [1, 0, 58, 12, 52], [1, 0, 65, 12, 52],  # 58, 65, 66: the middle voice rises
        [1, 6, 62, 6, 52],                                            # a passing note: nearest mean (61.5 + ...)
        [2, 0, 50, 12, 52],                                           # a bass note alone
    ])
    # voice means over the full chords: 53, 62.5, 66.5; 62 is nearest 62.5, 50 nearest 53
    assert voice_lines(notes, 3).tolist() == [1, 2, 0, 2, 0, 1, 1, 0]
    # no onset with 4 notes: the pitch quartiles (cuts 58, 62, 65) instead
    assert voice_lines(notes, 4).tolist() == [1, 3, 0, 3, 1, 3, 2, 0]


def test_remap_split_by_voices_gives_each_voice_of_a_chorale_its_own_line(encoding):
    for seed in range(30):
        remapped = remap_instruments(CHORALE, encoding, np.random.default_rng(seed), WINDS, split="voices")
        programs = np.unique(remapped[:, 4])
        assert len(programs) == 4  # soprano, alto, tenor, bass (one of them maybe drummed)
        for program in programs[programs != 128]:
            line = remapped[remapped[:, 4] == program]
            assert voice_count(line) == 1 and len(line) == 8  # one note at each of the 8 onsets
    with pytest.raises(ValueError, match="split must be one of random, voices, got 'pairs'"):
        remap_instruments(CHORALE, encoding, np.random.default_rng(0), WINDS, split="pairs")


def test_remap_moves_a_part_by_an_octave_only_when_it_must(encoding):
    line = np.array([[b, 0, 70 + b, 12, 0] for b in range(11)])  # 70..80
    assert parts(remap_instruments(line, encoding, np.random.default_rng(0), {"cello": (36, 76)})) == [(42, 58, 68)]
    assert parts(remap_instruments(line, encoding, np.random.default_rng(0), {"flute": (66, 84)})) == [(73, 70, 80)]


def test_remap_relabels_monophonic_parts_within_their_registers_and_never_shares_an_instrument(encoding):
    # a string trio of single lines: never split (not chordal), each part a distinct instrument (or drums)
    trio = np.array([[b, 0, 76 + b % 5, 12, 40] for b in range(8)] + [[b, 0, 60 + b % 4, 12, 41] for b in range(8)]
                    + [[b, 0, 40 + b % 7, 12, 42] for b in range(8)])
    names = set()
    for seed in range(40):
        found = parts(remap_instruments(trio, encoding, np.random.default_rng(seed)))
        assert len(found) == 3
        for program, low, high in found:
            if program == 128:
                continue
            name = encoding.program_instrument[program]
            names.add(name)
            assert INSTRUMENT_REGISTERS[name][0] <= low and high <= INSTRUMENT_REGISTERS[name][1]
    assert {"flute", "clarinet", "bassoon", "trombone", "cello"} <= names


def test_remap_in_register_order_puts_the_cello_under_the_viola_under_the_violin(encoding):
    """A chorale's voices relabelled from the string quartet: drawn freely, some seed puts a lower
    voice on a higher string (a cello above the viola); in register order, none does, and the draws
    are otherwise the same (the same instruments)."""
    strings = {name: INSTRUMENT_REGISTERS[name] for name in ("violin", "viola", "cello")}
    place = {40: 2, 41: 1, 42: 0}  # violin, viola, cello: lowest first

    def crossed(remapped) -> bool:
        means = {program: remapped[remapped[:, 4] == program, 2].mean() for program in np.unique(remapped[:, 4])
                 if program in place}
        ranked = sorted(means, key=means.get)
        return ranked != sorted(ranked, key=place.get)

    free = ordered = 0
    for seed in range(30):
        loose = remap_instruments(CHORALE, encoding, np.random.default_rng(seed), strings, split="voices")
        kept = remap_instruments(CHORALE, encoding, np.random.default_rng(seed), strings, split="voices", order=True)
        assert sorted(np.unique(loose[:, 4])) == sorted(np.unique(kept[:, 4]))
        free += crossed(loose)
        ordered += crossed(kept)
    assert free > 0 and ordered == 0


def test_remap_leaves_drums_and_unplayable_parts_alone(encoding):
    notes = np.array([[0, 0, 21, 12, 0], [1, 0, 108, 12, 0], [0, 0, 36, 1, 128], [1, 0, 42, 1, 128]])
    for seed in range(20):  # no instrument but the piano spans 21..108; drums stay drums, no part is drummed
        assert parts(remap_instruments(notes, encoding, np.random.default_rng(seed), WINDS)) == [
            (0, 21, 108), (128, 36, 42)]
    assert parts(remap_instruments(notes[2:], encoding, np.random.default_rng(0))) == [(128, 36, 42)]


def test_remap_measures_parts_on_the_notes_an_item_keeps(encoding):
    # a flute-range line whose fifth note (past what the item keeps) is out of every wind's range
    notes = np.array([[b, 0, 70 + b, 12, 0] for b in range(4)] + [[9, 0, 20, 12, 0]])
    only = {"flute": (66, 80)}  # holds 70..73 as they are, not an octave away
    assert parts(remap_instruments(notes, encoding, np.random.default_rng(0), only)) == [(0, 20, 73)]
    assert parts(remap_instruments(notes, encoding, np.random.default_rng(0), only, measured=4)) == [(73, 20, 73)]


def test_remapped_items_are_well_formed_and_remap_is_checked(tmp_path, encoding):
    root = make_prepared(tmp_path, {"a": CHORALE, "b": long_piece(40)}, encoding)
    ds = MusicDataset(root, "train", encoding, max_seq_len=24, augment=Augmentation(instrument_remap=1.0))
    seen = set()
    for epoch in range(10):
        ds.set_epoch(epoch)
        for item in (ds[0], ds[1]):
            assert grammar_violations(item, encoding, complete=False) == []  # cropped: no end-of-song
            seen |= set(np.unique(item[item[:, Field.TYPE] == RowType.NOTE, Field.INSTRUMENT]).tolist())
    assert len(seen) > 4  # instruments the pieces themselves do not have
    with pytest.raises(ConfigError, match="instrument_remap must be a probability in 0..1, got 1.5"):
        Augmentation(instrument_remap=1.5)


def test_remap_ensemble_draws_an_items_instruments_from_one_ensemble(tmp_path, encoding):
    organ = CHORALE.copy()
    organ[:, 4] = 19  # a church organ, of no ensemble: a part that no free instrument can play keeps it
    root = make_prepared(tmp_path, {"a": organ}, encoding)
    names = {encoding.instrument_code(name): name for name in encoding.instruments}

    def ensembles_of_items(share: float) -> list[list[str]]:
        """For 40 epochs' item, the ensembles holding all its instruments (a drummed or kept part aside)."""
        remapping = Augmentation(instrument_remap=1.0, remap_split="voices", remap_ensemble=share)
        ds = MusicDataset(root, "train", encoding, max_seq_len=64, augment=remapping)
        out = []
        for epoch in range(40):
            ds.set_epoch(epoch)
            item = ds[0]
            played = {names[c] for c in item[item[:, Field.TYPE] == RowType.NOTE, Field.INSTRUMENT].tolist()}
            out.append([e for e, members in REMAP_ENSEMBLES.items() if played - {"drums", "church-organ"} <= set(members)])
        return out

    within = ensembles_of_items(1.0)
    assert all(within) and len({e[0] for e in within if len(e) == 1}) >= 5  # one ensemble each, and they vary
    assert sum(map(bool, ensembles_of_items(0.0))) < 10  # drawn from every instrument: seldom one ensemble's
    with pytest.raises(ConfigError, match="remap_ensemble must be a probability in 0..1, got -1"):
        Augmentation(instrument_remap=1.0, remap_ensemble=-1)


DUET = np.array([[b, 0, 60, 12, 0] for b in range(16)] + [[b, 0, 72, 12, 40] for b in range(16)])


def test_rest_part_silences_one_part_for_its_span_and_the_part_plays_again(encoding):
    codes = encode_notes(DUET, encoding)
    piano, violin = encoding.instrument_code("piano"), encoding.instrument_code("violin")
    rested, starts = set(), set()
    for seed in range(40):
        out = rest_part(codes, encoding, np.random.default_rng(seed), beats=(4, 4))
        assert len(out) == len(codes) - 4 and np.array_equal(out[:4], codes[:4])  # header kept
        kept = {tuple(row) for row in out.tolist()}
        gone = np.array([row for row in codes.tolist() if tuple(row) not in kept])
        assert len(np.unique(gone[:, Field.INSTRUMENT])) == 1  # one part rests ...
        beats = gone[:, Field.BEAT] - 1
        assert beats.tolist() == list(range(beats[0], beats[0] + 4))  # ... for 4 beats in a row ...
        assert beats[0] + 4 <= 15  # ... and plays again (its last note is on beat 15)
        rested.add(int(gone[0, Field.INSTRUMENT]))
        starts.add(int(beats[0]))
    assert rested == {piano, violin} and starts <= set(range(12)) and len(starts) > 6


def test_rest_part_leaves_a_solo_and_a_part_that_would_not_return_alone(encoding):
    solo = encode_notes(DUET[:16], encoding)
    assert np.array_equal(rest_part(solo, encoding, np.random.default_rng(0)), solo)
    # the violin's one note is on beat 0: resting it would silence it for good, so only the piano rests
    codes = encode_notes(np.concatenate([DUET[:16], [[0, 0, 72, 12, 40]]]), encoding)
    changed = 0
    for seed in range(20):
        out = rest_part(codes, encoding, np.random.default_rng(seed), beats=(4, 8))
        assert np.sum(out[:, Field.INSTRUMENT] == encoding.instrument_code("violin")) == 2  # header row and note
        changed += len(out) < len(codes)
    assert 0 < changed < 20


def test_items_with_rests_are_well_formed_and_rests_is_checked(tmp_path, encoding):
    root = make_prepared(tmp_path, {"a": DUET, "b": CHORALE}, encoding)
    ds = MusicDataset(root, "train", encoding, max_seq_len=24, augment=Augmentation(rests=1.0))
    plain = MusicDataset(root, "train", encoding, max_seq_len=24, augment=True)
    shorter = 0
    for epoch in range(20):
        ds.set_epoch(epoch)
        plain.set_epoch(epoch)
        item = ds[0]
        assert grammar_violations(item, encoding, complete=False) == []
        shorter += len(item) < len(plain[0])
    # the 24 rows hold the duet's first 10 beats: rests of up to 9 of the drawn 4..32 beats fit
    assert 0 < shorter < 20
    with pytest.raises(ConfigError, match="rests must be a probability in 0..1, got -0.5"):
        Augmentation(rests=-0.5)


def test_takeover_inputs_give_one_instrument_a_stretch_of_note_rows(encoding):
    solo, short = DUET[:16], np.concatenate([DUET[:8], DUET[16:24]])  # one part; 16 note rows
    batch = collate([encode_notes(DUET, encoding), encode_notes(solo, encoding), encode_notes(short, encoding)])
    codes, mask = batch["codes"], batch["mask"]
    out = takeover_inputs(codes, mask, 1.0, np.random.default_rng(0))
    piano, violin = encoding.instrument_code("piano"), encoding.instrument_code("violin")
    notes = (codes[0, :, Field.TYPE] == RowType.NOTE).nonzero().flatten()
    assert codes[0, notes, Field.INSTRUMENT].tolist() == [piano, violin] * 16  # the duet's rows alternate
    # note rows 4..18 (15 of 32, in 20-60%) all show the piano
    assert out[0, notes, Field.INSTRUMENT].tolist() == [piano, violin] * 2 + [piano] * 15 + [violin, piano] * 6 + [violin]
    changed = (out != codes).nonzero()
    assert set(changed[:, 0].tolist()) == {0} and set(changed[:, 2].tolist()) == {Field.INSTRUMENT}
    assert torch.equal(takeover_inputs(codes, mask, 0.0, np.random.default_rng(0)), codes)
    spans = set()
    for seed in range(40):  # the span's length and place, and its instrument, vary
        row = takeover_inputs(codes[:1], mask[:1], 1.0, np.random.default_rng(seed))[0, notes, Field.INSTRUMENT]
        moved = (row != codes[0, notes, Field.INSTRUMENT]).nonzero().flatten()
        assert 3 <= len(moved) <= 10 and len(set(row[moved.min():moved.max() + 1].tolist())) == 1
        spans.add((int(moved.min()), int(moved.max()), int(row[moved[0]])))
    assert len(spans) > 20 and {s[2] for s in spans} == {piano, violin}
    # share (1, 1): every note row shows one instrument; (0, 0): none changes
    whole = takeover_inputs(codes[:1], mask[:1], 1.0, np.random.default_rng(0), share=(1.0, 1.0))
    assert len(set(whole[0, notes, Field.INSTRUMENT].tolist())) == 1
    assert torch.equal(takeover_inputs(codes, mask, 1.0, np.random.default_rng(0), share=(0.0, 0.0)), codes)


def test_a_steps_takeover_is_drawn_from_seed_step_and_rank(encoding):
    batch = collate([encode_notes(DUET, encoding)] * 3)
    codes, mask = batch["codes"], batch["mask"]
    taking = Augmentation(takeover=0.5, takeover_share=(0.3, 0.5))
    assert step_takeover(codes, mask, None, 0, 5) is None  # no augmentation
    assert step_takeover(codes, mask, Augmentation(), 0, 5) is None  # takeover 0
    drawn = takeover_inputs(codes, mask, 0.5, np.random.default_rng([7, 5, 1]), (0.3, 0.5))
    assert torch.equal(step_takeover(codes, mask, taking, 7, 5, rank=1), drawn)
    assert not torch.equal(drawn, codes)
    assert not torch.equal(step_takeover(codes, mask, taking, 7, 6, rank=1), drawn)  # another step draws anew


# ---------------------------------------------------------------------- regions
TRIO = np.array([[b, 0, pitch + b % 5, 12, program] for b in range(24)
                 for pitch, program in ((60, 0), (72, 40), (48, 42))])  # piano, violin and cello on every beat
THREE_FOUR = Meter(time_signatures=((0, 3, 4),))


def test_window_bar_lines_are_the_meters_bar_lines_in_the_windows_ticks():
    assert window_bar_lines(THREE_FOUR, 4, 8, 12).tolist() == [24, 60]  # bars at beats 6 and 9
    assert window_bar_lines(Meter(time_signatures=((0, 3, 4),), pickup=1), 4, 8, 12).tolist() == [0, 36, 72]
    assert window_bar_lines(Meter(), 0, 8, 12).tolist() == [0, 48]  # no time signature: 4/4


def test_region_items_start_their_span_on_a_bar_line_of_the_pieces_meter(tmp_path):
    encoding = Encoding(anticipation=2.0)
    root = write_prepared(tmp_path / "data", {"metered": TRIO, "plain": TRIO}, {"train": ["metered", "plain"]},
                          encoding, meters={"metered": THREE_FOUR})
    augmentation = Augmentation(controls=1.0, regions=1.0, pitch_shift=(0, 0))
    ds = MusicDataset(root, "train", encoding, 200, augment=augmentation, seed=0)
    firsts = {"metered": [], "plain": []}
    for epoch in range(6):
        ds.set_epoch(epoch)
        for index, name in enumerate(ds.ids):
            item = ds[index]
            assert grammar_violations(item, encoding) == []
            assert np.array_equal(item, make_item(TRIO, encoding, 200, rng=ds.rng(index), augmentation=augmentation,
                                                  meter=THREE_FOUR if name == "metered" else None))
            controls = item[item[:, Field.TYPE] == RowType.CONTROL]
            firsts[name].append(int(onsets(controls, 12).min()) // 12)
    # every part plays on every beat and some part is given from the span's start, so the first control
    # is on its first beat: a bar line of 3/4, or any beat without a meter
    assert firsts == {"metered": [0, 3, 21, 12, 12, 6], "plain": [14, 0, 9, 0, 19, 19]}
