"""Experiment configs: YAML -> frozen dataclasses, unknown keys are errors naming key and file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mmt.config import (
    Augmentation, ConfigError, DataConfig, ExperimentConfig, ModelConfig, SamplingParams, TrainingConfig,
    config_from_dict, load_config,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_sections_load_into_frozen_dataclasses(tmp_path):
    path = write(tmp_path, """
name: tiny
model: {dim: 64, depth: 2, heads: 4, max_seq_len: 128, pos_emb: rotary, dropout: 0}
training: {batch_size: 4, max_steps: 10, lr: 5e-4, betas: [0.9, 0.95], patience: null}
data: {path: data/x, augment: false, max_beat: 256}
sampling: {temperature: {pitch: 0.9}, top_k: 8}
""")
    config = load_config(path)
    assert config.name == "tiny"
    assert config.model == ModelConfig(dim=64, depth=2, heads=4, max_seq_len=128, pos_emb="rotary", dropout=0.0)
    assert config.training.lr == 0.0005 and isinstance(config.training.lr, float)
    assert config.training.betas == (0.9, 0.95)
    assert config.training.patience is None
    assert config.training.warmup_steps == TrainingConfig().warmup_steps
    assert config.data == DataConfig(path="data/x", augment=False, max_beat=256)
    assert config.data_max_seq_len == 128
    assert config.sampling.value_for("temperature", "pitch") == 0.9
    assert config.sampling.value_for("temperature", "beat") == 1.0
    assert config.sampling.per_field("top_k") == (8, 8, 8, 8, 8, 8)
    assert config.sampling.per_field("temperature") == (1.0, 1.0, 1.0, 0.9, 1.0, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.training.lr = 1.0


def test_round_trip_through_dict():
    config = config_from_dict({"name": "x", "training": {"max_steps": 5}, "sampling": {"top_p": {"beat": 0.5}}})
    assert config_from_dict(config.to_dict()) == config


def test_missing_sections_take_defaults(tmp_path):
    config = load_config(write(tmp_path, "model: {dim: 32, heads: 4}\n"))
    assert config.name == "exp"  # the file's stem
    assert config.training == TrainingConfig()
    assert config.sampling == SamplingParams()
    assert isinstance(config, ExperimentConfig)


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "training: {batch_size: 4, learning_rate: 0.1}\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml: unknown key 'training\.learning_rate'"):
        load_config(path)


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(ConfigError, match=r"exp\.yaml: unknown key 'optimizer'"):
        load_config(write(tmp_path, "optimizer: {}\n"))


def test_wrong_type_names_key(tmp_path):
    with pytest.raises(ConfigError, match=r"exp\.yaml: 'model\.depth' has the wrong type: 'six'"):
        load_config(write(tmp_path, "model: {depth: six}\n"))


def test_bad_value_names_section(tmp_path):
    with pytest.raises(ConfigError, match=r"exp\.yaml: section 'model': pos_emb must be one of"):
        load_config(write(tmp_path, "model: {pos_emb: learned}\n"))


def test_the_augmentation_keys_stand_in_the_data_section(tmp_path):
    path = write(tmp_path, "data: {augment: true, controls: 0.25, remap_split: voices, remap_order: true, "
                           "pitch_shift: [-3, 3]}\n")
    data = load_config(path).data
    assert data.augmentation == Augmentation(controls=0.25, remap_split="voices", remap_order=True, pitch_shift=(-3, 3))
    assert data.item_augmentation is data.augmentation
    assert load_config(path).to_dict()["data"] == {
        "path": None, "max_seq_len": None, "max_beat": None, "augment": True, "train_split": "train",
        "valid_split": "valid", "anticipation": 4.0, "pitch_shift": [-3, 3], "controls": 0.25,
        "regions": 0.0, "instrument_remap": 0.0, "remap_ensemble": 0.0, "remap_split": "voices", "remap_order": True,
        "rests": 0.0,
        "takeover": 0.0, "takeover_share": [0.2, 0.6], "mix": None}
    assert load_config(write(tmp_path, "data: {augment: false}\n")).data.item_augmentation is None
    with pytest.raises(ConfigError, match=r"exp\.yaml: unknown key 'data\.augmentation'"):
        load_config(write(tmp_path, "data: {augmentation: {controls: 0.25}}\n"))
    with pytest.raises(ConfigError, match=r"exp\.yaml: unknown key 'data\.remap'"):
        load_config(write(tmp_path, "data: {remap: 0.5}\n"))
    with pytest.raises(ConfigError, match=r"exp\.yaml: 'data\.rests' has the wrong type: 'often'"):
        load_config(write(tmp_path, "data: {rests: often}\n"))
    with pytest.raises(ConfigError, match=r"exp\.yaml: section 'data': rests must be a probability in 0..1, got 2"):
        load_config(write(tmp_path, "data: {rests: 2}\n"))
    with pytest.raises(ConfigError, match=r"exp\.yaml: section 'data': controls > 0 needs augment: true"):
        load_config(write(tmp_path, "data: {augment: false, controls: 0.5}\n"))


def test_row_conditioning_is_a_switch_and_init_from_a_path(tmp_path):
    config = load_config(write(tmp_path, "model: {row_conditioning: true}\ntraining: {init_from: runs/a/last}\n"))
    assert config.model.row_conditioning is True and config.training.init_from == "runs/a/last"
    assert load_config(write(tmp_path, "name: x\n")).model.row_conditioning is False  # old configs: off
    with pytest.raises(ConfigError, match=r"'model\.row_conditioning' has the wrong type: 'yes please'"):
        load_config(write(tmp_path, "model: {row_conditioning: yes please}\n"))
    with pytest.raises(ConfigError, match="row_conditioning must be true or false, got 1"):
        ModelConfig(row_conditioning=1)


def test_tie_pitch_is_a_switch_off_by_default(tmp_path):
    assert load_config(write(tmp_path, "model: {tie_pitch: true}\n")).model.tie_pitch is True
    assert load_config(write(tmp_path, "name: x\n")).model.tie_pitch is False
    with pytest.raises(ConfigError, match="tie_pitch must be true or false, got 'yes'"):
        ModelConfig(tie_pitch="yes")


def test_instrument_remap_is_a_probability_drawn_with_the_augmentation():
    assert Augmentation(instrument_remap=0.6).instrument_remap == 0.6
    with pytest.raises(ConfigError, match="instrument_remap must be a probability in 0..1, got 2"):
        Augmentation(instrument_remap=2)
    with pytest.raises(ConfigError, match="instrument_remap > 0 needs augment: true"):
        DataConfig(augmentation=Augmentation(instrument_remap=0.5), augment=False)
    assert Augmentation().remap_split == "random" and Augmentation(remap_split="voices").remap_split == "voices"
    with pytest.raises(ConfigError, match="remap_split must be one of random, voices, got 'pairs'"):
        Augmentation(remap_split="pairs")


def test_regions_is_a_share_of_the_items_with_controls(tmp_path):
    assert Augmentation().regions == 0.0 and Augmentation(controls=0.5, regions=0.3).regions == 0.3
    assert load_config(write(tmp_path, "data: {controls: 0.5, regions: 0.3}\n")).data.augmentation == Augmentation(
        controls=0.5, regions=0.3)
    with pytest.raises(ConfigError, match="regions must be a probability in 0..1, got 1.5"):
        Augmentation(controls=0.5, regions=1.5)
    with pytest.raises(ConfigError, match=r"regions > 0 needs controls > 0"):
        Augmentation(regions=0.3)
    with pytest.raises(ConfigError, match=r"controls > 0 needs augment: true"):
        DataConfig(augmentation=Augmentation(controls=0.5, regions=0.3), augment=False)


def test_remap_ensemble_is_a_probability_among_relabelled_items():
    assert Augmentation(instrument_remap=0.9, remap_ensemble=0.5).remap_ensemble == 0.5
    with pytest.raises(ConfigError, match="remap_ensemble must be a probability in 0..1, got 1.5"):
        Augmentation(instrument_remap=0.9, remap_ensemble=1.5)
    with pytest.raises(ConfigError, match=r"remap_ensemble > 0 needs instrument_remap > 0"):
        Augmentation(remap_ensemble=0.5)


def test_rests_is_a_probability_drawn_with_the_augmentation():
    assert Augmentation().rests == 0.0 and Augmentation(rests=0.5).rests == 0.5
    with pytest.raises(ConfigError, match="rests must be a probability in 0..1, got 1.5"):
        Augmentation(rests=1.5)
    with pytest.raises(ConfigError, match="rests > 0 needs augment: true"):
        DataConfig(augmentation=Augmentation(rests=0.5), augment=False)


def test_takeover_is_a_probability_drawn_with_the_augmentation():
    assert Augmentation().takeover == 0.0 and Augmentation(takeover=0.5).takeover == 0.5
    with pytest.raises(ConfigError, match="takeover must be a probability in 0..1, got -0.1"):
        Augmentation(takeover=-0.1)
    with pytest.raises(ConfigError, match="takeover > 0 needs augment: true"):
        DataConfig(augmentation=Augmentation(takeover=0.5), augment=False)


def test_pitch_shift_is_a_range_that_holds_0():
    assert Augmentation().pitch_shift == (-5, 6) and Augmentation(pitch_shift=[-2, 0]).pitch_shift == (-2, 0)
    for bad in ((1, 6), (-5, -1), (0,)):
        with pytest.raises(ConfigError, match=r"pitch_shift must be \[low, high\] with low <= 0 <= high, got \["):
            Augmentation(pitch_shift=bad)


def test_takeover_share_is_a_range_of_shares(tmp_path):
    assert Augmentation().takeover_share == (0.2, 0.6)
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  takeover: 1.0\n  takeover_share: [0.4, 0.9]\n")
    config = load_config(path)
    assert config.data.augmentation.takeover_share == (0.4, 0.9)
    assert config.to_dict()["data"]["takeover_share"] == [0.4, 0.9]
    for bad in ((0.6, 0.2), (-0.1, 0.5), (0.5, 1.5)):
        with pytest.raises(ConfigError, match=rf"takeover_share must be \[low, high\] with 0 <= low <= high <= 1, got \[{bad[0]}, {bad[1]}\]"):
            Augmentation(takeover_share=bad)
    with pytest.raises(ConfigError, match=r"takeover_share must be \[low, high\] .*, got \[0.4\]"):
        Augmentation(takeover_share=(0.4,))
    path.write_text("data:\n  takeover_share: [0.4]\n")
    with pytest.raises(ConfigError, match="'data.takeover_share' has the wrong type"):
        load_config(path)


@pytest.mark.parametrize("settings, message", [
    ({"temperature": float("inf")}, "temperature must be a number from 0 .greedy. to 100"),
    ({"temperature": 3.5e38}, "temperature must be a number from 0 .greedy. to 100"),
    ({"temperature": float("nan")}, "temperature must be a number from 0 .greedy. to 100"),
    ({"temperature": -1}, "temperature must be a number from 0 .greedy. to 100"),
    ({"top_k": 0}, "top_k must be an integer >= 1 or null"),
    ({"top_p": 2}, "top_p must be a number in .0, 1. or null"),
    ({"top_p": {"pitch": 0}}, "top_p of pitch must be a number in .0, 1. or null"),
])
def test_absurd_sampling_values_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        SamplingParams(**settings)


def test_greedy_and_per_field_sampling_values_are_accepted():
    params = SamplingParams(temperature=0, top_p={"pitch": 0.9})
    assert params.per_field("temperature") == (0, 0, 0, 0, 0, 0)
    assert params.per_field("top_p") == (None, None, None, 0.9, None, None)
    assert params.to_dict() == {"temperature": 0, "top_k": None, "top_p": {"pitch": 0.9}, "repetition_penalty": 1.0}


def test_sampling_field_names_are_checked():
    with pytest.raises(ConfigError, match=r"unknown field\(s\) tempo"):
        config_from_dict({"sampling": {"temperature": {"tempo": 1.0}}})
    with pytest.raises(ConfigError, match=r"top_p of pitch must be a number in \(0, 1\]"):
        config_from_dict({"sampling": {"top_p": {"pitch": 1.5}}})


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: no such config file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="exp.yaml: not valid YAML"):
        load_config(write(tmp_path, "model: {dim: [\n"))
    with pytest.raises(ConfigError, match="exp.yaml: expected a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


SHIPPED = sorted(CONFIGS.glob("*.yaml"))


def test_the_expected_configs_are_shipped():
    names = {p.stem for p in SHIPPED}
    expected = {"paper", "music21-mix"} | {f"{d}-{v}" for d in ("sod", "lmd", "pop1k7") for v in ("ape", "rpe", "npe")}
    assert expected <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_config_loads(path):
    config = load_config(path)
    assert config.name == path.stem
    variant = path.stem.rsplit("-", 1)[-1]
    if variant in ("ape", "rpe", "npe"):
        assert config.model.pos_emb == {"ape": "absolute", "rpe": "rotary", "npe": "none"}[variant]
        assert (config.model.dim, config.model.depth, config.model.heads) == (512, 6, 8)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_schedule_reaches_its_floor_within_the_run(path):
    """decay_steps (or max_steps) must not lie past max_steps, or the learning rate never decays."""
    from mmt.training import lr_factor

    tc = load_config(path).training
    assert lr_factor(tc.max_steps, tc) == pytest.approx(tc.min_lr_ratio, abs=1e-12)
    # the last step taken (index max_steps - 1) is within a step's decay of the floor
    assert lr_factor(tc.max_steps - 1, tc) == pytest.approx(tc.min_lr_ratio, abs=1e-4)


def test_decay_steps_default_to_max_steps():
    from mmt.training import lr_factor

    tc = TrainingConfig(max_steps=100, warmup_steps=10, lr_schedule="linear", min_lr_ratio=0.1)
    assert tc.decay_steps is None
    assert lr_factor(55, tc) == pytest.approx(0.55)  # halfway from 10 to 100: 1 - 0.9 * 0.5
    assert lr_factor(100, tc) == pytest.approx(0.1)
