"""The piece's meter: from and onto a Music, bars, files, and decode(meter=...)."""

from __future__ import annotations

import muspy
import numpy as np
import pytest

import mmt
from mmt import Encoding, Meter, decode, encode
from mmt.meter import MeterError, load_piece_meter, meter_path

WALTZ_THEN_MARCH = Meter(time_signatures=((0, 3, 4), (6, 2, 4)), tempos=((0, 90.0), (8, 120.0)))


def test_from_music_reads_ticks_as_beats_and_apply_puts_them_back():
    music = muspy.Music(
        resolution=480,
        time_signatures=[muspy.TimeSignature(time=2880, numerator=2, denominator=4),
                         muspy.TimeSignature(time=0, numerator=3, denominator=4)],
        tempos=[muspy.Tempo(time=0, qpm=90.0), muspy.Tempo(time=3840, qpm=120.0)],
    )
    meter = Meter.from_music(music)
    assert meter == WALTZ_THEN_MARCH
    assert meter.time_signatures == ((0.0, 3, 4), (6.0, 2, 4))  # sorted
    target = muspy.Music(resolution=12)
    assert meter.apply(target) is target
    assert [(ts.time, ts.numerator, ts.denominator) for ts in target.time_signatures] == [(0, 3, 4), (72, 2, 4)]
    assert [(t.time, t.qpm) for t in target.tempos] == [(0, 90.0), (96, 120.0)]


def test_a_piece_that_states_nothing_has_an_empty_meter_and_bars_of_four_four():
    meter = Meter.from_music(muspy.Music(resolution=12))
    assert meter == Meter() and meter.time_signatures == () and meter.tempos == ()
    assert meter.time_signature_at(100) == (4, 4)
    starts, lengths = meter.bars(9)
    assert starts.tolist() == [0, 4, 8] and lengths.tolist() == [4, 4, 4]


def test_bars_follow_the_time_signatures():
    meter = WALTZ_THEN_MARCH
    starts, lengths = meter.bars(12)
    assert starts.tolist() == [0, 3, 6, 8, 10] and lengths.tolist() == [3, 3, 2, 2, 2]
    ticks, tick_lengths = meter.bar_ticks(100, 12)
    assert ticks.tolist() == [0, 36, 72, 96] and tick_lengths.tolist() == [36, 36, 24, 24]
    assert meter.time_signature_at(5.9) == (3, 4) and meter.time_signature_at(6) == (2, 4)
    assert meter.beats_per_bar() == 3.0 and meter.beats_per_bar(7) == 2.0
    assert Meter(((0, 6, 8),)).beats_per_bar() == 3.0
    assert [meter.bar_start(n) for n in range(5)] == [0, 3, 6, 8, 10]
    assert [meter.bar_floor(b) for b in (0, 2.9, 3, 7.5, 10, 11.9)] == [0, 0, 3, 6, 10, 10]


def test_a_change_inside_a_bar_cuts_it_short_and_the_first_signature_applies_from_zero():
    meter = Meter(time_signatures=((1, 4, 4), (6, 3, 4)))
    starts, lengths = meter.bars(10)
    assert starts.tolist() == [0, 4, 6, 9] and lengths.tolist() == [4, 2, 3, 3]


def test_a_pickup_is_a_short_first_bar_and_travels_as_bar_lines():
    meter = Meter(time_signatures=((0, 4, 4),), pickup=1.0)
    starts, lengths = meter.bars(10)
    assert starts.tolist() == [0, 1, 5, 9] and lengths.tolist() == [1, 4, 4, 4]
    assert meter.bar_start(2) == 5.0 and meter.bar_floor(8) == 5.0
    music = meter.apply(muspy.Music(resolution=12))
    assert [b.time for b in music.barlines] == [0, 12]
    assert Meter.from_music(music) == meter
    # bar lines a whole bar apart are no pickup
    full = muspy.Music(resolution=12, barlines=[muspy.Barline(0), muspy.Barline(48), muspy.Barline(96)])
    assert Meter.from_music(full).pickup == 0.0


def test_meters_save_and_load_and_bad_ones_name_the_file(tmp_path):
    path = WALTZ_THEN_MARCH.save(tmp_path / "m.json")
    assert Meter.load(path) == WALTZ_THEN_MARCH
    assert path.read_text() == ('{"time_signatures": [[0.0, 3, 4], [6.0, 2, 4]], '
                                '"tempos": [[0.0, 90.0], [8.0, 120.0]], "pickup": 0.0}\n')
    (tmp_path / "old.json").write_text('{"time_signatures": [[0, 6, 8]]}')  # keys may be left out
    assert Meter.load(tmp_path / "old.json") == Meter(((0, 6, 8),))
    (tmp_path / "bad.json").write_text('{"time_signatures": [[0, 0, 4]]}')
    with pytest.raises(MeterError, match=r"bad.json: bad time signature \(0, 0, 4\)"):
        Meter.load(tmp_path / "bad.json")
    (tmp_path / "key.json").write_text('{"key": 1}')
    with pytest.raises(MeterError, match="key.json: unknown meter key"):
        Meter.load(tmp_path / "key.json")
    with pytest.raises(MeterError, match="nowhere.json: no such meter file"):
        Meter.load(tmp_path / "nowhere.json")
    with pytest.raises(MeterError, match="bad tempo"):
        Meter(tempos=((0, -5),))


def test_prepared_meters_live_in_meters_and_old_folders_have_none(tmp_path):
    assert meter_path(tmp_path, "a__b.mid") == tmp_path / "meters" / "a__b.mid.json"
    assert load_piece_meter(tmp_path, "a__b.mid") is None
    WALTZ_THEN_MARCH.save(meter_path(tmp_path, "a__b.mid"))
    assert load_piece_meter(tmp_path, "a__b.mid") == WALTZ_THEN_MARCH


def test_decode_with_a_meter_writes_its_time_signatures_and_tempos_to_midi(tmp_path):
    encoding = Encoding()
    music = muspy.Music(resolution=12, tracks=[muspy.Track(program=0, notes=[muspy.Note(0, 60, 12), muspy.Note(36, 62, 12)])])
    codes = encode(music, encoding)
    decoded = decode(codes, encoding, meter=WALTZ_THEN_MARCH)
    assert Meter.from_music(decoded) == WALTZ_THEN_MARCH
    back = mmt.read_music(mmt.write_midi(tmp_path / "waltz.mid", decoded))
    assert Meter.from_music(back) == WALTZ_THEN_MARCH
    # without a meter: the tempo alone, no time signature (as before)
    plain = decode(codes, encoding)
    assert plain.time_signatures == [] and [(t.time, t.qpm) for t in plain.tempos] == [(0, 100.0)]
    with pytest.raises(ValueError, match="tempo or meter, not both"):
        decode(codes, encoding, tempo=90, meter=WALTZ_THEN_MARCH)
    np.testing.assert_array_equal(encode(decoded, encoding), codes)  # the notes are untouched
