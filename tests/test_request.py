"""The generation request: one checked description of what to draw, run the same way everywhere."""

from __future__ import annotations

import math

import muspy
import numpy as np
import pytest

from mmt.analysis import AnalysisError
from mmt import GenerationError, GenerationRequest, SamplingParams, generate
from mmt.constants import Field, RowType
from mmt.request import MODES, note_ranges, run
from tests.factories import tiny_model


def scale_music(n_beats: int = 12, numerator: int = 3) -> muspy.Music:
    notes = [muspy.Note(time=12 * b, pitch=60 + b % 12, duration=12) for b in range(n_beats)]
    return muspy.Music(resolution=12, tempos=[muspy.Tempo(time=0, qpm=90.0)],
                       time_signatures=[muspy.TimeSignature(time=0, numerator=numerator, denominator=4)],
                       tracks=[muspy.Track(program=40, notes=notes)])


@pytest.mark.parametrize("fields, message", [
    ({"mode": "jazz"}, "unknown mode 'jazz'; modes are unconditioned, instrument, continuation, accompaniment, infill"),
    ({"mode": "instrument"}, "mode instrument needs instruments"),
    ({"instruments": ("piano",)}, "instruments is for the instrument and accompaniment modes, not unconditioned"),
    ({"mode": "continuation"}, "mode continuation needs a prompt"),
    ({"prompt_bars": 2}, "prompt_bars is for the continuation mode, not unconditioned"),
    ({"mode": "accompaniment", "prompt": "song.mid"}, "mode accompaniment needs the instruments to keep"),
    ({"mode": "infill", "prompt": "song.mid"}, "mode infill needs the bars to fill"),
    ({"mode": "infill", "prompt": "song.mid", "bars_to_fill": "12-9"}, "1 <= first <= last, got \\(12, 9\\)"),
    ({"mode": "infill", "prompt": "song.mid", "bars_to_fill": "nine"}, "bars_to_fill must look like 9-12"),
    ({"mode": "infill", "prompt": "song.mid", "bars_to_fill": "2", "bars": 4}, "bars is for the unconditioned"),
    ({"mode": "continuation", "prompt": "song.mid", "keep": "violin"}, "keep is for the accompaniment mode, not"),
    ({"bars": 4, "beats": 4}, "give beats or bars, not both"),
    ({"bars": float("nan")}, "bars must be a positive number, got nan"),
    ({"beats": 0}, "beats must be a positive number, got 0"),
    ({"seed": 2**70}, "seed must be an integer in 0 .. 2\\*\\*63-1"),
    ({"seed": -1}, "seed must be an integer in 0 .. 2\\*\\*63-1"),
    ({"n_samples": 0}, "n_samples must be an integer >= 1, got 0"),
    ({"max_new_rows": 2.5}, "max_new_rows must be an integer >= 1, got 2.5"),
])
def test_bad_requests_are_refused_when_built(fields, message):
    with pytest.raises(GenerationError, match=message):
        GenerationRequest(**fields)


def test_build_infers_the_mode_and_takes_sampling_keywords():
    assert GenerationRequest.build().mode == "unconditioned"
    assert GenerationRequest.build(instruments=["violin"]).mode == "instrument"
    assert GenerationRequest.build(prompt="song.mid", keep=["violin"], instruments=["cello"]).mode == "accompaniment"
    assert GenerationRequest.build(prompt="song.mid", bars_to_fill="9-12").bars_to_fill == (9, 12)
    request = GenerationRequest.build(prompt="song.mid", prompt_bars=2, top_p=0.9, temperature=0.5)
    assert request.mode == "continuation"
    assert dict(request.sampling) == {"temperature": 0.5, "top_p": 0.9}
    assert request.sampling_params(SamplingParams(top_k=5)) == SamplingParams(temperature=0.5, top_k=5, top_p=0.9)
    with pytest.raises(GenerationError, match="temperature must be a number from 0"):
        GenerationRequest.build(temperature=math.inf)


def test_settings_record_everything_needed_to_draw_again():
    request = GenerationRequest(mode="instrument", instruments=("violin", 42), bars=4, n_samples=2, seed=7,
                                sampling={"top_p": {"pitch": 0.9}})
    assert request.settings() == {
        "mode": "instrument", "instruments": ["violin", "42"], "prompt": None, "prompt_beats": None,
        "prompt_bars": None, "keep": [], "bars_to_fill": None, "edit": [], "beats": None, "bars": 4, "n_samples": 2,
        "sampling": {"top_p": {"pitch": 0.9}}, "balance": None, "quota": None, "seed": 7, "max_new_rows": 1024,
        "constraints": {},
    }


def test_without_a_seed_run_draws_one_and_records_it():
    model = tiny_model()
    generation = run(model, GenerationRequest(max_new_rows=6))
    seed = generation.request.seed
    assert isinstance(seed, int) and 0 <= seed < 2**63
    again = run(model, GenerationRequest(max_new_rows=6, seed=seed))
    assert all(np.array_equal(a, b) for a, b in zip(generation.samples, again.samples))


def test_continuation_adds_only_after_the_cut_and_bars_follow_the_prompt_meter():
    # 3/4: a cut after 2 bars is beat 6; 1 more bar ends the song before beat 9
    model = tiny_model()
    generation = run(model, GenerationRequest(mode="continuation", prompt=scale_music(), prompt_bars=2, bars=1,
                                              n_samples=8, seed=0, max_new_rows=60))
    assert generation.prompt.start_beats == 6.0 and generation.prompt.beats_per_bar == 3.0
    prompt = generation.prompt.codes
    assert prompt[prompt[:, Field.TYPE] == RowType.NOTE, Field.BEAT].tolist() == [1, 2, 3, 4, 5, 6]
    for codes in generation.samples:
        np.testing.assert_array_equal(codes[: len(prompt)], prompt)
        added = codes[len(prompt):]
        onsets = (added[added[:, Field.TYPE] == RowType.NOTE, Field.BEAT] - 1).tolist()
        assert all(onset >= 5 for onset in onsets)  # never before the prompt's last note
        assert all(onset < 9 for onset in onsets)


def test_generate_takes_a_request_or_its_fields_not_both():
    model = tiny_model()
    request = GenerationRequest(mode="instrument", instruments=("piano", "cello"), max_new_rows=5, seed=3)
    by_request = generate(model, request)
    by_fields = generate(model, instruments=["piano", "cello"], max_new_rows=5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(by_request, by_fields))
    assert by_request[0][1:3, Field.INSTRUMENT].tolist() == [1, 27]  # piano, cello
    with pytest.raises(GenerationError, match="not both"):
        generate(model, request, seed=4)


def test_an_unknown_instrument_is_a_generation_error():
    with pytest.raises(GenerationError, match="kazoo"):
        generate(tiny_model(), instruments=["kazoo"], max_new_rows=5, seed=0)


def test_every_mode_is_offered_by_the_command_and_the_evaluation():
    from mmt.analysis.evaluation import parse_mode
    from mmt_app.cli import build_parser

    generate_parser = build_parser()._subparsers._group_actions[0].choices["generate"]
    mode_action = next(a for a in generate_parser._actions if a.dest == "mode")
    assert list(mode_action.choices) == list(MODES) == ["unconditioned", "instrument", "continuation",
                                                        "accompaniment", "infill", "edit"]
    for name in ("unconditioned", "instrument", "accompaniment", "infill"):
        assert parse_mode(name) == (name, None)
    assert parse_mode("continuation-4") == ("continuation", 4)
    with pytest.raises(AnalysisError, match="unknown mode 'infill-4'"):
        parse_mode("infill-4")  # only a continuation takes a prompt length


def test_a_continued_midi_file_keeps_its_tempo_meter_and_key(tmp_path):
    import mmt

    music = muspy.Music(resolution=480, tempos=[muspy.Tempo(0, 132.0)], time_signatures=[muspy.TimeSignature(0, 3, 4)],
                        key_signatures=[muspy.KeySignature(480 * 3, root=2, mode="major", fifths=2)],
                        tracks=[muspy.Track(program=0, notes=[muspy.Note(480 * b, 62 + b % 5, 480)
                                                              for b in range(24)])])
    mmt.write_midi(tmp_path / "waltz.mid", music)
    generation = run(tiny_model(), GenerationRequest(mode="continuation", prompt=str(tmp_path / "waltz.mid"),
                                                     prompt_bars=2, bars=2, seed=0, max_new_rows=20))
    assert generation.prompt.start_beats == 6.0 and generation.max_beats == 12.0
    paths = generation.write(tmp_path / "out")[0]
    back = mmt.read_music(paths["midi"])
    assert [round(t.qpm, 3) for t in back.tempos] == [132.0]
    assert [(t.time, t.numerator, t.denominator) for t in back.time_signatures] == [(0, 3, 4)]
    assert [(k.time / back.resolution, k.root, k.mode) for k in back.key_signatures] == [(3.0, 2, "major")]
    assert paths["png"].stat().st_size > 0


def test_prompt_bars_count_whole_bars_after_a_pickup():
    from mmt.request import bars_to_beats

    assert bars_to_beats(mmt_meter(((0, 3, 4),)), 2) == 6.0
    assert bars_to_beats(mmt_meter(((0, 3, 4),), pickup=1.0), 2) == 7.0
    assert bars_to_beats(mmt_meter(((0, 4, 4), (8, 3, 4))), 3) == 11.0
    assert bars_to_beats(mmt_meter(()), 1.5) == 6.0


def mmt_meter(signatures, pickup: float = 0.0):
    from mmt import Meter

    return Meter(time_signatures=signatures, pickup=pickup)


def test_instruments_the_model_has_no_range_for_keep_to_their_register():
    model = tiny_model()
    model.pitch_ranges = {"violin": (60, 90)}
    ranges = note_ranges(model)
    assert ranges["violin"] == (60, 90)  # the model's own range wins
    assert ranges["tuba"] == (28, 62) and ranges["flute"] == (60, 96)
    assert "drums" not in ranges
    generation = run(model, GenerationRequest(mode="instrument", instruments=("violin", "tuba"), bars=4, seed=0,
                                              quota=8))
    notes = generation.samples[0][generation.samples[0][:, Field.TYPE] == RowType.NOTE]
    tuba, violin = (notes[notes[:, Field.INSTRUMENT] == model.encoding.instrument_code(n), Field.PITCH] - 1
                    for n in ("tuba", "violin"))
    assert len(tuba) > 0 and len(violin) > 0
    assert tuba.min() >= 28 and tuba.max() <= 62 and violin.min() >= 60 and violin.max() <= 90
    model.pitch_ranges = {}  # switched off (or a model without ranges): no range at all
    assert note_ranges(model) == {}


def test_settings_record_the_sha256_of_the_weights_and_of_the_prompt_file(tmp_path):
    import hashlib
    import json

    from mmt.checkpoint import load_model, save_model
    from tests.factories import write_midi_file

    directory = save_model(tiny_model(), tmp_path / "model")
    song = write_midi_file(tmp_path / "song.mid", [(0, False, [(b, 60 + b, 1) for b in range(8)])])
    model = load_model(directory)
    generation = run(model, GenerationRequest(mode="continuation", prompt=str(song), prompt_bars=1, bars=1,
                                              n_samples=2, seed=0, max_new_rows=10))
    generation.write(tmp_path / "out", model_name=str(directory))
    written, = json.loads((tmp_path / "out" / "settings.json").read_text())
    assert written["weights_sha256"] == hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()
    assert written["prompt_sha256"] == hashlib.sha256(song.read_bytes()).hexdigest()
    assert written["samples"] == ["continuation-000", "continuation-001"]

    built = run(tiny_model(), GenerationRequest(mode="continuation", prompt=scale_music(), prompt_bars=1, bars=1,
                                                seed=0, max_new_rows=10))
    settings = built.settings()
    assert settings["weights_sha256"] is None and settings["prompt_sha256"] is None  # built in code; no file


def test_the_prompt_file_is_hashed_once_per_run_not_per_sample(tmp_path, monkeypatch):
    import mmt.request
    from tests.factories import write_midi_file

    song = write_midi_file(tmp_path / "song.mid", [(0, False, [(b, 60 + b, 1) for b in range(8)])])
    hashed = []
    real = mmt.request.sha256_file
    monkeypatch.setattr(mmt.request, "sha256_file", lambda path: hashed.append(path) or real(path))
    run(tiny_model(), GenerationRequest(mode="continuation", prompt=str(song), prompt_bars=1, bars=1,
                                        n_samples=3, seed=0, max_new_rows=10))
    assert hashed == [str(song)]


def test_each_sample_s_bars_are_recorded_and_a_short_one_says_why():
    from mmt import Encoding, encode
    from mmt.request import Generation, Prompt

    encoding = Encoding()
    short = encode(scale_music(n_beats=30), encoding)  # 3/4, its last note ends on beat 30, then end-of-song
    full = encode(scale_music(n_beats=54), encoding)
    cut = short[:-1]  # no end-of-song: cut at max_new_rows
    request = GenerationRequest(mode="continuation", prompt=scale_music(), prompt_bars=2, bars=16, n_samples=3)
    generation = Generation(request, Prompt(short[:9], start_beats=6.0, beats_per_bar=3.0), [short, full, cut],
                            encoding, SamplingParams(), 0.0, 0, max_beats=54.0)
    assert generation.bars_asked == 16.0
    assert generation.bars_written() == [8.0, 16.0, 8.0]
    assert generation.shortfall(0) == "ends after 8 of the 16 bars asked (the model ended the song at beat 30)"
    assert generation.shortfall(1) is None
    assert generation.shortfall(2) == "ends after 8 of the 16 bars asked (cut at 1024 new rows, max_new_rows)"
    settings = generation.settings()
    assert (settings["bars_asked"], settings["sample_bars"]) == (16.0, [8.0, 16.0, 8.0])
