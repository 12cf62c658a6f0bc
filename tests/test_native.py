"""The C extension (`mmt._native`) against the Python code it stands in for, result for result.

- `scan` (through `mmt.midi.scanned_notes`) against `mmt.midi.symusic_notes`, the
  symusic reader (itself checked against the old mido reader in tests/test_midi.py): the
  same notes (compared sorted: row order is free), ticks per beat and meter; and where
  the scanner declines (None), `read_midi_notes` gives what symusic gives.
- `notes_from_ticks` and `clean_notes` against their numpy versions.
"""

from __future__ import annotations

import importlib.util
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from test_midi import NASTY, fixture_files, random_tracks, write_events

from mmt.data_prep.pipeline import _clean_notes, clean_notes
from mmt.encoding import _notes_from_ticks, notes_from_ticks
from mmt.meter import MeterError
from mmt.midi import read_midi_notes, scanned_notes, symusic_notes
from mmt.native import native

ROOT = Path(__file__).resolve().parents[1]


def test_the_extension_is_built():
    """`pip install -e .` (setup.py) builds it; without it every test below would test numpy against itself."""
    assert native is not None
    assert {"scan", "notes_from_ticks", "clean_notes"} <= set(dir(native))


def _sorted(rows: np.ndarray) -> list[list[int]]:
    return sorted(np.asarray(rows).tolist())


def _slow(data: bytes):
    """What symusic makes of the bytes: (resolution, sorted notes, meter), or the error's type and text."""
    try:
        resolution, rows, meter = symusic_notes(data)
    except Exception as error:
        return type(error).__name__, str(error)
    return resolution, _sorted(rows), meter


def assert_same(data: bytes, *, fast: bool) -> None:
    """The scanner reads `data` (when `fast`) or declines it; either way `read_midi_notes` agrees with symusic."""
    scanned = scanned_notes(data)
    assert (scanned is not None) == fast
    slow = _slow(data)
    if scanned is not None:
        resolution, rows, meter = scanned
        assert rows.dtype == np.int64 and rows.shape == (len(rows), 4)
        assert (resolution, _sorted(rows), meter) == slow
    handle, name = tempfile.mkstemp(suffix=".mid")
    os.close(handle)
    path = Path(name)
    try:
        path.write_bytes(data)
        try:
            resolution, rows, meter = read_midi_notes(path)
            got = resolution, _sorted(rows), meter
        except Exception as error:
            got = type(error).__name__, str(error)
    finally:
        path.unlink(missing_ok=True)
    assert got == slow


# ---------------------------------------------------------------------- raw MIDI bytes
def varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def track(events: list[tuple[int, bytes]], end: bytes = b"\xff\x2f\x00") -> bytes:
    """An MTrk chunk of (delta, event bytes) pairs, then an end-of-track at delta 0 (`end`)."""
    body = b"".join(varlen(delta) + event for delta, event in events) + (b"\x00" + end if end else b"")
    return b"MTrk" + struct.pack(">I", len(body)) + body


def midi(*tracks: bytes, fmt: int = 1, division: int = 480, header: bytes | None = None) -> bytes:
    return (header or b"MThd" + struct.pack(">IHHH", 6, fmt, len(tracks), division)) + b"".join(tracks)


ON, OFF = 0x90, 0x80


def note(status: int, pitch: int, velocity: int = 64) -> bytes:
    return bytes((status, pitch, velocity))


def random_midi(seed: int) -> bytes:
    """Up to 4 tracks of colliding note-ons and note-offs on few keys of several channels (running status,
    velocity-0 note-offs, program changes, tempos, meters, texts, SysEx between them), some notes left
    sounding, some note-offs stray."""
    rng = np.random.default_rng(seed)
    tracks = []
    for _ in range(int(rng.integers(1, 5))):
        events, status = [], None
        channels = rng.choice([0, 1, 5, 9], size=int(rng.integers(1, 3)), replace=False)
        for _ in range(int(rng.integers(0, 80))):
            delta = int(rng.choice([0, 0, 0, 1, 5, 200, 20000]))
            kind = rng.random()
            channel = int(rng.choice(channels))
            if kind < 0.04:   # (bytes < 0x80: no FF 2F 00 in them, which would end the track for the symusic path)
                events.append((delta, b"\xff\x51\x03" + bytes(rng.integers(1, 128, size=3).tolist())))
                continue
            if kind < 0.07:
                events.append((delta, b"\xff\x58\x04" + bytes((int(rng.integers(1, 13)), int(rng.integers(0, 5)), 24, 8))))
                continue
            if kind < 0.09:
                events.append((delta, b"\xff\x01\x03abc"))   # a text: running status goes on past it
                continue
            if kind < 0.10:
                events.append((delta, b"\xf0\x03\x7e\x7f\xf7"))
                status = None
                continue
            if kind < 0.14:
                status = 0xC0 | channel
                events.append((delta, bytes((status, int(rng.integers(0, 128))))))
                continue
            pitch = int(rng.integers(60, 63))
            on = rng.random() < 0.5
            new_status = (ON if on or rng.random() < 0.5 else OFF) | channel
            velocity = int(rng.integers(1, 128)) if on else (0 if new_status & 0xF0 == ON else int(rng.integers(0, 128)))
            body = bytes((pitch, velocity))
            events.append((delta, body if new_status == status else bytes((new_status,)) + body))
            status = new_status
        tracks.append(track(events))
    return midi(*tracks, fmt=1 if len(tracks) > 1 else int(rng.integers(0, 2)), division=int(rng.choice([96, 480, 7])))


# ---------------------------------------------------------------------- files both read
def test_fixture_files(tmp_path):
    paths = fixture_files(tmp_path)
    fast = {path.name: scanned_notes(path.read_bytes()) is not None for path in paths}
    # pretty_midi's and mido's files are read by the scanner; the corrupt, empty and truncated ones are left to symusic
    assert sorted(name for name, ok in fast.items() if not ok) == ["corrupt.mid", "empty.mid", "truncated.mid"]
    for path in paths:
        assert_same(path.read_bytes(), fast=fast[path.name])


@pytest.mark.parametrize("name", sorted(NASTY))
def test_awkward_files(tmp_path, name):
    path = write_events(tmp_path / f"{name}.mid", NASTY[name], midi_type=0 if name.startswith("type_0") else 1)
    assert_same(path.read_bytes(), fast=True)


@pytest.mark.parametrize("seed", range(40))
def test_random_note_events_of_test_midi(tmp_path, seed):
    assert_same(write_events(tmp_path / "random.mid", random_tracks(seed)).read_bytes(), fast=True)


@pytest.mark.parametrize("seed", range(300))
def test_random_event_streams(seed):
    assert_same(random_midi(seed), fast=True)


def test_benchmark_files():
    """Files like those of benchmarks/prepare.py (Lakh-shaped: many tracks, notes written off-then-on, tempo maps)."""
    spec = importlib.util.spec_from_file_location("bench_prepare", ROOT / "benchmarks" / "prepare.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = np.random.default_rng(5)
    for _ in range(12):
        data, total = bench.synthetic_midi(rng)
        assert_same(data, fast=True)
        assert len(scanned_notes(data)[1]) == total


def test_mutated_files():
    """Random files with a few bytes changed, inserted, deleted or cut: the scanner reads what it can vouch for
    (mostly those whose changed bytes stayed below 0x80), and its reading is symusic's; the rest it declines."""
    rng = np.random.default_rng(11)
    bases = [random_midi(seed) for seed in range(20)]
    fast = 0
    for i in range(300):
        data = bytearray(bases[i % len(bases)])
        for _ in range(int(rng.integers(1, 4))):
            at, op = int(rng.integers(0, len(data))), rng.random()
            if op < 0.6:
                data[at] = int(rng.integers(0, 128 if data[at] < 0x80 else 256))
            elif op < 0.75:
                data[at:at] = bytes(rng.integers(0, 256, size=int(rng.integers(1, 4))).tolist())
            elif op < 0.9:
                del data[at:at + int(rng.integers(1, 4))]
            else:
                del data[at:]
        scanned = scanned_notes(bytes(data))
        fast += scanned is not None
        assert_same(bytes(data), fast=scanned is not None)
    assert fast == 82   # of 300, with this seed: a change means the scanner accepts other files than it did


def test_literal_notes():
    """(onset, pitch, duration, program) of a zero-length note written off-then-on, a program change,
    running status, a velocity-0 note-off, drums, a note left sounding and a stray note-off."""
    data = midi(
        track([(0, b"\xff\x51\x03\x07\xa1\x20"), (0, b"\xff\x58\x04\x03\x02\x18\x08"), (960, b"\xff\x51\x03\x0f\x42\x40")]),
        track([(0, b"\xc0\x05"), (0, note(OFF, 60, 0)), (0, note(ON, 60)), (10, b"\x3e\x40"), (0, b"\xc0\x06"),
               (10, note(ON, 62, 0)), (0, note(0x99, 36)), (30, note(OFF, 40, 0)), (50, note(ON, 64))]))
    resolution, rows, meter = scanned_notes(data)
    assert resolution == 480
    assert _sorted(rows) == [[0, 60, 0, 5], [10, 62, 10, 5], [20, 36, 80, 128], [100, 64, 0, 6]]
    assert meter.tempos == ((0.0, 120.0), (2.0, 60.0)) and meter.time_signatures == ((0.0, 3, 4),)
    assert_same(data, fast=True)


def test_note_ons_of_one_tick_end_in_program_order():
    """At one tick the note of the lower program is the older (symusic lists a channel's notes by program),
    also when a note-off of that tick comes first (a zero-length note off-then-on)."""
    data = midi(track([(0, b"\xc0\x63"), (0, note(ON, 62)), (0, b"\xc0\x02"), (0, note(ON, 62)), (10, note(OFF, 62)),
                       (10, note(OFF, 64)), (0, b"\xc0\x63"), (0, note(ON, 64)), (0, b"\xc0\x02"), (0, note(ON, 64)),
                       (10, note(OFF, 62)), (0, note(OFF, 64))]))
    assert _sorted(scanned_notes(data)[1]) == [[0, 62, 10, 2], [0, 62, 30, 99], [20, 64, 0, 2], [20, 64, 10, 99]]
    assert_same(data, fast=True)


def test_stray_note_offs_and_notes_left_sounding_up_to_the_limit():
    """100 of each on one key: the scanner reads the file (symusic needs four parses)."""
    strays = [(1, note(OFF, 60, 0))] * 100
    sounding = [(1, note(ON, 61))] * 100
    data = midi(track(strays + [(1, note(ON, 60)), (5, note(OFF, 60))] + sounding))
    resolution, rows, meter = scanned_notes(data)
    assert _sorted(rows) == [[101, 60, 5, 0]] + [[107 + i, 61, 99 - i, 0] for i in range(100)]
    assert_same(data, fast=True)


# ---------------------------------------------------------------------- files the scanner leaves to symusic
EOT = b"\xff\x2f\x00"
DECLINED = {
    "header_of_8_bytes": midi(track([(0, note(ON, 60)), (5, note(OFF, 60))]),
                              header=b"MThd" + struct.pack(">IHHH", 8, 1, 1, 480) + b"\x00\x00"),
    "type_0_with_2_tracks": midi(track([(0, note(ON, 60))]), track([(0, note(ON, 61))]), fmt=0),
    "no_tracks": midi(),
    "smpte_division": midi(track([(0, note(ON, 60))]), division=0xE728),
    "truncated_track": midi(track([(0, note(ON, 60)), (5, note(OFF, 60))]))[:-4],
    "running_status_first": midi(track([(0, b"\x3c\x40"), (5, note(OFF, 60))])),
    "running_status_after_sysex": midi(track([(0, note(ON, 60)), (0, b"\xf0\x01\xf7"), (5, b"\x3c\x00")])),
    "system_message": midi(track([(0, note(ON, 60)), (0, b"\xf8"), (5, note(OFF, 60))])),
    "escape_f7": midi(track([(0, note(ON, 60)), (0, b"\xf7\x01\x00"), (5, note(OFF, 60))])),
    "data_byte_too_large": midi(track([(0, note(ON, 60, 0x90)), (5, note(OFF, 60))])),
    "end_of_track_bytes_in_a_text": midi(track([(0, b"\xff\x01\x03" + EOT), (0, note(ON, 60)), (5, note(OFF, 60))])),
    "events_after_end_of_track": midi(track([(0, note(ON, 60)), (5, EOT), (5, note(OFF, 60))])),
    "no_end_of_track": midi(track([(0, note(ON, 60)), (5, note(OFF, 60))], end=b"")),
    "end_of_track_of_length_1": midi(track([(0, note(ON, 60))], end=b"\xff\x2f\x01\x00")),
    "tempo_of_2_bytes": midi(track([(0, b"\xff\x51\x02\x07\xa1"), (0, note(ON, 60)), (5, note(OFF, 60))])),
    "tempo_zero": midi(track([(0, b"\xff\x51\x03\x00\x00\x00"), (0, note(ON, 60)), (5, note(OFF, 60))])),
    "denominator_2_to_the_8": midi(track([(0, b"\xff\x58\x04\x03\x08\x18\x08"), (0, note(ON, 60))])),
    "ticks_beyond_2_to_the_30": midi(track([(0, note(ON, 60)), (0x0FFFFFFF, note(OFF, 60)),
                                            (0x0FFFFFFF, note(ON, 60)), (0x0FFFFFFF, note(OFF, 60)),
                                            (0x0FFFFFFF, note(ON, 60)), (0x0FFFFFFF, note(OFF, 60))])),
    "101_stray_note_offs": midi(track([(1, note(OFF, 60, 0))] * 101 + [(0, note(ON, 60)), (5, note(OFF, 60))])),
    "101_notes_left_sounding": midi(track([(1, note(ON, 60))] * 101)),
    "note_offs_on_every_key": midi(track([(0, note(ON, 60))] + [(1, note(OFF, k, 0)) for k in range(128)])),
    "24_tempos_at_one_tick": midi(track([(0, b"\xff\x51\x03" + (500000 + i).to_bytes(3, "big")) for i in range(24)]
                                        + [(0, note(ON, 60)), (5, note(OFF, 60))])),
}


@pytest.mark.parametrize("name", sorted(DECLINED))
def test_files_the_scanner_declines(name):
    assert_same(DECLINED[name], fast=False)


def test_what_symusic_makes_of_some_declined_files():
    """Literal outcomes of the slow path for a few of them (so the comparison above compares something)."""
    assert _slow(DECLINED["truncated_track"]) == ("MidiError", "truncated MIDI file: track 1 ends early "
                                                               "(8 of its 12 bytes present)")
    assert _slow(DECLINED["101_stray_note_offs"])[1] == [[101, 60, 0, 0]]   # the last note-off at 101 ends it
    assert _slow(DECLINED["events_after_end_of_track"])[1] == [[0, 60, 5, 0]]
    tempos = _slow(DECLINED["24_tempos_at_one_tick"])[2].tempos
    assert len(tempos) == 1 and tempos[0][0] == 0.0   # one of the 24, which one pdqsort decides


def test_a_time_signature_of_numerator_0_fails_as_with_symusic(tmp_path):
    data = midi(track([(0, b"\xff\x58\x04\x00\x02\x18\x08"), (0, note(ON, 60)), (5, note(OFF, 60))]))
    with pytest.raises(MeterError) as fast:
        scanned_notes(data)
    with pytest.raises(MeterError) as slow:
        symusic_notes(data)
    assert str(fast.value) == str(slow.value) == ("bad time signature (0.0, 0, 4): need beat >= 0, numerator and "
                                                  "denominator >= 1")


def test_23_tempos_at_one_tick_keep_the_last():
    """Below 24 events symusic's sort is stable, so the scanner knows the order: the last one stated wins."""
    data = midi(track([(0, b"\xff\x51\x03" + (500000 + i).to_bytes(3, "big")) for i in range(23)]
                      + [(0, note(ON, 60)), (5, note(OFF, 60))]))
    assert scanned_notes(data)[2].tempos == ((0.0, round(60_000_000 / 500022, 3)),)
    assert_same(data, fast=True)


# ---------------------------------------------------------------------- notes_from_ticks, clean_notes
@pytest.mark.parametrize("source_resolution, resolution", [(480, 12), (96, 12), (1, 12), (12, 12), (1000, 24), (7, 5),
                                                           (0, 12)])
def test_notes_from_ticks_as_numpy(source_resolution, resolution):
    rng = np.random.default_rng(source_resolution)
    for n in (0, 1, 7, 500):
        raw = np.stack([rng.integers(0, 5000, n), rng.integers(0, 128, n), rng.integers(0, 2000, n),
                        rng.integers(0, 129, n)], axis=1)
        raw[::2, 0] = raw[::2, 0] // 40 * 40 + 20   # halves of a tick at 480 -> 12: rounded to even
        scale = resolution / (source_resolution or resolution)
        expected = _notes_from_ticks(raw, scale, resolution)
        assert np.array_equal(notes_from_ticks(raw, source_resolution, resolution), expected)
        assert native.notes_from_ticks(raw, scale, resolution) is not None


def test_notes_from_ticks_literal():
    raw = np.array([[20, 60, 20, 0], [60, 61, 0, 128], [500, 62, 40, 5]])
    # 20/40 = 0.5 -> 0, 40/40 = 1 -> 1 (half to even); 60/40 = 1.5 -> 2; 500/40 = 12.5 -> 12 (beat 1), 540/40 = 13.5 -> 14
    assert notes_from_ticks(raw, 480, 12).tolist() == [[0, 0, 60, 1, 0], [0, 2, 61, 1, 128], [1, 0, 62, 2, 5]]


def test_notes_from_ticks_leaves_huge_ticks_to_numpy():
    raw = np.array([[1 << 60, 60, 1, 0]])
    assert native.notes_from_ticks(raw, 1.0, 12) is None
    assert np.array_equal(notes_from_ticks(raw, 12, 12), _notes_from_ticks(raw, 1.0, 12))


@pytest.mark.parametrize("seed", range(30))
def test_clean_notes_as_numpy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 400))
    scales = [int(rng.integers(1, 5)), 12, int(rng.integers(1, 4)), int(rng.integers(1, 6)), int(rng.integers(1, 4))]
    notes = np.stack([rng.integers(0, s, n) for s in scales], axis=1).reshape(-1, 5) + rng.integers(-3, 50, 5)
    expected = _clean_notes(notes)
    got = clean_notes(notes)
    assert got.dtype == np.int64 and got.shape == expected.shape and np.array_equal(got, expected)
    assert native.clean_notes(np.ascontiguousarray(notes, dtype=np.int64)) is not None


def test_clean_notes_literal():
    notes = np.array([[1, 0, 60, 3, 0], [1, 0, 60, 12, 0], [0, 0, 62, 3, 0], [1, 0, 60, 3, 40], [1, 0, 60, 5, 0]])
    assert clean_notes(notes).tolist() == [[0, 0, 62, 3, 0], [1, 0, 60, 3, 40], [1, 0, 60, 12, 0]]


def test_clean_notes_too_wide_for_one_key_goes_to_numpy():
    notes = np.array([[2**40, 0, 60, 2**33, 0], [1, 0, 62, 3, 0], [2**40, 0, 60, 5, 0]])
    assert native.clean_notes(notes) is None
    assert clean_notes(notes).tolist() == [[1, 0, 62, 3, 0], [2**40, 0, 60, 2**33, 0]]
    extreme = np.array([[-2**63, 0, 60, 1, 0], [2**63 - 1, 0, 60, 1, 0], [-2**63, 0, 60, 2, 0]])
    assert native.clean_notes(extreme) is None
    assert clean_notes(extreme).tolist() == [[-2**63, 0, 60, 2, 0], [2**63 - 1, 0, 60, 1, 0]]
