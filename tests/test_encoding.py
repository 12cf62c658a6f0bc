"""The tuple encoding: literal arrays, round trips and grammar properties."""

from __future__ import annotations

import json

import muspy
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mmt import Encoding, EncodingError, NoteCol, decode, encode, encode_notes
from mmt.constants import DRUM_PROGRAM, INSTRUMENTS, PROGRAM_INSTRUMENT
from mmt.encoding import describe_rows, grammar_violations, notes_from_music

# Piano: C4 quarter on beat 0, E4 quarter on beat 1, G4 half on beat 2; violin: G5 eighth at beat 0.5.
SCORE = muspy.Music(
    resolution=12,
    tracks=[
        muspy.Track(program=0, notes=[muspy.Note(0, 60, 12), muspy.Note(12, 64, 12), muspy.Note(24, 67, 24)]),
        muspy.Track(program=40, notes=[muspy.Note(6, 79, 6)]),
    ],
)
SCORE_CODES = np.array(
    [
        [1, 0, 0, 0, 0, 0],    # start-of-song
        [2, 0, 0, 0, 0, 1],    # instrument: piano
        [2, 0, 0, 0, 0, 25],   # instrument: violin
        [3, 0, 0, 0, 0, 0],    # start-of-notes
        [4, 1, 1, 61, 12, 1],  # beat 0, position 0, C4, 12 ticks, piano
        [4, 1, 7, 80, 6, 25],  # beat 0, position 6, G5, 6 ticks, violin
        [4, 2, 1, 65, 12, 1],  # beat 1, E4
        [4, 3, 1, 68, 18, 1],  # beat 2, G4, 24 ticks
        [5, 0, 0, 0, 0, 0],    # end-of-song
    ]
)


def test_default_encoding_sizes(encoding):
    assert encoding.dimensions == ("type", "beat", "position", "pitch", "duration", "instrument")
    assert encoding.n_tokens == {
        "type": 6, "beat": 1025, "position": 13, "pitch": 129, "duration": 33, "instrument": 66,
    }
    assert len(encoding.known_durations) == 32
    assert len(INSTRUMENTS) == 65 and INSTRUMENTS[-1] == "drums"
    assert len({n for n in PROGRAM_INSTRUMENT if n}) == 64


def test_n_tokens_follow_the_settings():
    small = Encoding(resolution=4, max_beat=16, known_durations=(1, 2, 4))
    assert small.n_tokens["position"] == 5
    assert small.n_tokens["beat"] == 17
    assert small.n_tokens["duration"] == 4


def test_encode_small_score_literal(encoding):
    np.testing.assert_array_equal(encode(SCORE, encoding), SCORE_CODES)


def test_repeated_short_notes_do_not_overlap_after_rescaling():
    """32nd notes at 480 ticks per beat are 1.5 ticks at 12: onsets and ends round, not durations alone."""
    notes = [muspy.Note(time, 60, 60) for time in (0, 60, 120, 180)]
    music = muspy.Music(resolution=480, tracks=[muspy.Track(program=0, notes=notes)])
    rescaled = notes_from_music(music, 12)
    onset_and_duration = rescaled[:, [NoteCol.POSITION, NoteCol.DURATION]].tolist()
    assert onset_and_duration == [[0, 2], [2, 1], [3, 1], [4, 2]]  # was (0,2),(2,2),(3,2),(4,2): overlapping


def test_encode_rescales_resolution(encoding):
    doubled = muspy.Music(
        resolution=24,
        tracks=[muspy.Track(program=t.program, notes=[muspy.Note(n.time * 2, n.pitch, n.duration * 2) for n in t.notes])
                for t in SCORE.tracks],
    )
    np.testing.assert_array_equal(encode(doubled, encoding), SCORE_CODES)


def test_decode_small_score(encoding):
    music = decode(SCORE_CODES, encoding, tempo=90, velocity=70)
    assert music.resolution == 12
    assert music.tempos[0].qpm == 90
    assert [(t.name, t.program, t.is_drum) for t in music.tracks] == [("piano", 0, False), ("violin", 40, False)]
    assert [(n.time, n.pitch, n.duration, n.velocity) for n in music.tracks[0].notes] == [
        (0, 60, 12, 70), (12, 64, 12, 70), (24, 67, 24, 70),
    ]
    assert [(n.time, n.pitch, n.duration) for n in music.tracks[1].notes] == [(6, 79, 6)]


def test_describe_rows(encoding):
    rows = describe_rows(SCORE_CODES[[0, 2, 5]], encoding)
    assert rows[0] == {"type": "start-of-song", "beat": "", "position": "", "pitch": "", "duration": "",
                       "instrument": ""}
    assert rows[1]["instrument"] == "violin"
    assert rows[2] == {"type": "note", "beat": 0, "position": 6, "pitch": 79, "duration": 6, "instrument": "violin"}


def test_drums_and_grouped_programs(encoding):
    notes = np.array([[0, 0, 36, 3, DRUM_PROGRAM], [0, 0, 60, 12, 44], [0, 0, 62, 12, 49], [1, 0, 70, 12, 120]])
    codes = encode_notes(notes, encoding)
    # drums = 65, strings (programs 44 and 49) = 29; program 120 (a sound effect) is not modelled.
    np.testing.assert_array_equal(
        codes,
        [[1, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 29], [2, 0, 0, 0, 0, 65], [3, 0, 0, 0, 0, 0],
         [4, 1, 1, 37, 3, 65], [4, 1, 1, 61, 12, 29], [4, 1, 1, 63, 12, 29], [5, 0, 0, 0, 0, 0]],
    )
    music = decode(codes, encoding)
    assert [(t.name, t.program, t.is_drum) for t in music.tracks] == [("strings", 48, False), ("drums", 0, True)]


def test_duration_snapping_literal(encoding):
    ticks = np.array([1, 12, 13, 14, 17, 19, 22, 23, 100, 383, 500])
    known = np.array(encoding.known_durations)
    # 13 -> 12, 14 -> 15 (nearer), 17 -> 16 (tie with 18: shorter), 19 -> 18 (tie with 20),
    # 22 -> 21, 23 -> 24, 100 -> 96, 383 -> 384, 500 -> 384
    assert known[encoding.snap_durations(ticks) - 1].tolist() == [1, 12, 12, 15, 16, 18, 21, 24, 96, 384, 384]


def test_encode_drops_notes_it_cannot_place(encoding):
    notes = np.array([[2000, 0, 60, 12, 0], [0, 0, 200, 12, 0], [0, 0, 60, 12, 0], [0, 0, 60, 12, 0]])
    codes = encode_notes(notes, encoding)
    assert codes.tolist() == [[1, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 1], [3, 0, 0, 0, 0, 0],
                              [4, 1, 1, 61, 12, 1], [5, 0, 0, 0, 0, 0]]


def test_empty_music_encodes_to_frame(encoding):
    assert encode(muspy.Music(resolution=24), encoding).tolist() == [
        [1, 0, 0, 0, 0, 0], [3, 0, 0, 0, 0, 0], [5, 0, 0, 0, 0, 0]]


def test_decode_skips_rows_it_cannot_place(encoding):
    codes = np.array([
        [1, 0, 0, 0, 0, 0],
        [4, 1, 1, 61, 12, 1],    # note before start-of-notes: skipped
        [2, 0, 0, 0, 0, 1],
        [3, 0, 0, 0, 0, 0],
        [4, 0, 1, 61, 12, 1],    # undefined beat: skipped
        [4, 1, 1, 61, 99, 1],    # duration out of range: skipped
        [4, 1, 1, -3, 12, 1],    # negative pitch: skipped
        [4, 2, 1, 61, 12, 1],    # kept
        [5, 0, 0, 0, 0, 0],
        [4, 3, 1, 61, 12, 1],    # after end-of-song: skipped
    ])
    music = decode(codes, encoding)
    assert [(n.time, n.pitch, n.duration) for t in music.tracks for n in t.notes] == [(12, 60, 12)]


def test_decode_rejects_wrong_width(encoding):
    with pytest.raises(ValueError, match=r"shape \(L, 6\)"):
        decode(np.zeros((3, 5), dtype=int), encoding)


notes_strategy = arrays(
    np.int64,
    st.tuples(st.integers(0, 40), st.just(5)),
    elements=st.integers(0, 200),
).map(lambda a: np.column_stack([a[:, 0] % 64, a[:, 1] % 12, a[:, 2] % 128, a[:, 3] % 200 + 1,
                                 a[:, 4] % (DRUM_PROGRAM + 1)]))


@settings(max_examples=150, deadline=None)
@given(notes_strategy)
def test_encoded_sequences_follow_the_grammar(notes):
    encoding = Encoding()
    codes = encode_notes(notes, encoding)
    assert grammar_violations(codes, encoding) == []
    body = codes[codes[:, 0] == 4]
    # Notes are sorted by the whole row (beat, position, pitch, duration, instrument).
    assert [tuple(r) for r in body] == sorted(tuple(r) for r in body)
    kept = encoding.program_codes[notes[:, NoteCol.PROGRAM]] > 0
    assert len(body) == len({(b, p, q, int(encoding.snap_durations(d)), int(encoding.program_codes[g]))
                             for b, p, q, d, g in notes[kept]})


@settings(max_examples=200, deadline=None)
@given(arrays(np.int64, st.tuples(st.integers(0, 60), st.just(6)), elements=st.integers(-5, 1100)))
def test_decode_never_raises_on_random_rows(codes):
    music = decode(codes, Encoding())
    assert isinstance(music, muspy.Music)


def test_grammar_violations_detects_problems(encoding):
    bad = SCORE_CODES.copy()
    bad[[6, 7]] = bad[[7, 6]]  # beat 2 before beat 1
    assert grammar_violations(bad, encoding) == ["note onsets go backwards"]
    undeclared = SCORE_CODES.copy()
    undeclared[5, 5] = 3
    assert grammar_violations(undeclared, encoding) == ["a note uses an instrument not declared in the header"]
    assert grammar_violations(SCORE_CODES[:-1], encoding) == ["no end-of-song row"]
    assert grammar_violations(SCORE_CODES[:-1], encoding, complete=False) == []
    assert grammar_violations(SCORE_CODES[1:], encoding) == ["the first row is not start-of-song"]


def test_encoding_json_round_trip(tmp_path):
    original = Encoding(resolution=24, max_beat=256)
    path = original.save(tmp_path / "encoding.json")
    assert Encoding.load(path) == original
    assert Encoding.load(path).n_tokens["position"] == 25


def test_encoding_load_rejects_unknown_key(tmp_path):
    data = Encoding().to_dict()
    data["tempo"] = 120
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(EncodingError, match=r"bad.json: unknown encoding key\(s\): tempo"):
        Encoding.load(path)


def test_encoding_load_rejects_missing_key_and_bad_json(tmp_path):
    data = Encoding().to_dict()
    del data["max_beat"]
    path = tmp_path / "missing.json"
    path.write_text(json.dumps(data))
    with pytest.raises(EncodingError, match=r"missing.json: missing encoding key\(s\): max_beat"):
        Encoding.load(path)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(EncodingError, match="broken.json: not valid JSON"):
        Encoding.load(broken)
    with pytest.raises(EncodingError, match="nowhere.json: no such encoding file"):
        Encoding.load(tmp_path / "nowhere.json")


def test_encoding_validates_values():
    with pytest.raises(EncodingError, match="resolution must be >= 1"):
        Encoding(resolution=0)
    with pytest.raises(EncodingError, match="strictly increasing"):
        Encoding(known_durations=(1, 3, 2))


def test_instrument_code_lookup(encoding):
    assert encoding.instrument_code("violin") == 25
    assert encoding.instrument_code(42) == 27
    assert encoding.instrument_code(DRUM_PROGRAM) == 65
    with pytest.raises(EncodingError, match="unknown instrument 'kazoo'"):
        encoding.instrument_code("kazoo")
    with pytest.raises(EncodingError, match="program 120 maps to no instrument"):
        encoding.instrument_code(120)


def test_decode_keeps_the_first_of_notes_that_share_onset_pitch_and_instrument(encoding):
    codes = np.array([
        [1, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 25], [3, 0, 0, 0, 0, 0],
        [4, 1, 1, 61, 12, 1], [4, 1, 1, 61, 3, 1],  # the same key struck again: dropped
        [4, 1, 1, 61, 12, 25],  # the same pitch on another instrument: kept
        [4, 1, 2, 61, 12, 1], [5, 0, 0, 0, 0, 0],
    ])
    music = decode(codes, encoding)
    assert [[(n.time, n.pitch, n.duration) for n in track.notes] for track in music.tracks] == [
        [(0, 60, 12), (1, 60, 12)], [(0, 60, 12)]]


@pytest.mark.parametrize("name, code", [
    ("violin", 25), ("Violin", 25), ("  CELLO ", 27), ("french horn", 38), ("French_Horn", 38), ("guitar", 19),
    ("voice", 33), ("double bass", 28), ("drum kit", 65), (40, 25),
])
def test_instrument_names_are_case_insensitive_and_know_common_aliases(encoding, name, code):
    assert encoding.instrument_code(name) == code


@pytest.mark.parametrize("name, message", [
    ("cellp", "unknown instrument 'cellp'; did you mean cello? (all names: mmt instruments)"),
    ("violn", "unknown instrument 'violn'; did you mean violin, viola or violoncello? (all names: mmt instruments)"),
    ("gitar", "unknown instrument 'gitar'; did you mean guitar or sitar? (all names: mmt instruments)"),
    ("zzz", "unknown instrument 'zzz' (all names: mmt instruments)"),
])
def test_an_unknown_instrument_names_up_to_three_close_names_or_aliases(encoding, name, message):
    with pytest.raises(EncodingError) as error:
        encoding.instrument_code(name)
    assert str(error.value) == message


def test_aliases_of_instruments_an_encoding_lacks_are_not_offered():
    small = Encoding(instruments=("piano", "drums"), instrument_programs=(0, 0),
                     program_instrument=("piano",) * 8 + (None,) * 120)
    assert small.instrument_aliases == {"grand-piano": "piano", "keyboard": "piano", "keys": "piano", "drum": "drums",
                                        "drum-kit": "drums", "drumkit": "drums", "percussion": "drums"}
    with pytest.raises(EncodingError) as error:
        small.instrument_code("violoncelo")  # violoncello is an alias of cello, which it lacks
    assert str(error.value) == "unknown instrument 'violoncelo' (all names: mmt instruments)"


def test_the_fiddle_program_plays_the_violin_as_in_the_original_grouping(encoding):
    assert encoding.program_instrument[110] == "violin" and encoding.instrument_code(110) == 25
    music = muspy.Music(resolution=12, tracks=[muspy.Track(program=110, notes=[muspy.Note(0, 76, 12)])])
    back = decode(encode(music, encoding), encoding)
    assert [(t.program, t.name, len(t.notes)) for t in back.tracks] == [(40, "violin", 1)]


def test_mmt_instruments_lists_every_name_with_its_programs_and_aliases(capsys):
    from mmt_app.cli import main

    assert main(["instruments"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(INSTRUMENTS) == 65
    assert lines[0] == "piano                programs 0-3  aliases grand-piano, keyboard, keys"
    assert lines[24] == "violin               programs 40, 110  aliases fiddle"
    assert lines[26] == "cello                programs 42  aliases violoncello"
    assert lines[-1] == ("drums                programs any on the drum channel (10)  "
                         "aliases drum, drum-kit, drumkit, percussion")
