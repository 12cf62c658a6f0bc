"""benchmarks/helped_samples.py (and the top-line leap of benchmarks/request.py it filters by):
ensembles, note counts, leaps, and the prepared directory it writes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from mmt import Encoding
from mmt.checkpoint import save_model
from mmt.constants import RowType
from mmt.prepared import PreparedData
from tests.factories import march, tiny_model, write_prepared

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
_spec = importlib.util.spec_from_file_location("helped_samples", BENCHMARKS / "helped_samples.py")
helped_samples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helped_samples)
COMMON, FAMILIES = helped_samples.COMMON, helped_samples.FAMILIES
draw_ensemble, note_counts, top_line_leap = helped_samples.draw_ensemble, helped_samples.note_counts, \
    helped_samples.top_line_leap


def test_ensembles_hold_two_to_four_distinct_known_instruments():
    rng = np.random.default_rng(0)
    known = set(COMMON) | {name for family in FAMILIES for name in family}
    ensembles = [draw_ensemble(rng) for _ in range(400)]
    assert {len(ensemble) for ensemble in ensembles} == {2, 3, 4}
    assert all(len(set(ensemble)) == len(ensemble) for ensemble in ensembles)
    assert all(set(ensemble) <= known for ensemble in ensembles)
    # drums are in COMMON and in the piano family only; "harp" only in COMMON
    assert any("harp" in e for e in ensembles) and any("drums" in e for e in ensembles)


def test_piano_and_voices_families_keep_their_lead():
    rng = np.random.default_rng(1)
    led = [e for e in (draw_ensemble(rng) for _ in range(400)) if e[0] in ("piano", "voices")]
    family_members = {"piano": set(FAMILIES[3]), "voices": set(FAMILIES[4])}
    from_family = [e for e in led if set(e) <= family_members[e[0]]]
    assert len(from_family) > 50


def test_note_counts_count_note_rows_per_instrument_code():
    rows = np.array([
        [RowType.START_OF_SONG, 0, 0, 0, 0, 0],
        [RowType.INSTRUMENT, 0, 0, 0, 0, 3],
        [RowType.INSTRUMENT, 0, 0, 0, 0, 5],
        [RowType.START_OF_NOTES, 0, 0, 0, 0, 0],
        [RowType.NOTE, 1, 0, 60, 4, 3],
        [RowType.NOTE, 1, 0, 64, 4, 3],
        [RowType.NOTE, 2, 0, 48, 4, 5],
        [RowType.END_OF_SONG, 0, 0, 0, 0, 0],
    ])
    assert note_counts(rows, [3, 5, 7]) == [2, 1, 0]


def test_top_line_leap_follows_each_instruments_highest_note():
    rows = np.array([
        [RowType.NOTE, 1, 0, 60, 4, 3], [RowType.NOTE, 1, 0, 64, 4, 3],  # onset 1: top 64
        [RowType.NOTE, 2, 0, 67, 4, 3],                                   # onset 2: 67 (+3)
        [RowType.NOTE, 3, 0, 55, 4, 3],                                   # onset 3: 55 (-12)
        [RowType.NOTE, 1, 0, 40, 4, 5], [RowType.NOTE, 1, 6, 42, 4, 5],   # instrument 5: +2
        [RowType.NOTE, 2, 0, 90, 4, 7],                                   # one onset: no step
    ])
    assert top_line_leap(rows, [3]) == pytest.approx(7.5)
    assert top_line_leap(rows, [3, 5, 7]) == pytest.approx((7.5 + 2.0) / 2)
    assert np.isnan(top_line_leap(rows, [7]))


def test_writes_base_plus_kept_samples_and_resumes(tmp_path, one_thread):
    encoding = Encoding()
    notes = np.array([[0, 0, 60, 12, 0], [1, 0, 62, 12, 0], [2, 0, 64, 12, 0]])
    base = write_prepared(tmp_path / "base", {"tunes__a": notes, "tunes__b": notes, "tunes__c": notes},
                          {"train": ["tunes__a", "tunes__b"], "valid": ["tunes__c"], "test": ["tunes__c"]},
                          encoding=encoding)
    model_dir = save_model(march(tiny_model(max_seq_len=256, encoding=encoding)), tmp_path / "model")
    out = tmp_path / "out"
    argv = [str(model_dir), str(base), str(out), "-n", "4", "--batch", "2", "--bars", "2-2", "--min-notes", "1"]
    helped_samples.main(argv)

    records = [json.loads(line) for line in (out / "helped.jsonl").read_text().splitlines()]
    assert [record["batch"] for record in records] == [0, 1]
    kept = [piece for record in records for piece in record["kept"]]
    assert kept and all(piece.startswith("helped__") for piece in kept)
    data = PreparedData(out)
    assert data.split("train") == ["tunes__a", "tunes__b", *kept]
    assert data.split("valid") == ["tunes__c"] and data.split("test") == ["tunes__c"]
    assert np.array_equal(data.notes("tunes__a"), notes)
    for record in records:
        declared = {encoding.instrument_code(name) for name in record["instruments"]}
        for piece in record["kept"]:
            stored = data.notes(piece)
            assert stored.shape[1] == 5 and len(stored) >= len(record["instruments"])
            assert {int(encoding.program_codes[program]) for program in stored[:, 4]} <= declared

    before = (out / "helped.jsonl").read_text()
    helped_samples.main(argv)  # every batch is recorded: nothing is drawn again
    assert (out / "helped.jsonl").read_text() == before
    assert data.split("train") == ["tunes__a", "tunes__b", *kept]


def test_refuses_to_write_into_its_base(tmp_path):
    base = write_prepared(tmp_path / "base", {}, {"train": [], "valid": [], "test": []})
    with pytest.raises(SystemExit, match="must not be the base"):
        helped_samples.main(["music21-small", str(base), str(base)])


def test_left_alone_shards_and_leap_filter(tmp_path, one_thread):
    encoding = Encoding()
    notes = np.array([[0, 0, 60, 12, 0], [1, 0, 62, 12, 0]])
    base = write_prepared(tmp_path / "base", {"tunes__a": notes}, {"train": ["tunes__a"], "valid": [], "test": []},
                          encoding=encoding)
    # marched on the type too, so that left alone (no quota) it writes notes instead of ending at once
    marched = march(tiny_model(max_seq_len=256, encoding=encoding), ("type", "beat", "position", "pitch", "duration"))
    model_dir = save_model(marched, tmp_path / "model")
    out = tmp_path / "out"
    common = [str(model_dir), str(base), str(out), "-n", "6", "--batch", "2", "--bars", "2-2", "--min-notes", "1",
              "--left-alone", "--sampling", '{"temperature": {"instrument": 2.0}}']
    helped_samples.main([*common, "--shard", "1/2"])
    assert [r["batch"] for r in helped_samples.read_records(out / "helped.jsonl")] == [1]
    helped_samples.main([*common, "--shard", "0/2", "--max-leap", "0"])
    records = helped_samples.read_records(out / "helped.jsonl")
    assert sorted(r["batch"] for r in records) == [0, 1, 2]
    # the marched model's parts leap several semitones a step (7-59 here): a max leap of 0 keeps none
    assert [r["kept"] for r in records if r["batch"] in (0, 2)] == [[], []]
    kept = [piece for r in sorted(records, key=lambda r: r["batch"]) for piece in r["kept"]]
    assert kept and PreparedData(out).split("train") == ["tunes__a", *kept]


@pytest.mark.parametrize("value, message", [
    ("{temperature: 2}", "argument --sampling: not JSON (Expecting property name enclosed in double quotes"),
    ("[1, 2]", "argument --sampling: expected a JSON object of sampling settings, got '[1, 2]'"),
])
def test_bad_sampling_json_is_a_usage_error(tmp_path, capsys, value, message):
    with pytest.raises(SystemExit) as exit_:
        helped_samples.main(["music21-small", str(tmp_path / "base"), str(tmp_path / "out"), "--sampling", value])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
