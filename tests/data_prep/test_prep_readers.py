"""Each dataset reader on a fixture tree mimicking its layout, prepared through the one pipeline."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest
from prep_trees import FILTERS, copy_corpus_files, md5_of, write_bad_files, write_midi_file, write_song

from mmt.data_prep import PrepareError, list_sources, prepare_dataset
from mmt.data_prep.lmd import md5_split
from mmt.data_prep.sources import hash_split, path_id, relative


def manifest(out: Path) -> dict[str, dict]:
    lines = (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["source"]: r for r in map(json.loads, lines)}


def split_lists(out: Path) -> dict[str, list[str]]:
    return {split: (out / f"{split}.txt").read_text().split() for split in ("train", "valid", "test")}


def run(dataset, src, out, **kwargs):
    return prepare_dataset(dataset, src, out, filters=FILTERS, progress=False, log=None, **kwargs)


# ---------------------------------------------------------------------- Lakh
@pytest.mark.parametrize("digest, split", [
    ("0" * 32, "train"), ("9f" + "0" * 30, "train"), ("a" * 32, "train"), ("d" * 32, "train"),
    ("e" + "0" * 31, "valid"), ("E" + "0" * 31, "valid"), ("f" + "e" * 31, "test"),
])
def test_lakh_split_rule(digest, split):
    assert md5_split(digest) == split


def test_lakh_split_rule_refuses_a_non_hex_name():
    with pytest.raises(ValueError, match="not an MD5"):
        md5_split("zz")


TRAIN_MD5 = "0a" + "0" * 30
VALID_MD5 = "e1" + "1" * 30
TEST_MD5 = "f2" + "2" * 30
OTHER_MD5 = "d3" + "3" * 30


def lakh_tree(root: Path) -> Path:
    full = root / "lmd_full"
    write_song(full / "0" / f"{TRAIN_MD5}.mid", 1)
    write_song(full / "e" / f"{VALID_MD5}.mid", 2)
    write_song(full / "f" / f"{TEST_MD5}.mid", 3)
    write_song(full / "d" / f"{OTHER_MD5}.mid", 4)
    # LMD-matched style: the same MIDI file again under an MSD track folder
    write_song(root / "lmd_matched" / "A" / "B" / "C" / "TRABCAA128F42A1B2C" / f"{VALID_MD5}.mid", 2)
    write_song(root / "extra" / "My Song.mid", 5)  # not named by its MD5: the content's MD5 is its id
    write_bad_files(root / "bad")
    return root


def test_lakh_tree(tmp_path):
    root = lakh_tree(tmp_path / "lmd")
    out = tmp_path / "out"
    summary = run("lmd", root, out)
    records = manifest(out)
    extra_md5 = md5_of(root / "extra" / "My Song.mid")
    extra_split = {"e": "valid", "f": "test"}.get(extra_md5[0], "train")
    assert records[f"lmd_full/0/{TRAIN_MD5}.mid"] | {"instruments": None} == {
        "id": TRAIN_MD5, "source": f"lmd_full/0/{TRAIN_MD5}.mid", "split": "train", "status": "ok",
        "reason": "", "notes": 8, "beats": 4, "instruments": None}
    assert records[f"lmd_full/0/{TRAIN_MD5}.mid"]["instruments"] == ["piano"]
    assert [records[f"lmd_full/{d}/{m}.mid"]["split"] for d, m in
            (("e", VALID_MD5), ("f", TEST_MD5), ("d", OTHER_MD5))] == ["valid", "test", "train"]
    duplicate = records[f"lmd_matched/A/B/C/TRABCAA128F42A1B2C/{VALID_MD5}.mid"]
    assert (duplicate["status"], duplicate["reason"]) == ("skipped", f"duplicate of lmd_full/e/{VALID_MD5}.mid")
    assert (records["extra/My Song.mid"]["id"], records["extra/My Song.mid"]["split"]) == (extra_md5, extra_split)
    assert records["bad/empty.mid"]["id"] == "d41d8cd98f00b204e9800998ecf8427e"  # MD5 of no bytes
    assert {rel: (r["status"], r["reason"]) for rel, r in records.items() if rel.startswith("bad/")} == {
        "bad/corrupt.mid": ("failed", "cannot read (not a MIDI file (no MThd header))"),
        "bad/drums.mid": ("ok", ""),
        "bad/empty.mid": ("failed", "empty file"),
        "bad/short.mid": ("skipped", "too short (3 < 4 beats)"),
        "bad/sparse.mid": ("skipped", "too few notes (2 < 4)"),
        "bad/truncated.mid": ("failed",
                              "cannot read (malformed MIDI data (Invalid chunk length 79 (remaining bytes after header: 19)))"),
    }
    drums_md5 = md5_of(root / "bad" / "drums.mid")
    expected = {"train": sorted([TRAIN_MD5, OTHER_MD5]), "valid": [VALID_MD5], "test": [TEST_MD5]}
    expected[extra_split] = sorted(expected[extra_split] + [extra_md5])
    expected[md5_split(drums_md5)] = sorted(expected[md5_split(drums_md5)] + [drums_md5])
    assert split_lists(out) == expected
    assert summary.counts == {"ok": 6, "skipped": 3, "failed": 3}
    assert sorted(p.name for p in (out / "notes").iterdir()) == sorted(
        f"{i}.npy" for ids in expected.values() for i in ids)


# ---------------------------------------------------------------------- SOD
def write_cello_score(path: Path) -> None:
    """MusicXML with one part named "Violoncello" and no MIDI program: 8 quarter-note C3s."""
    import music21

    part = music21.stream.Part([music21.note.Note("C3", quarterLength=1) for _ in range(8)])
    part.partName = "Violoncello"
    path.parent.mkdir(parents=True, exist_ok=True)
    music21.stream.Score([part]).write("musicxml", fp=str(path))


def test_sod_tree(tmp_path):
    root = tmp_path / "SOD"
    write_cello_score(root / "Beethoven" / "sym5" / "sym5.xml")
    write_song(root / "Beethoven" / "sym5" / "sym5.mid", 7)  # the MusicXML is read instead
    write_song(root / "Mozart" / "k1" / "k1.mid", 8)
    (root / "Mozart" / "k1" / "k1.csv").write_text("Piano;\n")
    (root / "README.txt").write_text("not music\n")
    out = tmp_path / "out"
    summary = run("sod", root, out)
    records = manifest(out)
    assert sorted(records) == ["Beethoven/sym5/sym5.mid", "Beethoven/sym5/sym5.xml", "Mozart/k1/k1.mid"]
    assert (records["Beethoven/sym5/sym5.mid"]["status"], records["Beethoven/sym5/sym5.mid"]["reason"]) == (
        "skipped", "duplicate of Beethoven/sym5/sym5.xml")
    score = records["Beethoven/sym5/sym5.xml"]
    assert (score["id"], score["status"], score["notes"], score["beats"], score["instruments"]) == (
        "Beethoven__sym5__sym5.xml", "ok", 8, 8, ["cello"])
    # no program in the file: "Violoncello" -> GM 42 (cello)
    assert np.load(out / "notes" / "Beethoven__sym5__sym5.xml.npy").tolist() == [
        [beat, 0, 48, 12, 42] for beat in range(8)]
    assert records["Mozart/k1/k1.mid"]["status"] == "ok"
    assert summary.counts == {"ok": 2, "skipped": 1, "failed": 0}


# ---------------------------------------------------------------------- Pop1K7
def test_pop1k7_tree_reads_midi_analyzed_only(tmp_path):
    release = tmp_path / "downloads" / "Pop1K7"
    write_midi_file(release / "midi_analyzed" / "src_001" / "1.mid", [(0, False, [(b, 60, 1) for b in range(8)])])
    write_song(release / "midi_analyzed" / "src_001" / "2.mid", 11)
    write_song(release / "midi_analyzed" / "src_002" / "1.mid", 12)
    write_midi_file(release / "midi_transcribed" / "src_001" / "1.mid", [(0, False, [(b, 72, 1) for b in range(8)])])
    write_song(release / "midi_transcribed" / "src_003" / "9.mid", 13)
    out = tmp_path / "out"
    run("pop1k7", tmp_path / "downloads", out)
    records = manifest(out)
    assert sorted(records) == ["Pop1K7/midi_analyzed/src_001/1.mid", "Pop1K7/midi_analyzed/src_001/2.mid",
                               "Pop1K7/midi_analyzed/src_002/1.mid"]
    assert [records[rel]["id"] for rel in sorted(records)] == ["src_001__1.mid", "src_001__2.mid", "src_002__1.mid"]
    assert [records[rel]["split"] for rel in sorted(records)] == [
        hash_split("src_001/1.mid"), hash_split("src_001/2.mid"), hash_split("src_002/1.mid")]
    assert np.load(out / "notes" / "src_001__1.mid.npy")[:, 2].tolist() == [60] * 8  # analyzed, not transcribed


def test_pop1k7_falls_back_to_transcribed_and_names_a_wrong_folder(tmp_path):
    write_song(tmp_path / "Pop1K7" / "midi_transcribed" / "src_003" / "9.mid", 13)
    assert [s.rel for s in list_sources("pop1k7", tmp_path)] == ["Pop1K7/midi_transcribed/src_003/9.mid"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: no midi_analyzed"):
        list_sources("pop1k7", tmp_path / "empty")


# ---------------------------------------------------------------------- music21
CORPUS_SAMPLE = ["bach/bwv66.6.mxl", "palestrina/Credo_67_c.krn", "ryansMammoth/PaddyMilesFricasseeReel.abc",
                 "bach/choraleAnalyses/riemenschneider004.rntxt", "demos/multiple-verses.xml"]


def test_music21_corpus_copy(tmp_path):
    copy_corpus_files(CORPUS_SAMPLE, tmp_path / "corpus")
    out = tmp_path / "out"
    summary = prepare_dataset("music21", tmp_path / "corpus", out, progress=False, log=None)  # default filters
    records = manifest(out)
    assert {rel: (r["id"], r["status"], r["reason"], r["notes"], r["beats"], r["instruments"])
            for rel, r in records.items()} == {
        "bach/bwv66.6.mxl": ("bach__bwv66.6.mxl", "ok", "", 154, 36, ["voices"]),
        "bach/choraleAnalyses/riemenschneider004.rntxt": (
            "bach__choraleAnalyses__riemenschneider004.rntxt", "skipped",
            "roman-numeral analysis (.rntxt), not music", 0, 0, []),
        "demos/multiple-verses.xml": ("demos__multiple-verses.xml", "skipped", "too few notes (1 < 16)", 1, 4, ["piano"]),
        "palestrina/Credo_67_c.krn": ("palestrina__Credo_67_c.krn", "ok", "", 36, 24, ["voices"]),
        "ryansMammoth/PaddyMilesFricasseeReel.abc": (
            "ryansMammoth__PaddyMilesFricasseeReel.abc", "ok", "", 66, 33, ["piano"]),
    }
    assert summary.notes == 154 + 36 + 66
    # bwv66.6: four voices ("Soprano", ...) -> program 53; its pickup starts on the first beat
    notes = np.load(out / "notes" / "bach__bwv66.6.mxl.npy")
    assert notes.shape == (154, 5) and set(notes[:, 4].tolist()) == {53}
    assert notes[:3].tolist() == [[0, 0, 57, 6, 53], [0, 0, 64, 12, 53], [0, 0, 73, 6, 53]]


def test_music21_tunes_lists_and_prepares_every_tune(tmp_path):
    corpus = tmp_path / "corpus"
    copy_corpus_files(["bach/bwv66.6.mxl"], corpus)
    (corpus / "folk").mkdir()
    body = "CDEF GABc|" * 4 + "]\n"
    (corpus / "folk" / "book.abc").write_text("".join(f"X:{x}\nT:Tune {x}\nM:4/4\nL:1/8\nK:C\n"
                                                      + body.replace("C", "^C", x - 1) for x in (1, 2, 3)))
    assert [(s.rel, s.id, s.piece) for s in list_sources("music21", corpus)] == [
        ("bach/bwv66.6.mxl", "bach__bwv66.6.mxl", 0), ("folk/book.abc", "folk__book.abc", 0)]
    sources = list_sources("music21-tunes", corpus)
    assert [(s.rel, s.id, s.piece, s.split) for s in sources] == [
        ("bach/bwv66.6.mxl", "bach__bwv66.6.mxl", 0, hash_split("bach/bwv66.6.mxl")),
        ("folk/book.abc", "folk__book.abc", 0, hash_split("folk/book.abc")),
        ("folk/book.abc#2", "folk__book.abc_2", 1, hash_split("folk/book.abc#2")),
        ("folk/book.abc#3", "folk__book.abc_3", 2, hash_split("folk/book.abc#3")),
    ]
    out = tmp_path / "out"
    summary = run("music21-tunes", corpus, out)
    assert summary.counts == {"ok": 4, "skipped": 0, "failed": 0}
    first_pitches = [np.load(out / "notes" / f"{name}.npy")[:3, 2].tolist()
                     for name in ("folk__book.abc", "folk__book.abc_2", "folk__book.abc_3")]
    assert first_pitches == [[60, 62, 64], [61, 62, 64], [61, 62, 64]]  # tune x sharpens its first x - 1 Cs
    assert [np.load(out / "notes" / f"{name}.npy")[:, 2].tolist().count(61)
            for name in ("folk__book.abc", "folk__book.abc_2", "folk__book.abc_3")] == [0, 1, 2]


def test_music21_bundled_listing():
    """`-` lists music21's own corpus (music21 10.5): every file, .rntxt analyses skipped."""
    import music21

    from mmt.data_prep.music21_corpus import corpus_root

    sources = list_sources("music21", "-")
    suffixes = collections.Counter(Path(s.rel).suffix.lower() for s in sources)
    assert suffixes == {".krn": 1326, ".abc": 1146, ".mxl": 535, ".xml": 118, ".rntxt": 68, ".musicxml": 1}
    assert len(sources) == len(music21.corpus.getPaths()) == 3194
    assert all((s.skip != "") == s.rel.endswith(".rntxt") for s in sources)
    assert len({s.id for s in sources}) == len(sources)
    assert [s.rel for s in sources] == sorted(s.rel for s in sources)
    by_rel = {s.rel: s for s in sources}
    assert (by_rel["bach/bwv66.6.mxl"].id, by_rel["bach/bwv66.6.mxl"].path) == (
        "bach__bwv66.6.mxl", corpus_root() / "bach" / "bwv66.6.mxl")
    # the same listing as walking a copy of the corpus folder
    walked = list_sources("music21", corpus_root())
    assert [(s.rel, s.id, s.split, s.skip) for s in walked] == [(s.rel, s.id, s.split, s.skip) for s in sources]
    # every tune: 86 abc files hold 12,978 tunes, 11,832 more pieces than files
    tunes = list_sources("music21-tunes", "-")
    assert len(tunes) == 3194 + 11832 == 15026
    assert len({s.id for s in tunes}) == len(tunes)
    assert collections.Counter(s.piece > 0 for s in tunes)[True] == 11832
    assert [(s.rel, s.piece) for s in tunes if s.rel.startswith("essenFolksong/altdeu10.abc")][:3] == [
        ("essenFolksong/altdeu10.abc", 0), ("essenFolksong/altdeu10.abc#10", 9), ("essenFolksong/altdeu10.abc#100", 99)]


# ---------------------------------------------------------------------- folder, splits, ids
def test_folder_tree_with_bad_files(tmp_path):
    write_song(tmp_path / "src" / "a" / "song.mid", 1)
    write_song(tmp_path / "src" / "a b" / "song.MID", 2)
    (tmp_path / "src" / "notes.txt").write_text("ignored")
    expected = {f"bad/{name}": reason for name, reason in write_bad_files(tmp_path / "src" / "bad").items()}
    out = tmp_path / "out"
    run("folder", tmp_path / "src", out)
    records = manifest(out)
    assert sorted(records) == sorted(["a/song.mid", "a b/song.MID", *expected])
    assert (records["a b/song.MID"]["id"], records["a/song.mid"]["id"]) == ("a_b__song.MID", "a__song.mid")
    for rel, reason in expected.items():
        assert (records[rel]["status"], records[rel]["reason"]) == (
            "ok" if not reason else "failed" if rel.split("/")[-1] in ("corrupt.mid", "empty.mid", "truncated.mid")
            else "skipped", reason)
    drums = np.load(out / "notes" / "bad__drums.mid.npy")
    assert drums[:, 4].tolist() == [128] * 10 and records["bad/drums.mid"]["instruments"] == ["drums"]


def test_hash_split_literals_and_proportions():
    # int(sha256("split:" + path)[:16 hex], 16) % 10: 0-7 train, 8 valid, 9 test
    rels = ("a.mid", "b.mid", "bach/bwv66.6.mxl", "song3.mid", "song7.mid", "song8.mid", "song12.mid")
    assert [hash_split(rel) for rel in rels] == ["train", "valid", "train", "test", "test", "valid", "train"]
    splits = collections.Counter(hash_split(f"folder{i // 100}/piece{i}.mid") for i in range(5000))
    assert abs(splits["train"] / 5000 - 0.8) < 0.02
    assert abs(splits["valid"] / 5000 - 0.1) < 0.015 and abs(splits["test"] / 5000 - 0.1) < 0.015


def test_listing_is_deterministic(tmp_path):
    for i in range(30):
        write_song(tmp_path / f"d{i % 3}" / f"s{i}.mid", i)
    first, second = list_sources("folder", tmp_path), list_sources("folder", tmp_path)
    assert first == second
    assert [s.rel for s in first] == sorted(s.rel for s in first)


def test_path_id():
    assert path_id("bach/bwv66.6.mxl") == "bach__bwv66.6.mxl"
    assert path_id("a b/c&d.mid") == "a_b__c_d.mid"
    long = path_id("x" * 150 + ".mid")
    assert len(long) == 93 and long.startswith("x" * 80 + "-")


@pytest.mark.parametrize("path, root, rel", [
    ("lmd/0/abc.mid", "lmd", "0/abc.mid"),
    ("./lmd/0/abc.mid", "lmd/", "0/abc.mid"),
    ("/data/sod/a/b.mid", "/", "data/sod/a/b.mid"),
    ("lmd2/x.mid", "lmd", None),  # a name that starts like the root is not under it
])
def test_relative(path, root, rel):
    if rel is None:
        with pytest.raises(ValueError):
            relative(Path(path), Path(root))
    else:
        assert relative(Path(path), Path(root)) == rel


def test_unknown_dataset_and_missing_folder(tmp_path):
    with pytest.raises(PrepareError, match="unknown dataset 'nope'"):
        list_sources("nope", tmp_path)
    with pytest.raises(FileNotFoundError, match="missing: no such dataset folder"):
        list_sources("folder", tmp_path / "missing")
