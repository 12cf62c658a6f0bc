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
of some note), and ends with `CLOSERS` note-offs of each key (so no note is dropped). From
the note-on times and note-off times of each channel and key, `_pair` rebuilds the notes:
at each tick note-ons come before note-offs, and each note-off ends the oldest sounding note
of its key (first in, first out), as before. When a track needs more sentinels or closers
than it got (many stray note-offs, or many notes left sounding) it is parsed again with more.

One difference remains, on purpose: a note takes the program its channel had at its
note-on (muspy took the one at its note-off, so a program change during a note moved it).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SENTINELS = 2           # silent note-ons per key per channel at the start of each track
EXTRA_CLOSERS = 2       # note-offs per key per channel at the end of each track, beyond one per sentinel
MAX_TRIES = 6           # parses of one file with more sentinels or closers before giving up
_SENTINEL_VELOCITY = 1
_KEYS = 128


class MidiError(ValueError):
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


def _channels(track: bytes) -> list[int]:
    """Channels that may play a note-on in `track` (a status byte 0x9n appears; data bytes are < 0x80)."""
    return [c for c in range(16) if bytes((0x90 | c,)) in track]


def _sentinel_events(channel: int, count: int) -> bytes:
    """`count` silent note-ons of every key at delta 0, each with its own status byte."""
    one_round = b"".join(bytes((0, 0x90 | channel, key, _SENTINEL_VELOCITY)) for key in range(_KEYS))
    return one_round * count


def _closer_events(channel: int, counts: np.ndarray) -> list[bytes]:
    """Note-offs of each key, `counts[key]` times (3 bytes each, no delta)."""
    return [bytes((0x80 | channel, key, 0)) for key in range(_KEYS) for _ in range(int(counts[key]))]


_END_OF_TRACK = b"\xff\x2f\x00"


def _instrumented(track: bytes, channels: list[int], sentinels: int, closers: np.ndarray) -> bytes:
    """`track` with sentinel note-ons at its start and closing note-offs at its end (see module doc).

    The closers go right after the end-of-track event's delta (so at the track's last tick,
    where muspy closed sounding notes), or after the last event when there is none.
    """
    head = b"".join(_sentinel_events(c, sentinels) for c in channels)
    offs = [event for i, c in enumerate(channels) for event in _closer_events(c, closers[i])]
    if not offs:
        return head + track
    if track.endswith(_END_OF_TRACK):
        return head + track[:-3] + b"\x00".join(offs) + b"\x00" + _END_OF_TRACK
    return head + track + b"".join(b"\x00" + event for event in offs)


# ---------------------------------------------------------------------- pairing note events
@dataclass
class _Groups:
    """Every note symusic returned, flattened, with the channel group (MIDI track, channel) it is in."""

    group: np.ndarray      # index into the (MIDI track, channel) list
    track: np.ndarray      # index of the symusic track
    onset: np.ndarray
    end: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    sentinel: np.ndarray   # bool


def _flatten(score, n_sentinels: int) -> tuple[_Groups, list[int]]:
    """The notes of `score`, each symusic track assigned to the channel group its sentinels open.

    symusic lists the tracks of one MIDI track by (channel, program), and the sentinels of a
    channel make its program-0 track, the first of that channel. Returns the notes and, per
    symusic track, its group.
    """
    pattern = np.tile(np.arange(_KEYS), n_sentinels)
    columns: dict[str, list[np.ndarray]] = {k: [] for k in ("group", "track", "onset", "end", "pitch",
                                                           "velocity", "sentinel")}
    track_groups, group = [], -1
    for index, track in enumerate(score.tracks):
        arrays = track.notes.numpy()
        onset = arrays["time"].astype(np.int64)
        pitch = arrays["pitch"].astype(np.int64)
        n = len(pattern)
        opens = (len(onset) >= n and not onset[:n].any() and np.array_equal(pitch[:n], pattern)
                 and (arrays["velocity"][:n] == _SENTINEL_VELOCITY).all())
        if opens:
            group += 1
        elif len(onset) and group < 0:
            raise MidiError("symusic returned notes before any channel's sentinels (a reader bug)")
        track_groups.append(group)
        sentinel = np.zeros(len(onset), dtype=bool)
        if opens:
            sentinel[:n] = True
        columns["group"].append(np.full(len(onset), group, dtype=np.int64))
        columns["track"].append(np.full(len(onset), index, dtype=np.int64))
        columns["onset"].append(onset)
        columns["end"].append(onset + arrays["duration"].astype(np.int64))
        columns["pitch"].append(pitch)
        columns["velocity"].append(arrays["velocity"].astype(np.int64))
        columns["sentinel"].append(sentinel)
    empty = {"sentinel": np.zeros(0, dtype=bool)}
    flat = {k: np.concatenate(v) if v else empty.get(k, np.zeros(0, dtype=np.int64)) for k, v in columns.items()}
    return _Groups(**flat), track_groups


def _segment_starts(keys: np.ndarray) -> np.ndarray:
    """Index of the first element of each element's run of equal `keys` (sorted)."""
    starts = np.ones(len(keys), dtype=bool)
    starts[1:] = keys[1:] != keys[:-1]
    return np.maximum.accumulate(np.where(starts, np.arange(len(keys)), 0))


@dataclass
class _Paired:
    """Notes rebuilt by `_pair`, and what the next parse needs more of."""

    onset: np.ndarray
    duration: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    track: np.ndarray
    more_sentinels: bool
    more_closers: np.ndarray   # (group, pitch) pairs whose closers may all have been used


def _pair(notes: _Groups, n_sentinels: int, n_closers: np.ndarray) -> _Paired:
    """Rebuild the notes from the note-on and note-off times of each (group, key).

    The note-offs are the ends of every note symusic returned (sentinels included); the
    note-ons are the onsets of the real notes. At one tick note-ons come first; a note-off
    ends the oldest sounding note of its key, or does nothing when none sounds.
    """
    key = notes.group * _KEYS + notes.pitch
    real = ~notes.sentinel
    on_order = np.lexsort((np.flatnonzero(real), notes.track[real], notes.onset[real], key[real]))
    on_index = np.flatnonzero(real)[on_order]
    on_key, on_time = key[on_index], notes.onset[on_index]
    off_order = np.lexsort((notes.end, key))
    off_key, off_time = key[off_order], notes.end[off_order]
    # merged events, sorted by key, tick, then note-ons (0) before note-offs (1)
    ev_key = np.concatenate([on_key, off_key])
    ev_time = np.concatenate([on_time, off_time])
    ev_off = np.concatenate([np.zeros(len(on_key), dtype=np.int64), np.ones(len(off_key), dtype=np.int64)])
    order = np.lexsort((ev_off, ev_time, ev_key))
    ev_key, ev_time, ev_off = ev_key[order], ev_time[order], ev_off[order]
    step = np.where(ev_off == 1, -1, 1)
    total = np.cumsum(step)
    start = _segment_starts(ev_key)
    before = np.where(start > 0, total[start - 1], 0)
    level = total - before                          # sounding notes, were no note-off ever ignored
    # note-offs ignored so far: how far `level` has dropped below zero (the queue never goes negative)
    segment = np.cumsum(np.r_[0, ev_key[1:] != ev_key[:-1]]) if len(ev_key) else ev_key
    big = 2 * len(level) + 2
    floor = np.minimum.accumulate(level - segment * big) + segment * big if len(level) else level
    ignored = np.maximum(0, -floor)
    previous = np.where(np.arange(len(ignored)) > start, np.r_[0, ignored[:-1]], 0)
    effective = (ev_off == 1) & (ignored == previous)
    end = _kth_end(on_key, ev_key[effective], ev_time[effective])
    return _Paired(
        onset=on_time, duration=end - on_time, pitch=notes.pitch[on_index], velocity=notes.velocity[on_index],
        track=notes.track[on_index], more_sentinels=_sentinels_short(off_key, off_time, on_key, on_time,
                                                                      notes, n_sentinels),
        more_closers=_closers_short(off_key, off_time, notes, n_closers) | bool((end < 0).any()),
    )


def _kth_end(on_key: np.ndarray, off_key: np.ndarray, off_time: np.ndarray) -> np.ndarray:
    """For the k-th note-on of each key (sorted by key), the time of the k-th note-off of that key; -1 if none."""
    end = np.full(len(on_key), -1, dtype=np.int64)
    if not len(on_key) or not len(off_key):
        return end
    width = max(len(on_key), len(off_key)) + 1
    on_code = on_key * width + np.arange(len(on_key)) - _segment_starts(on_key)
    off_code = off_key * width + np.arange(len(off_key)) - _segment_starts(off_key)
    position = np.minimum(np.searchsorted(off_code, on_code), len(off_code) - 1)
    found = off_code[position] == on_code
    end[found] = off_time[position[found]]
    return end


def _group_ends(notes: _Groups) -> np.ndarray:
    """The last tick of each group's notes (where its closers sound)."""
    ends = np.full(int(notes.group.max()) + 1 if len(notes.group) else 0, -1, dtype=np.int64)
    np.maximum.at(ends, notes.group, notes.end)
    return ends


def _sentinels_short(off_key, off_time, on_key, on_time, notes: _Groups, n_sentinels: int) -> bool:
    """True when some key may have had every sentinel used up before its track's end.

    After its i-th note-off a key has n_sentinels + (note-ons so far) - i notes queued in
    symusic; at none of them, a following note-off would have been dropped unseen.
    """
    if not len(off_key):
        return False
    rank = np.arange(len(off_key)) - _segment_starts(off_key) + 1
    span = int(max(off_time.max(), on_time.max() if len(on_time) else 0)) + 2
    ons_before = np.searchsorted(on_key * span + on_time, off_key * span + off_time, side="left") - \
        np.searchsorted(on_key * span, off_key * span, side="left")
    last = _group_ends(notes)[off_key // _KEYS]
    return bool(((rank >= n_sentinels + ons_before) & (off_time < last)).any())


def _closers_short(off_key, off_time, notes: _Groups, n_closers: np.ndarray) -> np.ndarray:
    """(group, key) flags: as many note-offs at the track's end as it got closers (some notes may be lost)."""
    flags = np.zeros((len(n_closers), _KEYS), dtype=bool)
    if not len(off_key):
        return flags
    at_end = off_time == _group_ends(notes)[off_key // _KEYS]
    counts = np.bincount(off_key[at_end], minlength=len(n_closers) * _KEYS).reshape(len(n_closers), _KEYS)
    return counts >= n_closers


# ---------------------------------------------------------------------- reading
def read_midi(path: str | os.PathLike) -> MidiPiece:
    """Read a MIDI file's notes (ticks), tempos, time and key signatures.

    Raises `MidiError` (what is wrong, without the path) or OSError.
    """
    return parse_midi(Path(path).read_bytes())


def parse_midi(data: bytes) -> MidiPiece:
    """`read_midi` of a file's bytes."""
    import symusic

    layout = _layout(data)
    channels = [_channels(track) for track in layout.tracks]
    groups = [(t, c) for t, chans in enumerate(channels) for c in chans]
    n_sentinels = SENTINELS
    extra = np.full((len(groups), _KEYS), EXTRA_CLOSERS, dtype=np.int64)
    for _ in range(MAX_TRIES):
        closers = n_sentinels + extra  # the sentinels themselves stay queued to the end, so each needs one
        body, at = [], 0
        for track, chans in zip(layout.tracks, channels):
            chunk = _instrumented(track, chans, n_sentinels, closers[at:at + len(chans)])
            body.append(b"MTrk" + struct.pack(">I", len(chunk)) + chunk)
            at += len(chans)
        try:
            score = symusic.Score.from_midi(layout.header + b"".join(body))
        except Exception as error:  # symusic raises RuntimeError/ValueError with its own words
            raise MidiError(f"malformed MIDI data ({error})") from error
        notes, track_groups = _flatten(score, n_sentinels)
        paired = _pair(notes, n_sentinels, closers)
        if not paired.more_sentinels and not paired.more_closers.any():
            return _piece(score, paired, track_groups, groups)
        if paired.more_sentinels:
            n_sentinels *= 4
        extra = np.where(paired.more_closers, extra * 8, extra)
    raise MidiError(f"too many stray note-offs or notes left sounding (gave up after {MAX_TRIES} parses)")


def _piece(score, paired: _Paired, track_groups: list[int], groups: list[tuple[int, int]]) -> MidiPiece:
    """The `MidiPiece` of paired notes: one track per symusic track that has notes, names as muspy gave them."""
    order = np.lexsort((paired.velocity, paired.duration, paired.pitch, paired.onset, paired.track))
    columns = np.column_stack([paired.onset, paired.pitch, paired.duration, paired.velocity])[order]
    track_of = paired.track[order]
    bounds = np.searchsorted(track_of, np.arange(len(score.tracks) + 1))
    piece = MidiPiece(resolution=int(score.ticks_per_quarter))
    for index, track in enumerate(score.tracks):
        if bounds[index] == bounds[index + 1]:
            continue
        midi_track = groups[track_groups[index]][0]
        name = track.name if midi_track > 0 and track.name else None  # muspy: track 1's name is the title
        piece.tracks.append(MidiTrack(int(track.program), bool(track.is_drum), name,
                                      columns[bounds[index]:bounds[index + 1]]))
    piece.tempos = [(int(t.time), float(t.qpm)) for t in score.tempos]
    piece.time_signatures = [(int(t.time), int(t.numerator), int(t.denominator)) for t in score.time_signatures]
    piece.key_signatures = [(int(k.time), _key_root(int(k.key), int(k.tonality)), "minor" if k.tonality else "major")
                            for k in score.key_signatures]
    return piece


def _key_root(sharps: int, minor: int) -> int:
    """Pitch class of a key's tonic from its sharps (negative: flats): C major 0, A minor 9."""
    return (7 * sharps + (9 if minor else 0)) % 12
