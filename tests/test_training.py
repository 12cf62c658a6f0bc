"""The training loop: files written, exact resume (also after SIGKILL), early stopping, DDP.

Every run here trains a tiny model (dim 32, 2 layers, 64 rows) on a tiny prepared
directory written in the fixture, on one CPU thread.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mmt import Encoding
from mmt.checkpoint import load_model, read_checkpoint_info
from mmt.config import load_config
from mmt.constants import FIELDS
from mmt.data import MusicDataset, collate
from mmt.training import (
    LOG_COLUMNS, STATE_FILE, TRAIN_LOG_COLUMNS, TrainingError, _chunks, evaluate, lr_factor, read_log, train,
)
from mmt_app.cli import main
from tests.factories import write_prepared

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN = 9  # batch 2 -> 5 steps per epoch (the last wraps around), so epochs end mid-way through runs



def random_notes(rng: np.random.Generator) -> np.ndarray:
    """A short random piece: piano, violin and drums over 24 beats (beat, position, pitch, duration, program)."""
    n = int(rng.integers(20, 60))
    return np.stack([
        np.sort(rng.integers(0, 24, n)), rng.integers(0, 12, n), rng.integers(48, 84, n),
        rng.choice([3, 6, 12, 24], n), rng.choice([0, 40, 128], n),
    ], axis=1).astype(np.int64)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A prepared directory as `mmt prepare` writes it: notes/<id>.npy, <split>.txt, encoding.json."""
    rng = np.random.default_rng(0)
    splits = {"train": [f"train{i}" for i in range(N_TRAIN)], "valid": ["valid0", "valid1", "valid2"],
              "test": ["test0"]}
    pieces = {piece: random_notes(rng) for ids in splits.values() for piece in ids}
    return write_prepared(tmp_path_factory.mktemp("prepared"), pieces, splits, Encoding(max_beat=32))


def tiny_config(data: Path, **training) -> dict:
    """A tiny experiment; dropout and augmentation on so resume must restore every RNG."""
    values = {"batch_size": 2, "max_steps": 12, "lr": 1e-3, "warmup_steps": 2, "decay_steps": 40,
              "valid_every": 4, "patience": None, "tensorboard": False, "threads": 1, "device": "cpu"}
    values.update(training)
    return {
        "name": "tiny",
        "model": {"dim": 32, "depth": 2, "heads": 4, "dropout": 0.1, "max_seq_len": 64, "pos_emb": "rotary"},
        "training": values,
        "data": {"path": str(data), "augment": True, "max_beat": 16},
    }


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def rows(path: Path) -> list[dict]:
    return read_log(path)


def losses_by_step(run: Path) -> dict[int, float]:
    return {row["step"]: row["loss"] for row in rows(run / "train_log.csv")}


# ---------------------------------------------------------------------- files of a run
def test_train_command_writes_checkpoints_and_logs(prepared, tmp_path, capsys):
    config = write_config(tmp_path / "tiny.yaml", tiny_config(prepared))
    out = tmp_path / "run"
    assert main(["train", str(config), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "tiny: 12 steps, best valid loss" in printed and "tokens/s" in printed

    assert sorted(p.name for p in out.iterdir()) == [".lock", "best", "config.yaml", "last", "log.csv", "train_log.csv"]
    assert sorted(p.name for p in (out / "last").iterdir()) == ["config.json", "model.safetensors", STATE_FILE]
    assert sorted(p.name for p in (out / "best").iterdir()) == ["config.json", "model.safetensors"]
    assert load_config(out / "config.yaml") == load_config(config)

    with open(out / "log.csv", newline="") as f:
        assert next(csv.reader(f)) == LOG_COLUMNS
    log = rows(out / "log.csv")
    assert [row["step"] for row in log] == [4, 8, 12]
    assert [row["epoch"] for row in log] == [0, 1, 2]  # 5 steps per epoch
    tc = load_config(config).training
    for row in log:
        assert row["lr"] == pytest.approx(1e-3 * lr_factor(row["step"] - 1, tc))
        assert row["valid_loss"] == pytest.approx(sum(row[f"valid_{f}"] for f in FIELDS), rel=1e-12)
        assert all(0 < row[f"valid_{f}"] < 10 for f in FIELDS)
        assert row["tokens_per_s"] > 0 and row["steps_per_s"] > 0
    assert log[0]["valid_loss"] > log[-1]["valid_loss"]  # it learns something in 12 steps
    train_log = rows(out / "train_log.csv")
    assert [row["step"] for row in train_log] == list(range(1, 13))
    assert list(train_log[0]) == TRAIN_LOG_COLUMNS
    for row in train_log:
        assert row["loss"] == pytest.approx(sum(row[f"loss_{f}"] for f in FIELDS), rel=1e-6)
    # the log's train_loss is the mean of the steps since the previous validation
    assert log[1]["train_loss"] == pytest.approx(np.mean([r["loss"] for r in train_log[4:8]]), rel=1e-12)

    # best/ holds the weights of the best validation: they reproduce its logged losses
    best_row = min(log, key=lambda row: row["valid_loss"])
    assert [row["best"] for row in log] == [
        int(i == 0 or row["valid_loss"] < min(r["valid_loss"] for r in log[:i])) for i, row in enumerate(log)]
    info = read_checkpoint_info(out / "best")
    assert info["step"] == best_row["step"]
    assert info["metrics"]["valid_loss"] == best_row["valid_loss"]
    valid_set = MusicDataset(prepared, "valid", None, 64, max_beat=16)
    batches = torch.utils.data.DataLoader(valid_set, batch_sampler=_chunks(list(range(3)), 2),
                                          collate_fn=collate)
    metrics = evaluate(load_model(out / "best"), batches, torch.device("cpu"), contextlib.nullcontext)
    assert metrics["total"] == pytest.approx(best_row["valid_loss"], abs=1e-6)
    for f in FIELDS:
        assert metrics[f] == pytest.approx(best_row[f"valid_{f}"], abs=1e-6)
    assert read_checkpoint_info(out / "last")["step"] == 12


def test_a_second_fresh_run_into_the_same_directory_is_refused(prepared, tmp_path):
    config = load_config(write_config(tmp_path / "tiny.yaml", tiny_config(prepared, max_steps=2, valid_every=2)))
    train(config, tmp_path / "run", progress=False)
    with pytest.raises(TrainingError, match="already holds a training run; pass --resume"):
        train(config, tmp_path / "run", progress=False)


def test_a_run_that_crashed_before_its_first_checkpoint_starts_afresh(prepared, tmp_path, capsys):
    config = load_config(write_config(tmp_path / "tiny.yaml", tiny_config(prepared, max_steps=2, valid_every=2)))
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.csv").write_text(",".join(LOG_COLUMNS) + "\n")  # what a run killed at step 1 leaves
    (run / "train_log.csv").write_text(",".join(TRAIN_LOG_COLUMNS) + "\n1,0,30.0,5,5,5,5,5,5,0.001,1.0\n")
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(config, run, resume=True, progress=False)
    assert train(config, run, progress=False).step == 2
    assert "stopped before its first checkpoint; starting afresh" in capsys.readouterr().out
    assert [row["step"] for row in rows(run / "train_log.csv")] == [1, 2]


# ---------------------------------------------------------------------- resume
@pytest.mark.parametrize("data", [{}, {"mix": {"train0": 3, "train4": 0.5}}, {"takeover": 1.0}],
                         ids=["unweighted", "mix", "takeover"])
def test_resume_reproduces_the_uninterrupted_losses(prepared, tmp_path, data):
    """7 steps, then --resume --max-steps 14 == 14 steps at once (mid-epoch stop; dropout and augmentation on),
    also under a data mix (shorter epochs that draw the pieces by weight) and with simulated take-overs
    in the inputs (drawn from the step)."""
    values = tiny_config(prepared, max_steps=14, valid_every=3)
    values["data"].update(data)
    config = write_config(tmp_path / "tiny.yaml", values)
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(["train", str(config), "--out", str(whole), "--no-progress"]) == 0
    assert main(["train", str(config), "--out", str(split), "--no-progress", "--max-steps", "7"]) == 0
    assert read_checkpoint_info(split / "last")["step"] == 7
    assert main(["train", str(config), "--out", str(split), "--no-progress", "--resume", "--max-steps", "14"]) == 0

    expected, got = losses_by_step(whole), losses_by_step(split)
    assert sorted(got) == list(range(1, 15))
    for step in range(8, 15):
        assert got[step] == pytest.approx(expected[step], abs=1e-5), step
    assert got[8] != got[7]  # the comparison is not between constants
    # validations: every 3 steps, plus the stop at 7 (the resumed run's only extra row)
    whole_log, split_log = rows(whole / "log.csv"), rows(split / "log.csv")
    assert [r["step"] for r in whole_log] == [3, 6, 9, 12, 14]
    assert [r["step"] for r in split_log] == [3, 6, 7, 9, 12, 14]
    for a, b in zip([r for r in split_log if r["step"] > 7], whole_log[2:]):
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], abs=1e-5)
    # the final weights agree too
    for a, b in zip(load_model(whole / "last").parameters(), load_model(split / "last").parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_takeover_changes_the_inputs_that_training_reads(prepared, tmp_path):
    configs = {name: tiny_config(prepared, max_steps=2, valid_every=2) for name in ("plain", "taken", "none")}
    configs["taken"]["data"]["takeover"] = 1.0
    configs["none"]["data"].update(takeover=1.0, takeover_share=[0.0, 0.0])  # take-overs of no rows
    for name, config in configs.items():
        train(load_config(write_config(tmp_path / f"{name}.yaml", config)), tmp_path / name, progress=False)
    first = {name: rows(tmp_path / name / "train_log.csv")[0] for name in configs}
    assert first["plain"]["loss_instrument"] != pytest.approx(first["taken"]["loss_instrument"], abs=1e-6)
    assert first["plain"]["loss_pitch"] == pytest.approx(first["taken"]["loss_pitch"], abs=1e-2)  # the same batch
    assert first["none"]["loss_instrument"] == pytest.approx(first["plain"]["loss_instrument"], abs=1e-6)


def test_a_run_killed_with_sigkill_resumes_to_the_same_losses(prepared, tmp_path):
    steps = 150
    config = write_config(tmp_path / "tiny.yaml", tiny_config(prepared, max_steps=steps, valid_every=5))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    train(load_config(config), whole, progress=False)

    command = [sys.executable, "-m", "mmt", "train", str(config), "--out", str(killed), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (killed / "last" / STATE_FILE).exists():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        assert process.poll() is None, "the run finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    saved = read_checkpoint_info(killed / "last")["step"]
    assert 5 <= saved < steps and saved % 5 == 0
    logged_before = max(losses_by_step(killed))  # rows past the checkpoint are redone on resume
    assert logged_before >= saved

    result = train(load_config(config), killed, resume=True, progress=False)
    assert result.step == steps
    expected, got = losses_by_step(whole), losses_by_step(killed)
    assert sorted(got) == list(range(1, steps + 1))  # no duplicate or missing step
    for step in range(saved + 1, steps + 1):
        assert got[step] == pytest.approx(expected[step], abs=1e-5), step
    assert [r["step"] for r in rows(killed / "log.csv")] == [r["step"] for r in rows(whole / "log.csv")]


def test_resume_refuses_another_model_and_a_damaged_state(prepared, tmp_path):
    config = tiny_config(prepared, max_steps=2, valid_every=2)
    train(load_config(write_config(tmp_path / "a.yaml", config)), tmp_path / "run", progress=False)
    wider = {**config, "model": {**config["model"], "dim": 64}}
    with pytest.raises(TrainingError, match=r"last: the checkpoint's model section .* differs"):
        train(load_config(write_config(tmp_path / "b.yaml", wider)), tmp_path / "run", resume=True, progress=False)
    state = tmp_path / "run" / "last" / STATE_FILE
    state.write_bytes(state.read_bytes()[:200])
    with pytest.raises(TrainingError, match=rf"{STATE_FILE}: damaged training state"):
        train(load_config(tmp_path / "a.yaml"), tmp_path / "run", resume=True, progress=False)
    # a crash between moving last/ aside and moving its replacement in: resume finds the old one
    (tmp_path / "run" / "last").rename(tmp_path / "run" / ".last.x1.old")
    with pytest.raises(TrainingError, match=rf"{STATE_FILE}: damaged training state"):
        train(load_config(tmp_path / "a.yaml"), tmp_path / "run", resume=True, progress=False)
    assert (tmp_path / "run" / "last" / STATE_FILE).exists()
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(load_config(tmp_path / "a.yaml"), tmp_path / "fresh", resume=True, progress=False)


class _Payload:
    """Unpickling this runs a shell command: what a crafted training_state.pt could hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_resume_never_runs_code_from_a_crafted_training_state(prepared, tmp_path):
    config = load_config(write_config(tmp_path / "a.yaml", tiny_config(prepared, max_steps=2, valid_every=2)))
    train(config, tmp_path / "run", progress=False)
    marker = tmp_path / "pwned"
    torch.save({"step": _Payload(marker)}, tmp_path / "run" / "last" / STATE_FILE)
    with pytest.raises(TrainingError, match=rf"{STATE_FILE}: damaged training state .*UnpicklingError"):
        train(config, tmp_path / "run", resume=True, progress=False)
    assert not marker.exists()


def test_a_second_run_into_a_folder_being_written_is_refused(prepared, tmp_path):
    from mmt.locks import folder_lock

    config = load_config(write_config(tmp_path / "a.yaml", tiny_config(prepared, max_steps=2, valid_every=2)))
    (tmp_path / "run").mkdir()
    with folder_lock(tmp_path / "run", "mmt train", TrainingError):  # a run in progress holds the folder
        for resume in (False, True):
            with pytest.raises(TrainingError, match=r"run: another `mmt train` is writing this folder"):
                train(config, tmp_path / "run", resume=resume, progress=False)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]
    assert train(config, tmp_path / "run", progress=False).step == 2  # free again once the first run ends


# ---------------------------------------------------------------------- early stopping
def test_early_stopping_after_patience_validations_without_improvement(prepared, tmp_path):
    # lr 1e-30 leaves every float32 weight as it was, so the validation loss never improves
    # after the first validation: stop at the third validation after it (patience 3).
    config = tiny_config(prepared, max_steps=100, valid_every=2, patience=3, lr=1e-30, warmup_steps=0)
    result = train(load_config(write_config(tmp_path / "tiny.yaml", config)), tmp_path / "run", progress=False)
    assert result.stopped_early and not result.interrupted
    assert result.step == 8
    assert result.best_step == 2
    log = rows(tmp_path / "run" / "log.csv")
    assert [row["step"] for row in log] == [2, 4, 6, 8]
    assert [row["best"] for row in log] == [1, 0, 0, 0]
    assert len({row["valid_loss"] for row in log}) == 1
    assert read_checkpoint_info(tmp_path / "run" / "best")["step"] == 2
    assert read_checkpoint_info(tmp_path / "run" / "last")["step"] == 8
    # resuming a run that ran out of patience does nothing; more patience lets it go on
    again = train(load_config(tmp_path / "tiny.yaml"), tmp_path / "run", resume=True, progress=False)
    assert again.stopped_early and again.step == 8
    assert [row["step"] for row in rows(tmp_path / "run" / "log.csv")] == [2, 4, 6, 8]
    config["training"]["patience"] = 4
    more = train(load_config(write_config(tmp_path / "more.yaml", config)), tmp_path / "run", resume=True,
                 progress=False)
    assert more.stopped_early and more.step == 10


def test_tensorboard_gets_the_logged_values(prepared, tmp_path, monkeypatch):
    # tensorboard is optional and not a test dependency: a recording writer stands in for
    # torch's SummaryWriter, and the values it gets must be those of the CSV logs.
    from mmt import training

    class Recorder:
        def __init__(self):
            self.scalars, self.closed = [], False

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, step, float(value)))

        def close(self):
            self.closed = True

    recorder, made_in = Recorder(), []
    monkeypatch.setattr(training, "_tensorboard_writer", lambda log_dir: made_in.append(log_dir) or recorder)
    config = tiny_config(prepared, max_steps=8, tensorboard=True)
    train(load_config(write_config(tmp_path / "tiny.yaml", config)), tmp_path / "run", progress=False)
    assert made_in == [tmp_path / "run" / "tensorboard"] and recorder.closed
    by_tag: dict[str, dict[int, float]] = {}
    for tag, step, value in recorder.scalars:
        by_tag.setdefault(tag, {})[step] = value
    assert sorted(by_tag) == sorted(["train/loss", "train/lr", "train/tokens_per_s", "valid/loss"]
                                    + [f"valid/{f}" for f in FIELDS])
    train_log, log = rows(tmp_path / "run" / "train_log.csv"), rows(tmp_path / "run" / "log.csv")
    assert by_tag["train/loss"] == pytest.approx({row["step"]: row["loss"] for row in train_log}, rel=1e-6)
    assert by_tag["train/lr"] == pytest.approx({row["step"]: row["lr"] for row in train_log}, rel=1e-6)
    assert by_tag["valid/loss"] == pytest.approx({row["step"]: row["valid_loss"] for row in log}, rel=1e-6)
    assert by_tag["valid/pitch"] == pytest.approx({row["step"]: row["valid_pitch"] for row in log}, rel=1e-6)
    assert sorted(by_tag["valid/loss"]) == [4, 8]


# ---------------------------------------------------------------------- errors
def test_unknown_config_key_is_an_error_naming_it(prepared, tmp_path, capsys):
    config = tiny_config(prepared)
    config["training"]["learning_rate"] = 0.1
    path = write_config(tmp_path / "tiny.yaml", config)
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "mmt train: error:" in error and "unknown key 'training.learning_rate'" in error and "tiny.yaml" in error
    assert not (tmp_path / "run").exists()


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    path = write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path / "nowhere"))
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    assert "nowhere: no such prepared data directory" in capsys.readouterr().err


# ---------------------------------------------------------------------- DDP
def test_two_process_gloo_ddp_run(prepared, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tiny_config(prepared, max_steps=6, valid_every=3))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "mmt", "train", str(config), "--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("tiny: 6 steps") == 1  # only rank 0 reports
    assert sorted(p.name for p in out.iterdir()) == [".lock", "best", "config.yaml", "last", "log.csv", "train_log.csv"]
    state = torch.load(out / "last" / STATE_FILE, weights_only=True)
    assert state["world_size"] == 2 and state["step"] == 6
    assert len(state["rng_states"]) == 2
    # 9 items, 2 processes x 2 per step -> 3 steps per epoch
    assert state["epoch"] == 1 and state["epoch_step"] == 3
    log = rows(out / "log.csv")
    assert [row["step"] for row in log] == [3, 6]
    assert all(set(row) == set(LOG_COLUMNS) and all(v != "" for v in row.values()) for row in log)
    assert [row["step"] for row in rows(out / "train_log.csv")] == [1, 2, 3, 4, 5, 6]
    # validation covers all three pieces across the two processes: it equals a one-process evaluation
    info = read_checkpoint_info(out / "last")
    valid_set = MusicDataset(prepared, "valid", None, 64, max_beat=16)
    batches = torch.utils.data.DataLoader(valid_set, batch_sampler=_chunks([0, 1, 2], 2), collate_fn=collate)
    metrics = evaluate(load_model(out / "last"), batches, torch.device("cpu"), contextlib.nullcontext)
    assert metrics["total"] == pytest.approx(info["metrics"]["valid_loss"], rel=1e-5)


# ---------------------------------------------------------------------- schedule
def test_learning_rate_schedule_literal_values():
    from mmt.config import TrainingConfig

    linear = TrainingConfig(warmup_steps=4, max_steps=100, decay_steps=24, lr_schedule="linear", min_lr_ratio=0.1)
    assert [lr_factor(s, linear) for s in (0, 1, 3)] == [0.25, 0.5, 1.0]
    assert lr_factor(14, linear) == pytest.approx(0.55)  # halfway through the decay
    assert lr_factor(24, linear) == pytest.approx(0.1) and lr_factor(90, linear) == pytest.approx(0.1)
    cosine = dataclasses.replace(linear, lr_schedule="cosine")
    assert lr_factor(14, cosine) == pytest.approx(0.55)  # cosine is at its midpoint too
    assert lr_factor(9, cosine) == pytest.approx(0.1 + 0.9 * (1 + np.cos(np.pi / 4)) / 2)
    constant = dataclasses.replace(linear, lr_schedule="constant")
    assert lr_factor(1, constant) == 0.5 and lr_factor(50, constant) == 1.0


# ---------------------------------------------------------------------- signals
def test_sigterm_stops_after_the_step_and_saves_a_resumable_checkpoint(prepared, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tiny_config(prepared, max_steps=100_000, valid_every=50))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "mmt", "train", str(config), "--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "train_log.csv").exists() or len(rows(out / "train_log.csv")) < 3:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert "interrupted at step" in stdout and "continue with --resume" in stdout
    step = read_checkpoint_info(out / "last")["step"]
    assert step == max(losses_by_step(out))  # the checkpoint is the last step taken
    assert rows(out / "log.csv")[-1]["step"] == step  # with a validation row
    assert 3 <= step < 100_000


def test_a_run_with_controls_saves_an_encoding_that_knows_them_and_resumes(prepared, tmp_path):
    from mmt.checkpoint import load_model

    config = tiny_config(prepared, max_steps=4, valid_every=2)
    config["data"].update(controls=0.5, anticipation=2.0)
    path = write_config(tmp_path / "tiny.yaml", config)
    train(load_config(path), tmp_path / "run", progress=False)
    model = load_model(tmp_path / "run" / "last")
    assert model.encoding.anticipation == 2.0 and model.encoding.n_tokens["type"] == 7
    config["training"]["max_steps"] = 6
    write_config(path, config)
    assert train(load_config(path), tmp_path / "run", resume=True, progress=False).step == 6


@pytest.mark.parametrize("data, message", [
    ({"controls": 1.5}, "controls must be a probability in 0..1"),
    ({"controls": 0.5, "augment": False}, "controls > 0 needs augment: true"),
    ({"anticipation": -1}, "anticipation must be a number of beats >= 0"),
])
def test_bad_control_settings_are_config_errors(data, message):
    from mmt.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match=message):
        config_from_dict({"data": data})


# ---------------------------------------------------------------------- fine-tuning
def fine_tune(prepared: Path, tmp_path: Path, steps: int, name: str, **model_changes) -> tuple:
    """`mmt train` a plain tiny model for `steps`, then a run `name` from its weights (`init_from`,
    lr 1e-12, so that they stay as they were) with `model_changes`; returns (source model, run folder)."""
    plain = tiny_config(prepared, max_steps=steps, valid_every=steps)
    assert main(["train", str(write_config(tmp_path / "plain.yaml", plain)), "--out", str(tmp_path / "plain"),
                 "--no-progress"]) == 0
    tuned = tiny_config(prepared, max_steps=steps, valid_every=steps, init_from=str(tmp_path / "plain" / "last"),
                        lr=1e-12, warmup_steps=0)
    tuned["model"].update(model_changes)
    out = tmp_path / name
    assert main(["train", str(write_config(tmp_path / f"{name}.yaml", tuned)), "--out", str(out), "--no-progress"]) == 0
    return load_model(tmp_path / "plain" / "last"), out


def test_init_from_starts_a_row_conditioned_run_from_a_plain_models_weights(prepared, tmp_path):
    source, out = fine_tune(prepared, tmp_path, 4, "tuned", row_conditioning=True)
    model = load_model(out / "last")
    assert model.config.row_conditioning and not source.config.row_conditioning
    # with lr 1e-12 the copied weights stay as they were and the new condition tables (zero at first) stay ~0
    weights = model.state_dict()
    for name, value in source.state_dict().items():
        torch.testing.assert_close(weights[name], value, atol=1e-9, rtol=0)
    assert sorted(n for n in weights if n not in source.state_dict()) == [f"conditions.{k}.weight" for k in range(5)]
    assert all(float(weights[f"conditions.{k}.weight"].abs().max()) < 1e-9 for k in range(5))
    # and so the first validation of the fine-tuned run scores what the source scores
    assert rows(out / "log.csv")[0]["valid_loss"] == pytest.approx(rows(tmp_path / "plain" / "log.csv")[0]["valid_loss"],
                                                                    abs=1e-6)


def test_init_from_into_a_tied_model_starts_its_table_from_the_source_head(prepared, tmp_path):
    source, out = fine_tune(prepared, tmp_path, 2, "tied", tie_pitch=True)
    model = load_model(out / "last")
    assert model.heads[3].weight is model.embeddings[3].weight
    torch.testing.assert_close(model.embeddings[3].weight, source.heads[3].weight, atol=1e-9, rtol=0)
    torch.testing.assert_close(model.embeddings[4].weight, source.embeddings[4].weight, atol=1e-9, rtol=0)
    # and back: a tied model's weights do not start an untied run
    untied = tiny_config(prepared, max_steps=2, init_from=str(out / "last"))
    with pytest.raises(TrainingError, match="set model.tie_pitch: true for this run too"):
        train(load_config(write_config(tmp_path / "untied.yaml", untied)), tmp_path / "untied", progress=False)


def test_the_optimizer_holds_a_tied_table_once_undecayed():
    from mmt.config import TrainingConfig
    from mmt.training import make_optimizer
    from tests.factories import tiny_model

    model = tiny_model(tie_pitch=True)
    decay, no_decay = make_optimizer(model, TrainingConfig(weight_decay=0.01)).param_groups
    ids = [id(p) for group in (decay, no_decay) for p in group["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert any(p is model.embeddings[3].weight for p in no_decay["params"])


def test_init_from_refuses_weights_of_another_shape(prepared, tmp_path):
    plain = tiny_config(prepared, max_steps=2, valid_every=2)
    assert main(["train", str(write_config(tmp_path / "plain.yaml", plain)), "--out", str(tmp_path / "plain"),
                 "--no-progress"]) == 0
    wider = tiny_config(prepared, max_steps=2, init_from=str(tmp_path / "plain" / "last"))
    wider["model"]["dim"] = 64
    with pytest.raises(TrainingError, match="its weights do not fit this model's config"):
        train(load_config(write_config(tmp_path / "wider.yaml", wider)), tmp_path / "wider", progress=False)


def test_read_log_parses_numbers_and_leaves_a_short_rows_missing_cells_none(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("step,valid_loss,note\n10,2.5,best\n20,2.25\n")  # the last row cut short by a crash
    assert read_log(path) == [{"step": 10, "valid_loss": 2.5, "note": "best"},
                              {"step": 20, "valid_loss": 2.25, "note": None}]
