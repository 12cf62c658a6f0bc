"""Control rows: the interleaving rule, training selection, and the accompaniment and infill modes."""

from __future__ import annotations

import warnings

import muspy
import numpy as np
import pytest
import torch

import mmt
from mmt import Encoding, GenerationError, GenerationRequest
from mmt.constants import Field, RowType
from mmt.augment import region_layout, select_controls, select_region
from mmt.config import Augmentation
from mmt.data import MusicDataset, crop_codes, make_item
from mmt.encoding import anticipate, decode, encode_notes, grammar_violations, onsets, song_with_controls
from mmt.errors import GenerationWarning
from mmt.request import run
from mmt.sampling import sample
from tests.factories import march, tiny_model, write_prepared

ANTICIPATING = Encoding(anticipation=2.0)


def note_rows(beats, pitch=60, instrument=1, row_type=RowType.NOTE):
    """Rows of quarter notes (resolution 12) at `beats`."""
    rows = np.zeros((len(beats), 6), dtype=np.int64)
    rows[:, Field.TYPE] = row_type
    rows[:, Field.BEAT] = np.asarray(beats) + 1
    rows[:, Field.POSITION] = 1
    rows[:, Field.PITCH] = pitch + 1
    rows[:, Field.DURATION] = 12
    rows[:, Field.INSTRUMENT] = instrument
    return rows


def duet(n_bars: int = 8) -> muspy.Music:
    """A violin melody over a cello bass in 4/4, quarter notes and half notes."""
    violin = [muspy.Note(time=12 * b, pitch=72 + b % 5, duration=12, velocity=64) for b in range(4 * n_bars)]
    cello = [muspy.Note(time=24 * b, pitch=48 + b % 3, duration=24, velocity=64) for b in range(2 * n_bars)]
    return muspy.Music(resolution=12, tempos=[muspy.Tempo(time=0, qpm=100.0)],
                       time_signatures=[muspy.TimeSignature(time=0, numerator=4, denominator=4)],
                       tracks=[muspy.Track(program=40, notes=violin), muspy.Track(program=42, notes=cello)])


def midi_notes(path, program):
    """(onset beats, pitch, duration beats) of a MIDI file's notes of one program, sorted."""
    music = mmt.read_music(path)
    found = [(n.time / music.resolution, n.pitch, n.duration / music.resolution)
             for track in music.tracks if track.program == program and not track.is_drum for n in track.notes]
    return sorted(found)


# ---------------------------------------------------------------------- the encoding
def test_control_rows_follow_the_interleaving_rule():
    # resolution 12, interval 2 beats: a control at beat c is due once a note reaches beat c - 2
    notes = note_rows([0, 1, 4])
    controls = note_rows([1, 3, 7], pitch=50, row_type=RowType.CONTROL)
    rows, left = anticipate(notes, controls, resolution=12, interval_ticks=24)
    assert rows[:, [Field.TYPE, Field.BEAT]].tolist() == [
        [6, 2],  # control at beat 1: due at beat -1, before every note
        [4, 1],  # note at beat 0
        [4, 2],  # note at beat 1: reaches 3 - 2, so the control at beat 3 follows it
        [6, 4],
        [4, 5],  # note at beat 4
    ]
    assert left[:, Field.BEAT].tolist() == [8]  # due at beat 5: no note reaches it
    # interval 0: each control follows the first note at or after its own time
    rows, left = anticipate(notes, controls, resolution=12, interval_ticks=0)
    assert rows[:, [Field.TYPE, Field.BEAT]].tolist() == [[4, 1], [4, 2], [6, 2], [4, 5], [6, 4]]
    assert left[:, Field.BEAT].tolist() == [8]


def test_a_song_with_controls_has_them_interleaved_and_left_over_before_its_end():
    song = encode_notes(np.array([[0, 0, 60, 12, 0], [1, 0, 62, 12, 0], [1, 0, 79, 6, 40], [6, 0, 81, 6, 40]]),
                        ANTICIPATING)
    is_violin = song[song[:, Field.TYPE] == RowType.NOTE, Field.INSTRUMENT] == 25
    codes = song_with_controls(song, is_violin, ANTICIPATING, header=np.array([1]))
    assert codes.tolist() == [
        [1, 0, 0, 0, 0, 0],
        [2, 0, 0, 0, 0, 1],  # the header declares what the model writes: piano
        [3, 0, 0, 0, 0, 0],
        [6, 2, 1, 80, 6, 25],  # violin at beat 1, due at -1
        [4, 1, 1, 61, 12, 1],
        [4, 2, 1, 63, 12, 1],
        [6, 7, 1, 82, 6, 25],  # violin at beat 6, due at 4: no note reaches it, so last
        [5, 0, 0, 0, 0, 0],
    ]
    assert grammar_violations(codes, ANTICIPATING) == []
    assert ANTICIPATING.n_tokens["type"] == 7 and Encoding().n_tokens["type"] == 6


def test_an_encoding_file_from_before_controls_loads_without_them(tmp_path):
    data = Encoding().to_dict()
    del data["anticipation"]
    assert Encoding.from_dict(data) == Encoding()
    assert Encoding.from_dict(data).knows_controls is False
    ANTICIPATING.save(tmp_path / "encoding.json")
    assert Encoding.load(tmp_path / "encoding.json").anticipation == 2.0
    with pytest.raises(mmt.encoding.EncodingError, match="anticipation must be a number of beats >= 0"):
        Encoding(anticipation=-1)


def test_decode_plays_control_rows_as_notes():
    codes = np.vstack([[[1, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 1], [3, 0, 0, 0, 0, 0]],
                       note_rows([0]), note_rows([1], pitch=50, instrument=25, row_type=RowType.CONTROL),
                       [[5, 0, 0, 0, 0, 0]]])
    music = decode(codes, ANTICIPATING)
    assert [(t.name, [(n.time, n.pitch) for n in t.notes]) for t in music.tracks] == [
        ("piano", [(0, 60)]), ("violin", [(12, 50)])]


def test_crop_keeps_control_rows_and_the_header_of_the_notes_kept():
    codes = np.vstack([[[1, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], [3, 0, 0, 0, 0, 0]],
                       note_rows([0], row_type=RowType.CONTROL, instrument=25), note_rows([0]),
                       note_rows([1], instrument=2), [[5, 0, 0, 0, 0, 0]]])
    cropped = crop_codes(codes, 6)
    assert cropped[:, [Field.TYPE, Field.INSTRUMENT]].tolist() == [[1, 0], [2, 1], [3, 0], [6, 25], [4, 1]]


# ---------------------------------------------------------------------- training selection
def test_control_selection_is_drawn_from_the_seed():
    song = encode_notes(np.array([[b, 0, 60 + b % 7, 12, 0] for b in range(16)]
                                 + [[b, 6, 72 + b % 5, 6, 40] for b in range(0, 16, 2)]), ANTICIPATING)
    given, header, kind = select_controls(song, ANTICIPATING, np.random.default_rng(14))
    assert kind == "instruments"
    assert header.tolist() == [1]  # the piano is written; the violin is given
    notes = song[song[:, Field.TYPE] == RowType.NOTE]
    assert np.array_equal(given, notes[:, Field.INSTRUMENT] == 25)
    given, header, kind = select_controls(song, ANTICIPATING, np.random.default_rng(0))
    assert kind == "suffix" and header.tolist() == [1, 25]  # everything from beat 10 on is given
    assert onsets(notes[given], 12).tolist() == [120, 126, 132, 144, 150, 156, 168, 174, 180]
    given, header, kind = select_controls(song, ANTICIPATING, np.random.default_rng(1))
    assert kind == "spans" and onsets(notes[given], 12).tolist() == [60, 72, 78, 84, 96, 102, 108]
    again = select_controls(song, ANTICIPATING, np.random.default_rng(1))
    assert np.array_equal(again[0], given)


def test_the_dataset_draws_the_same_controls_for_the_same_seed(tmp_path):
    pieces = {f"p{i}": np.array([[b, 0, 60 + (b + i) % 7, 12, 0] for b in range(24)]
                                + [[b, 0, 72 + b % 5, 24, 40] for b in range(0, 24, 2)]) for i in range(6)}
    root = write_prepared(tmp_path / "data", pieces, {"train": list(pieces)})

    def items(seed):
        ds = MusicDataset(root, "train", ANTICIPATING, 64, augment=Augmentation(controls=1.0), seed=seed)
        return [ds[i] for i in range(len(ds))]

    first, second, other = items(0), items(0), items(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not all(len(a) == len(b) and np.array_equal(a, b) for a, b in zip(first, other))
    assert [int((item[:, Field.TYPE] == RowType.CONTROL).sum()) for item in first] == [2, 0, 8, 24, 9, 3]
    assert all(grammar_violations(item, ANTICIPATING, complete=False) == [] for item in first)
    with pytest.raises(mmt.prepared.DataError, match="needs an encoding with control rows"):
        MusicDataset(root, "train", Encoding(), 64, augment=Augmentation(controls=0.5))


def test_without_controls_items_are_as_before():
    notes = np.array([[b, 0, 60 + b % 7, 12, 0] for b in range(8)])
    for seed in range(3):
        plain = make_item(notes, Encoding(), 32, rng=np.random.default_rng(seed))
        assert np.array_equal(plain, make_item(notes, ANTICIPATING, 32, rng=np.random.default_rng(seed),
                                               augmentation=Augmentation(controls=0.0)))


# a trio of 24 beats (8 bars of 3/4): piano (1) on every beat, violin (25) every 2, cello (27) every 3
TRIO = encode_notes(np.array([[b, 0, 60 + b % 7, 12, 0] for b in range(24)]
                             + [[b, 0, 72, 24, 40] for b in range(0, 24, 2)]
                             + [[b, 0, 48, 36, 42] for b in range(0, 24, 3)]), ANTICIPATING)
TRIO_NOTES = TRIO[TRIO[:, Field.TYPE] == RowType.NOTE]
THREE_FOUR = np.arange(0, 24 * 12, 36)  # its bar lines in ticks


def beats_of(rows, instrument):
    return (onsets(rows[rows[:, Field.INSTRUMENT] == instrument], 12) // 12).tolist()


def test_a_region_writes_some_parts_over_whole_bars_and_gives_every_other_note():
    given, header, kind = select_region(TRIO_NOTES, 12, np.random.default_rng(6), THREE_FOUR)
    assert kind == "regions"
    assert header.tolist() == [1, 25, 27]  # the written piano and violin, and every part playing before
    written = TRIO_NOTES[~given]
    # bars 5-7 (beats 12-20): the piano and the violin are written; before them every note is a prompt note
    assert beats_of(written, 1) == list(range(21))
    assert beats_of(written, 25) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert beats_of(written, 27) == [0, 3, 6, 9]
    # given: the cello inside the span, and everything from bar 8 on
    assert beats_of(TRIO_NOTES[given], 1) == [21, 22, 23]
    assert beats_of(TRIO_NOTES[given], 25) == [22]
    assert beats_of(TRIO_NOTES[given], 27) == [12, 15, 18, 21]
    # on beats without bars: a span of 4..16 beats from the beat of a drawn note (beats 2-8 here)
    given, header, kind = select_region(TRIO_NOTES, 12, np.random.default_rng(2))
    assert kind == "regions" and header.tolist() == [1, 25, 27]
    assert beats_of(TRIO_NOTES[~given], 27) == [0, 3, 6]  # the cello is written
    assert beats_of(TRIO_NOTES[~given], 1) == [0, 1] and beats_of(TRIO_NOTES[~given], 25) == [0]
    assert beats_of(TRIO_NOTES[given], 27) == [9, 12, 15, 18, 21]


def test_a_new_part_is_written_over_the_given_others():
    # from the start: only the written part is declared, as accompaniment declares it
    given, header, kind = select_region(TRIO_NOTES, 12, np.random.default_rng(34))
    assert kind == "new_part" and header.tolist() == [1]
    assert np.array_equal(given, TRIO_NOTES[:, Field.INSTRUMENT] != 1)
    # from a bar line (bar 4) to the end: the bars before it are prompt notes of every part
    given, header, kind = select_region(TRIO_NOTES, 12, np.random.default_rng(11), THREE_FOUR)
    assert kind == "new_part" and header.tolist() == [1, 25, 27]
    assert beats_of(TRIO_NOTES[~given], 27) == [0, 3, 6, 9, 12, 15, 18, 21]
    assert beats_of(TRIO_NOTES[~given], 1) == list(range(9))
    assert beats_of(TRIO_NOTES[~given], 25) == [0, 2, 4, 6, 8]


def test_a_region_layout_is_what_an_edit_of_given_parts_and_bars_asks():
    # the cello over bars 3-4 of 3/4 (beats 6-11)
    given, header = region_layout(TRIO_NOTES, 12, 6 * 12, 12 * 12, [27])
    assert header.tolist() == [1, 25, 27]
    assert beats_of(TRIO_NOTES[~given], 27) == [0, 3, 6, 9]
    assert beats_of(TRIO_NOTES[~given], 1) == [0, 1, 2, 3, 4, 5] and beats_of(TRIO_NOTES[~given], 25) == [0, 2, 4]
    # a flute added from bar 3 on: every note from there is given, the header declares the flute too
    flute = ANTICIPATING.instrument_code("flute")
    given, header = region_layout(TRIO_NOTES, 12, 6 * 12, 24 * 12, [flute])
    assert header.tolist() == [1, 25, 27, flute]
    assert np.array_equal(given, onsets(TRIO_NOTES, 12) >= 6 * 12)
    # every part over bars 3-4: infilling's layout
    given, header = region_layout(TRIO_NOTES, 12, 6 * 12, 12 * 12, [1, 25, 27])
    assert header.tolist() == [1, 25, 27] and (onsets(TRIO_NOTES[given], 12) >= 12 * 12).all()
    assert int(given.sum()) == 22


def test_regions_are_drawn_only_with_their_share_and_two_parts():
    # a share of 0 draws what was drawn before regions existed (the literal draws above)
    for seed in range(20):
        before = select_controls(TRIO, ANTICIPATING, np.random.default_rng(seed))
        same = select_controls(TRIO, ANTICIPATING, np.random.default_rng(seed), regions=0.0, bars=THREE_FOUR)
        assert np.array_equal(before[0], same[0]) and np.array_equal(before[1], same[1]) and before[2] == same[2]
    kinds = [select_controls(TRIO, ANTICIPATING, np.random.default_rng(seed), regions=1.0)[2] for seed in range(20)]
    assert set(kinds) == {"regions", "new_part"} and kinds.count("new_part") == 3
    kinds = [select_controls(TRIO, ANTICIPATING, np.random.default_rng(seed), regions=0.5)[2] for seed in range(20)]
    assert [kinds.count(kind) for kind in ("instruments", "spans", "suffix", "regions", "new_part")] == [3, 3, 7, 6, 1]
    solo = encode_notes(np.array([[b, 0, 60, 12, 0] for b in range(8)]), ANTICIPATING)
    assert {select_controls(solo, ANTICIPATING, np.random.default_rng(seed), regions=1.0)[2]
            for seed in range(20)} == {"spans", "suffix"}


def test_a_region_item_is_the_prompt_then_the_written_parts_beside_their_controls():
    given, header, _ = select_region(TRIO_NOTES, 12, np.random.default_rng(6), THREE_FOUR)
    item = song_with_controls(TRIO, given, ANTICIPATING, header)
    assert grammar_violations(item, ANTICIPATING) == []
    assert item[:5, [Field.TYPE, Field.INSTRUMENT]].tolist() == [[1, 0], [2, 1], [2, 25], [2, 27], [3, 0]]
    body = item[5:-1]
    # the first given note (the cello on beat 12) comes after the last note row before beat 10:
    # the notes before the span read as the prompt an edit feeds, its controls an interval ahead
    first = int(np.flatnonzero(body[:, Field.TYPE] == RowType.CONTROL)[0])
    assert onsets(body[:first], 12).max() == 10 * 12 and (body[:first, Field.TYPE] == RowType.NOTE).all()
    assert body[first, [Field.BEAT, Field.INSTRUMENT]].tolist() == [13, 27]
    notes = body[body[:, Field.TYPE] == RowType.NOTE]
    inside = notes[onsets(notes, 12) >= 12 * 12]
    assert sorted(set(inside[:, Field.INSTRUMENT].tolist())) == [1, 25] and onsets(inside, 12).max() == 20 * 12


# ---------------------------------------------------------------------- the sampler
def body_follows_the_rule(codes, encoding, interval_ticks):
    """Whether a sample's note and control rows sit as `anticipate` places them."""
    types = codes[:, Field.TYPE]
    son = int(np.flatnonzero(types == RowType.START_OF_NOTES)[0])
    body = codes[son + 1:]
    body = body[body[:, Field.TYPE] != RowType.END_OF_SONG]
    notes, controls = body[body[:, Field.TYPE] == RowType.NOTE], body[body[:, Field.TYPE] == RowType.CONTROL]
    rows, left = anticipate(notes, controls, encoding.resolution, interval_ticks)
    return np.array_equal(np.vstack([rows, left]), body)


@pytest.mark.parametrize("encoding", [ANTICIPATING, Encoding()], ids=["anticipating", "without-controls"])
def test_sampled_songs_take_every_control_where_the_rule_puts_it(encoding):
    torch.set_num_threads(1)
    model = march(tiny_model(encoding=encoding))
    controls = note_rows([0, 2, 5, 9], pitch=50, instrument=25)
    prompt = np.array([[1, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 1], [3, 0, 0, 0, 0, 0]])
    samples = sample(model, prompt, controls=controls, max_beats=12, n_samples=3, seed=0, max_new_rows=40,
                     min_new_rows=40)
    for codes in samples:
        assert grammar_violations(codes, encoding, complete=False) == []
        given = codes[codes[:, Field.TYPE] == RowType.CONTROL]
        assert given[:, Field.BEAT].tolist() == [1, 3, 6, 10] and (given[:, Field.INSTRUMENT] == 25).all()
        assert not (codes[codes[:, Field.TYPE] == RowType.NOTE, Field.INSTRUMENT] == 25).any()
        assert body_follows_the_rule(codes, encoding, encoding.anticipation_ticks)
    with pytest.raises(GenerationError, match="trained without control rows"):
        sample(tiny_model(), prompt, controls=controls, anticipation=2.0)


# ---------------------------------------------------------------------- the modes
@pytest.fixture(params=[ANTICIPATING, Encoding()], ids=["anticipating", "without-controls"])
def model(request):
    torch.set_num_threads(1)
    return march(tiny_model(encoding=request.param))


def quietly(model, request):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generation = run(model, request)
    return generation, [str(w.message) for w in caught if issubclass(w.category, GenerationWarning)]


def test_accompaniment_keeps_the_kept_instrument_note_for_note(model, tmp_path):
    mmt.write_midi(tmp_path / "duet.mid", duet())
    request = GenerationRequest(mode="accompaniment", prompt=tmp_path / "duet.mid", keep=("violin",),
                                instruments=("viola", "cello"), n_samples=2, seed=0, max_new_rows=60)
    generation, said = quietly(model, request)
    assert bool(said) == (not model.encoding.knows_controls)  # a model without controls says it runs at 0
    paths = generation.write(tmp_path / "out")
    kept = midi_notes(tmp_path / "duet.mid", 40)
    assert len(kept) == 32
    for codes, written in zip(generation.samples, paths):
        assert midi_notes(written["midi"], 40) == kept  # the violin comes back exactly, in MIDI
        drawn = codes[codes[:, Field.TYPE] == RowType.NOTE]
        assert len(drawn) > 0 and not (drawn[:, Field.INSTRUMENT] == 25).any()  # nothing of it sampled
        assert set(drawn[:, Field.INSTRUMENT].tolist()) <= {26, 27}  # viola, cello
        given = codes[codes[:, Field.TYPE] == RowType.CONTROL]
        assert len(given) == 32 and (given[:, Field.INSTRUMENT] == 25).all()
    assert generation.settings()["anticipation_beats"] == (model.encoding.anticipation or 0.0)


def test_infill_writes_only_inside_the_gap_and_keeps_every_other_note(model, tmp_path):
    mmt.write_midi(tmp_path / "duet.mid", duet())
    request = GenerationRequest(mode="infill", prompt=tmp_path / "duet.mid", bars_to_fill="3-4", n_samples=2, quota=2,
                                seed=1, max_new_rows=60)
    generation, _ = quietly(model, request)
    paths = generation.write(tmp_path / "out")
    assert (generation.prompt.start_beats, generation.prompt.end_beats) == (8.0, 16.0)
    for codes, written in zip(generation.samples, paths):
        son = int(np.flatnonzero(codes[:, Field.TYPE] == RowType.START_OF_NOTES)[0])
        prompt_notes = generation.prompt.codes[generation.prompt.codes[:, Field.TYPE] == RowType.NOTE]
        drawn = codes[codes[:, Field.TYPE] == RowType.NOTE][len(prompt_notes):]
        assert son == 3 and len(drawn) > 0
        assert (onsets(drawn, 12) >= 96).all() and (onsets(drawn, 12) < 192).all()  # inside bars 3-4 only
        for program in (40, 42):
            outside = [n for n in midi_notes(tmp_path / "duet.mid", program) if not 8 <= n[0] < 16]
            assert [n for n in midi_notes(written["midi"], program) if not 8 <= n[0] < 16] == outside


def test_the_modes_refuse_what_they_cannot_do(tmp_path):
    mmt.write_midi(tmp_path / "duet.mid", duet())
    model = tiny_model(encoding=ANTICIPATING)
    cases = [
        (dict(mode="accompaniment", keep=("flute",)), "no notes of the kept instrument"),
        (dict(mode="accompaniment", keep=("violin",), instruments=("violin",)), "either kept .* or written"),
        (dict(mode="accompaniment", keep=("violin", "cello")), "every instrument is kept"),
        (dict(mode="infill", bars_to_fill="9-10"),
         r"bar 9 starts at beat 32, after the music ends .beat 32.; the bars to fill .bars_to_fill. "
         "must lie inside it"),
    ]
    for fields, message in cases:
        with pytest.raises(GenerationError, match=message):
            run(model, GenerationRequest(prompt=tmp_path / "duet.mid", seed=0, **fields))
