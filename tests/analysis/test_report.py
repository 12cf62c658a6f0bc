"""`mmt analyze`: the HTML report of a tiny model on a tiny prepared directory."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.report import markdown_to_html, read_log
from mmt import Encoding, encode_notes, save_model
from mmt.cli import main
from mmt.model import ModelConfig, MusicTransformer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Sources(HTMLParser):
    """Every src= of the page, by tag."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "src":
                self.sources.append((tag, value))


def sources(index: Path) -> list[tuple[str, str]]:
    parser = Sources()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser.sources


def random_notes(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.column_stack([
        np.sort(rng.integers(0, 24, n)), rng.integers(0, 12, n), rng.integers(40, 80, n),
        rng.choice([3, 6, 12, 24], n), rng.choice([0, 40, 128], n),
    ]).astype(np.int64)


@pytest.fixture
def prepared(tmp_path) -> Path:
    root = tmp_path / "prepared"
    (root / "notes").mkdir(parents=True)
    rng = np.random.default_rng(0)
    ids = [f"piece{i}" for i in range(4)]
    for i, piece in enumerate(ids):
        np.save(root / "notes" / f"{piece}.npy", random_notes(rng, 10 + 8 * i))
    (root / "valid.txt").write_text("\n".join(ids) + "\n")
    (root / "train.txt").write_text("")
    Encoding().save(root / "encoding.json")
    return root


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A training run folder: best/ checkpoint and log.csv beside it."""
    torch.manual_seed(0)
    model = MusicTransformer(ModelConfig(dim=32, depth=2, heads=4, max_seq_len=48, dropout=0.0), Encoding())
    run = tmp_path / "run"
    save_model(model, run / "best", step=30)
    fields = ["type", "beat", "position", "pitch", "duration", "instrument"]
    header = ["step", "epoch", "lr", "train_loss", *(f"valid_{f}" for f in fields), "valid_loss", "tokens_per_s"]
    lines = [",".join(header)]
    for step in (10, 20, 30):
        losses = [3.0 / step * (i + 1) for i in range(6)]
        lines.append(",".join(str(v) for v in [step, 0, 1e-4, 20.0 / step, *losses, sum(losses), 1000]))
    (run / "log.csv").write_text("\n".join(lines) + "\n")
    return run


def test_analyze_writes_a_report_whose_images_all_exist(tmp_path, prepared, run_dir):
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    (eval_dir / "metrics.md").write_text(
        "# Evaluation: prepared (test split)\n\nModel: run.\n\n"
        "| metric | ground-truth | unconditioned |\n|---|---|---|\n| samples | 4 | 4 |\n"
        "| pitch_class_entropy_1 | 2.100 ± 0.300 | 1.900 ± 0.250 |\n\n- `pitch_class_entropy_1`: H1.\n"
    )
    samples = tmp_path / "samples"
    (samples / "unconditioned").mkdir(parents=True)
    codes = encode_notes(random_notes(np.random.default_rng(1), 12), Encoding())
    np.save(samples / "unconditioned" / "0.npy", codes)  # drawn by the report
    from mmt.io import write_pianoroll_png
    from mmt import decode
    write_pianoroll_png(samples / "one.png", decode(codes, Encoding()))
    (samples / "one.wav").write_bytes(b"RIFF....WAVEfmt ")

    out = tmp_path / "report"
    status = main(["analyze", str(run_dir), "--data", str(prepared), "--out", str(out), "-n", "3",
                   "--eval", str(eval_dir), "--samples", str(samples), "--quiet"])
    assert status == 0
    index = out / "index.html"
    found = sources(index)
    images = [src for tag, src in found if tag == "img"]
    audio = [src for tag, src in found if tag == "audio"]
    # training curve, 4 fields x 2 attention plots, 6 embedding plots, 2 samples
    assert len(images) == 1 + 8 + 6 + 2
    for src in images:
        assert not re.match(r"[a-z]+:", src) and not src.startswith("/"), src  # relative: the folder moves as one
        assert (out / src).read_bytes()[:8] == PNG_MAGIC, src
    assert audio == ["samples/one.wav"]
    assert (out / audio[0]).read_bytes() == b"RIFF....WAVEfmt "

    page = index.read_text(encoding="utf-8")
    assert "<link" not in page and "<script" not in page  # nothing fetched from outside
    assert "<td>2.100 ± 0.300</td>" in page
    assert "octave score" in page
    summary = json.loads((out / "analysis.json").read_text())
    assert summary["parameters"] == sum(p.numel() for p in
                                        MusicTransformer(ModelConfig(dim=32, depth=2, heads=4, max_seq_len=48),
                                                         Encoding()).parameters())
    assert summary["attention"]["beat"]["n_sequences"] == 3
    assert summary["attention"]["beat"]["offsets"] == list(range(-16, 1))
    assert -1.0 <= summary["octave_score"] <= 1.0
    with np.load(out / "attention.npz") as arrays:
        assert arrays["pitch_gamma"].shape == (2, 4, 255)
    assert not list(out.rglob("*.tmp*"))  # atomic writes leave no temp files


def test_analyze_without_log_eval_or_samples_says_so(tmp_path, prepared):
    torch.manual_seed(0)
    model = MusicTransformer(ModelConfig(dim=32, depth=2, heads=4, max_seq_len=48), Encoding())
    save_model(model, tmp_path / "model")
    out = tmp_path / "report"
    assert main(["analyze", str(tmp_path / "model"), "--data", str(prepared), "--out", str(out),
                 "-n", "1", "--quiet"]) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "No training log" in page
    assert "No evaluation given" in page
    assert "No samples given" in page
    images = [src for tag, src in sources(out / "index.html") if tag == "img"]
    assert len(images) == 8 + 6
    assert all((out / src).is_file() for src in images)


def test_analyze_reports_a_missing_model_or_split(tmp_path, prepared, capsys):
    assert main(["analyze", str(tmp_path / "nothing"), "--data", str(prepared), "--out", str(tmp_path / "r")]) == 2
    assert "nothing: no such checkpoint directory" in capsys.readouterr().err
    torch.manual_seed(0)
    save_model(MusicTransformer(ModelConfig(dim=32, depth=2, heads=4, max_seq_len=48), Encoding()),
               tmp_path / "model")
    assert main(["analyze", str(tmp_path / "model"), "--data", str(prepared), "--out", str(tmp_path / "r"),
                 "--split", "test"]) == 2
    assert "test.txt: no such split file" in capsys.readouterr().err


def test_markdown_table_and_list_to_html():
    text = "# Title\n\nSome `code` here.\n\n| a | b |\n|---|---:|\n| 1 | x < y |\n\n- one\n- **two**\n"
    assert markdown_to_html(text) == (
        "<h3>Title</h3>\n<p>Some <code>code</code> here.</p>\n"
        "<table class='metrics'><thead><tr><th>a</th><th>b</th></tr></thead><tbody>"
        "<tr><td>1</td><td>x &lt; y</td></tr></tbody></table>\n"
        "<ul><li>one</li><li><strong>two</strong></li></ul>"
    )


def test_read_log_parses_numbers_and_drops_text(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("step,loss,best,note\n1,2.5,,hello\n2,,1,x\n")
    log = read_log(path)
    assert sorted(log) == ["best", "loss", "step"]
    np.testing.assert_array_equal(log["step"], [1.0, 2.0])
    np.testing.assert_array_equal(log["loss"], [2.5, np.nan])
