"""The one tiny-model factory, the one prepared-folder builder and the one MIDI writer the tests share.

After audiocraft's 'debug' models: built in code, no downloads, small enough that a
forward pass takes milliseconds on one CPU thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import mido
import numpy as np
import torch

from mmt import Encoding, ModelConfig
from mmt.model import MusicTransformer


def tiny_model(pos_emb: str = "rotary", *, dim: int = 32, depth: int = 2, heads: int = 4, max_seq_len: int = 64,
               dropout: float = 0.0, encoding: Encoding | None = None, seed: int = 0,
               row_conditioning: bool = False, tie_pitch: bool = False) -> MusicTransformer:
    """An untrained `MusicTransformer` with seeded weights, in eval mode.

    With `row_conditioning`, its condition tables are random too (a new model's are zero), so
    that the fields a head reads change its logits.
    """
    torch.manual_seed(seed)
    config = ModelConfig(dim=dim, depth=depth, heads=heads, max_seq_len=max_seq_len, pos_emb=pos_emb,
                         dropout=dropout, row_conditioning=row_conditioning, tie_pitch=tie_pitch)
    model = MusicTransformer(config, encoding or Encoding()).eval()
    if row_conditioning:
        with torch.no_grad():
            for table in model.conditions:
                table.weight.normal_()
    return model


def march(model: MusicTransformer, fields: tuple[str, ...] = ("beat", "position", "pitch", "duration"),
          step: float = 10.0) -> MusicTransformer:
    """Bias the heads of `fields` towards their lowest codes (in place), so that each draw takes
    the smallest code the masks allow.

    An untrained model jumps to the encoding's last beat within a few notes, where the
    canonical note order soon leaves no room and the sample must end. Marched, its notes
    climb one pitch at a time at one onset, so a sample runs to its full length.
    """
    from mmt.constants import FIELDS

    with torch.no_grad():
        for name in fields:
            bias = model.heads[FIELDS.index(name)].bias
            bias.copy_(-step * torch.arange(len(bias), dtype=bias.dtype))
    return model


def write_prepared(root: Path, pieces: Mapping[str, np.ndarray], splits: Mapping[str, Sequence[str]],
                   encoding: Encoding | None = None, meters: Mapping | None = None) -> Path:
    """A prepared directory as `mmt prepare` writes it: notes/<id>.npy, meters/<id>.json,
    <split>.txt, encoding.json.

    `splits` maps a split name to its ids in order (ids need not have a notes file, to test
    missing ones); a split not named has no list file. `meters` maps ids to their
    `mmt.Meter` (pieces not named have no meter file, as in a folder prepared before
    meters were kept).
    """
    from mmt.meter import meter_path

    (root / "notes").mkdir(parents=True, exist_ok=True)
    for name, notes in pieces.items():
        np.save(root / "notes" / f"{name}.npy", np.asarray(notes, dtype=np.int64))
    for name, meter in (meters or {}).items():
        meter.save(meter_path(root, name))
    for split, ids in splits.items():
        (root / f"{split}.txt").write_text("".join(f"{piece}\n" for piece in ids))
    (encoding or Encoding()).save(root / "encoding.json")
    return root


# ---------------------------------------------------------------------- MIDI files
MIDI_TICKS = 480   # ticks per beat of the files written here
MIDI_QPM = 120.0   # their tempo


def write_midi_events(path: Path, tracks: Sequence[Sequence[tuple[int, mido.Message | mido.MetaMessage]]],
                      midi_type: int = 1, ticks: int = MIDI_TICKS) -> Path:
    """A MIDI file of (tick, message) lists, one per track, written in the order given: any
    event order a test needs, stray note-offs and notes left sounding included."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi = mido.MidiFile(type=midi_type, ticks_per_beat=ticks)
    for events in tracks:
        track, now = mido.MidiTrack(), 0
        for tick, message in events:
            track.append(message.copy(time=tick - now))
            now = tick
        midi.tracks.append(track)
    midi.save(str(path))
    return path


def write_midi_file(path: Path, tracks, ticks: int = MIDI_TICKS, velocity: int = 80) -> Path:
    """A type-1 MIDI file at 120 bpm: a tempo track, then one track per (program, is_drum,
    [(beat, pitch, length in beats), ...]) on its own channel (drums on channel 10).

    At equal ticks note-offs come before note-ons, except that a zero-length note's off
    follows its own on (so the file really holds a note of duration 0).
    """
    written = [[(0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(MIDI_QPM)))]]
    for index, (program, is_drum, notes) in enumerate(tracks):
        channel = 9 if is_drum else index % 9
        events = []
        for beat, pitch, length in notes:
            start, end = round(beat * ticks), round((beat + length) * ticks)
            events.append((start, 1, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)))
            events.append((end, 2 if end == start else 0, mido.Message("note_off", channel=channel, note=pitch)))
        events.sort(key=lambda event: event[:2])
        written.append([(0, mido.Message("program_change", channel=channel, program=program))]
                       + [(tick, message) for tick, _, message in events])
    return write_midi_events(path, written, ticks=ticks)
