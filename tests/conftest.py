"""Shared fixtures: small music written in code, never downloaded."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest
import torch

from mmt import Encoding

TEMPO = 120.0  # 0.5 s per beat


def beats_to_seconds(beats: float) -> float:
    return beats * 60.0 / TEMPO


def write_pretty_midi(path, tracks, resolution: int = 480) -> None:
    """Write a MIDI file; `tracks` is a list of (program, is_drum, [(beat, pitch, beats_long), ...])."""
    pm = pretty_midi.PrettyMIDI(resolution=resolution, initial_tempo=TEMPO)
    for program, is_drum, notes in tracks:
        instrument = pretty_midi.Instrument(program=program, is_drum=is_drum)
        for beat, pitch, length in notes:
            instrument.notes.append(
                pretty_midi.Note(velocity=80, pitch=pitch, start=beats_to_seconds(beat),
                                 end=beats_to_seconds(beat + length))
            )
        pm.instruments.append(instrument)
    pm.write(str(path))


@pytest.fixture
def encoding() -> Encoding:
    return Encoding()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; two threads on a busy machine spin-wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
