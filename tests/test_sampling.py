"""Generation: the sampler's cached logits, the grammar, modes, seeds, the sliding window, the CLI."""

from __future__ import annotations

import math
import re

import muspy
import numpy as np
import pytest
import torch

from mmt import Encoding, GenerationError, GenerationRequest, Meter, SamplingParams, sampling
from mmt.checkpoint import save_model
from mmt.constants import Field, RowType
from mmt.encoding import decode, grammar_violations
from mmt.request import instrument_prompt, prompt_from_music, start_of_song
from mmt.sampling import sample, sample_masked
from mmt_app.cli import main
from tests.factories import march, tiny_model, write_midi_file

ENCODING = Encoding(max_beat=64)


def tiny(pos_emb: str = "rotary", depth: int = 2, max_seq_len: int = 64, seed: int = 0):
    return tiny_model(pos_emb, depth=depth, max_seq_len=max_seq_len, encoding=ENCODING, seed=seed)


def generate(model, prompt=None, *, instruments=None, temperature=1.0, top_k=None, top_p=None, **kwargs):
    """The sampler on an unconditioned, instrument or given prompt (the engine under `mmt.generate`)."""
    if instruments is not None:
        prompt = instrument_prompt(instruments, model.encoding)
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
    return sample(model, start_of_song() if prompt is None else prompt, params=params, **kwargs)


def record_logits(monkeypatch) -> list[list[torch.Tensor]]:
    """Make `draw_rows` keep a copy of the logits it is given, step by step."""
    seen: list[list[torch.Tensor]] = []
    draw = sampling.draw_rows

    def recording(logits, *args, **kwargs):
        seen.append([lg.clone() for lg in logits])
        return draw(logits, *args, **kwargs)

    monkeypatch.setattr(sampling, "draw_rows", recording)
    return seen


def check_song(codes: np.ndarray, n_prompt: int, max_new_rows: int) -> None:
    """Well-formed: complete when it ended early, a well-formed start when cut at the limit."""
    ended = codes[-1, Field.TYPE] == RowType.END_OF_SONG
    assert ended or len(codes) == n_prompt + max_new_rows
    assert grammar_violations(codes, ENCODING, complete=ended) == []
    assert isinstance(decode(codes, ENCODING), muspy.Music)


# ---------------------------------------------------------------------- the cache
@pytest.mark.parametrize("pos_emb", ["absolute", "rotary", "none"])
def test_every_step_sees_the_logits_of_a_full_forward_pass(pos_emb, monkeypatch):
    model = tiny(pos_emb)
    seen = record_logits(monkeypatch)
    samples = generate(model, n_samples=4, max_new_rows=40, min_new_rows=6, seed=3)
    assert len({len(s) for s in samples}) > 1  # samples end at different rows: finished ones pad
    for i, codes in enumerate(samples):
        with torch.no_grad():
            full = model(torch.as_tensor(codes)[None])
        for step in range(len(codes) - 1):  # step k drew row k + 1 from rows 0..k
            for field in range(6):
                torch.testing.assert_close(seen[step][field][i], full[field][0, step], atol=1e-5, rtol=1e-4)


def test_a_row_conditioned_model_draws_each_field_from_logits_that_read_the_row_so_far(monkeypatch):
    model = tiny_model("rotary", encoding=ENCODING, seed=5, row_conditioning=True)
    seen: list[list[torch.Tensor]] = []
    draw = sampling.draw_rows

    def recording(logits, *args, **kwargs):
        rows = draw(logits, *args, **kwargs)
        seen.append([lg.clone() for lg in logits])  # all six known once the row is drawn
        return rows

    monkeypatch.setattr(sampling, "draw_rows", recording)
    samples = generate(model, instruments=["piano", "violin"], n_samples=3, max_new_rows=30, min_new_rows=6, seed=2)
    for i, codes in enumerate(samples):
        rows = torch.as_tensor(codes)[None]
        with torch.no_grad():
            full = model(rows[:, :-1], next_rows=rows[:, 1:])  # teacher forcing: what training computes
        # step k drew row k + 1 (the prompt is 4 rows); the last row is left out: a note drawn past
        # the last beat becomes end-of-song, which its fields were not drawn after
        assert len(codes) > 8
        for step in range(3, len(codes) - 2):
            for field in range(6):
                torch.testing.assert_close(seen[step - 3][field][i], full[field][0, step], atol=1e-5, rtol=1e-4)
        check_song(codes, 4, 30)


@pytest.mark.parametrize("pos_emb", ["rotary", "none"])
def test_past_the_context_the_cache_holds_the_sink_and_the_latest_rows(pos_emb, monkeypatch):
    # With one layer the cached keys and values depend on their own row only, so the
    # trimmed cache must give exactly the logits of a forward pass over sink + window.
    context = 12
    model = march(tiny(pos_emb, depth=1, max_seq_len=context))
    seen = record_logits(monkeypatch)
    codes = generate(model, instruments=["piano", "cello"], max_new_rows=40, min_new_rows=40, seed=1,
                     window_shift=1)[0]
    sink = 4  # start-of-song, piano, cello, start-of-notes
    assert len(codes) == 44
    for step in (20, 30, 39):
        last = 3 + step  # the newest row fed before drawing row 4 + step
        window = np.concatenate([codes[:sink], codes[last - (context - sink) + 1:last + 1]])
        assert len(window) == context
        with torch.no_grad():
            full = model(torch.as_tensor(window)[None])
        for field in range(6):
            torch.testing.assert_close(seen[step][field][0], full[field][0, -1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("pos_emb", ["rotary", "none"])
def test_long_generation_keeps_the_header_and_the_grammar(pos_emb):
    model = march(tiny(pos_emb, max_seq_len=16))
    samples = generate(model, instruments=[0, 40, 42], n_samples=3, max_new_rows=100, min_new_rows=100, seed=0)
    for codes in samples:
        assert len(codes) == 105
        assert codes[:5].tolist() == [[1, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 25],
                                      [2, 0, 0, 0, 0, 27], [3, 0, 0, 0, 0, 0]]
        assert np.all(codes[5:, Field.TYPE] == RowType.NOTE)
        check_song(codes, 5, 100)


def test_an_absolute_model_says_it_cannot_pass_its_context():
    model = march(tiny("absolute", max_seq_len=16))
    with pytest.raises(ValueError, match="cannot go past its context of 16 rows"):
        generate(model, max_new_rows=40, min_new_rows=40, seed=0)
    codes = generate(model, max_new_rows=16, min_new_rows=16, seed=0)[0]  # rows 0..15 fed, row 16 drawn
    assert len(codes) == 17


# ---------------------------------------------------------------------- the grammar
def test_many_samples_of_an_untrained_model_follow_the_grammar():
    model = tiny("rotary")
    n_notes, n_instruments, ended = 0, set(), 0
    for seed in range(25):
        settings = [{}, {"top_k": 5}, {"top_p": 0.6}, {"temperature": {"beat": 2.0, "pitch": 0.5}}][seed % 4]
        samples = generate(model, n_samples=6, max_new_rows=60, min_new_rows=(0, 10, 30, 59, 60)[seed % 5], seed=seed, **settings)
        for codes in samples:
            check_song(codes, 1, 60)
            n_notes += int(np.sum(codes[:, Field.TYPE] == RowType.NOTE))
            n_instruments.add(int(np.sum(codes[:, Field.TYPE] == RowType.INSTRUMENT)))
            ended += codes[-1, Field.TYPE] == RowType.END_OF_SONG
    assert n_notes > 500 and len(n_instruments) > 3 and ended > 0  # the checks saw varied songs


def test_max_beats_ends_every_sample_cleanly_before_the_limit():
    model = tiny("rotary")
    for kwargs, limit in (({"max_beats": 3}, 36), ({"max_beats": 1.25}, 15)):
        samples = generate(model, n_samples=8, max_new_rows=200, min_new_rows=200, seed=5, **kwargs)
        for codes in samples:
            assert codes[-1, Field.TYPE] == RowType.END_OF_SONG
            check_song(codes, 1, 200)
            notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
            onset = (notes[:, Field.BEAT] - 1) * 12 + notes[:, Field.POSITION] - 1
            assert np.all(onset < limit)


def test_instrument_mode_uses_exactly_the_given_instruments():
    model = march(tiny("none"))
    samples = generate(model, instruments=["cello", 0, "violin"], n_samples=8, max_new_rows=50,
                       min_new_rows=30, seed=2)
    for codes in samples:
        assert codes[:5, Field.TYPE].tolist() == [1, 2, 2, 2, 3]
        assert codes[1:4, Field.INSTRUMENT].tolist() == [1, 25, 27]
        assert not np.any(codes[5:, Field.TYPE] == RowType.INSTRUMENT)
        notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
        assert set(notes[:, Field.INSTRUMENT].tolist()) <= {1, 25, 27} and len(notes) >= 29
        check_song(codes, 5, 50)


def test_continuation_keeps_the_prompt_rows_exactly(tmp_path):
    path = tmp_path / "song.mid"
    write_midi_file(path, [(0, False, [(0, 60, 1), (1, 62, 1), (2.5, 64, 1), (5, 65, 1)]),
                             (40, False, [(6, 67, 2)])])
    music = muspy.read_midi(path)
    prompt = prompt_from_music(music, ENCODING, n_beats=3)
    assert prompt.tolist() == [
        [1, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 25], [3, 0, 0, 0, 0, 0],
        [4, 1, 1, 61, 12, 1], [4, 2, 1, 63, 12, 1], [4, 3, 7, 65, 12, 1],
    ]
    samples = generate(tiny("rotary"), prompt, n_samples=6, max_new_rows=30, min_new_rows=10, seed=4)
    for codes in samples:
        assert np.array_equal(codes[:7], prompt)
        added = codes[7:]
        notes = added[added[:, Field.TYPE] == RowType.NOTE]
        assert np.all(notes[:, Field.BEAT] * 13 + notes[:, Field.POSITION] >= 3 * 13 + 7)
        check_song(codes, 7, 30)


def test_prompt_bars_follow_the_time_signature():
    notes = [muspy.Note(time=t * 12, pitch=60, duration=12) for t in range(8)]
    music = muspy.Music(resolution=12, time_signatures=[muspy.TimeSignature(time=0, numerator=3, denominator=4)],
                        tracks=[muspy.Track(program=0, notes=notes)])
    prompt = prompt_from_music(music, ENCODING, n_bars=2)
    assert prompt[prompt[:, Field.TYPE] == RowType.NOTE, Field.BEAT].tolist() == [1, 2, 3, 4, 5, 6]
    assert Meter.from_music(music).beats_per_bar() == 3.0


def test_bad_prompts_and_settings_are_refused():
    model = tiny("rotary")
    eos = np.array([[1, 0, 0, 0, 0, 0], [3, 0, 0, 0, 0, 0], [5, 0, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match="end-of-song"):
        generate(model, eos)
    undeclared = np.array([[1, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 1], [3, 0, 0, 0, 0, 0], [4, 1, 1, 61, 3, 5]])
    with pytest.raises(ValueError, match="not declared"):
        generate(model, undeclared)
    with pytest.raises(ValueError, match="unknown field"):
        generate(model, temperature={"velocity": 1.0})


@pytest.mark.parametrize("name, value, message", [
    ("balance", 11.0, "balance must be a number from 0 (off) to 10, got 11.0"),
    ("balance", -1.0, "balance must be a number from 0 (off) to 10, got -1.0"),
    ("balance", math.nan, "balance must be a number from 0 (off) to 10, got nan"),
    ("quota", -1, "quota must be an integer >= 0 (0: off), got -1"),
    ("seed", 2**63, "seed must be an integer in 0 .. 2**63-1, got 9223372036854775808"),
    ("seed", True, "seed must be an integer in 0 .. 2**63-1, got True"),
    ("n_samples", 0, "n_samples must be an integer >= 1, got 0"),
    ("max_new_rows", 2.5, "max_new_rows must be an integer >= 1, got 2.5"),
])
def test_the_request_and_the_sampler_refuse_an_argument_alike(name, value, message):
    with pytest.raises(GenerationError) as by_request:
        GenerationRequest(**{name: value})
    with pytest.raises(GenerationError) as by_sampler:
        sample(tiny("rotary"), start_of_song(), **{name: value})
    assert str(by_request.value) == str(by_sampler.value) == message
    assert by_request.value.argument == by_sampler.value.argument == name


# ---------------------------------------------------------------------- sampling and seeds
def test_sample_masked_respects_the_mask_and_the_filters():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[0.0, 5.0, 3.0, 4.0]]).repeat(500, 1)
    allowed = torch.tensor([[True, False, True, True]]).repeat(500, 1)
    assert sample_masked(logits, allowed, 0.0, None, None, g).unique().tolist() == [3]
    assert sample_masked(logits, allowed, 1.0, 1, None, g).unique().tolist() == [3]
    assert sample_masked(logits, allowed, 1.0, 2, None, g).unique().tolist() == [2, 3]
    assert sample_masked(logits, allowed, 1.0, None, 0.5, g).unique().tolist() == [3]
    assert sample_masked(logits, allowed, 1.0, None, None, g).unique().tolist() == [0, 2, 3]


def test_same_seed_same_samples_other_seed_other_samples():
    model = tiny("rotary")
    first = generate(model, n_samples=4, max_new_rows=40, min_new_rows=20, seed=11)
    again = generate(model, n_samples=4, max_new_rows=40, min_new_rows=20, seed=11)
    other = generate(model, n_samples=4, max_new_rows=40, min_new_rows=20, seed=12)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(len(a) == len(b) and np.array_equal(a, b) for a, b in zip(first, other))


# ---------------------------------------------------------------------- the command
@pytest.fixture
def checkpoint(tmp_path):
    return save_model(tiny("rotary"), tmp_path / "model")


@pytest.mark.parametrize("mode, extra", [
    ("unconditioned", []),
    ("instrument", ["--instruments", "piano", "40", "cello"]),
    ("continuation", ["--prompt-bars", "1", "--bars", "2"]),
    ("accompaniment", ["--keep", "violin", "--instruments", "cello"]),
    ("infill", ["--bars-to-fill", "2"]),
])
def test_the_command_writes_every_file_of_every_sample(checkpoint, tmp_path, mode, extra, capsys):
    song = tmp_path / "song.mid"
    violin = [(40, False, [(b, 72 + b, 1) for b in range(0, 12, 2)])] if mode in ("accompaniment", "infill") else []
    write_midi_file(song, [(0, False, [(b, 60 + b, 1) for b in range(8)]), *violin])
    if mode in ("continuation", "accompaniment", "infill"):
        extra = ["--prompt", str(song), *extra]
    out = tmp_path / "out"
    status = main(["generate", str(checkpoint), "--mode", mode, *extra, "-n", "2", "--seed", "0",
                   "--max-rows", "30", "--out", str(out), "--quiet"])
    assert status == 0
    for k in range(2):
        for suffix in (".mid", ".csv", ".png"):
            assert (out / f"{mode}-{k:03d}{suffix}").stat().st_size > 0
        codes = np.loadtxt(out / f"{mode}-{k:03d}.csv", delimiter=",", skiprows=1, usecols=range(6), dtype=int)
        if mode == "instrument":
            assert codes[1:4, Field.INSTRUMENT].tolist() == [1, 25, 27]
        if mode == "continuation":  # 1 bar of 4/4 kept: 4 notes; 1 + 2 bars at most
            assert codes[3:7, Field.BEAT].tolist() == [1, 2, 3, 4]
            assert codes[codes[:, 0] == RowType.NOTE, Field.BEAT].max() <= 12
        if mode == "accompaniment":  # the violin's 6 notes given, only the cello written
            assert codes[codes[:, 0] == RowType.CONTROL, Field.BEAT].tolist() == [1, 3, 5, 7, 9, 11]
            assert set(codes[codes[:, 0] == RowType.NOTE, Field.INSTRUMENT].tolist()) <= {27}
        if mode == "infill":  # bar 2 (beats 4-7) rewritten: the notes from beat 8 on are given
            given = codes[codes[:, 0] == RowType.CONTROL]
            assert given[:, Field.BEAT].tolist() == [9, 11] and (given[:, Field.INSTRUMENT] == 25).all()
    printed = capsys.readouterr().out
    assert f"{mode}-001.png" in printed
    if mode in ("accompaniment", "infill"):
        assert "trained without controls: anticipation 0" in printed


def test_the_command_says_why_there_is_no_audio(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("mmt.io.audio_available", lambda: False)
    status = main(["generate", str(checkpoint), "--max-rows", "10", "--audio", "--out", str(tmp_path / "o"),
                   "--quiet", "--seed", "1"])
    assert status == 0
    assert "no WAV written: audio needs fluidsynth" in capsys.readouterr().err
    assert (tmp_path / "o" / "unconditioned-000.mid").exists()
    assert not (tmp_path / "o" / "unconditioned-000.wav").exists()


def test_the_command_refuses_a_mode_without_its_inputs(checkpoint, tmp_path, capsys):
    assert main(["generate", str(checkpoint), "--mode", "instrument", "--out", str(tmp_path)]) == 2
    assert "mode instrument needs --instruments" in capsys.readouterr().err
    assert main(["generate", str(checkpoint), "--mode", "continuation", "--out", str(tmp_path)]) == 2
    assert "mode continuation needs a --prompt" in capsys.readouterr().err


def test_a_note_on_the_last_beat_ends_the_sample_instead_of_piling_up():
    # An untrained model jumps ahead in beats, so it soon reaches the encoding's last beat
    # (63 with max_beat 64, code 64): there the sample must end, not stack notes on it.
    model = tiny("rotary")
    samples = generate(model, instruments=["piano"], n_samples=16, max_new_rows=300, seed=2)
    last_code = ENCODING.n_tokens["beat"] - 1
    ended_at_last = 0
    for codes in samples:
        check_song(codes, 3, 300)
        notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
        assert not np.any(notes[:, Field.BEAT] == last_code)
        ended_at_last += codes[-1, Field.TYPE] == RowType.END_OF_SONG and len(codes) < 303
    assert ended_at_last == 16
    # with end-of-song held off by min_new_rows, the sample fills what room the last beat has
    # left in canonical order, then must end: no other note can follow
    held = generate(model, instruments=["piano"], max_new_rows=300, min_new_rows=300, seed=2)[0]
    notes = held[held[:, Field.TYPE] == RowType.NOTE]
    assert held[-1, Field.TYPE] == RowType.END_OF_SONG and len(held) < 303
    assert notes[-1, Field.BEAT] == last_code and notes[-1, Field.POSITION] == 12 and notes[-1, Field.PITCH] == 128


def test_the_command_takes_a_thread_count(checkpoint, tmp_path, capsys):
    assert main(["generate", str(checkpoint), "--max-rows", "5", "--seed", "1", "--threads", "1",
                 "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert torch.get_num_threads() == 1
    assert main(["generate", str(checkpoint), "--threads", "0", "--out", str(tmp_path / "o")]) == 2
    assert "mmt generate: error: --threads must be >= 1, got 0" in capsys.readouterr().err


# ---------------------------------------------------------------------- canonical order, ranges, balance
def note_keys(codes: np.ndarray) -> list[tuple]:
    notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
    return [tuple(row) for row in notes[:, 1:].tolist()]


def test_sampled_notes_follow_the_encoders_order_and_never_repeat_a_note():
    model = tiny("rotary")
    checked = 0
    for seed, settings in enumerate([{}, {"top_k": 3}, {"temperature": {"beat": 0, "position": 0}},
                                     {"temperature": 2.0}]):
        for codes in generate(model, instruments=["piano", "violin", "cello"], n_samples=8, max_new_rows=80,
                              min_new_rows=40, seed=seed, **settings):
            keys = note_keys(codes)
            assert keys == sorted(keys) and len(set(keys)) == len(keys)  # (beat, position, pitch, duration, instrument)
            onsets = [(b, p, pitch, instrument) for b, p, pitch, _, instrument in keys]
            assert len(set(onsets)) == len(onsets)  # no two notes of one instrument share onset and pitch
            checked += len(keys)
    assert checked > 400


def test_a_marched_model_fills_an_onset_in_order_then_moves_on():
    # every field wants its lowest code: the piano (code 1) at beat 0, tick 0, pitch 0, the
    # shortest duration; it cannot play pitch 0 there twice, so it climbs one pitch a note
    model = march(tiny("rotary"), fields=("beat", "position", "pitch", "duration", "instrument"))
    codes = generate(model, instruments=["piano", "violin"], max_new_rows=6, min_new_rows=6, seed=0)[0]
    assert note_keys(codes) == [(1, 1, pitch, 1, 1) for pitch in range(1, 7)]


def test_each_instrument_keeps_to_its_pitch_range():
    model = tiny("rotary")
    ranges = {"violin": (55, 103), "cello": (36, 76)}
    for codes in sample(model, instrument_prompt(["violin", "cello"], model.encoding), n_samples=8,
                        max_new_rows=60, min_new_rows=30, seed=1, pitch_ranges=ranges):
        for _, _, pitch, _, instrument in note_keys(codes):
            low, high = ranges["violin" if instrument == 25 else "cello"]
            assert low <= pitch - 1 <= high


def test_new_notes_start_at_or_after_start_beats():
    model = tiny("rotary")
    prompt = np.array([[1, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 1], [3, 0, 0, 0, 0, 0], [4, 1, 1, 61, 12, 1]])
    for codes in sample(model, prompt, n_samples=8, max_new_rows=30, min_new_rows=10, seed=2, start_beats=2.5):
        new = note_keys(codes[4:])
        assert new and all((b - 1) * 12 + p - 1 >= 30 for b, p, *_ in new)


def test_balance_gives_the_instruments_the_model_neglects_their_share():
    model = tiny("rotary")
    with torch.no_grad():
        model.heads[Field.INSTRUMENT].bias[1] += 3.0  # the model much prefers the piano
    prompt = instrument_prompt(["piano", "violin", "cello"], model.encoding)

    def counts(balance: float) -> np.ndarray:
        total = np.zeros(3, dtype=int)
        for codes in sample(model, prompt, n_samples=8, max_new_rows=60, min_new_rows=60, seed=3, balance=balance):
            instruments = [key[4] for key in note_keys(codes)]
            total += [instruments.count(code) for code in (1, 25, 27)]
        return total

    plain, balanced = counts(0.0), counts(3.0)
    assert plain[0] > 2 * (plain[1] + plain[2])
    assert balanced.min() > 0.2 * balanced.sum()


def test_penalize_repeats_divides_positive_and_multiplies_negative_logits():
    logits = torch.tensor([[2.0, -1.0, 3.0, -2.0]])
    seen = torch.tensor([[True, True, False, False]])
    torch.testing.assert_close(sampling.penalize_repeats(logits, seen, 2.0), torch.tensor([[1.0, -2.0, 3.0, -2.0]]))
    assert sampling.penalize_repeats(logits, seen, 1.0) is logits


def test_balance_bias_favours_instruments_below_the_mean():
    counts = torch.tensor([[0, 6, 2, 0]])
    declared = torch.tensor([[False, True, True, True]])
    bias = sampling.balance_bias(counts, declared, 1.0)  # mean of 6, 2, 0 is 8/3
    expected = [0.0, math.log(11 / 3 / 7), math.log(11 / 3 / 3), math.log(11 / 3)]
    torch.testing.assert_close(bias, torch.tensor([expected]))


# ---------------------------------------------------------------------- the command's outputs and checks
def test_reruns_add_samples_and_settings_record_each_run(checkpoint, tmp_path, capsys):
    import json

    out = tmp_path / "out"
    base = ["generate", str(checkpoint), "--mode", "instrument", "--instruments", "Piano", "french horn",
            "--max-rows", "12", "--bars", "2", "--out", str(out), "--quiet"]
    assert main([*base, "--seed", "5", "--top-p", "0.8"]) == 0
    assert main([*base, "-n", "2"]) == 0  # no seed: a random one, printed and recorded
    printed = capsys.readouterr().out
    runs = json.loads((out / "settings.json").read_text())
    assert [run["samples"] for run in runs] == [["instrument-000"], ["instrument-001", "instrument-002"]]
    first, second = runs
    assert first["instruments"] == ["Piano", "french horn"] and first["seed"] == 5 and first["bars"] == 2
    assert first["sampling"] == {"top_p": 0.8}
    assert first["sampling_used"] == {"temperature": 1.0, "top_k": None, "top_p": 0.8, "repetition_penalty": 1.0}
    assert first["balance_used"] == 1.0 and first["max_beats"] == 8.0 and first["model"] == str(checkpoint)
    assert f"seed {second['seed']} (--seed {second['seed']} draws these samples again)" in printed
    codes = np.loadtxt(out / "instrument-000.csv", delimiter=",", skiprows=1, usecols=range(6), dtype=int)
    assert codes[1:3, Field.INSTRUMENT].tolist() == [1, 38]  # piano, horn
    # --overwrite starts again at 000 and forgets the earlier runs
    assert main([*base, "--seed", "5", "--top-p", "0.8", "--overwrite"]) == 0
    assert [run["samples"] for run in json.loads((out / "settings.json").read_text())] == [["instrument-000"]]
    again = np.loadtxt(out / "instrument-000.csv", delimiter=",", skiprows=1, usecols=range(6), dtype=int)
    np.testing.assert_array_equal(again, codes)


def test_sampling_flags_take_a_value_per_field(checkpoint, tmp_path):
    import json

    out = tmp_path / "out"
    assert main(["generate", str(checkpoint), "--mode", "instrument", "--instruments", "piano", "violin",
                 "--max-rows", "12", "--bars", "2", "--out", str(out), "--quiet", "--seed", "1",
                 "--temperature", "instrument=2.5", "--top-p", "pitch=0.8,duration=0.9", "--top-k", "3"]) == 0
    run, = json.loads((out / "settings.json").read_text())
    assert run["sampling"] == {"temperature": {"instrument": 2.5}, "top_k": 3,
                               "top_p": {"pitch": 0.8, "duration": 0.9}}
    assert run["sampling_used"]["temperature"] == {"instrument": 2.5}


@pytest.mark.parametrize("flag, value", [("--temperature", "instrument=hot"), ("--top-k", "pitch=0.5")])
def test_a_malformed_per_field_value_is_a_usage_error(checkpoint, tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", str(checkpoint), flag, value, "--out", str(tmp_path / "o")])
    assert exit_.value.code == 2
    assert (f"argument {flag}: expected a number or FIELD=NUMBER[,FIELD=NUMBER...] (e.g. instrument=2.5), "
            f"got {value!r}") in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--temperature", "brass=2"], "--temperature: unknown field\\(s\\) brass"),
    (["--temperature", "instrument=-1"], "--temperature of instrument must be a number from 0"),
    (["--mode", "instrument", "--instruments", "kazoo"], "unknown instrument 'kazoo'"),
    (["--bars", "0"], "--bars must be a positive number, got 0"),
    (["--bars", "nan"], "--bars must be a positive number, got nan"),
    (["--seed", str(2**70)], "--seed must be an integer in 0 .. 2\\*\\*63-1"),
    (["--top-p", "2"], "--top-p must be a number in \\(0, 1\\]"),
    (["--temperature", "inf"], "--temperature must be a number from 0"),
    (["-n", "0"], "-n must be an integer >= 1, got 0"),
    (["--prompt-bars", "2"], "--prompt-bars is for the continuation mode, not unconditioned"),
    (["--device", "cuda"], "--device cuda: CUDA is not available"),
    (["--device", "gpu9"], "--device 'gpu9' is not a torch device"),
    (["--mode", "continuation", "--prompt", "missing.mid"], "missing.mid: no such file"),
])
def test_argument_errors_come_before_the_weights_load(checkpoint, tmp_path, capsys, extra, message):
    (checkpoint / "model.safetensors").write_bytes(b"not weights")  # loading them would fail differently
    assert main(["generate", str(checkpoint), *extra, "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert re.search(message, error) and "weights" not in error
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra, message", [
    (["--mode", "continuation", "--prompt", "/tmp/x/prompt_dir/missing.mid"],
     "mmt generate: error: /tmp/x/prompt_dir/missing.mid: no such file"),
    (["--mode", "continuation", "--prompt", "/tmp/x/prompt/prompt_bars/missing.mid"],
     "mmt generate: error: /tmp/x/prompt/prompt_bars/missing.mid: no such file"),
    (["--mode", "infill", "--prompt", "song.mid", "--bars-to-fill", "prompt 9-12"],
     "mmt generate: error: --bars-to-fill must look like 9-12 (first and last bar), got 'prompt 9-12'"),
])
def test_what_the_user_typed_comes_back_unchanged_in_an_error(checkpoint, tmp_path, capsys, extra, message):
    # only the field an error is about becomes its flag: no word of a path or value is rewritten
    assert main(["generate", str(checkpoint), *extra, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_an_error_names_the_flag_where_it_names_the_field_and_leaves_the_path(checkpoint, tmp_path, capsys):
    song = tmp_path / "prompt" / "bars_to_fill" / "song.mid"
    song.parent.mkdir(parents=True)
    write_midi_file(song, [(0, False, [(b, 60, 1) for b in range(8)])])  # 8 beats: 2 bars of 4/4
    assert main(["generate", str(checkpoint), "--mode", "infill", "--prompt", str(song), "--bars-to-fill", "9-10",
                 "--out", str(tmp_path / "o")]) == 2
    assert (f"mmt generate: error: {song}: bar 9 starts at beat 32, after the music ends (beat 8); "
            "the bars to fill (--bars-to-fill) must lie inside it") in capsys.readouterr().err
    assert main(["generate", str(checkpoint), "--mode", "accompaniment", "--prompt", str(song),
                 "--out", str(tmp_path / "o")]) == 2
    assert "mmt generate: error: mode accompaniment needs the instruments to keep (--keep)\n" in capsys.readouterr().err


def test_a_prompt_without_usable_notes_is_an_error_and_a_short_one_a_warning(checkpoint, tmp_path, capsys):
    effects = tmp_path / "effects.mid"  # GM 120-127 are sound effects: the encoding drops them
    write_midi_file(effects, [(122, False, [(0, 60, 1), (1, 62, 1)])])
    assert main(["generate", str(checkpoint), "--mode", "continuation", "--prompt", str(effects),
                 "--out", str(tmp_path / "o")]) == 2
    assert "effects.mid: the prompt has no notes of an instrument this model knows" in capsys.readouterr().err
    short = tmp_path / "short.mid"
    write_midi_file(short, [(0, False, [(b, 60 + b, 1) for b in range(4)])])
    assert main(["generate", str(checkpoint), "--mode", "continuation", "--prompt", str(short), "--prompt-bars",
                 "2", "--bars", "1", "--seed", "0", "--max-rows", "10", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert ("short.mid: the prompt is 1 bar long, shorter than the 2 asked for; the new music starts at bar 3"
            in capsys.readouterr().err)


def test_a_quota_gives_every_instrument_its_notes_before_the_length_limit():
    # onsets marched forward slowly, so that room before the limit never runs out
    model = march(tiny("rotary"), fields=("beat", "position"), step=0.5)
    with torch.no_grad():
        model.heads[Field.INSTRUMENT].bias[1] += 8.0  # the model all but never picks anything but the piano
    prompt = instrument_prompt(["piano", "violin", "cello"], model.encoding)
    for quota, least in ((0, 0), (5, 5)):
        samples = sample(model, prompt, n_samples=8, max_new_rows=200, max_beats=16, seed=4, quota=quota)
        for codes in samples:
            instruments = [key[4] for key in note_keys(codes)]
            onsets = [(b - 1) * 12 + p - 1 for b, p, *_ in note_keys(codes)]
            assert codes[-1, Field.TYPE] == RowType.END_OF_SONG and max(onsets, default=0) < 16 * 12
            assert min(instruments.count(25), instruments.count(27)) >= least
        if quota == 0:
            assert sum(key[4] != 1 for codes in samples for key in note_keys(codes)) <= 2


def test_a_quota_holds_when_the_model_runs_ahead_to_the_length_limit():
    # untrained weights leap to late beats at once; before the onsets were held to the quota's
    # schedule, such samples ran into the length limit with parts short of their quota
    model = tiny("rotary")
    names = ["violin", "tuba", "flute"]
    prompt = instrument_prompt(names, model.encoding)
    samples = sample(model, prompt, n_samples=8, max_new_rows=300, max_beats=16, seed=0, quota=8)
    for codes in samples:
        instruments = [key[4] for key in note_keys(codes)]
        onsets = [(b - 1) * 12 + p - 1 for b, p, *_ in note_keys(codes)]
        assert codes[-1, Field.TYPE] == RowType.END_OF_SONG and max(onsets) < 16 * 12
        assert [instruments.count(model.encoding.instrument_code(n)) >= 8 for n in names] == [True] * 3


def test_lagging_follows_the_schedule_of_the_quota():
    counts = torch.tensor([[0, 2, 0, 7], [0, 2, 0, 7]])
    declared = torch.tensor([[False, True, True, True]] * 2)
    # 8 notes over ticks 100..180: the n-th is due from 100 + ceil((n - 1) * 10) on
    assert sampling.due_tick(torch.tensor([0, 1, 2, 7, 8]), 8, 100, 80).tolist() == [100, 110, 120, 170, 180]
    assert sampling.due_tick(torch.tensor([1, 2, 3]), 3, 0, 10).tolist() == [4, 7, 10]  # ceil(10/3), ceil(20/3)
    behind = sampling.lagging(counts, declared, 8, torch.tensor([100, 172]), 100, 80)
    # at the start one note each is due; at tick 172 the 8th (due from 170 on)
    assert behind.tolist() == [[False, False, True, False], [False, True, True, True]]
    full = sampling.lagging(torch.tensor([[8, 3]]), torch.tensor([[True, True]]), 8, torch.tensor([500]), 100, 80)
    assert full.tolist() == [[False, True]]  # past the limit: whoever lacks the quota, not who has it


@pytest.mark.parametrize("mode, extra, kept", [
    # bar 2 of 4/4 (beats 4-7) rewritten: the piano's 4 and the violin's 2 notes before it, the violin's 2 after it
    ("infill", ["--bars-to-fill", "2"], "8 notes kept as given (6 in the prompt, 2 as control rows), new notes "
     "from beat 4 to 8"),
    # (an accompaniment writes every bar of the piece: 3 bars of 4/4)
    ("accompaniment", ["--keep", "violin", "--instruments", "cello"], "6 notes kept as given (as control rows), "
     "new notes from beat 0 to 12"),
])
def test_the_command_counts_every_kept_note(checkpoint, tmp_path, capsys, mode, extra, kept):
    song = write_midi_file(tmp_path / "song.mid", [(0, False, [(b, 60 + b, 1) for b in range(8)]),
                                                   (40, False, [(b, 72 + b, 1) for b in range(0, 12, 2)])])
    assert main(["generate", str(checkpoint), "--mode", mode, "--prompt", str(song), *extra, "--seed", "0",
                 "--max-rows", "10", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert f"{song}: {kept}; " in capsys.readouterr().out


def test_the_command_writes_every_sample_and_says_which_ends_short(checkpoint, tmp_path, capsys, monkeypatch):
    import json

    song = write_midi_file(tmp_path / "song.mid", [(0, False, [(b, 60 + b, 1) for b in range(8)])])
    quarter = ENCODING.known_durations.index(12) + 1
    ending = np.array([[RowType.END_OF_SONG, 0, 0, 0, 0, 0]])

    def fake_sample(model, prompt, *, n_samples, **_):  # the model's choice, fixed: one sample stops at once
        onward = np.array([[RowType.NOTE, b + 1, 1, 61 + b, quarter, 1] for b in range(4, 12)])
        return [np.vstack([prompt, ending]), np.vstack([prompt, onward, ending])]

    monkeypatch.setattr(sampling, "sample", fake_sample)
    out = tmp_path / "out"
    assert main(["generate", str(checkpoint), "--mode", "continuation", "--prompt", str(song), "--prompt-bars", "1",
                 "--bars", "2", "-n", "2", "--seed", "0", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr()
    assert f"continuation-000: 8 rows, 0 of 2 bars -> {out / 'continuation-000.mid'}" in printed.out
    assert f"continuation-001: 16 rows, 2 of 2 bars -> {out / 'continuation-001.mid'}" in printed.out
    assert printed.err == ("mmt generate: warning: continuation-000 ends after 0 of the 2 bars asked "
                           "(the model ended the song at beat 4)\n")
    run, = json.loads((out / "settings.json").read_text())
    assert (run["samples"], run["bars_asked"], run["sample_bars"]) == (
        ["continuation-000", "continuation-001"], 2.0, [0.0, 2.0])
    assert all((out / f"continuation-00{k}.mid").stat().st_size > 0 for k in range(2))


def test_the_generate_help_gives_the_default_length_the_code_uses():
    from mmt.request import DEFAULT_BARS
    from mmt.request import run as sampling_run
    from mmt_app.cli import build_parser

    generate_parser = build_parser()._subparsers._group_actions[0].choices["generate"]
    helps = {action.dest: action.help for action in generate_parser._actions}
    assert DEFAULT_BARS == 32.0
    assert sampling_run(tiny(), GenerationRequest(seed=0, max_new_rows=2)).bars_asked == 32.0  # 4/4: 128 beats
    assert helps["bars"] == ("add at most this many bars (default: 32; an edit or a continuation of a piece cut after "
                             "whole bars writes all of them); a sample the model ends earlier is reported with its length")
    assert helps["beats"] == "add at most this many beats (default: 32 bars)"
