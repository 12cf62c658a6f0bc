"""Part constraints: usual ranges, no crossing, key, density; what a sample met; the request and the CLI."""

from __future__ import annotations

import json

import muspy
import numpy as np
import pytest
import torch

from mmt import Encoding, GenerationError, GenerationRequest
from mmt.checkpoint import save_model
from mmt.constants import Field, RowType
from mmt.constraints import PartConstraints, estimate_key, key_pitch_classes, measure, part_order, parse_key
from mmt.request import instrument_prompt, run
from mmt.sampling import ConstraintState, GrammarState, sample
from mmt_app.cli import main
from tests.factories import march, tiny_model

ENCODING = Encoding(max_beat=64)  # 12 ticks a beat
VIOLIN, VIOLA, CELLO, DRUMS = 25, 26, 27, 65
D12, D24, D384 = 12, 18, 32  # duration codes of 12, 24 and 384 ticks


def row(kind, beat, pitch, duration=D12, instrument=CELLO, position=0):
    """A code row of a note at `beat` (0-based) and MIDI `pitch`."""
    return [kind, beat + 1, position + 1, pitch + 1, duration, instrument]


def header(*instruments) -> list:
    return [[1, 0, 0, 0, 0, 0], *[[2, 0, 0, 0, 0, code] for code in instruments], [3, 0, 0, 0, 0, 0]]


def sounding(notes: np.ndarray, tick: int, instrument: int) -> np.ndarray:
    """MIDI pitches of `instrument` sounding at `tick` among note or control rows."""
    onset = (notes[:, Field.BEAT] - 1) * 12 + notes[:, Field.POSITION] - 1
    end = onset + np.asarray(ENCODING.known_durations)[notes[:, Field.DURATION] - 1]
    return notes[(notes[:, Field.INSTRUMENT] == instrument) & (onset <= tick) & (end > tick), Field.PITCH] - 1


# ---------------------------------------------------------------------- the settings
def test_keys_parse_and_hold_their_scale():
    assert parse_key("D:major") == (2, "major") and parse_key("bb minor") == (10, "minor")
    assert PartConstraints(key="f# MINOR").key == "F#:minor"
    assert sorted(key_pitch_classes("A:minor")) == [0, 2, 4, 5, 7, 8, 9, 11]  # natural minor and G#
    assert estimate_key([60, 62, 64, 65, 67, 69, 71, 72, 60, 64, 67], [4, 1, 2, 1, 3, 1, 1, 4, 4, 2, 3]) == "C:major"
    assert estimate_key([]) is None


def test_parts_are_ordered_by_the_middle_of_their_usual_range_and_chordal_ones_stand_aside():
    assert part_order(["violin", "piano", "cello", "viola", "drums"]) == {"cello": 0, "viola": 1, "violin": 2}


@pytest.mark.parametrize("values, message", [
    ({"range_widen": 50}, "range_widen must be an integer from 0 to 48"),
    ({"ranges": "yes"}, "ranges must be true or false"),
    ({"key": "H:major"}, "key must look like C:major or F#:minor"),
    ({"key_strength": -1}, "key_strength must be a number from 0 to 20"),
    ({"density": 0}, "density must be a number of notes per bar in \\(0, 64\\]"),
    ({"crossing": False}, "unknown constraint\\(s\\) crossing; constraints are ranges, range_widen, no_crossing"),
])
def test_a_request_refuses_bad_constraints_naming_the_field(values, message):
    with pytest.raises(GenerationError, match=message):
        GenerationRequest(constraints=values)


# ---------------------------------------------------------------------- the masks
def bands(constraints: PartConstraints, given=(), tick: int = 0):
    prompt = np.array(header(VIOLIN, VIOLA, CELLO))
    given = np.array(given, dtype=np.int64).reshape(-1, 6)
    state = GrammarState(prompt, 1, ENCODING, "cpu")
    masks = ConstraintState(constraints, np.vstack([prompt, given]), 1, ENCODING, state, 4.0, 0)
    low, high, range_low, range_high = masks.bands(torch.tensor([tick]))
    return {code: (int(low[0, code]) - 1, int(high[0, code]) - 1) for code in (VIOLIN, VIOLA, CELLO, DRUMS)}


def test_ranges_widen_and_switch_off_as_documented():
    assert bands(PartConstraints()) == {VIOLIN: (55, 105), VIOLA: (48, 88), CELLO: (36, 81), DRUMS: (0, 127)}
    assert bands(PartConstraints(range_widen=3))[CELLO] == (33, 84)
    assert bands(PartConstraints(ranges=False))[CELLO] == (0, 127)


def test_a_part_keeps_between_the_parts_sounding_above_and_below_it():
    viola = [row(RowType.CONTROL, 0, 60, D24, VIOLA), row(RowType.CONTROL, 0, 64, D24, VIOLA)]
    at_onset = bands(PartConstraints(), viola, tick=12)  # the viola's C4 and E4 still sound
    assert at_onset[CELLO] == (36, 60) and at_onset[VIOLIN] == (64, 105) and at_onset[VIOLA] == (48, 88)
    assert bands(PartConstraints(), viola, tick=24)[CELLO] == (36, 81)  # it has stopped
    assert bands(PartConstraints(no_crossing=False), viola, tick=12)[CELLO] == (36, 81)


def test_parts_of_other_families_cross_freely():
    """A flute sounding A5 bounds neither the violin nor the cello; a viola's C4 still bounds the cello."""
    flute = ENCODING.instrument_code(73)
    given = [row(RowType.CONTROL, 0, 81, D24, flute), row(RowType.CONTROL, 0, 60, D24, VIOLA)]
    at_onset = bands(PartConstraints(), given, tick=12)
    assert at_onset[VIOLIN] == (60, 105) and at_onset[CELLO] == (36, 60)
    assert part_order(["violin", "flute", "oboe"]) == {"oboe": 0, "flute": 1, "violin": 2}  # places; families apart
    # measured the same way: a new flute note over the violin and a new cello note over the flute cross nothing
    codes = np.array([*header(VIOLIN, CELLO, flute), row(RowType.CONTROL, 0, 67, D24, VIOLIN),
                      row(RowType.NOTE, 0, 79, instrument=flute), row(RowType.NOTE, 0, 64),
                      row(RowType.NOTE, 1, 70)])  # the cello's B-flat over the violin's G: a crossing
    parts = measure(codes, ENCODING)["parts"]
    assert (parts["flute"]["crossings"], parts["cello"]["crossings"]) == (0, 1)


def test_density_adds_each_parts_deficit_at_most_four_notes():
    prompt = np.array(header(VIOLIN, VIOLA, CELLO))
    state = GrammarState(prompt, 1, ENCODING, "cpu")
    masks = ConstraintState(PartConstraints(density=2), prompt, 1, ENCODING, state, 4.0, 0)
    counts = torch.tensor([[0] * 25 + [1, 9, 4] + [0] * 38])
    bias = masks.density_bias(counts, state.declared, torch.tensor([96]))  # 2 bars in: 4 notes due
    assert bias[0, [VIOLIN, VIOLA, CELLO, 1]].tolist() == [6.0, -8.0, 0.0, 0.0]  # DENSITY_STRENGTH 2


def test_density_makes_onsets_cost_the_notes_the_parts_would_be_off():
    prompt = np.array(header(VIOLIN, VIOLA, CELLO))
    state = GrammarState(prompt, 1, ENCODING, "cpu")
    masks = ConstraintState(PartConstraints(density=2), prompt, 1, ENCODING, state, 4.0, 0)
    onsets = torch.tensor([[48, 72, 96, 120]])  # bars 1.0, 1.5, 2.0 and 2.5 in: 2, 3, 4 and 5 notes due
    counts = torch.tensor([[0] * 25 + [2, 3, 7] + [0] * 38])  # 4 notes a part on average
    assert masks.advance_bias(counts, state.declared, onsets).tolist() == [[-4.0, -2.0, 0.0, -2.0]]


def test_density_changes_how_many_notes_the_parts_write():
    """A string trio of 40-60 rows from a random model: 1 note a bar asked against 8 (seed 1, 8 samples)."""
    per_bar = {}
    for density in (1, 8):
        samples = string_trio(PartConstraints(density=density))
        per_bar[density] = [np.mean([part["notes_per_bar"] for part in measure(codes, ENCODING)["parts"].values()])
                            for codes in samples]
    assert max(per_bar[1]) < min(per_bar[8])


# ---------------------------------------------------------------------- what a sample met
def test_measure_counts_range_crossings_key_and_notes_per_bar():
    codes = np.array([
        *header(VIOLA, CELLO, DRUMS),
        row(RowType.NOTE, 0, 40),  # the prompt's: given
        row(RowType.CONTROL, 0, 60, D24, VIOLA),  # given, sounds on beats 0 and 1
        row(RowType.NOTE, 0, 48),  # under the viola
        row(RowType.NOTE, 1, 62),  # above the viola's C4: a crossing
        row(RowType.NOTE, 2, 85),  # out of range (A5 = 81), C#: out of C major
        row(RowType.NOTE, 3, 61),  # C#, above the viola's new B3: a crossing
        row(RowType.NOTE, 3, 59, instrument=VIOLA),  # under the cello's C#4: a crossing of the viola
        row(RowType.NOTE, 3, 38, instrument=DRUMS),
        [5, 0, 0, 0, 0, 0],
    ])
    met = measure(codes, ENCODING, PartConstraints(key="C:major"), prompt_notes=1)
    assert met == {"bars": 1, "parts": {
        "cello": {"notes": 4, "in_range": 0.75, "crossings": 2, "out_of_key": 0.5, "notes_per_bar": 4.0},
        "viola": {"notes": 1, "in_range": 1.0, "crossings": 1, "out_of_key": 0.0, "notes_per_bar": 1.0},
        "drums": {"notes": 1, "in_range": None, "crossings": None, "out_of_key": None, "notes_per_bar": 1.0},
    }}
    wide = measure(codes, ENCODING, PartConstraints(range_widen=4), prompt_notes=1, end_beats=8)
    assert wide["bars"] == 2 and wide["parts"]["cello"]["in_range"] == 1.0
    assert wide["parts"]["cello"]["out_of_key"] is None and wide["parts"]["cello"]["notes_per_bar"] == 2.0
    assert measure(codes, ENCODING, prompt_notes=1, beats_per_bar=3, max_beats=3)["bars"] == 1  # not 2: cut at 3


# ---------------------------------------------------------------------- the sampler
def string_trio(constraints, model=None, seed=1):
    model = model or tiny_model(encoding=ENCODING)
    prompt = instrument_prompt(["violin", "viola", "cello"], ENCODING)
    return sample(model, prompt, n_samples=8, max_new_rows=60, min_new_rows=40, seed=seed, constraints=constraints)


@pytest.mark.parametrize("marched", [False, True])
def test_a_cello_keeps_to_its_range_and_under_the_viola(marched):
    model = tiny_model(encoding=ENCODING)
    model = march(model) if marched else model
    cellos = 0
    for codes in string_trio(PartConstraints(), model):
        notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
        for note in notes[notes[:, Field.INSTRUMENT] == CELLO]:
            cellos += 1
            assert 36 <= note[Field.PITCH] - 1 <= 81
            tick = (note[Field.BEAT] - 1) * 12 + note[Field.POSITION] - 1
            viola = sounding(notes, tick, VIOLA)
            assert len(viola) == 0 or note[Field.PITCH] - 1 <= viola.min()
        met = measure(codes, ENCODING, PartConstraints(), prompt_notes=0)["parts"]
        assert all(part["in_range"] == 1.0 and part["crossings"] == 0 for part in met.values())
    assert cellos >= 8
    if not marched:  # the same draws without the constraints leave both
        loose = [measure(codes, ENCODING, PartConstraints(), prompt_notes=0)["parts"]
                 for codes in string_trio(PartConstraints(ranges=False, no_crossing=False), model)]
        assert any(part["in_range"] < 1 for parts in loose for part in parts.values())
        assert any(part["crossings"] > 0 for parts in loose for part in parts.values())


def test_a_key_makes_out_of_key_pitches_rarer_with_the_same_seed():
    def share(constraints) -> float:
        met = [measure(codes, ENCODING, PartConstraints(key="D:major"), prompt_notes=0)["parts"]
               for codes in string_trio(constraints)]
        notes = sum(part["notes"] for parts in met for part in parts.values())
        return sum(part["out_of_key"] * part["notes"] for parts in met for part in parts.values()) / notes

    without, weak, strong = (share(PartConstraints(key=key, key_strength=strength))
                             for key, strength in ((None, 2.0), ("D:major", 1.0), ("D:major", 6.0)))
    assert without > 0.3 and strong < weak < without and strong < 0.05


def test_an_empty_band_falls_back_to_the_range_and_shows_as_a_crossing():
    # a given viola sounds G1 through the whole piece: no cello pitch is both in range and under it
    viola = np.array([row(RowType.NOTE, 0, 31, D384, VIOLA)])
    model = tiny_model(encoding=ENCODING)
    for codes in sample(model, instrument_prompt(["cello"], ENCODING), n_samples=4, max_new_rows=20, min_new_rows=20,
                        seed=0, controls=viola, max_beats=30, constraints=PartConstraints()):
        cello = codes[(codes[:, Field.TYPE] == RowType.NOTE)]
        met = measure(codes, ENCODING, PartConstraints())["parts"]["cello"]
        onsets = np.unique((cello[:, Field.BEAT] - 1) * 12 + cello[:, Field.POSITION] - 1)
        assert met["in_range"] == 1.0 and met["crossings"] == len(onsets) > 0


# ---------------------------------------------------------------------- the request and the command
def d_major_melody(signature: bool) -> muspy.Music:
    pitches = [62, 66, 69, 74, 73, 71, 69, 66, 67, 64, 62, 62]
    music = muspy.Music(resolution=12, tempos=[muspy.Tempo(time=0, qpm=100.0)],
                        tracks=[muspy.Track(program=73, notes=[muspy.Note(time=12 * b, pitch=p, duration=12)
                                                               for b, p in enumerate(pitches)])])
    if signature:
        music.key_signatures = [muspy.KeySignature(time=0, root=7, mode="major")]  # says G major
    return music


@pytest.mark.parametrize("signature, key, used", [
    (True, {}, "G:major"), (False, {}, "D:major"), (True, {"key": None}, None), (True, {"key": "a minor"}, "A:minor"),
])
def test_the_key_defaults_to_the_sources_signature_else_its_estimate(signature, key, used):
    request = GenerationRequest(mode="accompaniment", prompt=d_major_melody(signature), keep=("flute",),
                                instruments=("cello",), seed=0, max_new_rows=12, n_samples=2, constraints=key)
    generation = run(tiny_model(encoding=ENCODING), request)
    settings = generation.settings()
    assert settings["constraints"] == key
    assert settings["constraints_used"] == {"ranges": True, "range_widen": 0, "no_crossing": True, "key": used,
                                            "key_strength": 2.0, "density": None}
    assert [list(met["parts"]) for met in settings["constraints_met"]] == [["cello"], ["cello"]]
    for met in settings["constraints_met"]:
        assert met["parts"]["cello"]["in_range"] == 1.0 and met["parts"]["cello"]["crossings"] == 0
        assert met["bars"] == 3  # the kept flute's 12 beats, in bars of 4/4


def test_the_command_takes_the_constraint_flags_into_settings_json(tmp_path, capsys):
    checkpoint = save_model(tiny_model(encoding=ENCODING), tmp_path / "model")
    out = tmp_path / "out"
    assert main(["generate", str(checkpoint), "--mode", "instrument", "--instruments", "viola", "cello",
                 "--range-widen", "2", "--allow-crossing", "--key", "Eb:major", "--key-strength", "3",
                 "--density", "2", "--max-rows", "20", "--seed", "0", "--out", str(out), "--quiet"]) == 0
    run_settings = json.loads((out / "settings.json").read_text())[0]
    assert run_settings["constraints_used"] == {"ranges": True, "range_widen": 2, "no_crossing": False,
                                                "key": "D#:major", "key_strength": 3.0, "density": 2.0}
    assert len(run_settings["constraints_met"]) == 1 and set(run_settings["constraints_met"][0]["parts"]) <= {
        "viola", "cello"}
    assert main(["generate", str(checkpoint), "--no-ranges", "--key", "none", "--max-rows", "5", "--seed", "0",
                 "--out", str(out), "--quiet"]) == 0
    used = json.loads((out / "settings.json").read_text())[1]["constraints_used"]
    assert used["ranges"] is False and used["key"] is None
    assert main(["generate", str(checkpoint), "--range-widen", "99", "--out", str(out)]) == 2
    assert "--range-widen must be an integer from 0 to 48" in capsys.readouterr().err
