"""WAV rendering with fluidsynth (`make audio` installs it; CI runs `make audio` first)."""

import wave

import muspy
import numpy as np
import pytest

from mmt.io import AudioUnavailable, audio_available, write_wav

needs_audio = pytest.mark.skipif(not audio_available(), reason="fluidsynth or a GM soundfont missing: `make audio`")


def two_seconds_of_c_major() -> muspy.Music:
    notes = [muspy.Note(time=t * 12, pitch=p, duration=12, velocity=80) for t, p in enumerate([60, 64, 67, 72])]
    return muspy.Music(resolution=12, tempos=[muspy.Tempo(0, 120.0)], tracks=[muspy.Track(program=0, notes=notes)])


@needs_audio
def test_write_wav_renders_audible_sound(tmp_path):
    path = write_wav(tmp_path / "c.wav", two_seconds_of_c_major(), sample_rate=22050)
    with wave.open(str(path)) as wav:
        assert wav.getframerate() == 22050
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        seconds = wav.getnframes() / wav.getframerate()
    assert 2.0 <= seconds <= 5.0  # four quarter notes at 120 bpm, plus the release tail
    assert np.abs(frames).max() == 29205  # sound, its peak at -1 dBFS (32768 * 10 ** (-1 / 20))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.wav"]  # the temporary MIDI is gone


def test_write_wav_without_fluidsynth_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no fluidsynth on this PATH
    assert not audio_available()
    with pytest.raises(AudioUnavailable, match="apt-get install fluidsynth fluid-soundfont-gm"):
        write_wav(tmp_path / "c.wav", two_seconds_of_c_major())
    assert list(tmp_path.iterdir()) == []


def test_normalize_peak_scales_the_loudest_sample_to_the_level_asked(tmp_path):
    from mmt.io import normalize_peak

    path = tmp_path / "quiet.wav"
    samples = np.array([0, 1000, -500, 250, -1000, 0], dtype="<i2")  # peak 1000: -30.3 dBFS
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(samples.tobytes())
    gain = normalize_peak(path, -1.0)
    assert gain == pytest.approx(32768 * 10 ** (-1 / 20) / 1000)
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 8000)
        louder = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert louder.tolist() == [0, 29205, -14602, 7301, -29205, 0]
