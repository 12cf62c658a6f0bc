"""`mmt analyze`: the HTML report of a tiny model on a tiny prepared directory."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from mmt.analysis.attention import GroupAttention, musical_groups
from mmt.analysis.report import (
    Sample,
    checkpoint_sentence,
    _metrics_section,
    _samples_section,
    group_sentence,
    log_columns,
    metrics_table_html,
    octave_sentence,
    training_sentence,
)
from mmt import Encoding, encode_notes, save_model
from mmt.constants import FIELDS
from mmt.training import LOG_COLUMNS, read_log
from mmt_app.cli import main
from tests.factories import tiny_model, write_prepared

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Sources(HTMLParser):
    """Every src= and href= of the page, by tag, and every id=."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[tuple[str, str]] = []
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "src":
                self.sources.append((tag, value))
            elif name == "href":
                self.links.append(value)
            elif name == "id":
                self.ids.add(value)


def parse(index: Path) -> Sources:
    parser = Sources()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser


def sources(index: Path) -> list[tuple[str, str]]:
    return parse(index).sources


def check_references(out: Path) -> Sources:
    """Every image, audio file and link of index.html is a relative path to a file of the report
    (or an anchor of the page)."""
    page = parse(out / "index.html")
    for _, src in page.sources:
        assert not re.match(r"[a-z]+:", src) and not src.startswith("/"), src  # the folder moves as one
        assert (out / src).is_file(), src
    for href in page.links:
        if href.startswith("#"):
            assert href[1:] in page.ids, href
        else:
            assert not re.match(r"[a-z]+:", href) and not href.startswith("/"), href
            assert (out / href).is_file(), href
    return page


def random_notes(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.column_stack([
        np.sort(rng.integers(0, 24, n)), rng.integers(0, 12, n), rng.integers(40, 80, n),
        rng.choice([3, 6, 12, 24], n), rng.choice([0, 40, 128], n),
    ]).astype(np.int64)


@pytest.fixture
def prepared(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    pieces = {f"piece{i}": random_notes(rng, 10 + 8 * i) for i in range(4)}
    return write_prepared(tmp_path / "prepared", pieces, {"valid": list(pieces), "train": []})


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A training run folder: best/ checkpoint and log.csv beside it."""
    model = tiny_model("absolute", max_seq_len=48)
    run = tmp_path / "run"
    save_model(model, run / "best", step=30)
    lines = [",".join(LOG_COLUMNS)]  # the columns mmt.training writes
    for step in (10, 20, 30):
        losses = [3.0 / step * (i + 1) for i in range(6)]
        row = {"step": step, "epoch": 0, "lr": 1e-4, "train_loss": 20.0 / step, "valid_loss": sum(losses),
               "tokens_per_s": 1000, "steps_per_s": 2, "elapsed_s": step, "best": 1,
               **{f"valid_{f}": loss for f, loss in zip(FIELDS, losses)}}
        lines.append(",".join(str(row[c]) for c in LOG_COLUMNS))
    (run / "log.csv").write_text("\n".join(lines) + "\n")
    return run



def test_analyze_writes_a_report_whose_files_all_exist(tmp_path, prepared, run_dir):
    eval_dir = write_evaluation(tmp_path / "eval")
    samples = tmp_path / "samples"
    (samples / "unconditioned").mkdir(parents=True)
    codes = encode_notes(random_notes(np.random.default_rng(1), 12), Encoding())
    np.save(samples / "unconditioned" / "0.npy", codes)  # drawn by the report
    from mmt.io import write_pianoroll_png
    from mmt import decode
    write_pianoroll_png(samples / "one.png", decode(codes, Encoding()))
    (samples / "one.wav").write_bytes(b"RIFF....WAVEfmt ")
    (samples / "one.mid").write_bytes(b"MThd")
    (samples / "settings.json").write_text(json.dumps([{"mode": "instrument", "instruments": ["violin", "cello"],
                                                        "bars": 16, "seed": 3, "samples": ["one"]}]))

    out = tmp_path / "report"
    status = main(["analyze", str(run_dir), "--data", str(prepared), "--out", str(out), "-n", "3",
                   "--beat-window", "8", "--eval", str(eval_dir), "--samples", str(samples), "--quiet"])
    assert status == 0
    page = check_references(out)
    assert "instrument mode: violin, cello; 16 bars added; seed 3" in (out / "index.html").read_text()
    assert "samples/one.mid" in page.links
    images = [src for tag, src in page.sources if tag == "img"]
    audio = [src for tag, src in page.sources if tag == "audio"]
    # training curve, 4 fields x 2 attention plots, 7 embedding plots, 2 samples
    assert len(images) == 1 + 8 + 7 + 2
    assert {"training.png", "attention_beat.png", "attention_beat_heads.png", "attention_position.png",
            "attention_position_heads.png", "attention_pitch.png", "attention_pitch_heads.png",
            "attention_instrument.png", "attention_instrument_heads.png", "pitch_pca.png", "pitch_similarity.png",
            "pitch_intervals.png", "pitch_intervals_tables.png", "beat_similarity.png", "position_similarity.png",
            "duration_similarity.png"} <= set(images)
    for src in images:
        assert (out / src).read_bytes()[:8] == PNG_MAGIC, src
    assert audio == ["samples/one.wav"]
    assert (out / audio[0]).read_bytes() == b"RIFF....WAVEfmt "
    assert {"findings.json", "analysis.json", "attention.npz", "metrics.csv", "#findings", "#samples"} <= set(
        page.links)

    html_text = (out / "index.html").read_text(encoding="utf-8")
    assert "<link" not in html_text and "<script" not in html_text  # nothing fetched from outside
    assert "<tr><th>h1</th><td>1.733 ± 0.728</td><td>2.000</td><td>1.500</td><td>2.000 ± 1.960</td></tr>" in html_text
    assert "<th>dim</th><td>32</td>" in html_text  # the model config
    assert ("validation loss went from 6.300 (step 10) to 2.100 at its best (step 30). The checkpoint is step 30 "
            "of this log (validation loss 2.100).</p>") in html_text
    assert "<tr><th>step</th><td>30</td></tr>" in html_text

    # findings.json: the key numbers, consistent with the attention maps saved beside them.
    findings = json.loads((out / "findings.json").read_text())
    assert findings["n_sequences"] == 3
    groups = findings["attention_groups"]
    assert set(groups) == {g.name for g in musical_groups(12)}
    assert groups["beat_bars"]["others"] == [-7, -6, -5, -3, -2, -1]
    with np.load(out / "attention.npz") as arrays:
        assert arrays["pitch_gamma"].shape == (2, 4, 255)
        for name, field in (("beat_bars", "beat"), ("pitch_consonant", "pitch"), ("instrument_same", "instrument")):
            offsets = list(arrays[f"{field}_offsets"])
            columns = [offsets.index(k) for k in groups[name]["group"]]
            share = arrays[f"{field}_gamma"][..., columns].sum(-1).mean()
            assert groups[name]["share"] == pytest.approx(share)
            assert groups[name]["uniform"] == pytest.approx(arrays[f"{field}_baseline"][columns].sum())
            assert groups[name]["excess"] == pytest.approx(share / groups[name]["uniform"] - 1)
            assert groups[name]["n_heads"] == 8
    assert groups["beat_bars"]["group"] == [-4, -8]  # --beat-window 8
    assert groups["pitch_consonant"]["group"] == [0, -7, 7, -12, 12]
    assert -1.0 <= findings["octave_score"] <= 1.0
    assert list(findings["octave_scores"]) == ["input embedding", "output head"]
    assert findings["octave_scores"]["input embedding"] == findings["octave_score"]
    assert (out / "pitch_intervals_tables.png").is_file()
    assert list(findings["octave_bumps"]) == ["input embedding", "output head"]
    assert findings["findings"][-1].endswith(
        f"of each table of pitch vectors: input embedding {findings['octave_bumps']['input embedding']:+.3f}, "
        f"output head {findings['octave_bumps']['output head']:+.3f}.")
    assert (f"<td>output head</td><td>{findings['octave_scores']['output head']:+.3f}</td>"
            f"<td>{findings['octave_bumps']['output head']:+.3f}</td>") in html_text
    # Every finding is on the page, at the top.
    top = html_text[html_text.index("id='findings'"):html_text.index("id='model'")]
    assert len(findings["findings"]) == 6  # training, 4 attention fields, octave score
    for sentence in findings["findings"]:
        assert sentence.replace("'", "&#x27;") in top
    assert f"Octave score {findings['octave_score']:+.3f}" in top

    summary = json.loads((out / "analysis.json").read_text())
    assert summary["parameters"] == tiny_model("absolute", max_seq_len=48).n_parameters()
    assert summary["attention"]["beat"]["offsets"] == list(range(-8, 1))
    assert not list(out.rglob("*.tmp*"))  # atomic writes leave no temp files


def test_analyze_takes_samples_from_the_eval_folder(tmp_path, prepared):
    """No log.csv, an eval folder without metrics.csv: say so; show its samples/, each named by its
    mode and piece; with --max-samples, one mode after another."""
    save_model(tiny_model("absolute", max_seq_len=48, dropout=0.1), tmp_path / "model")
    eval_dir = tmp_path / "eval"
    rng = np.random.default_rng(2)
    for mode in ("ground-truth", "unconditioned"):
        (eval_dir / "samples" / mode).mkdir(parents=True)
        for piece in ("piece0", "piece1"):
            np.save(eval_dir / "samples" / mode / f"{piece}.npy", encode_notes(random_notes(rng, 8), Encoding()))
    (eval_dir / "settings.json").write_text(json.dumps({"data": "songs", "split": "valid",
                                                        "modes": ["ground-truth", "unconditioned"]}))
    out = tmp_path / "report"
    assert main(["analyze", str(tmp_path / "model"), "--data", str(prepared), "--out", str(out),
                 "-n", "1", "--eval", str(eval_dir), "--max-samples", "2", "--quiet"]) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "No training log" in page
    assert f"No metrics.csv in {eval_dir}" in page
    images = [src for tag, src in check_references(out).sources if tag == "img"]
    assert images[8 + 7:] == ["samples/ground-truth-piece0.png", "samples/unconditioned-piece0.png"]
    assert "<p class='note'>unconditioned mode; piece piece0 of the valid split of songs</p>" in page
    findings = json.loads((out / "findings.json").read_text())
    assert len(findings["findings"]) == 5  # no training sentence

    assert main(["analyze", str(tmp_path / "model"), "--data", str(prepared), "--out", str(out),
                 "-n", "1", "--eval", str(eval_dir), "--quiet"]) == 0
    images = [src for tag, src in check_references(out).sources if tag == "img"]
    assert images[8 + 7:] == ["samples/ground-truth-piece0.png", "samples/ground-truth-piece1.png",
                              "samples/unconditioned-piece0.png", "samples/unconditioned-piece1.png"]


DEMO_RUNS = [  # what `mmt demo` records in samples/settings.json (the fields the captions read)
    {"mode": "unconditioned", "instruments": [], "prompt": None, "keep": [], "bars_to_fill": None, "bars": 32,
     "beats": None, "seed": 0, "prompt_ends_at_beat": 0.0, "samples": ["unconditioned-000", "unconditioned-001"]},
    {"mode": "instrument", "instruments": ["violin", "viola", "cello"], "prompt": None, "keep": [],
     "bars_to_fill": None, "bars": 32, "beats": None, "seed": 0, "prompt_ends_at_beat": 0.0,
     "samples": ["instrument-000", "instrument-001"]},
    {"mode": "continuation", "instruments": [], "prompt": "<Music>", "source": "test piece bach/bwv66.6",
     "prompt_bars": 8, "prompt_beats": None, "keep": [], "bars_to_fill": None, "bars": 24, "beats": None,
     "seed": 0, "prompt_ends_at_beat": 32.0, "samples": ["continuation-000", "continuation-001"]},
    {"mode": "infill", "instruments": [], "prompt": "<Music>", "source": "test piece bach/bwv66.6", "keep": [],
     "bars_to_fill": [9, 12], "bars": None, "beats": None, "seed": 0, "prompt_ends_at_beat": 0.0,
     "samples": ["infill-000", "infill-001"]},
    {"mode": "accompaniment", "instruments": ["viola", "cello"], "prompt": "<Music>",
     "source": "test piece bach/bwv66.6", "keep": ["violin"], "bars_to_fill": None, "bars": None, "beats": None,
     "seed": 0, "prompt_ends_at_beat": 0.0, "samples": ["accompaniment-000", "accompaniment-001"]},
]


def test_every_sample_of_every_request_is_shown_with_its_request_in_words(tmp_path):
    from mmt.analysis.report import collect_samples

    samples = tmp_path / "samples"
    samples.mkdir()
    for run in DEMO_RUNS:
        for stem in run["samples"]:
            (samples / f"{stem}.png").write_bytes(PNG_MAGIC + stem.encode())
            (samples / f"{stem}.mid").write_bytes(b"MThd")
    (samples / "settings.json").write_text(json.dumps(DEMO_RUNS))
    shown = collect_samples(samples, tmp_path / "report", Encoding())
    assert [s.name for s in shown] == [
        "unconditioned-000", "unconditioned-001", "instrument-000", "instrument-001", "continuation-000",
        "continuation-001", "infill-000", "infill-001", "accompaniment-000", "accompaniment-001"]
    assert [s.request for s in shown[::2]] == [
        "unconditioned mode; 32 bars added; seed 0",
        "instrument mode: violin, viola, cello; 32 bars added; seed 0",
        "continuation mode; prompt: first 8 bars of test piece bach/bwv66.6, ending at beat 32; 24 bars added; "
        "seed 0",
        "infill mode; test piece bach/bwv66.6: bars 9-12 rewritten, every other note kept (pale on the piano "
        "roll); seed 0",
        "accompaniment mode: viola, cello; test piece bach/bwv66.6 with violin kept (pale on the piano roll); "
        "seed 0"]
    assert shown[1].request == shown[0].request
    assert shown[3] == Sample("instrument-001", "samples/instrument-001.png", None, "samples/instrument-001.mid",
                              "instrument mode: violin, viola, cello; 32 bars added; seed 0")
    assert (tmp_path / "report" / "samples" / "infill-001.png").read_bytes() == PNG_MAGIC + b"infill-001"
    # a limit shows one sample of each request before a second of any
    assert [s.name for s in collect_samples(samples, tmp_path / "few", Encoding(), 6)] == [
        "unconditioned-000", "instrument-000", "continuation-000", "infill-000", "accompaniment-000",
        "unconditioned-001"]

    section = _samples_section(samples, None, tmp_path / "report", Encoding(), None, {})
    assert "<p class='note'>10 samples from " in section
    for run in DEMO_RUNS:
        for stem in run["samples"]:
            assert f"<h4>{stem}</h4>" in section and f"src='samples/{stem}.png'" in section


def test_sections_without_eval_or_samples_say_so(tmp_path):
    assert "No evaluation given" in _metrics_section(None, tmp_path)
    assert "No samples given" in _samples_section(None, None, tmp_path, Encoding(), None, {})


def test_findings_in_words():
    summary = GroupAttention("beat", (-4, -8), (-1,), share=0.3, uniform=0.25, excess=0.2, others_share=0.45,
                             others_uniform=0.5, others_excess=-0.1, heads_above=5, n_heads=8)
    assert group_sentence("notes whole bars back", summary) == (
        "Notes whole bars back get 20% more attention than uniform attention would give them (30.0% of the "
        "attention on earlier notes, against 25.0%); 5 of 8 heads give them more than uniform. "
        "The other offsets compared get 10% less (45.0% against 50.0%).")
    less = GroupAttention("pitch", (0,), (1,), 0.2, 0.25, -0.2, 0.8, 0.75, 0.8 / 0.75 - 1, 1, 8)
    assert "get 20% less attention" in group_sentence("unisons", less)
    assert group_sentence("unisons", less).endswith("The other offsets compared get 6.7% more (80.0% against 75.0%).")
    slight = GroupAttention("pitch", (0,), (1,), 0.2, 0.25, 0.031, 0.0, 0.0, float("nan"), 1, 8)
    assert "get 3.1% more attention" in group_sentence("unisons", slight)
    assert group_sentence("unisons", slight).endswith("The other offsets compared hold no pairs.")
    assert octave_sentence(0.52, "A0", "C8").startswith("Octave score +0.520 (pitches A0..C8; 0 = none, 1 = "
                                                        "octaves identical): the model places pitches an octave "
                                                        "apart much closer")
    assert "no sign that octaves" in octave_sentence(0.01, "A0", "C8")
    assert "less alike" in octave_sentence(-0.2, "A0", "C8")
    log = {"step": np.array([10.0, 20, 30]), "valid_loss": np.array([5.0, 4.0, 4.5])}
    assert training_sentence(log) == (
        "Training: 3 validations up to step 30; the validation loss went from 5.000 (step 10) to 4.000 at its "
        "best (step 20), and was 4.500 at the last validation.")
    assert training_sentence({"step": np.array([1.0])}) is None


def test_the_training_section_says_which_step_of_the_log_the_checkpoint_is():
    log = {"step": np.array([100.0, 200, 300]), "valid_loss": np.array([3.0, 2.5, np.nan])}
    assert checkpoint_sentence(log, {"step": 200, "metrics": {"valid_loss": 2.5}}) == (
        "The checkpoint is step 200 of this log (validation loss 2.500).")
    assert checkpoint_sentence(log, {"step": 100, "metrics": {"valid_loss": 2.5}}) == (
        "The checkpoint records step 100 and validation loss 2.500, but this log has 3.000 at step 100: the log "
        "is not this checkpoint's, or numbers its steps otherwise.")
    assert checkpoint_sentence(log, {"step": 300}) == "The checkpoint is step 300 of this log."
    assert checkpoint_sentence(log, {"step": 1200}) == "The checkpoint records step 1200, which this log does not have."
    assert checkpoint_sentence(log, {}) is None


def test_the_bundled_model_records_the_step_of_its_own_log():
    """Its log joins eleven runs' logs, steps numbered on; its config.json records the same numbering."""
    from mmt.checkpoint import read_checkpoint_info, resolve_checkpoint

    info = read_checkpoint_info("music21-small")
    assert (info["step"], info["epoch"], info["metrics"]["best_step"]) == (17200, 30, 17200)
    log = log_columns(read_log(resolve_checkpoint("music21-small") / "log.csv"))
    assert checkpoint_sentence(log, info) == "The checkpoint is step 17200 of this log (validation loss 2.658)."


def test_analyze_reports_a_missing_model_or_split(tmp_path, prepared, capsys):
    assert main(["analyze", str(tmp_path / "nothing"), "--data", str(prepared), "--out", str(tmp_path / "r")]) == 2
    assert "nothing: no such checkpoint directory" in capsys.readouterr().err
    save_model(tiny_model("absolute", max_seq_len=48, dropout=0.1), tmp_path / "model")
    assert main(["analyze", str(tmp_path / "model"), "--data", str(prepared), "--out", str(tmp_path / "r"),
                 "--split", "test"]) == 2
    assert "test.txt: no such split file" in capsys.readouterr().err


def write_evaluation(eval_dir: Path) -> Path:
    """An `mmt evaluate` output folder as it writes one: settings.json, metrics.csv, failures.csv."""
    eval_dir.mkdir(parents=True)
    settings = {"model": "run", "data": "prepared", "split": "test", "n": 3, "n_beats": 64, "seed": 0,
                "modes": ["ground-truth", "infill", "accompaniment"],
                "metrics": {"h1": "pitch-class entropy of 1 bar (a < b)", "gs": "grooving similarity"}}
    (eval_dir / "settings.json").write_text(json.dumps(settings))
    (eval_dir / "metrics.csv").write_text(
        "id,mode,h1,gs\n"
        "a,ground-truth,2.0,1.0\nb,ground-truth,2.2,nan\nc,ground-truth,1.0,0.5\n"
        "a,infill,1.5,0.75\n"  # b and c: nothing to fill (left out)
        "a,accompaniment,1.0,nan\nb,accompaniment,3.0,nan\n")  # c failed: not left out
    (eval_dir / "failures.csv").write_text("id,mode,error\nc,accompaniment,ValueError: no notes\n")
    return eval_dir


def test_the_metrics_table_is_built_from_the_values_as_html(tmp_path):
    from mmt.analysis.evaluation import read_table

    eval_dir = write_evaluation(tmp_path / "eval")
    rows, modes, names, _ = read_table(eval_dir)
    assert modes == ["ground-truth", "ground-truth (infill's 1)", "infill", "accompaniment"]
    assert names == ["h1", "gs"]
    # h1 of the ground truth: mean 1.733, s = 0.643, 1.96 * s / sqrt(3) = 0.728; accompaniment (1, 3): 2 +- 1.96;
    # gs of the ground truth: (1, 0.5), b's NaN left out
    assert metrics_table_html(rows, modes, names) == (
        "<table class='metrics'><thead><tr><th>metric</th><th>ground-truth</th>"
        "<th>ground-truth (infill&#x27;s 1)</th><th>infill</th><th>accompaniment</th></tr></thead><tbody>"
        "<tr><th>samples</th><td>3</td><td>1</td><td>1</td><td>2</td></tr>"
        "<tr><th>h1</th><td>1.733 ± 0.728</td><td>2.000</td><td>1.500</td><td>2.000 ± 1.960</td></tr>"
        "<tr><th>gs</th><td>0.750 ± 0.490 (n=2)</td><td>1.000</td><td>0.750</td><td>n/a</td></tr>"
        "</tbody></table>")
    section = _metrics_section(eval_dir, tmp_path / "report")
    assert metrics_table_html(rows, modes, names) in section
    assert ("<p class='note'>3 pieces of the <code>test</code> split of prepared; every sample trimmed to the last "
            "bar line at or before 64 beats; seed 0.") in section
    assert "<li><code>h1</code>: pitch-class entropy of 1 bar (a &lt; b)</li>" in section
    assert "<a href='metrics.csv'>metrics.csv</a>." in section  # no metrics.md in this folder
    assert (tmp_path / "report" / "metrics.csv").read_text() == (eval_dir / "metrics.csv").read_text()
    assert "No metrics.csv in" in _metrics_section(tmp_path, tmp_path / "report")
    (eval_dir / "settings.json").write_text("{")
    assert f"Could not read {eval_dir}: {eval_dir / 'settings.json'}: not valid JSON" in _metrics_section(
        eval_dir, tmp_path / "report")


def test_log_columns_of_a_training_log_parse_numbers_and_drop_text(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("step,loss,best,note,empty\n1,2.5,,hello,\n2,,1,x,\n")
    log = log_columns(read_log(path))
    assert sorted(log) == ["best", "loss", "step"]
    np.testing.assert_array_equal(log["step"], [1.0, 2.0])
    np.testing.assert_array_equal(log["loss"], [2.5, np.nan])
    np.testing.assert_array_equal(log["best"], [np.nan, 1.0])
    assert log_columns([]) == {}


def test_request_label_says_what_a_sample_was_asked_for():
    from mmt.analysis.report import request_label

    run = {"mode": "continuation", "instruments": [], "prompt": "/songs/minuet.mid", "prompt_bars": 8,
           "prompt_beats": None, "bars": 24, "beats": None, "seed": 0, "prompt_ends_at_beat": 24.0}
    assert request_label(run) == ("continuation mode; prompt: first 8 bars of minuet.mid, ending at beat 24; "
                                  "24 bars added; seed 0")
