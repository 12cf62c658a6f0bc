"""Checkpoint directories: identical logits after a round trip, clear errors when damaged."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mmt
from mmt import Encoding
from mmt.checkpoint import (CONFIG, WEIGHTS, CheckpointError, load_model, read_checkpoint_info, recover_directory,
                            save_model)
from mmt.model import ModelConfig, MusicTransformer

REPO = Path(__file__).resolve().parents[1]
HOST = socket.gethostname()


def dead_pid() -> int:
    """The id of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def tiny_model(pos_emb: str = "rotary", seed: int = 0) -> MusicTransformer:
    torch.manual_seed(seed)
    config = ModelConfig(dim=32, depth=2, heads=4, max_seq_len=32, pos_emb=pos_emb, dropout=0.0)
    return MusicTransformer(config, Encoding(max_beat=64)).eval()


@pytest.mark.parametrize("pos_emb", ["absolute", "rotary", "none"])
def test_load_model_gives_identical_logits(tmp_path, pos_emb):
    model = tiny_model(pos_emb)
    save_model(model, tmp_path / "ckpt", step=7, metrics={"valid_loss": 1.25})
    loaded = load_model(tmp_path / "ckpt")
    assert loaded.config == model.config
    assert loaded.encoding == model.encoding
    assert not loaded.training
    codes = torch.randint(1, 5, (2, 12, 6))
    with torch.no_grad():
        for a, b in zip(model(codes), loaded(codes)):
            assert torch.equal(a, b)


def test_a_row_conditioned_model_loads_with_its_condition_tables(tmp_path):
    from tests.factories import tiny_model as random_model

    model = random_model(row_conditioning=True)
    save_model(model, tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt")
    assert loaded.config.row_conditioning
    codes, nxt = torch.randint(1, 5, (2, 12, 6)), torch.randint(1, 5, (2, 12, 6))
    with torch.no_grad():
        for a, b in zip(model(codes, next_rows=nxt), loaded(codes, next_rows=nxt)):
            assert torch.equal(a, b)


def test_a_tied_table_is_saved_once_and_loads_tied(tmp_path):
    from safetensors import safe_open

    from tests.factories import tiny_model as random_model

    model = random_model(tie_pitch=True)
    save_model(model, tmp_path / "ckpt")
    with safe_open(str(tmp_path / "ckpt" / WEIGHTS), framework="pt") as f:
        names = set(f.keys())
    assert "embeddings.3.weight" in names and "heads.3.weight" not in names and "heads.3.bias" in names
    loaded = load_model(tmp_path / "ckpt")
    assert loaded.config.tie_pitch and loaded.heads[3].weight is loaded.embeddings[3].weight
    codes = torch.randint(1, 5, (2, 12, 6))
    with torch.no_grad():
        for a, b in zip(model(codes), loaded(codes)):
            assert torch.equal(a, b)


def test_config_json_carries_config_encoding_step_and_metrics(tmp_path):
    model = tiny_model()
    save_model(model, tmp_path / "ckpt", step=7, metrics={"valid_loss": 1.25, "bad": float("nan")})
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [CONFIG, WEIGHTS]
    info = json.loads((tmp_path / "ckpt" / CONFIG).read_text())
    assert info["model"] == {"dim": 32, "depth": 2, "heads": 4, "dropout": 0.0, "max_seq_len": 32,
                             "pos_emb": "rotary", "row_conditioning": False, "tie_pitch": False}
    assert info["encoding"]["max_beat"] == 64
    assert info["step"] == 7
    assert info["metrics"] == {"valid_loss": 1.25, "bad": None}
    assert read_checkpoint_info(tmp_path / "ckpt")["step"] == 7


def test_lazy_top_level_names_and_training_dir_resolves_to_best(tmp_path):
    model = tiny_model()
    mmt.save_model(model, tmp_path / "run" / "best", step=3)
    mmt.save_model(tiny_model(seed=1), tmp_path / "run" / "last", step=5)
    loaded = mmt.load_model(tmp_path / "run")
    assert torch.equal(loaded.heads[0].weight, model.heads[0].weight)


def test_overwrite_replaces_whole_directory_and_leaves_no_temporaries(tmp_path):
    save_model(tiny_model(seed=0), tmp_path / "ckpt", step=1,
               extra_files={"note.txt": lambda p: p.write_text("old")})
    newer = tiny_model(seed=1)
    save_model(newer, tmp_path / "ckpt", step=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert not (tmp_path / "ckpt" / "note.txt").exists()
    assert read_checkpoint_info(tmp_path / "ckpt")["step"] == 2
    assert torch.equal(load_model(tmp_path / "ckpt").heads[0].weight, newer.heads[0].weight)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    save_model(tiny_model(seed=0), tmp_path / "ckpt", step=1)

    def explode(path):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_model(tiny_model(seed=1), tmp_path / "ckpt", step=2, extra_files={"state.pt": explode})
    assert read_checkpoint_info(tmp_path / "ckpt")["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_missing_directory_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match=r"nowhere: no such checkpoint directory"):
        load_model(tmp_path / "nowhere")


def test_truncated_weights_are_reported_as_damaged(tmp_path):
    save_model(tiny_model(), tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=rf"{WEIGHTS}: damaged checkpoint"):
        load_model(tmp_path / "ckpt")


def test_garbage_weights_without_hash_are_reported_as_damaged(tmp_path):
    save_model(tiny_model(), tmp_path / "ckpt")
    info = json.loads((tmp_path / "ckpt" / CONFIG).read_text())
    del info["weights_sha256"]
    (tmp_path / "ckpt" / CONFIG).write_text(json.dumps(info))
    (tmp_path / "ckpt" / WEIGHTS).write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=rf"{WEIGHTS}: damaged weights file"):
        load_model(tmp_path / "ckpt")


def test_damaged_config_json_names_the_file(tmp_path):
    save_model(tiny_model(), tmp_path / "ckpt")
    (tmp_path / "ckpt" / CONFIG).write_text('{"format": "mmt-checkp')
    with pytest.raises(CheckpointError, match=rf"ckpt/{CONFIG}: damaged checkpoint config"):
        load_model(tmp_path / "ckpt")


def test_weights_of_another_shape_are_a_mismatch(tmp_path):
    save_model(tiny_model(), tmp_path / "ckpt")
    other = MusicTransformer(ModelConfig(dim=64, depth=2, heads=4, max_seq_len=32, pos_emb="rotary"),
                             Encoding(max_beat=64))
    save_model(other, tmp_path / "other")
    # the small model's config.json with the big model's weights (hash updated to pass)
    info = json.loads((tmp_path / "ckpt" / CONFIG).read_text())
    info["weights_sha256"] = json.loads((tmp_path / "other" / CONFIG).read_text())["weights_sha256"]
    (tmp_path / "ckpt" / CONFIG).write_text(json.dumps(info))
    (tmp_path / "ckpt" / WEIGHTS).write_bytes((tmp_path / "other" / WEIGHTS).read_bytes())
    with pytest.raises(CheckpointError, match=r"weights do not match the model in config.json: .*wrong shape"):
        load_model(tmp_path / "ckpt")


def test_unknown_model_key_in_config_json(tmp_path):
    save_model(tiny_model(), tmp_path / "ckpt")
    info = json.loads((tmp_path / "ckpt" / CONFIG).read_text())
    info["model"]["width"] = 3
    (tmp_path / "ckpt" / CONFIG).write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=r"config.json: bad model config .*width"):
        load_model(tmp_path / "ckpt")


def test_reserved_metadata_is_refused(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        save_model(tiny_model(), tmp_path / "ckpt", model="x")


def test_missing_config_json_is_not_a_checkpoint(tmp_path):
    save_model(tiny_model(), tmp_path / "ckpt")
    (tmp_path / "ckpt" / CONFIG).unlink()
    with pytest.raises(CheckpointError, match=rf"ckpt: not a checkpoint \(no {CONFIG}\)"):
        load_model(tmp_path / "ckpt")


def test_missing_weights_file_names_it(tmp_path):
    save_model(tiny_model(), tmp_path / "ckpt")
    (tmp_path / "ckpt" / WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match=rf"ckpt/{WEIGHTS}: missing weights file"):
        load_model(tmp_path / "ckpt")


def test_a_file_instead_of_a_directory(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"model.pt: a checkpoint is a directory"):
        load_model(tmp_path / "model.pt")


def test_a_swap_cut_short_by_a_crash_is_recovered(tmp_path):
    model = tiny_model()
    save_model(model, tmp_path / "ckpt", step=4)
    # killed after moving the old directory aside, before moving the new one in
    (tmp_path / "ckpt").rename(tmp_path / f".ckpt.{dead_pid()}@{HOST}.abc123.old")
    (tmp_path / ".ckpt.def456.tmp").mkdir()  # named by an mmt older than the owner names: stale
    assert recover_directory(tmp_path / "ckpt") is True
    assert read_checkpoint_info(tmp_path / "ckpt")["step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert recover_directory(tmp_path / "ckpt") is False  # nothing to do now
    # a later save clears the debris of a crash after the swap
    (tmp_path / f".ckpt.{dead_pid()}@{HOST}.ghi789.old").mkdir()
    save_model(tiny_model(seed=1), tmp_path / "ckpt", step=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


# Saves a checkpoint whose last file's writer kills the process: a crash mid-write.
CRASH_WHILE_SAVING = """
import os, signal, sys
from mmt.checkpoint import save_model
from mmt.model import ModelConfig, MusicTransformer
from mmt import Encoding
model = MusicTransformer(ModelConfig(dim=32, depth=2, heads=4, max_seq_len=32), Encoding(max_beat=64))
save_model(model, sys.argv[1], extra_files={"state.pt": lambda path: os.kill(os.getpid(), signal.SIGKILL)})
"""


def test_the_temporary_folder_of_a_crashed_writer_is_removed_and_a_live_ones_kept(tmp_path):
    crash = subprocess.Popen([sys.executable, "-c", CRASH_WHILE_SAVING, str(tmp_path / "last")], cwd=REPO)
    assert crash.wait() == -signal.SIGKILL
    (left,) = tmp_path.iterdir()  # a crash before the first `last/`: only the temporary folder
    assert re.fullmatch(rf"\.last\.{crash.pid}@{re.escape(HOST)}\.\w+\.tmp", left.name), left.name
    assert sorted(p.name for p in left.iterdir()) == [CONFIG, WEIGHTS]  # a whole checkpoint but its state
    live = tmp_path / f".last.{os.getpid()}@{HOST}.live01.tmp"  # a writer that runs (this process)
    elsewhere = tmp_path / f".last.{dead_pid()}@another-host.x1.tmp"  # cannot tell: kept
    other = tmp_path / f".best.{dead_pid()}@{HOST}.y2.tmp"  # another directory's
    for folder in (live, elsewhere, other):
        folder.mkdir()
    assert recover_directory(tmp_path / "last") is False
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, elsewhere.name, other.name])
    save_model(tiny_model(), tmp_path / "best", step=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, elsewhere.name, "best"])


def test_a_checkpoint_gets_the_permissions_of_plain_files_and_folders(tmp_path):
    old = os.umask(0o022)
    try:
        save_model(tiny_model(), tmp_path / "ckpt", extra_files={"state.pt": lambda p: p.write_bytes(b"s")})
    finally:
        os.umask(old)
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in [tmp_path / "ckpt", *(tmp_path / "ckpt").iterdir()]}
    assert modes == {"ckpt": "0o755", CONFIG: "0o644", WEIGHTS: "0o644", "state.pt": "0o644"}


def edit_config(directory, edit) -> None:
    info = json.loads((directory / CONFIG).read_text())
    edit(info)
    (directory / CONFIG).write_text(json.dumps(info))


@pytest.mark.parametrize("edit, reason", [
    (lambda info: info.update(format_version="2"), "damaged checkpoint config (format_version '2' is not an integer)"),
    (lambda info: info["model"].update(dim=64.0), "bad model config ('model.dim' has the wrong type: 64.0)"),
    (lambda info: info["model"].update(dim="abc"), "bad model config ('model.dim' has the wrong type: 'abc')"),
    (lambda info: info["model"].update(dim=1000000),
     "bad model config (section 'model': dim must be in 1..65536, got 1000000)"),
    (lambda info: info["model"].update(dropout=1.5),
     "bad model config (section 'model': dropout must be in [0, 1), got 1.5)"),
])
def test_a_damaged_config_value_names_the_file_and_the_reason(tmp_path, edit, reason):
    save_model(tiny_model(), tmp_path / "ckpt")
    edit_config(tmp_path / "ckpt", edit)
    with pytest.raises(CheckpointError) as error:
        load_model(tmp_path / "ckpt")
    assert str(error.value) == f"{tmp_path / 'ckpt' / CONFIG}: {reason}"


def test_a_huge_config_is_refused_by_the_weights_shapes_before_anything_is_allocated(tmp_path):
    """dim 65536, depth 64 would take 13 TB: the shapes in the file's header refuse it first."""
    save_model(tiny_model(), tmp_path / "ckpt")
    edit_config(tmp_path / "ckpt", lambda info: info["model"].update(dim=65536, depth=64))
    with pytest.raises(CheckpointError, match=r"model.safetensors: weights do not match the model in config.json: "
                                              r"missing 620 tensor\(s\).* of the wrong shape"):
        load_model(tmp_path / "ckpt")


def test_a_folder_named_config_json_names_it(tmp_path):
    (tmp_path / "ckpt" / CONFIG).mkdir(parents=True)
    with pytest.raises(CheckpointError) as error:
        load_model(tmp_path / "ckpt")
    assert str(error.value) == f"{tmp_path / 'ckpt' / CONFIG}: cannot read the checkpoint config (Is a directory)"


def test_a_folder_named_like_the_weights_names_it(tmp_path):
    save_model(tiny_model(), tmp_path / "ckpt")
    (tmp_path / "ckpt" / WEIGHTS).unlink()
    (tmp_path / "ckpt" / WEIGHTS).mkdir()
    with pytest.raises(CheckpointError) as error:
        load_model(tmp_path / "ckpt")
    assert str(error.value) == f"{tmp_path / 'ckpt' / WEIGHTS}: not a file"


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_infinite_weights_are_refused(tmp_path, value):
    model = tiny_model()
    with torch.no_grad():
        model.heads[2].weight[3, 1] = value
    save_model(model, tmp_path / "ckpt")
    with pytest.raises(CheckpointError) as error:
        load_model(tmp_path / "ckpt")
    assert str(error.value) == (f"{tmp_path / 'ckpt' / WEIGHTS}: 1 tensor(s) hold NaN or infinite values, "
                                "e.g. heads.2.weight")
