"""The MIDI reader `mmt.read_music` had before symusic (mido + `muspy.from_mido`): the reference in tests only.

`tests/test_midi.py` checks that `mmt.midi.read_midi` gives the notes this gives, note for
note, on every MIDI file the fixtures write and on hand-made awkward ones.
"""

from __future__ import annotations

from pathlib import Path

import muspy


def read_midi_reference(path: Path) -> muspy.Music:
    """A MIDI file as muspy read it, after `fix_zero_length_notes` on every track."""
    import mido

    midi = mido.MidiFile(filename=str(path))
    for track in midi.tracks:
        fix_zero_length_notes(track)
    music = muspy.from_mido(midi)
    music.metadata.source_filename = path.name
    return music


def _is_note_off(message) -> bool:
    return message.type == "note_off" or (message.type == "note_on" and message.velocity == 0)


def fix_zero_length_notes(track) -> int:
    """Put each zero-length note's note-off after its note-on, in place; returns how many.

    Some writers (pretty_midi among them) write a note that starts and ends at the same
    tick as note-off then note-on. A reader then sees a note-off with no sounding note
    (ignored) and a note-on that nothing ends, so the note lasts to the end of the
    track. Here such a note-off (no note of that channel and pitch sounding) moves after
    the note-on of the same channel and pitch at the same tick, so the note is read with
    duration 0 (the encoding makes that one tick). `track` is a `mido.MidiTrack`.
    """
    ticks, tick = [], 0
    for message in track:
        tick += message.time
        ticks.append(tick)
    messages = list(track)
    sounding: dict[tuple[int, int], int] = {}
    moved = 0
    i = 0
    while i < len(messages):
        message = messages[i]
        if message.type not in ("note_on", "note_off"):
            i += 1
            continue
        key = (message.channel, message.note)
        if not _is_note_off(message):
            sounding[key] = sounding.get(key, 0) + 1
        elif sounding.get(key, 0) > 0:
            sounding[key] -= 1
        else:
            j = i + 1
            while j < len(messages) and ticks[j] == ticks[i] and not (
                    messages[j].type == "note_on" and messages[j].velocity > 0
                    and (messages[j].channel, messages[j].note) == key):
                j += 1
            if j < len(messages) and ticks[j] == ticks[i]:
                messages.insert(j, messages.pop(i))  # now after its note-on
                moved += 1
                continue  # messages[i] is the next message now
        i += 1
    if moved:
        previous = 0
        for k, (message, tick) in enumerate(zip(messages, ticks)):  # ticks are unchanged per slot
            messages[k] = message.copy(time=tick - previous)
            previous = tick
        track[:] = messages
    return moved


