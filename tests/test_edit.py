"""Edits: regions (parts x bars) rewritten, every other note written back from the source as it was."""

from __future__ import annotations

import muspy
import pytest

import mmt
from mmt import Encoding, GenerationRequest
from mmt.edit import Region, parse_region, piece_bars, plan_region
from mmt.errors import GenerationError
from mmt.meter import Meter
from mmt.request import MODES, run
from tests.factories import tiny_model

ANTICIPATING = Encoding(anticipation=2.0)
TICKS = 480
BAR = 3 * TICKS   # 3/4


def trio(n_bars: int = 8) -> muspy.Music:
    """Violin, viola and cello in 3/4 at 90 bpm, 480 ticks per beat, velocities other than the decoder's 64."""
    beats = 3 * n_bars
    return muspy.Music(
        resolution=TICKS, tempos=[muspy.Tempo(0, 90.0)], time_signatures=[muspy.TimeSignature(0, 3, 4)],
        key_signatures=[muspy.KeySignature(0, root=2, mode="major", fifths=2)],
        tracks=[
            muspy.Track(program=40, name="Violin I", notes=[muspy.Note(TICKS * b, 74 + b % 5, 470, 80 + b % 7)
                                                            for b in range(beats)]),
            muspy.Track(program=41, name="Viola", notes=[muspy.Note(TICKS * b + 3, 62 + b % 3, 477, 70)
                                                         for b in range(beats)]),
            muspy.Track(program=42, name="Cello", notes=[muspy.Note(BAR * b + 7, 48 + b % 4, BAR - 11, 75)
                                                         for b in range(n_bars)]),
        ])


def notes_of(music, name: str) -> list[tuple]:
    track = next(t for t in music.tracks if t.name == name)
    return [(n.time, n.pitch, n.duration, n.velocity) for n in track.notes]


@pytest.mark.parametrize("text, region", [
    ("cello@5-8", Region(("cello",), 5, 8)),
    ("flute@1-", Region(("flute",), 1, None)),
    ("ALL@9-12", Region(("all",), 9, 12)),
    ("violin, viola@3", Region(("violin", "viola"), 3, 3)),
    (("cello", 2, None), Region(("cello",), 2, None)),
])
def test_regions_are_parsed_from_their_spelling(text, region):
    assert parse_region(text) == region
    assert parse_region(str(region)) == region


@pytest.mark.parametrize("text, message", [
    ("cello", "edit must look like PARTS@BARS (cello@5-8, flute@1-, all@9-12), got 'cello'"),
    ("cello@0-2", "edit bars must be whole bars with 1 <= first <= last, got 'cello@0-2'"),
    ("cello@5-3", "edit bars must be whole bars with 1 <= first <= last, got 'cello@5-3'"),
    ("all,cello@1-2", "edit: 'all' stands alone (every part of the piece), got 'all,cello@1-2'"),
])
def test_a_bad_region_says_what_is_wrong(text, message):
    with pytest.raises(GenerationError) as error:
        parse_region(text)
    assert str(error.value) == message


def test_an_eight_bar_melody_in_three_four_is_24_beats_and_8_bars():
    # its last note starts on beat 21 and lasts 3 beats
    melody = muspy.Music(resolution=TICKS, time_signatures=[muspy.TimeSignature(0, 3, 4)], tracks=[
        muspy.Track(program=73, notes=[muspy.Note(TICKS * b, 72 + b % 5, TICKS, 80) for b in range(21)]
                    + [muspy.Note(TICKS * 21, 74, 3 * TICKS, 80)])])
    assert piece_bars(Meter.from_music(melody), 24.0) == 8
    prompt = MODES["continuation"].build(GenerationRequest(mode="continuation", prompt=melody, bars=16), Encoding())
    assert (prompt.start_beats, prompt.end_beats, prompt.plan.region) == (24.0, 72.0, Region(("all",), 9, 24))


def test_kept_notes_come_back_note_for_note_and_new_ones_lie_in_their_region(tmp_path):
    source = mmt.write_midi(tmp_path / "trio.mid", trio())
    generation = run(tiny_model(encoding=ANTICIPATING, max_seq_len=256),
                     GenerationRequest(mode="edit", prompt=str(source), edit=("cello@3-4",), n_samples=2, seed=0))
    paths = generation.write(tmp_path / "out")
    original = mmt.read_music(source)
    for path in paths:
        back = mmt.read_music(path["midi"])
        assert back.resolution == TICKS
        assert [(t.time, round(t.qpm, 2)) for t in back.tempos] == [(0, 90.0)]
        assert [(t.time, t.numerator, t.denominator) for t in back.time_signatures] == [(0, 3, 4)]
        assert [(k.time, k.root, k.mode) for k in back.key_signatures] == [(0, 2, "major")]
        assert [t.name for t in back.tracks] == ["Violin I", "Viola", "Cello"]
        for name in ("Violin I", "Viola"):
            assert notes_of(back, name) == notes_of(original, name)
        cello = notes_of(back, "Cello")
        outside = [n for n in cello if not 2 * BAR <= n[0] < 4 * BAR]
        assert outside == [n for n in notes_of(original, "Cello") if not 2 * BAR <= n[0] < 4 * BAR]
        new = [n for n in cello if 2 * BAR <= n[0] < 4 * BAR]
        assert len(new) >= 1 and all(n[3] == 64 for n in new)   # written by the model, at the decoder's velocity


def test_a_new_part_over_the_whole_piece_leaves_the_others_alone(tmp_path):
    source = trio(4)
    generation = run(tiny_model(encoding=ANTICIPATING, max_seq_len=256),
                     GenerationRequest(mode="edit", prompt=source, edit=("flute@1-",), seed=1))
    (piece,) = generation.pieces
    assert [t.name for t in piece.tracks] == ["Violin I", "Viola", "Cello", "flute"]
    for name in ("Violin I", "Viola", "Cello"):
        assert notes_of(piece, name) == notes_of(source, name)
    flute = notes_of(piece, "flute")
    assert len(flute) >= 1 and all(0 <= n[0] < 4 * BAR for n in flute)
    assert generation.prompt.plan.write == [Encoding().instrument_code("flute")]


def test_a_continuation_of_16_bars_writes_to_its_last_bar():
    # an untrained model jumps ahead and would end at once; the region holds it to bars 9-24
    melody = muspy.Music(resolution=TICKS, time_signatures=[muspy.TimeSignature(0, 3, 4)], tracks=[
        muspy.Track(program=73, notes=[muspy.Note(TICKS * b, 72 + b % 5, TICKS, 80) for b in range(24)])])
    generation = run(tiny_model(max_seq_len=512), GenerationRequest(mode="continuation", prompt=melody, bars=16,
                                                                   n_samples=3, seed=0))
    for piece in generation.pieces:
        onsets = [n.time for t in piece.tracks for n in t.notes]
        assert 69 * TICKS <= max(onsets) < 72 * TICKS   # bar 24 of 3/4 starts on beat 69


@pytest.mark.parametrize("preset, spelled", [
    (dict(mode="infill", bars_to_fill="3-4"), ("all@3-4",)),
    (dict(mode="accompaniment", keep=("violin",), instruments=("cello",)), ("cello@1-",)),
])
def test_each_preset_is_its_edit_spelling(preset, spelled):
    source, encoding = trio(), ANTICIPATING
    kept_violin = trio()
    kept_violin.tracks = kept_violin.tracks[:1]
    spelled_source = kept_violin if preset["mode"] == "accompaniment" else source
    a = MODES[preset["mode"]].build(GenerationRequest(prompt=source, **preset), encoding)
    b = MODES["edit"].build(GenerationRequest(mode="edit", prompt=spelled_source, edit=spelled), encoding)
    assert a.plan.region == b.plan.region
    assert (a.plan.prompt.tolist(), a.plan.write, a.start_beats, a.end_beats) == (
        b.plan.prompt.tolist(), b.plan.write, b.start_beats, b.end_beats)
    assert a.controls.tolist() == b.controls.tolist()


def test_a_continuation_preset_is_the_edit_of_the_cut_piece():
    source = trio()
    a = MODES["continuation"].build(GenerationRequest(mode="continuation", prompt=source, prompt_bars=4, bars=2),
                                    Encoding())
    assert (a.plan.region, a.start_beats, a.end_beats, a.controls) == (Region(("all",), 5, 6), 12.0, 18.0, None)
    assert sum(len(t.notes) for t in a.music.tracks) == 12 + 12 + 4   # the first 4 bars


def test_regions_apply_in_turn():
    source = trio(4)
    generation = run(tiny_model(encoding=ANTICIPATING, max_seq_len=256),
                     GenerationRequest(mode="edit", prompt=source, edit=("cello@2", "viola@4"), seed=3))
    (piece,) = generation.pieces
    assert notes_of(piece, "Violin I") == notes_of(source, "Violin I")
    for name, bar in (("Cello", 2), ("Viola", 4)):
        changed = {n for n in notes_of(piece, name)} ^ {n for n in notes_of(source, name)}
        assert changed and all((bar - 1) * BAR <= n[0] < bar * BAR for n in changed)


def test_an_unknown_part_is_an_error_naming_the_edit():
    with pytest.raises(GenerationError, match=r"^edit kazoo@1-2: 'kazoo' is no part of the piece \(its parts: "
                                              r"Violin I, Viola, Cello\); unknown instrument 'kazoo'"):
        plan_region(trio(), parse_region("kazoo@1-2"), Encoding())


def test_the_command_line_edits_a_file_and_records_the_regions(tmp_path, capsys):
    import json

    from mmt.checkpoint import save_model
    from mmt_app.cli import main

    model = save_model(tiny_model(encoding=ANTICIPATING, max_seq_len=256), tmp_path / "model")
    source = mmt.write_midi(tmp_path / "trio.mid", trio(4))
    assert main(["generate", str(model), "--prompt", str(source), "--edit", "cello@2-3", "--edit", "flute@4-",
                 "--seed", "0", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    (run_settings,) = json.loads((tmp_path / "out" / "settings.json").read_text())
    assert (run_settings["mode"], run_settings["edit"], run_settings["samples"]) == (
        "edit", ["cello@2-3", "flute@4-"], ["edit-000"])
    back = mmt.read_music(tmp_path / "out" / "edit-000.mid")
    assert [t.name for t in back.tracks] == ["Violin I", "Viola", "Cello", "flute"]
    assert notes_of(back, "Violin I") == notes_of(mmt.read_music(source), "Violin I")
    assert main(["generate", str(model), "--prompt", str(source), "--edit", "cello5-8",
                 "--out", str(tmp_path / "out")]) == 2
    assert ("mmt generate: error: --edit must look like PARTS@BARS (cello@5-8, flute@1-, all@9-12), got 'cello5-8'"
            in capsys.readouterr().err)


def test_a_part_is_named_by_its_track_where_parts_share_an_instrument():
    # a chorale: four tracks of one instrument (voices), told apart by their names
    voices = [("Soprano", 72), ("Alto", 67), ("Tenor", 60), ("Bass", 48)]
    chorale = muspy.Music(resolution=TICKS, time_signatures=[muspy.TimeSignature(0, 4, 4)], tracks=[
        muspy.Track(program=52, name=name, notes=[muspy.Note(TICKS * b, pitch + b % 3, TICKS, 90) for b in range(16)])
        for name, pitch in voices])
    generation = run(tiny_model(encoding=ANTICIPATING, max_seq_len=256),
                     GenerationRequest(mode="edit", prompt=chorale, edit=("tenor@2-3",), seed=2))
    assert (generation.prompt.plan.tracks, generation.prompt.plan.write) == ([2], [Encoding().instrument_code("voices")])
    (piece,) = generation.pieces
    assert [t.name for t in piece.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    for name in ("Soprano", "Alto", "Bass"):
        assert notes_of(piece, name) == notes_of(chorale, name)
    tenor = notes_of(piece, "Tenor")
    assert [n for n in tenor if not 4 * TICKS <= n[0] < 12 * TICKS] == [
        n for n in notes_of(chorale, "Tenor") if not 4 * TICKS <= n[0] < 12 * TICKS]
    assert any(n[3] == 64 and 4 * TICKS <= n[0] < 12 * TICKS for n in tenor)


def test_new_notes_are_fitted_around_kept_notes_of_their_pitch():
    from mmt.edit import _settled

    kept = [muspy.Note(100, 60, 50, 80), muspy.Note(300, 62, 10, 80)]
    new = [muspy.Note(50, 60, 200, 64), muspy.Note(100, 60, 30, 64), muspy.Note(200, 62, 50, 64)]
    settled = _settled(kept + new, {id(note) for note in new})
    # the first new 60 ends where the kept 60 starts; the new 60 starting with it is a doubling, left out
    assert [(n.time, n.pitch, n.duration, n.velocity) for n in settled] == [
        (50, 60, 50, 64), (100, 60, 50, 80), (200, 62, 50, 64), (300, 62, 10, 80)]
