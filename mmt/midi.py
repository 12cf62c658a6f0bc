"""Reading MIDI files fast: symusic's C++ parser, with the note semantics `read_music` has always had.

symusic (`symusic.Score`) parses a MIDI file 20-100x faster than mido, but it pairs note
events differently from the reader this replaces (mido + `muspy.from_mido`, after moving a
zero-length note's early note-off behind its note-on):

- a note-off that finds no note of its key sounding is dropped, also when a note-on of that
  key follows at the same tick (how pretty_midi and other writers store a zero-length note:
  off, then on). Here that pair is a note of duration 0;
- a note still sounding at the end of its track is dropped. Here it ends where the track ends.

Both rules are restored without a second parser, by giving symusic a slightly larger file
(`_instrumented`): every track starts with `SENTINELS` silent note-ons of each key of each
channel it plays (so no note-off is ever dropped, and each one's time shows up as the end
of some note), and ends with `SENTINELS + EXTRA_CLOSERS` note-offs of each key (so no note is
dropped). symusic's own ways are relied on here (tracks of a MIDI track listed by channel,
then program; notes in note-on order); `_parse` checks them and the tests compare every
result with the old reader's. From
the note-on times and note-off times of each channel and key, `_pair` rebuilds the notes:
at each tick note-ons come before note-offs, and each note-off ends the oldest sounding note
of its key (first in, first out), as before. When a track needs more sentinels or closers
than it got (many stray note-offs, or many notes left sounding) it is parsed again with more.

One difference remains, on purpose: a note takes the program its channel had at its
note-on (muspy took the one at its note-off, so a program change during a note moved it).
Among note-ons of one key at one tick, the oldest is the one of the lowest program (symusic
lists a channel's notes by program), then the first written.

Preparation (`read_midi_notes`) reads most files without symusic, by a scanner of our own
in C (`mmt._native.scan`, mmt/_native.c, built by setup.py): one pass over the bytes that
pairs note-ons and note-offs by the rules above and collects tempos and time signatures.
Why: the instrumented symusic parse costs some 3 bare parses (the file is larger, and each
sentinel is a note), converting its notes and `_pair` as much again, while the scanner
costs less than one bare parse. It reads only what it can vouch for: a file with anything
whose reading by the symusic path it does not reproduce for certain (a malformed chunk,
running status after a SysEx or first, system messages, data bytes >= 0x80, an end-of-track
event that is not last or not the track's first FF 2F 00 bytes, odd tempo or meter events,
more than 100 stray note-offs or notes left sounding on a key, 24 or more tempos or meters
with two differing at one tick, whose order symusic's unstable sort decides; the full list
is in the C file) makes it return None, and symusic reads that file as above, also to say
what is wrong with it. symusic stays the reader of `read_midi` / `read_music` (tracks,
names, key signatures), and of every file when the extension is not built (no compiler).
tests/test_native.py compares both readers on every kind of file the tests make.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmt.constants import DRUM_PROGRAM
from mmt.errors import MMTError
from mmt.meter import Meter
from mmt.native import native as _native

SENTINELS = 2           # silent note-ons per key per channel at the start of each track
EXTRA_CLOSERS = 2       # note-offs per key per channel at the end of each track, beyond one per sentinel
MAX_TRIES = 6           # parses of one file with more sentinels or closers before giving up
_SENTINEL_VELOCITY = 1
_KEYS = 128


class MidiError(MMTError, ValueError):
    """The bytes are not a MIDI file this reader can read; the message says what is wrong."""


@dataclass
class MidiTrack:
    """The notes of one program on one channel of one MIDI track.

    `notes` is an int64 array (N x 4): onset tick, pitch, duration ticks, velocity, sorted by
    (onset, pitch, duration, velocity).
    """

    program: int
    is_drum: bool
    name: str | None
    notes: np.ndarray


@dataclass
class MidiPiece:
    """What `read_midi` returns: notes per track and the tempo, meter and key maps (ticks)."""

    resolution: int                                   # ticks per quarter note
    tracks: list[MidiTrack] = field(default_factory=list)
    tempos: list[tuple[int, float]] = field(default_factory=list)               # (tick, qpm)
    time_signatures: list[tuple[int, int, int]] = field(default_factory=list)   # (tick, num, den)
    key_signatures: list[tuple[int, int, str]] = field(default_factory=list)    # (tick, root 0-11, mode)


# ---------------------------------------------------------------------- the file's chunks
@dataclass(frozen=True)
class _Layout:
    """A MIDI file cut into its chunks."""

    header: bytes          # "MThd" chunk, as in the file
    tracks: list[bytes]    # the data of each "MTrk" chunk the header announces


def _layout(data: bytes) -> _Layout:
    """Split a MIDI file into its header and track chunks; `MidiError` on a malformed one."""
    if len(data) < 14 or data[:4] != b"MThd":
        raise MidiError("not a MIDI file (no MThd header)")
    (size,) = struct.unpack(">I", data[4:8])
    if size < 6 or 8 + size > len(data):
        raise MidiError(f"not a MIDI file (header chunk of {size} bytes)")
    fmt, n_tracks, division = struct.unpack(">HHH", data[8:14])
    if fmt == 2:
        raise MidiError("type 2 MIDI file (independent sequences) is not supported")
    if fmt > 2:
        raise MidiError(f"unknown MIDI file type {fmt}")
    if division & 0x8000 or division == 0:
        raise MidiError("SMPTE time division (frames per second, not ticks per beat) is not supported")
    tracks, at = [], 8 + size
    for index in range(n_tracks):
        if at + 8 > len(data):
            raise MidiError(f"truncated MIDI file: track {index + 1} of {n_tracks} is missing")
        name, length = data[at:at + 4], struct.unpack(">I", data[at + 4:at + 8])[0]
        if name != b"MTrk":
            raise MidiError(f"malformed MIDI file: chunk {index + 2} is {name!r}, not a track (MTrk)")
        if at + 8 + length > len(data):
            raise MidiError(f"truncated MIDI file: track {index + 1} ends early "
                            f"({len(data) - at - 8} of its {length} bytes present)")
        tracks.append(data[at + 8:at + 8 + length])
        at += 8 + length
    return _Layout(data[:8 + size], tracks)


_NOTE_ON = [bytes((0x90 | channel,)) for channel in range(16)]


def _channels(track: bytes) -> list[int]:
    """Channels that may play a note-on in `track` (a status byte 0x9n appears; data bytes are < 0x80)."""
    return [c for c in range(16) if _NOTE_ON[c] in track]


@functools.lru_cache(maxsize=None)
def _sentinel_events(channel: int, count: int) -> bytes:
    """`count` silent note-ons of every key at delta 0, each with its own status byte."""
    one_round = b"".join(bytes((0, 0x90 | channel, key, _SENTINEL_VELOCITY)) for key in range(_KEYS))
    return one_round * count


_CLOSER = [[bytes((0, 0x80 | channel, key, 0)) for key in range(_KEYS)] for channel in range(16)]


@functools.lru_cache(maxsize=None)
def _uniform_closers(channel: int, count: int) -> bytes:
    return b"".join(event * count for event in _CLOSER[channel])


def _closer_events(channel: int, counts: np.ndarray | int) -> bytes:
    """Note-offs of each key, `counts[key]` times (or `counts` times each), each after a delta of 0."""
    if isinstance(counts, int):
        return _uniform_closers(channel, counts)
    return b"".join(event * int(n) for event, n in zip(_CLOSER[channel], counts))


_END_OF_TRACK = b"\xff\x2f\x00"


def _instrumented(track: bytes, channels: list[int], sentinels: int, closers: np.ndarray | int) -> bytes:
    """`track` with sentinel note-ons at its start and closing note-offs at its end (see module doc).

    `closers`: per channel, how many note-offs of each key (or one count for all of them).

    The closers go right after the delta of the first end-of-track event (the track's last
    tick, where muspy closed sounding notes, and where both readers stop even when events
    follow), or after the last event when there is none. The end-of-track is found as its
    bytes FF 2F 00, which no other event holds but a text or a delta of 16,303 ticks could.
    """
    head = b"".join(_sentinel_events(c, sentinels) for c in channels)
    offs = b"".join(_closer_events(c, closers if isinstance(closers, int) else closers[i])
                    for i, c in enumerate(channels))
    end = track.find(_END_OF_TRACK)
    if offs and end >= 0:  # the first closer takes the end-of-track's delta
        return head + track[:end] + offs[1:] + b"\x00" + track[end:]
    return head + track + offs


# ---------------------------------------------------------------------- pairing note events
_MASK = (1 << 32) - 1   # a code packs key << 32 | tick; key = group * 128 + pitch


@dataclass
class _Notes:
    """The real notes symusic returned in order of key, then onset, and every note-off it saw.

    A note's group is its (MIDI track, channel), its key group * 128 + pitch: the queue a
    note-off of it pops.
    """

    track: np.ndarray      # per real note: index of its symusic track
    onset: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    on_code: np.ndarray    # per real note: key << 32 | onset (sorted)
    off_code: np.ndarray   # per note-off: key << 32 | tick (sorted): the ends of the real notes and of the sentinels
    group_end: np.ndarray  # per group: the last tick of its notes (where its closers sound)


def _flatten(score, n_sentinels: int) -> tuple[_Notes, np.ndarray]:
    """The notes of `score`, each symusic track in the channel group its sentinels open.

    symusic lists the tracks of one MIDI track by (channel, program), and the sentinels of a
    channel make its program-0 track, the first of that channel. The sentinels of keys no
    real note plays are left out: the note-offs they show end nothing. Returns the notes and
    the group of each symusic track.
    """
    arrays = [track.notes.numpy() for track in score.tracks]
    sizes = np.array([len(a["time"]) for a in arrays], dtype=np.int64)
    starts = np.cumsum(sizes) - sizes
    time, duration, pitch, velocity = (np.concatenate([a[name] for a in arrays]).astype(np.int64) if arrays
                                       else np.zeros(0, np.int64) for name in ("time", "duration", "pitch", "velocity"))
    n = n_sentinels * _KEYS
    # a track opens a group when its first n notes are the sentinels: silent, at tick 0, every key in turn
    opens = np.array([len(a["time"]) >= n and a["velocity"][0] == _SENTINEL_VELOCITY for a in arrays], dtype=bool)
    heads = starts[opens][:, None] + np.arange(n)
    opens[opens] = ~time[heads].any(axis=1) & (pitch[heads] == np.arange(n) % _KEYS).all(axis=1)
    track_group = np.cumsum(opens) - 1
    if ((track_group < 0) & (sizes > 0)).any():
        raise MidiError("symusic returned notes before any channel's sentinels (a reader bug)")
    group = np.repeat(track_group, sizes)
    key = group * _KEYS + pitch
    end = time + duration
    n_groups = int(opens.sum())
    group_end = np.maximum.reduceat(end, starts[opens]) if n_groups else np.zeros(0, np.int64)
    sentinel = np.zeros(len(key), dtype=bool)
    sentinel[(starts[opens][:, None] + np.arange(n)).reshape(-1)] = True
    real = np.flatnonzero(~sentinel)
    played = np.zeros(n_groups * _KEYS, dtype=bool)
    played[key[real]] = True
    off_code = (key << 32 | end)[~sentinel | played[key]]
    off_code = off_code[_stable_order(off_code, played.size)]
    on_code = key[real] << 32 | time[real]
    order = _stable_order(on_code, played.size)
    real = real[order]
    notes = _Notes(track=np.repeat(np.arange(len(arrays)), sizes)[real], onset=time[real], pitch=pitch[real],
                   velocity=velocity[real], on_code=on_code[order], off_code=off_code, group_end=group_end)
    return notes, track_group


def _stable_order(code: np.ndarray, n_keys: int) -> np.ndarray:
    """The stable order that sorts `code` (key << 32 | tick, 0 <= key < n_keys).

    Within a key the ticks mostly come in order already (symusic lists a track's notes by
    onset, and pairs first in, first out), so a stable sort of the keys alone (numpy sorts
    16-bit integers by radix) usually sorts the codes; when it does not, they are sorted whole.
    """
    if n_keys <= 1 << 16:
        order = np.argsort((code >> 32).astype(np.uint16), kind="stable")
        ordered = code[order]
        if (ordered[1:] >= ordered[:-1]).all():
            return order
    return np.argsort(code, kind="stable")


@dataclass
class _Paired:
    """The end tick of each note of `_Notes` (-1: none), and what the next parse needs more of."""

    end: np.ndarray
    more_sentinels: bool
    more_closers: np.ndarray   # (group, pitch) flags: its closers may all have been used


def _pair(notes: _Notes, n_sentinels: int, n_closers: np.ndarray) -> _Paired:
    """Rebuild the notes from the note-on and note-off times of each (group, key).

    The note-offs are the ends of every note symusic returned (sentinels included); the
    note-ons are the onsets of the real notes. At one tick note-ons come first; a note-off
    ends the oldest sounding note of its key, or does nothing when none sounds.
    """
    on_code, off_code = notes.on_code, notes.off_code
    n_keys = n_closers.size
    off_key, off_tick = off_code >> 32, off_code & _MASK
    ons, on_first = (a[off_key] for a in _runs(on_code >> 32, n_keys))   # per note-off: its key's note-ons
    rank = np.arange(len(off_code)) - _runs(off_key, n_keys)[1][off_key]   # among the note-offs of its key

    def on_tick(k: np.ndarray) -> np.ndarray:  # per note-off: the tick of the k-th note-on of its key (k < ons)
        return notes.onset[np.clip(on_first + k, 0, max(len(on_code) - 1, 0))] if len(on_code) else k

    # Each of the first (note-ons) note-offs of a key finds a note sounding (the k-th comes no
    # earlier than the k-th note-on), so the k-th ends the k-th note. Else some note-off ends
    # nothing and the later ones shift.
    shifted = ((rank < ons) & (on_tick(rank) > off_tick)).any()
    end = _kth_end(on_code, _effective_offs(on_code, off_code) if shifted else off_code, n_keys)
    more_closers = _closers_short(off_code, notes.group_end, n_closers)
    if (end < 0).any():  # a note-on no note-off ended: its closers fell short
        more_closers.reshape(-1)[on_code[end < 0] >> 32] = True
    # After its i-th note-off a key has n_sentinels + (note-ons before it) - i notes queued in
    # symusic; at none of them, a following note-off would have been dropped unseen. "At most
    # i - n_sentinels note-ons before it": the (i - n_sentinels + 1)-th is not before it.
    k = rank + 1 - n_sentinels
    short = (k >= 0) & ((k >= ons) | (on_tick(k) >= off_tick)) & (off_tick < notes.group_end[off_key // _KEYS])
    return _Paired(end=end, more_closers=more_closers, more_sentinels=bool(short.any()))


def _runs(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Of sorted `keys` (0 <= key < n_keys): how many hold each key, and the index of the first of each."""
    count = np.bincount(keys, minlength=n_keys)
    return count, np.cumsum(count) - count


def _segments(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of equal `keys` (sorted): each element's run number, and each run's first index."""
    starts = np.ones(len(keys), dtype=bool)
    starts[1:] = keys[1:] != keys[:-1]
    return np.cumsum(starts) - 1, np.flatnonzero(starts)


def _effective_offs(on_code: np.ndarray, off_code: np.ndarray) -> np.ndarray:
    """The note-offs (codes, sorted) that end a note: those that find one of their key sounding."""
    # merged events sorted by key, tick, then note-ons before note-offs
    is_off = np.ones(len(on_code) + len(off_code), dtype=bool)
    is_off[np.searchsorted(off_code, on_code, side="left") + np.arange(len(on_code))] = False
    events = np.empty(len(is_off), dtype=np.int64)
    events[~is_off], events[is_off] = on_code, off_code
    segment, firsts = _segments(events >> 32)
    start = firsts[segment]
    total = np.cumsum(np.where(is_off, -1, 1))
    level = total - np.where(start > 0, total[start - 1], 0)   # sounding notes, were no note-off ever ignored
    # note-offs ignored so far: how far `level` has dropped below zero (a queue never goes negative)
    big = 2 * len(level) + 2
    floor = np.minimum.accumulate(level - segment * big) + segment * big if len(level) else level
    ignored = np.maximum(0, -floor)
    previous = np.zeros_like(ignored)   # before each event, within its key
    previous[1:] = ignored[:-1]
    previous[firsts] = 0
    return events[is_off & (ignored == previous)]


def _kth_end(on_code: np.ndarray, off_code: np.ndarray, n_keys: int) -> np.ndarray:
    """For the k-th note-on of each key, the tick of the k-th note-off of its key, or -1.

    Both hold key << 32 | tick, sorted.
    """
    on_key = on_code >> 32
    k = np.arange(len(on_code)) - _runs(on_key, n_keys)[1][on_key]
    off_count, off_first = (a[on_key] for a in _runs(off_code >> 32, n_keys))
    found = k < off_count
    end = np.full(len(on_code), -1, dtype=np.int64)
    end[found] = off_code[(off_first + k)[found]] & _MASK
    return end


def _closers_short(off_code: np.ndarray, group_end: np.ndarray, n_closers: np.ndarray) -> np.ndarray:
    """(group, key) flags: as many note-offs at the track's end as it got closers (some notes may be lost)."""
    off_key = off_code >> 32
    at_end = (off_code & _MASK) == group_end[off_key // _KEYS]
    counts = np.bincount(off_key[at_end], minlength=n_closers.size).reshape(n_closers.shape)
    return counts >= n_closers


# ---------------------------------------------------------------------- reading
def read_midi(path: str | os.PathLike) -> MidiPiece:
    """Read a MIDI file's notes (ticks), tempos, time and key signatures.

    Raises `MidiError` (what is wrong, without the path) or OSError.
    """
    return parse_midi(Path(path).read_bytes())


def read_midi_notes(path: str | os.PathLike) -> tuple[int, np.ndarray, Meter]:
    """A MIDI file's ticks per beat, notes (N x 4 int64: onset, pitch, duration ticks, program or
    128 for drums; rows in no particular order) and meter (time signatures and tempos).

    The notes of `read_midi` without tracks, key map or sorting: what preparation needs.
    Read by the C scanner when it is built and can vouch for the file, else by symusic.
    """
    data = Path(path).read_bytes()
    fast = scanned_notes(data) if _native is not None else None
    return fast if fast is not None else symusic_notes(data)


def symusic_notes(data: bytes) -> tuple[int, np.ndarray, Meter]:
    """`read_midi_notes` of a file's bytes by symusic (the sentinel-instrumented parse)."""
    score, notes, paired, _ = _parse(data)
    programs = np.array([DRUM_PROGRAM if t.is_drum else t.program for t in score.tracks], dtype=np.int64)
    rows = np.column_stack([notes.onset, notes.pitch, paired.end - notes.onset, programs[notes.track]])
    resolution = int(score.ticks_per_quarter)
    meter = Meter.from_ticks([(int(t.time), int(t.numerator), int(t.denominator)) for t in score.time_signatures],
                             [(int(t.time), float(t.qpm)) for t in score.tempos], resolution)
    return resolution, rows, meter


def scanned_notes(data: bytes) -> tuple[int, np.ndarray, Meter] | None:
    """`read_midi_notes` of a file's bytes by the C scanner, or None where it cannot vouch for
    the result (then `symusic_notes` reads the file, and raises what is wrong with it)."""
    scanned = _native.scan(data)
    if scanned is None:
        return None
    resolution, rows, tempos, time_signatures = scanned
    tempos, time_signatures = _symusic_order(tempos), _symusic_order(time_signatures)
    if tempos is None or time_signatures is None:
        return None
    meter = Meter.from_ticks(time_signatures, [(tick, 60_000_000 / mspq) for tick, mspq in tempos], resolution)
    return resolution, np.frombuffer(rows, dtype=np.int64).reshape(-1, 4), meter


_UNSTABLE_FROM = 24   # symusic sorts maps by time with pdqsort: stable (insertion sort) below 24 items


def _symusic_order(events: list[tuple]) -> list[tuple] | None:
    """(tick, ...) events in the order symusic sorts them (by tick), or None when that order is
    not known here: 24 or more of them, two at one tick that differ (pdqsort may swap them)."""
    ordered = sorted(events, key=_tick)
    if len(ordered) >= _UNSTABLE_FROM and any(a[0] == b[0] and a != b for a, b in zip(ordered, ordered[1:])):
        return None
    return ordered


def _tick(event: tuple) -> int:
    return event[0]


def parse_midi(data: bytes) -> MidiPiece:
    """`read_midi` of a file's bytes."""
    return _piece(*_parse(data))


def _parse(data: bytes):
    """symusic's score of the instrumented file, its notes, the rebuilt notes, and each track's MIDI track."""
    import symusic

    layout = _layout(data)
    channels = [_channels(track) for track in layout.tracks]
    n_groups = sum(len(c) for c in channels)
    n_sentinels = SENTINELS
    extra = np.full((n_groups, _KEYS), EXTRA_CLOSERS, dtype=np.int64)
    for _ in range(MAX_TRIES):
        closers = n_sentinels + extra  # the sentinels themselves stay queued to the end, so each needs one
        uniform = not closers.size or closers.min() == closers.max()  # as on the first parse: cached bytes
        body, at = [], 0
        for track, chans in zip(layout.tracks, channels):
            counts = int(closers.max(initial=0)) if uniform else closers[at:at + len(chans)]
            chunk = _instrumented(track, chans, n_sentinels, counts)
            body.append(b"MTrk" + struct.pack(">I", len(chunk)) + chunk)
            at += len(chans)
        try:
            score = symusic.Score.from_midi(layout.header + b"".join(body))
        except Exception as error:  # symusic raises RuntimeError/ValueError with its own words
            raise MidiError(f"malformed MIDI data ({error})") from error
        notes, track_groups = _flatten(score, n_sentinels)
        if int(track_groups.max(initial=-1)) + 1 != n_groups:
            raise MidiError(f"symusic returned {int(track_groups.max(initial=-1)) + 1} channels' sentinels "
                            f"of {n_groups} (a reader bug)")
        paired = _pair(notes, n_sentinels, closers)
        if not paired.more_sentinels and not paired.more_closers.any():
            group_midi_track = np.repeat(np.arange(len(channels)), [len(c) for c in channels])
            return score, notes, paired, np.append(group_midi_track, -1)[track_groups]  # -1: a track with no notes
        if paired.more_sentinels:
            n_sentinels *= 4
        extra = np.where(paired.more_closers, extra * 8, extra)
    raise MidiError(f"too many stray note-offs or notes left sounding (gave up after {MAX_TRIES} parses)")


def _piece(score, notes: _Notes, paired: _Paired, track_midi: np.ndarray) -> MidiPiece:
    """The `MidiPiece` of paired notes: one track per symusic track that has notes, names as muspy gave them."""
    onset, pitch, velocity, track = notes.onset, notes.pitch, notes.velocity, notes.track
    duration = paired.end - onset
    order = np.lexsort((velocity, duration, pitch, onset, track))
    columns = np.column_stack([onset, pitch, duration, velocity])[order]
    bounds = np.searchsorted(track[order], np.arange(len(score.tracks) + 1))
    piece = MidiPiece(resolution=int(score.ticks_per_quarter))
    for i, symusic_track in enumerate(score.tracks):
        if bounds[i] == bounds[i + 1]:
            continue
        title = track_midi[i] == 0  # muspy took the name of a file's first track as the song's title
        name = None if title or not symusic_track.name else symusic_track.name
        piece.tracks.append(MidiTrack(int(symusic_track.program), bool(symusic_track.is_drum), name,
                                      columns[bounds[i]:bounds[i + 1]]))
    piece.tempos = [(int(t.time), float(t.qpm)) for t in score.tempos]
    piece.time_signatures = [(int(t.time), int(t.numerator), int(t.denominator)) for t in score.time_signatures]
    piece.key_signatures = [(int(k.time), _key_root(int(k.key), int(k.tonality)), "minor" if k.tonality else "major")
                            for k in score.key_signatures]
    return piece


def _key_root(sharps: int, minor: int) -> int:
    """Pitch class of a key's tonic from its sharps (negative: flats): C major 0, A minor 9."""
    return (7 * sharps + (9 if minor else 0)) % 12
