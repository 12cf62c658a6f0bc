"""Checkpoint directories: identical logits after a round trip, clear errors when damaged."""

from __future__ import annotations

import json

import pytest
import torch

import mmt
from mmt import Encoding
from mmt.checkpoint import CONFIG, WEIGHTS, CheckpointError, load_model, read_checkpoint_info, save_model
from mmt.model import ModelConfig, MusicTransformer


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


def test_config_json_carries_config_encoding_step_and_metrics(tmp_path):
    model = tiny_model()
    save_model(model, tmp_path / "ckpt", step=7, metrics={"valid_loss": 1.25, "bad": float("nan")})
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [CONFIG, WEIGHTS]
    info = json.loads((tmp_path / "ckpt" / CONFIG).read_text())
    assert info["model"] == {"dim": 32, "depth": 2, "heads": 4, "dropout": 0.0, "max_seq_len": 32,
                             "pos_emb": "rotary"}
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
    from mmt.checkpoint import recover_directory

    model = tiny_model()
    save_model(model, tmp_path / "ckpt", step=4)
    # killed after moving the old directory aside, before moving the new one in
    (tmp_path / "ckpt").rename(tmp_path / ".ckpt.abc123.old")
    (tmp_path / ".ckpt.def456.tmp").mkdir()
    assert recover_directory(tmp_path / "ckpt") is True
    assert read_checkpoint_info(tmp_path / "ckpt")["step"] == 4
    assert recover_directory(tmp_path / "ckpt") is False  # nothing to do now
    # a later save clears the debris of a crash after the swap
    (tmp_path / ".ckpt.ghi789.old").mkdir()
    save_model(tiny_model(seed=1), tmp_path / "ckpt", step=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ckpt.def456.tmp", "ckpt"]
