"""`mmt demo` end to end with a tiny untrained model on three real corpus files."""

import json
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from mmt.checkpoint import save_model
from mmt_app.cli import main
from mmt_app.demo import DemoConfig, DemoError, model_path, run_demo
from tests.factories import tiny_model


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    return save_model(tiny_model(depth=1, heads=2, dropout=0.1), tmp_path / "tiny")


class _Sources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        self.sources += [value for name, value in attrs if name in ("src", "href") and value]


def test_demo_writes_samples_evaluation_and_report(tmp_path, tiny_checkpoint, capsys):
    torch.set_num_threads(1)
    config = DemoConfig(out=tmp_path / "demo", data=tmp_path / "data", model=tiny_checkpoint, prepare_limit=3,
                        n_samples=1, n_eval=1, n_analysis=1, bars=2, prompt_bars=1, jobs=1, audio=False)
    paths = run_demo(config, log=print)

    # 1. three test-split files of the bundled corpus were prepared, nothing else
    manifest = (config.data / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == 3 and all('"split": "test"' in line for line in manifest)
    # 3. one sample per mode, each as MIDI, CSV and piano roll
    names = sorted(p.name for p in paths["samples"].iterdir())
    modes = ("unconditioned", "instrument", "continuation", "infill", "accompaniment")
    assert names == sorted(["settings.json"] + [f"{mode}-000.{ext}" for mode in modes
                                                for ext in ("mid", "csv", "png")])
    runs = json.loads((paths["samples"] / "settings.json").read_text())
    assert [run["samples"] for run in runs] == [[f"{mode}-000"] for mode in modes]
    # the infill rewrites the piece's last bar here (it has two); the accompaniment keeps its melody as control rows
    assert runs[3]["bars_to_fill"] == [2, 2] and len(runs[4]["keep"]) == 1
    assert "control" in (paths["samples"] / "accompaniment-000.csv").read_text()
    assert runs[2]["prompt_bars"] == 1 and runs[2]["bars"] == 1 and runs[2]["model"] == str(tiny_checkpoint)
    quartet = (paths["samples"] / "instrument-000.csv").read_text()
    assert {"violin", "viola", "cello"} <= set(re.findall(r"[a-z]+", quartet))
    # 4. the evaluation table has the ground truth and every mode
    table = paths["evaluation"].read_text()
    for mode in ("ground-truth", "unconditioned", "instrument", "continuation-4", "continuation-16"):
        assert mode in table
    # 5. the report exists and everything it references is there
    parser = _Sources()
    parser.feed(paths["report"].read_text())
    local = [s for s in parser.sources if not s.startswith(("http", "#", "mailto:"))]
    assert local and all((paths["report"].parent / s).exists() for s in local)
    # every sample of every mode is shown, named by its request and the piece it was drawn from
    page = paths["report"].read_text()
    piece = runs[2]["source"]
    assert piece == "test piece airdsAirs__book2.abc"  # the first of the three pieces long enough
    assert re.findall(r"<p class='note'>([^<]* mode[^<]*)</p>", page) == [
        "unconditioned mode; 2 bars added; seed 0",
        "instrument mode: violin, viola, cello; 2 bars added; seed 0",
        f"continuation mode; prompt: first 1 bar of {piece}, ending at beat 2.5; 1 bar added; seed 0",
        f"infill mode; {piece}: bar 2 rewritten, every other note kept (pale on the piano roll); seed 0",
        f"accompaniment mode: viola, cello; {piece} with piano kept (pale on the piano roll); seed 0"]
    assert [run.get("source") for run in runs] == [None, None, piece, piece, piece]
    for mode in modes:
        assert f"<h4>{mode}-000</h4>" in page and f"src='samples/{mode}-000.png'" in page
    assert "Open" in capsys.readouterr().out


def test_demo_runs_again_over_its_own_folder_with_another_model(tmp_path, tiny_checkpoint, capsys):
    """After the bundled model changed, the demo evaluates afresh where `mmt evaluate` would refuse."""
    torch.set_num_threads(1)
    config = DemoConfig(out=tmp_path / "demo", data=tmp_path / "data", model=tiny_checkpoint, prepare_limit=1,
                        n_samples=1, n_eval=1, n_analysis=1, bars=2, prompt_bars=1, jobs=1, audio=False)
    run_demo(config, log=print)
    other = save_model(tiny_model(depth=1, heads=2, dropout=0.1, seed=1), tmp_path / "other")
    paths = run_demo(replace(config, model=other), log=print)
    assert "used other settings (model); evaluating afresh" in capsys.readouterr().out
    assert json.loads((paths["evaluation"].parent / "settings.json").read_text())["model"].startswith(str(other))


def test_demo_without_a_model_names_the_folder(tmp_path):
    with pytest.raises(DemoError, match="nothing: no such checkpoint directory .bundled models: music21-small."):
        model_path(DemoConfig(model=tmp_path / "nothing"))
    code = main(["demo", "--model", str(tmp_path / "nothing"), "--data", str(tmp_path / "data"),
                 "--out", str(tmp_path / "out")])
    assert code == 2


def test_demo_refuses_bad_settings_before_any_work(tmp_path, capsys):
    with pytest.raises(ValueError, match="bars \\(4\\) must be more than prompt_bars \\(8\\)"):
        DemoConfig(bars=4)
    code = main(["demo", "-n", "0", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "mmt demo: error: n_samples must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_demo_train_prepares_every_tune_to_train_and_the_test_split_to_evaluate(tmp_path, monkeypatch):
    import mmt.data_prep as data_prep

    from mmt_app import demo

    calls = []

    def fake_prepare(dataset, src, out, **kwargs):
        calls.append((dataset, src, out, kwargs["splits"], kwargs["limit"]))
        out.mkdir(parents=True)
        (out / "test.txt").write_text("piece\n")
        return type("Summary", (), {"counts": {"ok": 1, "skipped": 0, "failed": 0}, "processed": 1, "seconds": 0})()

    monkeypatch.setattr(data_prep, "prepare_dataset", fake_prepare)
    config = DemoConfig(out=tmp_path / "demo", data=tmp_path / "eval", train_data=tmp_path / "tunes", train=True,
                        prepare_limit=5)
    demo.prepare_corpus(config, log=lambda line: None)
    assert calls == [("music21", "-", tmp_path / "eval", ("test",), 5),
                     ("music21-tunes", "-", tmp_path / "tunes", None, None)]
    trained = []
    monkeypatch.setattr("mmt.training.train", lambda cfg, run, data_dir, **kw: trained.append(data_dir) or
                        type("Result", (), {"step": 1, "best_valid_loss": 1.0, "best_step": 1})())
    assert demo.train_model(config, log=lambda line: None) == tmp_path / "demo" / "train" / "best"
    assert trained == [tmp_path / "tunes"]
