"""Reading and writing music: `read_music` and the `write_*` functions."""

from __future__ import annotations

import csv
import io as _io
import os
import shutil
import subprocess
from pathlib import Path

import muspy
import numpy as np

from mmt.constants import FIELDS
from mmt.encoding import Encoding, decode, describe_rows
from mmt.files import write_atomic, write_text_atomic

MIDI_SUFFIXES = (".mid", ".midi")
MUSICXML_SUFFIXES = (".xml", ".musicxml", ".mxl")
MUSIC21_SUFFIXES = (".krn", ".abc")
SUFFIXES = MIDI_SUFFIXES + MUSICXML_SUFFIXES + MUSIC21_SUFFIXES


class MusicReadError(ValueError):
    """A music file could not be read; the message names the file and the reason."""


def read_music(path: str | os.PathLike, piece: int = 0) -> muspy.Music:
    """Read a MIDI, MusicXML/mxl, kern or abc file into a `muspy.Music`.

    MIDI is read by muspy (after `fix_zero_length_notes`); MusicXML, kern and abc through
    music21, because muspy's MusicXML reader keeps MusicXML's 1-based programs. An abc
    file may hold many tunes: `piece` picks one (0-based, in file order; see
    `abc_tunes`), and only that tune is parsed. Other formats hold one piece (0).
    Raises FileNotFoundError or `MusicReadError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise MusicReadError(f"{path}: unsupported file type {suffix!r} (supported: {', '.join(SUFFIXES)})")
    if path.stat().st_size == 0:
        raise MusicReadError(f"{path}: empty file")
    try:
        if piece and suffix != ".abc":
            raise MusicReadError(f"{path}: holds one piece, so there is no piece {piece + 1}")
        if suffix in MIDI_SUFFIXES:
            music = _read_midi(path)
        elif suffix == ".abc":
            music = _read_abc(path, piece)
        else:
            music = _read_with_music21(path)
    except MusicReadError:
        raise
    except Exception as error:  # parsers raise anything from KeyError to EOFError
        raise MusicReadError(f"{path}: cannot read ({type(error).__name__}: {error})") from error
    return music


def _read_midi(path: Path) -> muspy.Music:
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


def abc_tunes(text: str) -> list[str]:
    """The tunes of an abc file's text, each with the file header (lines before the first "X:").

    A tune starts at a line beginning "X:" (its reference number) and runs to the next
    one. Text with no "X:" line is one tune.
    """
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith("X:")]
    if not starts:
        return [text]
    header = "".join(lines[:starts[0]])
    return [header + "".join(lines[a:b]) for a, b in zip(starts, starts[1:] + [len(lines)])]


def _abc_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def abc_tune_count(path: str | os.PathLike) -> int:
    """How many tunes (pieces for `read_music`) an abc file holds."""
    return len(abc_tunes(_abc_text(Path(path))))


def _read_abc(path: Path, piece: int) -> muspy.Music:
    import music21

    tunes = abc_tunes(_abc_text(path))
    if not 0 <= piece < len(tunes):
        raise MusicReadError(f"{path}: holds {len(tunes)} tunes, so there is no piece {piece + 1}")
    return _music_from_parsed(path, music21.converter.parse(tunes[piece], format="abc"))


def _read_with_music21(path: Path) -> muspy.Music:
    import music21

    return _music_from_parsed(path, music21.converter.parse(str(path)))


def _music_from_parsed(path: Path, parsed) -> muspy.Music:
    """A parsed music21 stream (its first score when it is an opus) as `muspy.Music`."""
    import music21

    if isinstance(parsed, music21.stream.Opus):
        scores = list(parsed.scores)
        if not scores:
            raise MusicReadError(f"{path}: contains no score")
        parsed = scores[0]
    return music_from_music21(parsed)


def music_from_music21(stream, resolution: int = 24) -> muspy.Music:
    """Convert a music21 stream to a `muspy.Music` (muspy's own converter fails on music21 10).

    One track per part, named by the part (or its instrument); the program is the
    instrument's 0-based MIDI program where music21 knows it, else one inferred from the
    part's name (`program_from_name`), else 0 (piano). Tied notes are merged exactly as
    music21's `stripTies` merges them (see `_tie_plan`); grace notes, unpitched notes and
    chord symbols (`harmony.Harmony`, annotations rather than notes) are skipped. Every
    time signature is kept, and the first metronome mark's tempo; a score opening with a
    pickup measure gets bar lines at 0 and at the pickup's end (`mmt.Meter.from_music`
    reads them as its pickup).
    """
    import music21

    merged: dict[int, object] = {}
    deleted: set[int] = set()
    _tie_plan(stream, merged, deleted)
    parts = list(stream.parts) or [stream]
    tracks = []
    for part in parts:
        instrument = part.getInstrument(returnDefault=False)
        program = getattr(instrument, "midiProgram", None)
        name = part.partName or getattr(instrument, "instrumentName", None) or getattr(instrument, "partName", None)
        if program is None:
            program = program_from_name(name)
        notes = []
        for element in part.flatten().notes:
            if element.duration.isGrace or id(element) in deleted or isinstance(element, music21.harmony.Harmony):
                continue
            onset = int(round(float(element.offset) * resolution))
            length = merged.get(id(element), element.duration.quarterLength)
            duration = int(round(float(length) * resolution))
            for pitch in getattr(element, "pitches", ()):
                notes.append(muspy.Note(time=onset, pitch=int(pitch.midi), duration=duration, velocity=64))
        if notes:
            notes.sort(key=lambda n: (n.time, n.pitch))
            tracks.append(muspy.Track(program=program if program is not None else 0, name=name, notes=notes))
    time_signatures: dict[int, muspy.TimeSignature] = {}  # every change; the first part's wins a tie
    for ts in stream.recurse().getElementsByClass(music21.meter.TimeSignature):
        offset = int(round(float(ts.getOffsetInHierarchy(stream)) * resolution))
        time_signatures.setdefault(offset, muspy.TimeSignature(time=offset, numerator=ts.numerator,
                                                               denominator=ts.denominator))
    # A pickup (anacrusis): the first measure is short; its end is the first bar line.
    barlines = []
    first = parts[0].getElementsByClass(music21.stream.Measure).first()
    if first is not None and first.paddingLeft > 0:
        pickup = float(first.barDuration.quarterLength) - float(first.paddingLeft)
        if pickup > 0:
            barlines = [muspy.Barline(time=0), muspy.Barline(time=int(round(pickup * resolution)))]
    tempos = []
    for mark in stream.recurse().getElementsByClass(music21.tempo.MetronomeMark):
        bpm = mark.getQuarterBPM()
        if bpm:
            tempos.append(muspy.Tempo(time=0, qpm=float(bpm)))
            break
    return muspy.Music(resolution=resolution, tempos=tempos, time_signatures=sorted(
        time_signatures.values(), key=lambda ts: ts.time), barlines=barlines, tracks=tracks)


def _tie_plan(stream, merged: dict[int, object], deleted: set[int]) -> None:
    """Which notes music21's `stream.stripTies()` would merge, without copying the stream.

    `stripTies` deep-copies the whole score and removes notes one by one, which cost most
    of the conversion time (about 0.35 s of a typical corpus file). This walks the same
    sequences with the same rules (music21 10, `matchByPitch=True`) and records the
    result instead: `merged[id(first note)]` = the total quarter length of its tied chain,
    `deleted` = ids of the later notes of each chain. `tests/test_io.py` checks that both
    give the same notes.
    """
    import music21
    from music21 import chord, note

    if stream.hasPartLikeStreams():
        for sub in stream.getElementsByClass(music21.stream.Stream):
            _tie_plan(sub, merged, deleted)
        return
    if stream.hasVoices():
        for voice in stream.voices:
            _tie_plan(voice, merged, deleted)
        return
    sequence = [el for el in stream.flatten().notesAndRests if el.quarterLength > 0]

    def tie_type(element):
        tie = getattr(element, "tie", None)
        return tie.type if tie is not None else None

    def same_pitches(last, this) -> bool:
        if len(last.pitches) != len(this.pitches):
            return False
        return all(a.step == b.step and a.isEnharmonic(b) for a, b in zip(last.pitches, this.pitches))

    connected: list[int] = []

    def end_match(i: int) -> bool:
        this = sequence[i]
        if not isinstance(this, chord.Chord) and tie_type(this) == "stop":
            return True
        if i == 0 or (i - 1) not in connected:
            return False
        last = sequence[i - 1]
        if (hasattr(last, "pitch") and hasattr(this, "pitch") and not isinstance(last, chord.Chord)
                and not isinstance(this, chord.Chord)):
            return last.pitch == this.pitch
        if not isinstance(this, note.Note) and hasattr(last, "pitches") and hasattr(this, "pitches"):
            return same_pitches(last, this)
        return False

    for i, element in enumerate(sequence):
        kind = tie_type(element)
        if kind == "start":
            if i == 0 or (i - 1) not in connected:
                connected = [i]
            else:
                connected.append(i)
            continue
        if kind == "continue":
            if not connected:
                connected.append(i)
            elif end_match(i):
                connected.append(i)
            else:
                connected = [i]
            continue
        if not end_match(i):
            continue
        connected.append(i)
        if len(connected) < 2:
            connected = []
            continue
        first = sequence[connected[0]]
        total = first.quarterLength
        for j in connected[1:]:
            total += sequence[j].quarterLength
            deleted.add(id(sequence[j]))
        merged[id(first)] = music21.common.opFrac(total)
        connected = []


def program_from_name(name: str | None) -> int | None:
    """GM program of an instrument named in a score ("Violin I" -> 40, "Soprano" -> 53), or None.

    Uses music21's instrument names (English and common Italian/German ones).
    """
    if not name:
        return None
    import music21

    try:
        program = music21.instrument.fromString(name).midiProgram
    except music21.exceptions21.Music21Exception:
        return None
    return int(program) if program is not None else None


def write_midi(path: str | os.PathLike, music: muspy.Music) -> Path:
    """Write a `muspy.Music` as a MIDI file (atomically)."""
    return write_atomic(path, lambda tmp: muspy.write_midi(tmp, music))


def write_musicxml(path: str | os.PathLike, music: muspy.Music) -> Path:
    """Write a `muspy.Music` as an uncompressed MusicXML file (atomically)."""
    return write_atomic(path, lambda tmp: muspy.write_musicxml(tmp, music, compressed=False))


def write_csv(path: str | os.PathLike, codes: np.ndarray, encoding: Encoding) -> Path:
    """Write codes as a table: each field's code, then its readable value (like the original MMT's CSV)."""
    codes = np.asarray(codes, dtype=np.int64).reshape(-1, 6)
    buffer = _io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([f"{name}_code" for name in FIELDS] + list(FIELDS))
    for row, values in zip(codes, describe_rows(codes, encoding)):
        writer.writerow([int(c) for c in row] + [values[name] for name in FIELDS])
    return write_text_atomic(path, buffer.getvalue())


def write_pianoroll_png(
    path: str | os.PathLike, music: muspy.Music, title: str | None = None, dpi: int = 120
) -> Path:
    """Draw a piano roll: one colour per track, time in beats, MIDI pitch upwards."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    resolution = music.resolution or 1
    fig, ax = plt.subplots(figsize=(10, 4), dpi=dpi)
    colours = plt.get_cmap("tab10")
    handles, end, low, high = [], 4.0, 127, 0
    for i, track in enumerate(music.tracks):
        colour = colours(i % 10)
        for note in track.notes:
            start = note.time / resolution
            ax.add_patch(Rectangle((start, note.pitch - 0.4), note.duration / resolution, 0.8, color=colour, lw=0))
            end = max(end, start + note.duration / resolution)
            low, high = min(low, note.pitch), max(high, note.pitch)
        handles.append(Patch(color=colour, label=track.name or f"program {track.program}"))
    if high < low:
        low, high = 48, 72
    ax.set_xlim(0, end)
    ax.set_ylim(low - 2, high + 2)
    ax.set_xlabel("beat")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title)
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize="small", ncol=min(len(handles), 4))
    fig.tight_layout()

    def save(tmp: Path) -> None:
        fig.savefig(tmp, format="png")

    try:
        return write_atomic(path, save)
    finally:
        plt.close(fig)


SOUNDFONT_PATHS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)


class AudioUnavailable(RuntimeError):
    """fluidsynth or a GM soundfont is missing."""


def find_soundfont() -> Path | None:
    """The first GM soundfont found (MMT_SOUNDFONT overrides the search), else None."""
    candidates = [os.environ.get("MMT_SOUNDFONT", "")] + list(SOUNDFONT_PATHS)
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def audio_available() -> bool:
    """True when fluidsynth and a GM soundfont are installed."""
    return shutil.which("fluidsynth") is not None and find_soundfont() is not None


def write_wav(path: str | os.PathLike, music: muspy.Music, sample_rate: int = 44100) -> Path:
    """Render music to WAV with fluidsynth and a GM soundfont.

    Raises `AudioUnavailable` with install instructions when either is missing.
    """
    soundfont = find_soundfont()
    if shutil.which("fluidsynth") is None or soundfont is None:
        raise AudioUnavailable(
            "audio needs fluidsynth and a GM soundfont: `apt-get install fluidsynth fluid-soundfont-gm` "
            "(or set MMT_SOUNDFONT to an .sf2 file)"
        )
    path = Path(path)
    with_midi = path.with_suffix(".render.mid")
    write_midi(with_midi, music)
    try:
        def render(tmp: Path) -> None:
            subprocess.run(
                ["fluidsynth", "-ni", "-g", "0.8", "-r", str(sample_rate), "-F", str(tmp), "-T", "wav",
                 str(soundfont), str(with_midi)],
                check=True, capture_output=True,
            )
        return write_atomic(path, render)
    finally:
        with_midi.unlink(missing_ok=True)


def write_codes(
    out_dir: str | os.PathLike, stem: str, codes: np.ndarray, encoding: Encoding, audio: bool = False
) -> dict[str, Path]:
    """Write one sample as MIDI, CSV, piano-roll PNG (and WAV if `audio`); returns the paths."""
    out_dir = Path(out_dir)
    music = decode(codes, encoding)
    paths = {
        "midi": write_midi(out_dir / f"{stem}.mid", music),
        "csv": write_csv(out_dir / f"{stem}.csv", codes, encoding),
        "png": write_pianoroll_png(out_dir / f"{stem}.png", music, title=stem),
    }
    if audio:
        paths["wav"] = write_wav(out_dir / f"{stem}.wav", music)
    return paths
