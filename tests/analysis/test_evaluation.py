"""The evaluate job: trimming, statistics, files written, ground-truth and model paths."""

from __future__ import annotations

import json
import math

import muspy
import numpy as np
import pytest

from mmt.analysis import AnalysisError
from mmt.analysis.evaluation import (
    EvaluationConfig,
    bar_cut,
    evaluate,
    markdown_table,
    mean_ci,
    parse_mode,
    read_metrics_csv,
    read_table,
    sample_seed,
    trim_music,
)
from mmt.analysis.metrics import METRICS, compute_metrics
from mmt.analysis.structure import SI_METRICS
from mmt import Encoding, Meter, decode, encode_notes
from mmt_app.cli import main
from mmt.constants import DRUM_PROGRAM, NoteCol
from tests.factories import tiny_model, write_prepared

RES = 12


def notes_array(rows) -> np.ndarray:
    """rows: (beat, position, pitch, duration ticks, program)."""
    notes = np.zeros((len(rows), 5), dtype=np.int64)
    for i, (beat, position, pitch, duration, program) in enumerate(rows):
        notes[i, NoteCol.BEAT] = beat
        notes[i, NoteCol.POSITION] = position
        notes[i, NoteCol.PITCH] = pitch
        notes[i, NoteCol.DURATION] = duration
        notes[i, NoteCol.PROGRAM] = program
    return notes


# piece "triads": a C major triad on each of beats 0-63, a gap, triads again on beats 72-79.
# Trimmed to 64 beats: 16 full bars (H1 = log2 3, GS = 1, 12 notes a bar, no empty bar);
# untrimmed it would have 20 bars, two of them empty.
TRIADS = notes_array(
    [(beat, 0, pitch, RES, 0) for beat in [*range(64), *range(72, 80)] for pitch in (60, 64, 67)]
)
# piece "drums": 8 bars, one piano C on each downbeat and a drum hit on every beat.
# H1 = 0, GS = 1, 5 notes a bar, 2 instruments.
DRUMS = notes_array(
    [(4 * bar, 0, 60, 2 * RES, 0) for bar in range(8)] + [(beat, 0, 36, 1, DRUM_PROGRAM) for beat in range(32)]
)


@pytest.fixture
def checkpoint(tmp_path):
    """A tiny random model saved as a checkpoint directory."""
    from mmt.checkpoint import save_model

    return save_model(tiny_model(depth=1, heads=2, dropout=0.1), tmp_path / "tiny")


@pytest.fixture
def prepared(tmp_path):
    """A prepared directory: two good test pieces, one missing, one train piece."""
    root = write_prepared(tmp_path / "prepared", {"triads": TRIADS, "drums": DRUMS, "train-piece": DRUMS[:3]},
                          {"test": ["triads", "drums", "missing"], "train": ["train-piece"], "valid": []})
    return root


# ---------------------------------------------------------------------- pieces
def test_trim_drops_late_notes_and_shortens_held_ones():
    music = muspy.Music(
        resolution=RES,
        tracks=[muspy.Track(notes=[
            muspy.Note(time=0, pitch=60, duration=12, velocity=64),
            muspy.Note(time=40, pitch=62, duration=20, velocity=64),  # ends at 60 -> cut at 48
            muspy.Note(time=48, pitch=64, duration=12, velocity=64),  # starts at the cut -> dropped
        ])],
    )
    trimmed = trim_music(music, 4)
    assert [(n.time, n.pitch, n.duration) for n in trimmed.tracks[0].notes] == [(0, 60, 12), (40, 62, 8)]
    music.tempos = [muspy.Tempo(time=0, qpm=90.0), muspy.Tempo(time=48, qpm=60.0)]
    assert [t.time for t in trim_music(music, 4).tempos] == [0]  # events after the cut go too
    assert len(music.tracks[0].notes) == 3  # the original is untouched


def test_modes_parse_and_bad_modes_are_named():
    assert parse_mode("unconditioned") == ("unconditioned", None)
    assert parse_mode("instrument") == ("instrument", None)
    assert parse_mode("continuation-16") == ("continuation", 16)
    assert parse_mode("accompaniment") == ("accompaniment", None) and parse_mode("infill") == ("infill", None)
    for bad in ("continuation", "continuation-0", "continuation-x", "uncond"):
        with pytest.raises(ValueError, match="unknown mode"):
            parse_mode(bad)
    with pytest.raises(ValueError, match="repeat"):
        EvaluationConfig(modes=("instrument", "instrument"))


def test_sample_seeds_differ_by_piece_and_mode_and_repeat():
    seeds = {sample_seed(0, i, mode) for i in range(3) for mode in ("unconditioned", "instrument")}
    assert len(seeds) == 6
    assert sample_seed(5, 2, "instrument") == sample_seed(5, 2, "instrument")


# ---------------------------------------------------------------------- statistics
def test_mean_and_95_percent_interval():
    # [1, 2, 3, 4]: mean 2.5, s = sqrt(5/3), half-width = 1.96 * s / 2
    mean, half, n = mean_ci([1.0, 2.0, 3.0, 4.0, math.nan])
    assert (mean, n) == (2.5, 4)
    assert half == pytest.approx(1.959964 * math.sqrt(5 / 3) / 2, rel=1e-6)
    assert half == pytest.approx(1.26515, abs=1e-5)
    single = mean_ci([3.0, math.nan])
    assert single[0] == 3.0 and math.isnan(single[1]) and single[2] == 1
    empty = mean_ci([math.nan])
    assert math.isnan(empty[0]) and empty[2] == 0


# ---------------------------------------------------------------------- ground truth, end to end
def test_ground_truth_evaluation_writes_csv_table_and_settings(prepared, tmp_path, capsys):
    out = tmp_path / "eval"
    status = main(["evaluate", "--ground-truth-only", "--data", str(prepared), "--out", str(out), "--quiet"])
    assert status == 0

    rows = read_metrics_csv(out / "metrics.csv")
    assert [(row["id"], row["mode"]) for row in rows] == [("triads", "ground-truth"), ("drums", "ground-truth")]
    assert list(rows[0]) == ["id", "mode", *METRICS]
    triads, drums = rows
    assert triads["h1"] == pytest.approx(math.log2(3))
    assert triads["gs"] == 1.0
    assert triads["notes_per_bar"] == 12.0
    assert triads["empty_bar_rate"] == 0.0  # the gap after beat 64 is trimmed away
    assert drums["h1"] == 0.0
    assert drums["gs"] == 1.0
    assert drums["notes_per_bar"] == 5.0
    assert drums["n_instruments"] == 2.0
    # the CSV holds exactly what compute_metrics gives on the trimmed, decoded piece
    encoding = Encoding()
    expected = compute_metrics(trim_music(decode(encode_notes(TRIADS, encoding), encoding), 64))
    for name in METRICS:
        assert triads[name] == pytest.approx(expected[name], nan_ok=True), name

    table = (out / "metrics.md").read_text()
    assert "| metric | ground-truth |" in table
    assert "| samples | 2 |" in table
    # H1 over (log2 3, 0): mean 0.792, half-width 1.96 * (log2 3 / sqrt 2) / sqrt 2 = 0.98 log2 3
    assert "| h1 | 0.792 ± 1.553 |" in table
    assert "| n_instruments | 1.500 ± 0.980 |" in table
    assert "| gs | 1.000 ± 0.000 |" in table
    assert table in capsys.readouterr().out
    assert markdown_table(*read_table(out)[:3]) in table  # the table again, from the values behind it

    settings = json.loads((out / "settings.json").read_text())
    assert settings["model"] is None
    assert settings["n"] == 3 and settings["ids"] == ["triads", "drums", "missing"]
    assert settings["n_beats"] == 64 and settings["seed"] == 0 and settings["split"] == "test"
    assert settings["modes"] == ["ground-truth"]

    # the missing piece is recorded, and the job went on
    failures = (out / "failures.csv").read_text()
    assert failures.startswith("id,mode,error\nmissing,*,")
    assert "missing.npy: no such notes file" in failures


def test_n_and_beats_choose_pieces_and_length(prepared, tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", "-", "--data", str(prepared), "--out", str(out), "-n", "1", "--beats", "16", "--quiet"]) == 0
    rows = read_metrics_csv(out / "metrics.csv")
    assert [row["id"] for row in rows] == ["triads"]
    # 16 beats = 4 bars: one 4-bar window (H4 = log2 3); muspy's groove consistency counts
    # end // 48 + 1 = 5 measures, the last one empty: 1 - 4 / (48 * 4)
    assert rows[0]["h4"] == pytest.approx(math.log2(3))
    assert rows[0]["groove_consistency"] == pytest.approx(1 - 4 / 192)
    assert rows[0]["notes_per_bar"] == 12.0
    assert not (out / "failures.csv").exists()
    assert json.loads((out / "settings.json").read_text())["n_beats"] == 16


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--data", "{data}", "--out", "{out}"], "MODEL is required"),
        (["--ground-truth-only", "--data", "{data}", "--out", "{out}", "--split", "nosuch"], "nosuch.txt: no such split file"),
        (["--ground-truth-only", "--data", "{data}", "--out", "{out}", "--modes", "instrument"], "--modes needs a MODEL"),
        (["--ground-truth-only", "--data", "{data}", "--out", "{out}", "-n", "0"], "n must be >= 1"),
        (["--ground-truth-only", "--data", "{data}", "--out", "{out}", "--device", "cuda"],
         "--device cuda: CUDA is not available on this machine"),
        (["--ground-truth-only", "--data", "{out}", "--out", "{out}"], "no such prepared data directory"),
    ],
    ids=["no-model", "no-split", "modes-without-model", "n-zero", "no-cuda", "not-prepared"],
)
def test_bad_arguments_get_clear_errors(prepared, tmp_path, capsys, argv, message):
    argv = [a.format(data=prepared, out=tmp_path / "eval") for a in argv]
    assert main(["evaluate", *argv]) == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------------- meters and SI
# piece "waltz": 22 bars of 3/4, C E G one per beat. In its own bars: H1 = log2 3, GS = 1,
# 3 notes a bar; cut into 4/4 bars it would read C E G C | E G C E ... (H1 1.5, GS < 1).
WALTZ = notes_array([(beat, 0, (60, 64, 67)[beat % 3], RES, 0) for beat in range(66)])
WALTZ_METER = Meter(time_signatures=((0, 3, 4),), tempos=((0, 150.0),))


@pytest.fixture
def waltz_data(tmp_path):
    """A prepared directory holding the waltz with its meter and the triads without one."""
    return write_prepared(tmp_path / "waltz-data", {"waltz": WALTZ, "triads": TRIADS}, {"test": ["waltz", "triads"]},
                          meters={"waltz": WALTZ_METER})


def test_bar_cut_keeps_whole_bars_of_the_pieces_meter():
    waltz = WALTZ_METER.apply(muspy.Music(resolution=RES))
    assert bar_cut(waltz, 64) == 63.0  # 21 bars of 3/4
    assert bar_cut(muspy.Music(resolution=RES), 64) == 64.0  # 16 bars of 4/4
    assert bar_cut(Meter(((0, 5, 4),)).apply(muspy.Music(resolution=RES)), 3) == 3.0  # a first bar longer than the cut


def test_ground_truth_is_cut_into_its_own_bars_and_a_missing_meter_is_reported(waltz_data, tmp_path):
    out = tmp_path / "eval"
    result = evaluate(waltz_data, out, None, progress=False)
    waltz, triads = result.rows
    assert waltz["h1"] == pytest.approx(math.log2(3))
    assert waltz["gs"] == 1.0
    assert waltz["notes_per_bar"] == 3.0  # 63 beats kept: 21 bars of 3 notes
    assert triads["h1"] == pytest.approx(math.log2(3)) and triads["notes_per_bar"] == 12.0  # 4/4 assumed
    table = (out / "metrics.md").read_text()
    assert "Bars: ground-truth in each piece's own meter (first time signatures: 3/4 ×1, unknown ×1)." in table
    assert "1 piece(s) of" in table and "have no meter file" in table
    assert result.notes and "Run `mmt prepare` on the folder again" in result.notes[0]


def test_continuations_keep_the_pieces_meter_and_the_model_is_named_with_its_hash(waltz_data, tmp_path, checkpoint):
    out = tmp_path / "eval"
    config = EvaluationConfig(n_beats=16, modes=("unconditioned", "continuation-4"), max_new_rows=40)
    result = evaluate(waltz_data, out, str(checkpoint), n=1, config=config, progress=False)
    rows = {row["mode"]: row for row in result.rows}
    encoding = Encoding()
    for mode, meter in (("continuation-4", WALTZ_METER), ("unconditioned", None)):
        music = decode(np.load(out / "samples" / mode / "waltz.npy"), encoding, meter=meter)
        expected = compute_metrics(trim_music(music, bar_cut(music, 16)))
        assert rows[mode]["notes_per_bar"] == pytest.approx(expected["notes_per_bar"], nan_ok=True), mode
        assert rows[mode]["h1"] == pytest.approx(expected["h1"], nan_ok=True), mode
    table = (out / "metrics.md").read_text()
    assert "ground-truth, continuation-4 in each piece's own meter (first time signatures: 3/4 ×1); " \
           "unconditioned in 4/4, the model's default." in table
    recorded = json.loads((checkpoint / "config.json").read_text())["weights_sha256"][:16]
    assert f"Model: {checkpoint} (weights sha256 {recorded})." in table


def test_an_evaluation_of_another_model_is_refused_or_with_restart_made_afresh(prepared, tmp_path, checkpoint,
                                                                                capsys):
    from mmt.checkpoint import save_model

    out = tmp_path / "eval"
    config = EvaluationConfig(n_beats=16, modes=("unconditioned",), max_new_rows=40)
    evaluate(prepared, out, str(checkpoint), n=1, config=config, progress=False)
    sample = out / "samples" / "unconditioned" / "triads.npy"
    first = sample.stat().st_mtime_ns
    other = save_model(tiny_model(depth=1, heads=2, dropout=0.1, seed=1), tmp_path / "other")
    with pytest.raises(AnalysisError, match="an earlier evaluation in this folder used other settings "
                                            r"\(model\); choose another --out or pass --overwrite"):
        evaluate(prepared, out, str(other), n=1, config=config, progress=False)
    assert sample.stat().st_mtime_ns == first  # refused before anything was written
    evaluate(prepared, out, str(other), n=1, config=config, restart=True, progress=False)
    assert "the earlier evaluation there used other settings (model); evaluating afresh" in capsys.readouterr().out
    assert json.loads((out / "settings.json").read_text())["model"].startswith(str(other))
    again = sample.stat().st_mtime_ns
    assert again != first  # made again, by the other model
    evaluate(prepared, out, str(other), n=1, config=config, restart=True, progress=False)  # same settings: resumed
    assert "afresh" not in capsys.readouterr().out and sample.stat().st_mtime_ns == again


def test_si_columns_are_added_with_si_and_skipped_with_a_message_without_fluidsynth(prepared, tmp_path, monkeypatch):
    from mmt.analysis import evaluation

    monkeypatch.setattr(evaluation, "si_unavailable_reason", lambda: None)
    monkeypatch.setattr(evaluation, "structure_indicators",
                        lambda music: {"si_short": 0.5, "si_mid": 0.25, "si_long": 0.0})
    result = evaluate(prepared, tmp_path / "with", None, config=EvaluationConfig(si=True), progress=False)
    assert list(read_metrics_csv(tmp_path / "with" / "metrics.csv")[0]) == ["id", "mode", *METRICS, *SI_METRICS]
    assert [row["si_short"] for row in result.rows] == [0.5, 0.5]
    assert "| si_mid | 0.250 ± 0.000 |" in (tmp_path / "with" / "metrics.md").read_text()

    monkeypatch.setattr(evaluation, "si_unavailable_reason", lambda: "SI needs audio: fluidsynth is missing")
    assert main(["evaluate", "-", "--data", str(prepared), "--out", str(tmp_path / "without"), "--si", "--quiet"]) == 0
    assert list(read_metrics_csv(tmp_path / "without" / "metrics.csv")[0]) == ["id", "mode", *METRICS]
    assert "SI not computed: SI needs audio: fluidsynth is missing." in (tmp_path / "without" / "metrics.md").read_text()


def test_accompaniment_keeps_the_melody_and_infill_rewrites_bars_5_to_8_only(prepared, tmp_path):
    """Accompaniment keeps the highest part (the drums piece's piano) note for note and leaves
    out the one-instrument piece; infill keeps every note outside bars 5-8 of each piece."""
    from dataclasses import replace

    from mmt.checkpoint import save_model
    from mmt.constants import Field, RowType

    encoding = replace(Encoding(), anticipation=2.0)
    checkpoint = save_model(tiny_model(depth=1, heads=2, max_seq_len=256, encoding=encoding), tmp_path / "tiny")
    out = tmp_path / "eval"
    config = EvaluationConfig(n_beats=32, modes=("accompaniment", "infill"), max_new_rows=200)
    result = evaluate(prepared, out, str(checkpoint), config=config, progress=False)
    assert sorted((row["id"], row["mode"]) for row in result.rows) == [
        ("drums", "accompaniment"), ("drums", "ground-truth"), ("drums", "infill"),
        ("triads", "ground-truth"), ("triads", "infill")]
    assert result.notes[0] == "accompaniment: 1 of 3 pieces have one instrument (nothing to accompany), left out."
    table = (out / "metrics.md").read_text()
    assert "accompaniment: 1 of 3 pieces have one instrument" in table
    # the accompaniment is set beside the ground truth of its own piece (drums) too
    assert "| metric | ground-truth | ground-truth (accompaniment's 1) | accompaniment | infill |" in table
    # H1: the whole split (triads log2(3) = 1.585, drums 0) against the drums piece alone (0)
    h1_row = next(line for line in table.splitlines() if line.startswith("| h1 |"))
    assert h1_row.split(" | ")[1:3] == ["0.792 ± 1.553", "0.000"]
    # read back from metrics.csv and settings.json, the table has the same columns and cells
    rows, modes, names, settings = read_table(out)
    assert modes == ["ground-truth", "ground-truth (accompaniment's 1)", "accompaniment", "infill"]
    assert names == list(METRICS) and settings["modes"] == ["ground-truth", "accompaniment", "infill"]
    assert markdown_table(rows, modes, names) in table

    def notes_of(codes, program, before=None, after=None):
        rows = codes[(codes[:, Field.TYPE] == RowType.NOTE) | (codes[:, Field.TYPE] == RowType.CONTROL)]
        rows = rows[rows[:, Field.INSTRUMENT] == encoding.instrument_code(program)]
        beat = rows[:, Field.BEAT] - 1
        keep = np.ones(len(rows), bool)
        if before is not None:
            keep &= beat < before
        if after is not None:
            keep &= beat >= after
        return sorted(map(tuple, rows[keep][:, [Field.BEAT, Field.POSITION, Field.PITCH, Field.DURATION]].tolist()))

    truth = encode_notes(DRUMS, encoding)
    accompaniment = np.load(out / "samples" / "accompaniment" / "drums.npy")
    assert notes_of(accompaniment, 0) == notes_of(truth, 0)  # the piano, kept
    assert len(notes_of(truth, 0)) == 8
    infill = np.load(out / "samples" / "infill" / "triads.npy")
    triads = encode_notes(TRIADS, encoding)
    assert notes_of(infill, 0, before=16) == notes_of(triads, 0, before=16)  # bars 1-4 kept
    assert notes_of(infill, 0, after=32) == []  # nothing after the 32 beats evaluated


# piece "duet": 16 bars of 4/4; a violin plays C5 D5 E5 F5 in every bar (one note a beat), a cello
# a whole-note C3 under it. Over bars 5-8 the violin has 4 notes a bar in its range, no crossing,
# H1 = log2(4) = 2 and every note in C major.
DUET = notes_array(
    [(beat, 0, (72, 74, 76, 77)[beat % 4], RES, 40) for beat in range(64)]
    + [(4 * bar, 0, 48, 4 * RES, 42) for bar in range(16)]
)


def test_part_metrics_measure_a_part_over_bars_5_to_8_beside_the_others():
    """The violin of the duet as the comment says; a cello on G#5 over the violin's C5 in bars 5-6
    crosses it at 2 onsets in 4 bars."""
    from mmt.analysis.evaluation import part_metrics

    encoding = Encoding()
    codes = encode_notes(DUET, encoding)
    violin = part_metrics(codes, decode(codes, encoding), encoding, "violin")
    assert violin == {"part_notes_per_bar": 4.0, "part_in_range": 1.0, "part_crossings_per_bar": 0.0,
                      "part_h1": 2.0, "part_scale_consistency": 1.0}
    crossing = DUET.copy()
    cello_bars_5_6 = (crossing[:, NoteCol.PROGRAM] == 42) & np.isin(crossing[:, NoteCol.BEAT], (16, 20))
    crossing[cello_bars_5_6, NoteCol.PITCH] = 80
    codes = encode_notes(crossing, encoding)
    cello = part_metrics(codes, decode(codes, encoding), encoding, "cello")
    assert cello == {"part_notes_per_bar": 1.0, "part_in_range": 1.0, "part_crossings_per_bar": 0.5,
                     "part_h1": 0.0, "part_scale_consistency": 1.0}
    # a part with no notes in bars 5-8: no notes per bar, nothing else defined
    quiet = DUET[~((DUET[:, NoteCol.PROGRAM] == 42) & (DUET[:, NoteCol.BEAT] >= 16) & (DUET[:, NoteCol.BEAT] < 32))]
    codes = encode_notes(quiet, encoding)
    silent = part_metrics(codes, decode(codes, encoding), encoding, "cello")
    assert silent["part_notes_per_bar"] == 0.0 and all(math.isnan(silent[name]) for name in list(silent)[1:])


def test_edit_rewrites_one_part_over_bars_5_to_8_and_sets_it_beside_the_real_part(tmp_path):
    """The edit mode leaves out the one-part piece, rewrites the duet's chosen part in bars 5-8
    only (every other note kept), and its table has the real part's figures in the ground-truth column."""
    from dataclasses import replace

    from mmt.analysis.evaluation import PART_METRICS, edit_part, sample_seed
    from mmt.checkpoint import save_model
    from mmt.constants import Field, RowType

    prepared = write_prepared(tmp_path / "prepared", {"duet": DUET, "triads": TRIADS},
                              {"test": ["duet", "triads"]})
    encoding = replace(Encoding(), anticipation=2.0)
    checkpoint = save_model(tiny_model(depth=1, heads=2, max_seq_len=512, encoding=encoding), tmp_path / "tiny")
    out = tmp_path / "eval"
    config = EvaluationConfig(n_beats=64, modes=("edit",), max_new_rows=400)
    result = evaluate(prepared, out, str(checkpoint), config=config, progress=False)
    assert sorted((row["id"], row["mode"]) for row in result.rows) == [
        ("duet", "edit"), ("duet", "ground-truth"), ("triads", "ground-truth")]
    assert result.notes[0] == ("edit: 1 of 2 pieces have one part or no pitched part (nothing to rewrite beside), "
                               "left out.")
    truth_codes = encode_notes(DUET, encoding)
    part = edit_part(truth_codes, encoding, sample_seed(0, 0, "edit"))
    assert part == "cello"
    truth = next(row for row in result.rows if row["mode"] == "ground-truth" and row["id"] == "duet")
    assert {name: truth[name] for name in PART_METRICS} == {
        "part_notes_per_bar": 1.0, "part_in_range": 1.0, "part_crossings_per_bar": 0.0, "part_h1": 0.0,
        "part_scale_consistency": 1.0}
    triads = next(row for row in result.rows if row["id"] == "triads")
    assert all(math.isnan(triads[name]) for name in PART_METRICS)

    def notes(codes, program, inside: bool):
        rows = codes[np.isin(codes[:, Field.TYPE], (RowType.NOTE, RowType.CONTROL))]
        rows = rows[rows[:, Field.INSTRUMENT] == encoding.instrument_code(program)]
        beat = rows[:, Field.BEAT] - 1
        rows = rows[((beat >= 16) & (beat < 32)) == inside]
        return sorted(map(tuple, rows[:, [Field.BEAT, Field.POSITION, Field.PITCH, Field.DURATION]].tolist()))

    sample = np.load(out / "samples" / "edit" / "duet.npy")
    assert notes(sample, 40, True) == notes(truth_codes, 40, True)    # the violin, kept in bars 5-8
    assert notes(sample, 40, False) == notes(truth_codes, 40, False)  # and outside them
    assert notes(sample, 42, False) == notes(truth_codes, 42, False)  # the cello outside bars 5-8, kept
    new = sample[sample[:, Field.TYPE] == RowType.NOTE]
    new_beats = new[:, Field.BEAT] - 1
    kept_before = (new_beats < 16)  # the prompt: every part's notes before bar 5
    written = new[~kept_before]
    assert len(written) > 0 and set(written[:, Field.INSTRUMENT].tolist()) == {encoding.instrument_code(42)}
    assert ((written[:, Field.BEAT] - 1 >= 16) & (written[:, Field.BEAT] - 1 < 32)).all()
    table = (out / "metrics.md").read_text()
    assert "| part_notes_per_bar | 1.000 (n=1) | 1.000 |" in table  # the whole split's truth, then the duet's
    rows, modes, names, settings = read_table(out)
    assert modes == ["ground-truth", "ground-truth (edit's 1)", "edit"]
    assert names[-len(PART_METRICS):] == list(PART_METRICS)
    assert markdown_table(rows, modes, names) in table
