"""Reading and writing music: `read_music` and the `write_*` functions."""

from __future__ import annotations

import contextlib
import csv
import io as _io
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import muspy
import numpy as np

from mmt.constants import FIELDS, Field, RowType
from mmt.encoding import Encoding, decode, describe_rows, notes_from_music, notes_from_ticks, onsets
from mmt.errors import MMTError
from mmt.files import save_figure, write_atomic, write_text_atomic
from mmt.meter import Meter
from mmt.midi import MidiError, read_midi, read_midi_notes

MIDI_SUFFIXES = (".mid", ".midi")
MUSICXML_SUFFIXES = (".xml", ".musicxml", ".mxl")
MUSIC21_SUFFIXES = (".krn", ".abc")
SUFFIXES = MIDI_SUFFIXES + MUSICXML_SUFFIXES + MUSIC21_SUFFIXES


class MusicReadError(MMTError, ValueError):
    """A music file could not be read; the message names the file and the reason."""


def read_music(path: str | os.PathLike, piece: int = 0) -> muspy.Music:
    """Read a MIDI, MusicXML/mxl, kern or abc file into a `muspy.Music`.

    MIDI is read by symusic (`mmt.midi.read_midi`); MusicXML, kern and abc through
    music21, because muspy's MusicXML reader keeps MusicXML's 1-based programs. An abc
    file may hold many tunes: `piece` picks one (0-based, in file order; see
    `abc_tunes`), and only that tune is parsed. Other formats hold one piece (0).
    Raises FileNotFoundError or `MusicReadError` naming the file.
    """
    path = Path(path)
    suffix = _check_readable(path, piece)
    with _read_errors(path):
        if suffix in MIDI_SUFFIXES:
            return _read_midi(path)
        if suffix == ".abc":
            return _read_abc(path, piece)
        return _read_with_music21(path)


def _check_readable(path: Path, piece: int) -> str:
    """The file's suffix (lower case) once it is known to be a non-empty music file holding `piece`."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise MusicReadError(f"{path}: unsupported file type {suffix!r} (supported: {', '.join(SUFFIXES)})")
    if path.stat().st_size == 0:
        raise MusicReadError(f"{path}: empty file")
    if piece and suffix != ".abc":
        raise MusicReadError(f"{path}: holds one piece, so there is no piece {piece + 1}")
    return suffix


@contextlib.contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    """Turn a parser's exception into a `MusicReadError` naming `path` and the reason."""
    try:
        yield
    except MusicReadError:
        raise
    except MidiError as error:  # says what is wrong in its own words
        raise MusicReadError(f"{path}: cannot read ({error})") from error
    except Exception as error:  # parsers raise anything from KeyError to EOFError
        raise MusicReadError(f"{path}: cannot read ({type(error).__name__}: {error})") from error


def _read_midi(path: Path) -> muspy.Music:
    """A MIDI file as `muspy.Music` at its own ticks per beat (see `mmt.midi` for the note rules)."""
    midi = read_midi(path)
    tracks = [muspy.Track(program=t.program, is_drum=t.is_drum, name=t.name,
                          notes=[muspy.Note(int(a), int(b), int(c), int(d)) for a, b, c, d in t.notes.tolist()])
              for t in midi.tracks]
    return muspy.Music(
        metadata=muspy.Metadata(source_filename=path.name, source_format="midi"),
        resolution=midi.resolution,
        tempos=[muspy.Tempo(time, qpm) for time, qpm in midi.tempos],
        time_signatures=[muspy.TimeSignature(time, num, den) for time, num, den in midi.time_signatures],
        key_signatures=[muspy.KeySignature(time, root=root, mode=mode) for time, root, mode in midi.key_signatures],
        tracks=tracks,
    )


def read_notes(path: str | os.PathLike, resolution: int, piece: int = 0) -> tuple[np.ndarray, Meter]:
    """The notes of a music file as an (N x 5) array at `resolution` (see `notes_from_music`), and its meter.

    MIDI goes straight from the parsed file to the array: a `muspy.Music` in between (one
    Python object per note) would cost more than the parse. Other formats go through
    `read_music`. Raises as `read_music` does.
    """
    path = Path(path)
    if path.suffix.lower() not in MIDI_SUFFIXES:
        music = read_music(path, piece)
        return notes_from_music(music, resolution), Meter.from_music(music)
    _check_readable(path, piece)
    with _read_errors(path):
        source_resolution, raw, meter = read_midi_notes(path)
    return notes_from_ticks(raw, source_resolution, resolution), meter


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
    part's name or its instrument's name (`program_from_name`), else 0 (piano). A piano or string-ensemble program
    (`PLACEHOLDER_PROGRAMS`) gives way to the name's: notation programs and music21 write
    those for parts they know nothing about (Monteverdi's "Canto" as a piano, Haydn's
    "Violin I" as a string ensemble). Tied notes are merged exactly as
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
        named = next((candidate for candidate in map(program_from_name, _part_names(part, instrument))
                      if candidate is not None), None)
        if named is not None and (program is None or program in PLACEHOLDER_PROGRAMS):
            program = named
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


def _part_names(part, instrument) -> tuple[str | None, ...]:
    """The names a part goes by, most specific first: its own, then its instrument's ("P1" sung by a "Voice")."""
    return (part.partName, getattr(instrument, "instrumentName", None), getattr(instrument, "partName", None))


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


PLACEHOLDER_PROGRAMS = (0, 48)
"""Programs (piano, string ensemble) that stand for "unknown" in scores: a part's name overrides them."""

PART_NAME_PROGRAMS: dict[str, int] = {
    # the voices of Renaissance and early Baroque part books (Monteverdi's "Quinto", Josquin's "Contra")
    **dict.fromkeys(("cantus", "superius", "discantus", "altus", "contra", "contratenor", "tenore", "bassus",
                     "quinto", "quintus", "sesto", "sextus", "settimo", "septimus", "vagans", "b.", "t.", "a.",
                     "duplum", "triplum", "quadruplum", "motetus"), 53),  # and the voices of trecento motets
    "continuo": 19,  # church organ: Bach's and Monteverdi's continuo parts
    "basso continuo": 19,
    "cornet": 56,  # the cornetto of Bach's cantatas: a trumpet is the nearest GM sound
    "cornetto": 56,
}
"""Part names music21's instrument names miss -> GM program (matched lowercased, without a number)."""

_PART_NUMBER = re.compile(r"\s+(?:\d+|[ivx]+)\.?$")


def program_from_name(name: str | None) -> int | None:
    """GM program of an instrument named in a score ("Violin I" -> 40, "Soprano" -> 53), or None.

    Part-book names music21 does not know come from `PART_NAME_PROGRAMS` ("Quinto" -> 53,
    "Continuo" -> 19; a trailing number such as "Quinto 2" or "Cornet II" is ignored);
    other names go to music21's instrument names (English and common Italian/German ones).
    """
    if not name:
        return None
    known = PART_NAME_PROGRAMS.get(_PART_NUMBER.sub("", name.strip().lower()))
    if known is not None:
        return known
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
    path: str | os.PathLike, music: muspy.Music, title: str | None = None, dpi: int = 120,
    prompt_end: float | None = None, given: set | frozenset = frozenset(),
) -> Path:
    """Draw a piano roll: one colour per track, time in beats, MIDI pitch upwards; a dashed
    line at beat `prompt_end` marks where a continuation's prompt ends. Notes in `given`
    ((track name, onset tick, pitch): an accompaniment's or infill's kept notes) are drawn
    pale, so the notes the model wrote stand out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    resolution = music.resolution or 1
    fig, ax = plt.subplots(figsize=(10, 4), dpi=dpi)
    colours = plt.get_cmap("tab10")
    handles, end, low, high = [], 4.0, 127, 0
    for i, track in enumerate(music.tracks):
        colour = colours(i % 10)
        for note in track.notes:
            start = note.time / resolution
            alpha = 0.3 if (track.name, note.time, note.pitch) in given else 1.0
            ax.add_patch(Rectangle((start, note.pitch - 0.4), note.duration / resolution, 0.8, color=colour, lw=0,
                                   alpha=alpha))
            end = max(end, start + note.duration / resolution)
            low, high = min(low, note.pitch), max(high, note.pitch)
        handles.append(Patch(color=colour, label=track.name or f"program {track.program}"))
    if given:
        handles.append(Patch(color="grey", alpha=0.3, label="given (kept) notes"))
    if high < low:
        low, high = 48, 72
    if prompt_end is not None:
        ax.axvline(prompt_end, color="black", linestyle="--", linewidth=1)
        handles.append(Line2D([], [], color="black", linestyle="--", label=f"prompt ends (beat {prompt_end:g})"))
        end = max(end, prompt_end)
    ax.set_xlim(0, end)
    ax.set_ylim(low - 2, high + 2)
    ax.set_xlabel("beat")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title)
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize="small", ncol=min(len(handles), 4))
    fig.tight_layout()
    return save_figure(fig, path)


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


WAV_PEAK_DBFS = -1.0


def write_wav(path: str | os.PathLike, music: muspy.Music, sample_rate: int = 44100,
              peak_dbfs: float = WAV_PEAK_DBFS) -> Path:
    """Render music to WAV with fluidsynth and a GM soundfont, its peak at `peak_dbfs`.

    fluidsynth's own level depends on the soundfont and the number of voices (a solo
    piano peaked at -22 dBFS), so the rendered samples are scaled to one peak level.
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
            normalize_peak(tmp, peak_dbfs)
        return write_atomic(path, render)
    finally:
        with_midi.unlink(missing_ok=True)


def normalize_peak(path: str | os.PathLike, peak_dbfs: float = WAV_PEAK_DBFS) -> float:
    """Scale a 16-bit PCM WAV file in place so that its highest sample is at `peak_dbfs`.

    Returns the gain applied (1 for a silent file). dBFS: 20 log10(|x| / 32768).
    """
    import wave

    with wave.open(str(path), "rb") as reader:
        params = reader.getparams()
        frames = reader.readframes(params.nframes)
    if params.sampwidth != 2:
        raise ValueError(f"{path}: expected 16-bit samples, got {8 * params.sampwidth}-bit")
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float64)
    peak = np.abs(samples).max(initial=0.0)
    if peak == 0:
        return 1.0
    gain = 32768.0 * 10 ** (peak_dbfs / 20) / peak
    scaled = np.clip(np.round(samples * gain), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as writer:
        writer.setparams(params)
        writer.writeframes(scaled.tobytes())
    return gain


def given_notes(rows: np.ndarray, encoding: Encoding) -> set:
    """(instrument name, onset tick, pitch) of the note and control rows of `rows`: notes given, not written."""
    rows = np.asarray(rows)
    rows = rows[(rows[:, Field.TYPE] == RowType.CONTROL) | (rows[:, Field.TYPE] == RowType.NOTE)]
    return {(encoding.instruments[int(r[Field.INSTRUMENT]) - 1], int(o), int(r[Field.PITCH]) - 1)
            for r, o in zip(rows, onsets(rows, encoding.resolution))}


def write_codes(
    out_dir: str | os.PathLike, stem: str, codes: np.ndarray, encoding: Encoding, audio: bool = False,
    prompt_end: float | None = None, meter: Meter | None = None, key_signatures=(),
    given: np.ndarray | None = None, music: muspy.Music | None = None, given_keys: set | None = None,
) -> dict[str, Path]:
    """Write one sample as MIDI, CSV, piano-roll PNG (and WAV if `audio`); returns the paths.

    Args:
        prompt_end: the beat where a continuation's prompt ends, marked on the piano roll.
        meter: time signatures and tempos to write (a continued piece's own; default: none, 100 bpm).
        key_signatures: `muspy.KeySignature`s to write (at their ticks in `encoding.resolution`).
        given: rows of notes that were given, not written (drawn pale on the piano roll;
            default: the control rows of `codes`).
        music: the piece to write instead of `codes` decoded (an edit's: the source's own notes
            outside its regions); `given_keys` then names its kept notes for the piano roll,
            as (track name, tick, pitch).
    """
    out_dir = Path(out_dir)
    if music is None:
        music = decode(codes, encoding, meter=meter)
        music.key_signatures = list(key_signatures)
        given_keys = given_notes(codes[codes[:, Field.TYPE] == RowType.CONTROL] if given is None else given, encoding)
    paths = {
        "midi": write_midi(out_dir / f"{stem}.mid", music),
        "csv": write_csv(out_dir / f"{stem}.csv", codes, encoding),
        "png": write_pianoroll_png(out_dir / f"{stem}.png", music, title=stem, prompt_end=prompt_end,
                                   given=given_keys or frozenset()),
    }
    if audio:
        paths["wav"] = write_wav(out_dir / f"{stem}.wav", music)
    return paths
