"""Experiment configuration: frozen dataclasses loaded from YAML.

A config file has up to five top-level keys: `name`, `model`, `training`, `data` and
`sampling`; each section maps onto one dataclass below. A key that no dataclass knows
is an error naming the key and the file, and so is a value of the wrong type (so a
typo never silently falls back to a default).

Example::

    name: music21-small
    model: {dim: 256, depth: 4, heads: 8, max_seq_len: 512, pos_emb: rotary}
    training: {batch_size: 8, max_steps: 3000, lr: 5.0e-4}
    data: {path: data/music21, augment: true}
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

from mmt.constants import FIELDS, PITCH_SHIFT, REMAP_SPLITS, TAKEOVER_SHARE
from mmt.errors import GenerationError, MMTError

__all__ = [
    "ConfigError", "ModelConfig", "TrainingConfig", "Augmentation", "DataConfig", "SamplingParams",
    "ExperimentConfig", "load_config", "config_from_dict", "check_arguments",
]

LR_SCHEDULES = ("linear", "cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(MMTError, ValueError):
    """A config file or dict is invalid; the message names the file and the key."""


POS_EMBS = ("absolute", "rotary", "none")


@dataclass(frozen=True)
class ModelConfig:
    """Network shape. `pos_emb`: "absolute" (APE), "rotary" (RPE) or "none" (NPE).

    `row_conditioning`: each head but the first also reads the fields of the row it predicts
    that come before its own in `mmt.constants.ROW_ORDER` (type, beat, position, instrument,
    pitch, duration), so that a note's pitch and duration follow the instrument drawn for it
    (false: the six fields are drawn independently from the same hidden state, as in the
    original MMT). See `mmt.model.MusicTransformer`.

    `tie_pitch`: the pitch embedding and the pitch head's weights are one table (weight tying,
    Press & Wolf, EACL 2017; Vaswani et al., 2017, section 3.4), read in scaled by sqrt(dim).
    The table then learns from what each pitch predicts as well as from how it is predicted.
    """

    dim: int = 512
    depth: int = 6
    heads: int = 8
    dropout: float = 0.1
    max_seq_len: int = 1024
    pos_emb: str = "absolute"
    row_conditioning: bool = False
    tie_pitch: bool = False

    def __post_init__(self) -> None:
        if self.pos_emb not in POS_EMBS:
            raise ConfigError(f"pos_emb must be one of {', '.join(POS_EMBS)}, got {self.pos_emb!r}")
        # Upper bounds far above any real model, so that a damaged config fails here, not in a huge allocation.
        for name, most in (("dim", 2**16), ("depth", 1024), ("heads", 1024), ("max_seq_len", 2**20)):
            if not 1 <= getattr(self, name) <= most:
                raise ConfigError(f"{name} must be in 1..{most}, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.dim % self.heads:
            raise ConfigError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        for name in ("row_conditioning", "tie_pitch"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainingConfig:
    """The optimisation loop.

    The learning rate rises linearly from 0 to `lr` over `warmup_steps`, then follows
    `lr_schedule` down to `lr * min_lr_ratio` at `decay_steps` (null, the default:
    `max_steps`) and stays there. "linear" is the original MMT's schedule (0.1 at 100k
    steps). With `decay_steps` null, raising `max_steps` on `--resume` stretches the
    remaining schedule; set it explicitly to extend a run along the same schedule.

    Attributes:
        seed: seeds the weights, the data order, augmentation and dropout.
        batch_size: sequences per step (per process under DDP).
        max_steps: optimiser steps in total.
        lr, weight_decay, betas: AdamW's settings (no weight decay on biases, norms
            and embeddings).
        warmup_steps, lr_schedule, decay_steps, min_lr_ratio: the schedule above.
        grad_clip: clip the global gradient norm to this (None: no clipping).
        valid_every: validate (and checkpoint) every this many steps.
        valid_batches: batches per validation (None: the whole validation split).
        patience: stop after this many validations without improvement (None: never).
        log_every: refresh the progress bar's loss every this many steps.
        bf16: bfloat16 autocast on CUDA (ignored on CPU, where training stays float32).
        num_workers: DataLoader worker processes.
        threads: torch CPU threads during training (None: torch's default). On a busy
            machine 1 thread per process can be much faster than oversubscribed cores.
        device: "auto" (CUDA if available), "cpu" or "cuda".
        tensorboard: also write TensorBoard events if `tensorboard` is installed.
        init_from: a checkpoint directory or bundled model name whose weights a new run
            starts from (fine-tuning): every parameter of this model that it has, by name,
            must match in shape and is copied; the others (e.g. `row_conditioning`'s tables)
            keep their initialisation. The optimiser and schedule start afresh. Not read on
            `--resume`, which continues from the run's own checkpoint.
    """

    seed: int = 0
    batch_size: int = 8
    max_steps: int = 200_000
    lr: float = 5e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 5000
    lr_schedule: str = "linear"
    decay_steps: int | None = None
    min_lr_ratio: float = 0.1
    grad_clip: float | None = 1.0
    valid_every: int = 1000
    valid_batches: int | None = None
    patience: int | None = 20
    log_every: int = 10
    bf16: bool = True
    num_workers: int = 0
    threads: int | None = None
    device: str = "auto"
    tensorboard: bool = True
    init_from: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {list(self.betas)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        for name in ("batch_size", "max_steps", "valid_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "num_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("decay_steps", "valid_batches", "patience", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1 or null, got {value}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"grad_clip must be > 0 or null, got {self.grad_clip}")


@dataclass(frozen=True)
class Augmentation:
    """How training items are varied: the one home of the augmentation settings.

    `mmt.data.MusicDataset` and `mmt.data.make_item` draw each item's variation from these
    with the functions of `mmt.augment`; training draws the take-over of each step's inputs
    (`mmt.augment.step_takeover`). In a config file they are keys of the `data:` section
    (`DataConfig.augmentation`), read only when `data.augment` is true.

    Attributes:
        pitch_shift: [low, high]: every pitched note of an item moves by one shift drawn from
            low..high semitones (inclusive; it must contain 0), narrowed so that no pitch leaves
            0..127 (`mmt.augment.pitch_shift_bounds`); drums are never shifted.
        controls: the probability that a training item gets control rows (given notes:
            whole instruments, time spans, or everything from a beat on; `mmt.augment.select_controls`).
            0 (default): a model without control rows.
        regions: the share of items with control rows (of two or more instruments) that take a
            region kind (`mmt.augment.select_region`): some parts written over a span of 4-16
            beats (whole bars when the prepared directory keeps the piece's meter), or one part
            added over the rest, every other note given, as an edit (`--edit PARTS@BARS`) asks;
            the others draw the kinds above uniformly. 0 (default): no regions, the items drawn
            exactly as before the setting existed. Needs `controls` > 0.
        instrument_remap: the probability that a training item's parts are relabelled as other
            instruments whose register holds them, a chordal part maybe first split by register
            (`mmt.augment.remap_instruments`), so that the model learns to play every instrument it
            is given. 0 (default): the pieces' own instruments.
        remap_ensemble: the probability that a relabelled item takes its instruments from one
            ensemble of `mmt.constants.REMAP_ENSEMBLES` (string quartet, piano and strings, wind
            quintet, brass, ...), drawn uniformly, instead of from every instrument: so that the
            model sees the ensembles users ask for. 0 (default): from every instrument.
        remap_split: how a relabelled item splits its chordal part (a chorale's `voices`):
            "random" (default; 3 items in 4, into 2-4 parts at random) or "voices" (always,
            into as many parts as it has voices, so that each plays one line).
        remap_order: relabelled parts of one family (strings, woodwinds, saxophones, brass) take
            their instruments in register order: the lowest part the cello, the highest the
            violin (`mmt.augment.remap_instruments`, step 4). False (default): as drawn.
        rests: the probability that one part of a training item rests for 4-32 beats and then
            plays again (`mmt.augment.rest_part`), so that a model learns that a declared
            instrument gone quiet returns. 0 (default): the parts as they are.
        takeover: the probability that a training item's inputs show one of its instruments
            playing a stretch of its notes alone, its targets unchanged
            (`mmt.augment.takeover_inputs`), so that a model learns to bring the other parts back
            when its own sample lets one instrument take over. 0 (default): inputs as they are.
        takeover_share: [low, high]: the stretch covers a share of the item's note rows drawn
            uniformly between these (0 <= low <= high <= 1; default 0.2-0.6).
    """

    pitch_shift: tuple[int, int] = PITCH_SHIFT
    controls: float = 0.0
    regions: float = 0.0
    instrument_remap: float = 0.0
    remap_ensemble: float = 0.0
    remap_split: str = "random"
    remap_order: bool = False
    rests: float = 0.0
    takeover: float = 0.0
    takeover_share: tuple[float, float] = TAKEOVER_SHARE

    PROBABILITIES: ClassVar[tuple[str, ...]] = ("controls", "regions", "instrument_remap", "remap_ensemble", "rests",
                                                "takeover")

    def __post_init__(self) -> None:
        object.__setattr__(self, "pitch_shift", tuple(self.pitch_shift))
        object.__setattr__(self, "takeover_share", tuple(self.takeover_share))
        if len(self.pitch_shift) != 2 or not self.pitch_shift[0] <= 0 <= self.pitch_shift[1]:
            raise ConfigError(f"pitch_shift must be [low, high] with low <= 0 <= high, got {list(self.pitch_shift)}")
        for name in self.PROBABILITIES:
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"{name} must be a probability in 0..1, got {value}")
        if len(self.takeover_share) != 2 or not 0 <= self.takeover_share[0] <= self.takeover_share[1] <= 1:
            raise ConfigError(f"takeover_share must be [low, high] with 0 <= low <= high <= 1, got {list(self.takeover_share)}")
        if self.regions > 0 and self.controls == 0:
            raise ConfigError("regions > 0 needs controls > 0 (it chooses among the items with control rows)")
        if self.remap_ensemble > 0 and self.instrument_remap == 0:
            raise ConfigError("remap_ensemble > 0 needs instrument_remap > 0 (it chooses among the relabelled items)")
        if self.remap_split not in REMAP_SPLITS:
            raise ConfigError(f"remap_split must be one of {', '.join(REMAP_SPLITS)}, got {self.remap_split!r}")
        if not isinstance(self.remap_order, bool):
            raise ConfigError(f"remap_order must be true or false, got {self.remap_order!r}")


@dataclass(frozen=True)
class DataConfig:
    """Which prepared directory to train on and how items are cut.

    Attributes:
        path: a directory written by `mmt prepare` (None: must be given with `--data`).
        max_seq_len: rows per training item (None: the model's `max_seq_len`).
        max_beat: drop notes from this beat on (None: keep all the encoding allows);
            the original MMT trained on the first 256 beats.
        augment: vary the items as `augmentation` says (a pure function of seed, epoch and
            index); false: every item as stored, from beat 0, and every probability of
            `augmentation` must be 0.
        train_split, valid_split: split names (files `<split>.txt`).
        anticipation: beats ahead of their time that control rows are placed; the
            checkpoint's encoding keeps it (used only with `augmentation.controls` > 0).
        augmentation: the `Augmentation` settings; in a config file their keys stand in the
            `data:` section itself (`data: {augment: true, controls: 0.25, rests: 0.5}`).
        mix: source group -> weight (`mmt.mix`): a training piece of a group of weight w
            is drawn w times as often as one of weight 1 (groups not named: 1; 0 leaves a
            group out). None: every piece once an epoch. E.g. `{bach: 12, essenFolksong: 0.25}`.
    """

    path: str | None = None
    max_seq_len: int | None = None
    max_beat: int | None = None
    augment: bool = True
    train_split: str = "train"
    valid_split: str = "valid"
    anticipation: float = 4.0
    augmentation: Augmentation = field(default_factory=Augmentation)
    mix: dict | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.augmentation, Augmentation):
            raise ConfigError(f"augmentation must be an Augmentation, got {self.augmentation!r}")
        if not self.augment:
            for name in Augmentation.PROBABILITIES:  # drawn per item or step when augmenting
                if getattr(self.augmentation, name) > 0:
                    raise ConfigError(f"{name} > 0 needs augment: true (it is drawn with the augmentation)")
        if not self.anticipation >= 0:
            raise ConfigError(f"anticipation must be a number of beats >= 0, got {self.anticipation}")
        for name in ("max_seq_len", "max_beat"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1 or null, got {value}")
        if self.mix is not None:
            for group, weight in self.mix.items():
                number = isinstance(weight, (int, float)) and not isinstance(weight, bool)
                if not isinstance(group, str) or not number or not 0 <= weight < math.inf:
                    raise ConfigError(f"mix: the weight of group {group!r} must be a number >= 0, got {weight!r}")
            if not any(weight > 0 for weight in self.mix.values()):
                raise ConfigError("mix: at least one group must have a weight above 0")
            # a read-only copy: the caller's dict cannot change the config afterwards
            object.__setattr__(self, "mix", types.MappingProxyType(dict(self.mix)))

    @property
    def item_augmentation(self) -> Augmentation | None:
        """What the training items are varied by: `augmentation`, or None without `augment`."""
        return self.augmentation if self.augment else None


@dataclass(frozen=True)
class SamplingParams:
    """How the next row's fields are drawn: the one validator of sampling settings.

    Each setting is one value for every field or a mapping field name -> value (fields
    not named take the default: temperature 1.0, no top-k, no top-p, no repetition
    penalty). This is the `sampling:` section of a config; a checkpoint keeps its run's
    section as its defaults (`model.sampling`), which `mmt.generate` and every command
    start from.

    Attributes:
        temperature: logits are divided by it; 0 (greedy) <= temperature <= `MAX_TEMPERATURE`.
        top_k: keep the k most likely codes of a field (None: off).
        top_p: keep the smallest set of codes whose probability reaches p (None: off).
        repetition_penalty: r >= 1 makes a code already drawn in that field (by any earlier
            note of the sample, the prompt's included) less likely: its logit l becomes l / r
            when l > 0 and l * r otherwise (Keskar et al., "CTRL", 2019). 1: off. The REMI
            baselines of the Pop1K7 papers sample with 1.2 (and top-k 5, temperature 1.2).
    """

    temperature: float | dict = 1.0
    top_k: int | None | dict = None
    top_p: float | None | dict = None
    repetition_penalty: float | dict = 1.0

    DEFAULTS: ClassVar[dict] = {"temperature": 1.0, "top_k": None, "top_p": None, "repetition_penalty": 1.0}
    MAX_TEMPERATURE: ClassVar[float] = 100.0
    MAX_PENALTY: ClassVar[float] = 10.0

    def __post_init__(self) -> None:
        for name in self.DEFAULTS:
            value = getattr(self, name)
            if isinstance(value, typing.Mapping):
                unknown = sorted(set(value) - set(FIELDS))
                if unknown:
                    raise ConfigError(f"{name}: unknown field(s) {', '.join(map(str, unknown))}; "
                                      f"fields are {', '.join(FIELDS)}", argument=name)
                for key, item in value.items():
                    _check_sampling_value(f"{name} of {key}", name, item)
                # a read-only copy: the caller's dict cannot change the settings afterwards
                object.__setattr__(self, name, types.MappingProxyType(dict(value)))
            else:
                _check_sampling_value(name, name, value)

    def value_for(self, name: str, field_name: str):
        """The setting `name` ("temperature", "top_k", "top_p") of one field."""
        value = getattr(self, name)
        if isinstance(value, typing.Mapping):
            return value.get(field_name, self.DEFAULTS[name])
        return value

    def per_field(self, name: str) -> tuple:
        """The setting `name` of every field, in `FIELDS` order."""
        return tuple(self.value_for(name, f) for f in FIELDS)

    def to_dict(self) -> dict:
        return {name: dict(v) if isinstance(v, typing.Mapping) else v
                for name, v in ((n, getattr(self, n)) for n in self.DEFAULTS)}


def _check_sampling_value(label: str, kind: str, value) -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "temperature":
        if not number or not 0 <= value <= SamplingParams.MAX_TEMPERATURE:
            raise ConfigError(f"{label} must be a number from 0 (greedy) to {SamplingParams.MAX_TEMPERATURE:g}, "
                              f"got {value!r}", argument=kind)
    elif kind == "top_k":
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"{label} must be an integer >= 1 or null (off), got {value!r}", argument=kind)
    elif kind == "top_p":
        if value is not None and (not number or not 0 < value <= 1):
            raise ConfigError(f"{label} must be a number in (0, 1] or null (off), got {value!r}", argument=kind)
    elif kind == "repetition_penalty":
        if not number or not 1 <= value <= SamplingParams.MAX_PENALTY:
            raise ConfigError(f"{label} must be a number from 1 (off) to {SamplingParams.MAX_PENALTY:g}, "
                              f"got {value!r}", argument=kind)


# ---------------------------------------------------------------------- generation arguments
MAX_BALANCE = 10.0
MAX_SEED = 2**63 - 1

# argument -> (kind, lowest, highest, what the range says): the one set of bounds of the
# arguments of `mmt.sampling.sample` and of a `GenerationRequest` (`check_arguments`)
ARGUMENTS: dict[str, tuple[str, float, float | None, str]] = {
    "n_samples": ("integer", 1, None, ">= 1"),
    "max_new_rows": ("integer", 1, None, ">= 1"),
    "min_new_rows": ("integer", 0, None, ">= 0"),
    "window_shift": ("integer", 1, None, ">= 1"),
    "seed": ("integer", 0, MAX_SEED, "in 0 .. 2**63-1"),
    "quota": ("integer", 0, None, ">= 0 (0: off)"),
    "balance": ("number", 0.0, MAX_BALANCE, f"from 0 (off) to {MAX_BALANCE:g}"),
    "max_beats": ("positive", 0.0, None, ""),
    "beats": ("positive", 0.0, None, ""),
    "bars": ("positive", 0.0, None, ""),
    "prompt_beats": ("positive", 0.0, None, ""),
    "prompt_bars": ("positive", 0.0, None, ""),
}


def check_arguments(**values) -> None:
    """Check generation arguments against their bounds (`ARGUMENTS`); None (a default) passes.

    `mmt.sampling.sample` and `mmt.request.GenerationRequest` both check theirs here. Raises:
        GenerationError: naming the argument and its allowed range (its `argument` says which).
    """
    for name, value in values.items():
        if value is None:
            continue
        kind, low, high, allowed = ARGUMENTS[name]
        if kind == "integer":
            ok = (isinstance(value, int) and not isinstance(value, bool) and value >= low
                  and (high is None or value <= high))
            what = f"an integer {allowed}"
        else:
            number = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            ok = number and (value > low if kind == "positive" else low <= value <= high)
            what = "a positive number" if kind == "positive" else f"a number {allowed}"
        if not ok:
            raise GenerationError(f"{name} must be {what}, got {value!r}", argument=name)


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one `mmt train` run needs: model, training, data and sampling sections."""

    name: str = "experiment"
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sampling: SamplingParams = field(default_factory=SamplingParams)

    @property
    def data_max_seq_len(self) -> int:
        """Rows per training item: `data.max_seq_len`, or the model's context."""
        return self.data.max_seq_len or self.model.max_seq_len

    def to_dict(self) -> dict:
        """A JSON/YAML-ready dict that `config_from_dict` turns back into this config."""
        out = {"name": self.name}
        for section in ("model", "training", "data", "sampling"):
            values = {}
            for name in _section_keys(SECTION_CLASSES[section]):
                value = _section_value(getattr(self, section), name)
                if isinstance(value, tuple):
                    value = list(value)
                elif isinstance(value, typing.Mapping):
                    value = dict(value)
                values[name] = value
            out[section] = values
        return out


# ---------------------------------------------------------------------- loading
SECTIONS = ("model", "training", "data", "sampling")


SECTION_CLASSES = {"model": ModelConfig, "training": TrainingConfig, "data": DataConfig, "sampling": SamplingParams}

# a section's field whose own fields are keys of the section itself (`data: {augment: true, rests: 0.5}`)
INLINE_FIELDS = {DataConfig: ("augmentation", Augmentation)}


def _section_keys(cls: type) -> list[str]:
    """The keys a section of class `cls` takes, in order (an inline field's own keys in its place)."""
    inline_name, inline_cls = INLINE_FIELDS.get(cls, (None, None))
    names = []
    for f in dataclasses.fields(cls):
        names += [g.name for g in dataclasses.fields(inline_cls)] if f.name == inline_name else [f.name]
    return names


def _section_value(section, key: str):
    """The value of config key `key` in a section's dataclass (an inline field's keys read from it)."""
    inline_name, inline_cls = INLINE_FIELDS.get(type(section), (None, None))
    if inline_name is not None and key in {f.name for f in dataclasses.fields(inline_cls)}:
        return getattr(getattr(section, inline_name), key)
    return getattr(section, key)


def _type_ok(value, annotation) -> tuple[bool, Any]:
    """Whether `value` fits `annotation` (a string annotation already resolved); returns the coerced value."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(annotation):
            ok, coerced = _type_ok(value, option)
            if ok:
                return True, coerced
        return False, value
    if annotation is type(None):
        return value is None, value
    if annotation is Any:
        return True, value
    if annotation is bool:
        return isinstance(value, bool), value
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if annotation is float:
        if isinstance(value, bool):
            return False, value
        if isinstance(value, (int, float)):
            return True, float(value)
        # YAML 1.1 reads "5e-4" (no dot) as a string; accept it as the number it means.
        if isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, value
        return False, value
    if annotation is str:
        return isinstance(value, str), value
    if annotation is dict:
        return isinstance(value, dict), value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False, value
        args = typing.get_args(annotation)
        if len(args) != len(value):
            return False, value
        coerced = []
        for item, arg in zip(value, args):
            ok, item = _type_ok(item, arg)
            if not ok:
                return False, value
            coerced.append(item)
        return True, tuple(coerced)
    return isinstance(value, annotation), value


def _build_section(cls: type, data, source: str, section: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: section '{section}' must be a mapping, got {type(data).__name__}")
    inline_name, inline_cls = INLINE_FIELDS.get(cls, (None, None))
    hints = {**typing.get_type_hints(cls), **(typing.get_type_hints(inline_cls) if inline_cls else {})}
    names = _section_keys(cls)
    unknown = [key for key in data if key not in names]
    if unknown:
        raise ConfigError(
            f"{source}: unknown key '{section}.{unknown[0]}'"
            + (f" (and {', '.join(map(str, unknown[1:]))})" if len(unknown) > 1 else "")
            + f"; '{section}' takes: {', '.join(names)}"
        )
    values = {}
    for key, value in data.items():
        ok, coerced = _type_ok(value, hints[key])
        if not ok:
            raise ConfigError(f"{source}: '{section}.{key}' has the wrong type: {value!r}")
        values[key] = coerced
    try:
        if inline_cls is not None:
            inline_names = {f.name for f in dataclasses.fields(inline_cls)}
            values[inline_name] = inline_cls(**{key: values.pop(key) for key in list(values) if key in inline_names})
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{source}: section '{section}': {error}") from error


def config_from_dict(data: dict, source: str = "<dict>") -> ExperimentConfig:
    """Build an `ExperimentConfig` from a nested dict; `source` names it in errors."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    allowed = ("name", *SECTIONS)
    unknown = [key for key in data if key not in allowed]
    if unknown:
        raise ConfigError(f"{source}: unknown key '{unknown[0]}'; top-level keys are: {', '.join(allowed)}")
    name = data.get("name", Path(source).stem if source != "<dict>" else "experiment")
    if not isinstance(name, str):
        raise ConfigError(f"{source}: 'name' must be a string, got {name!r}")
    sections = {s: _build_section(SECTION_CLASSES[s], data.get(s), source, s) for s in SECTIONS}
    return ExperimentConfig(name=name, **sections)


def load_config(path: str | os.PathLike) -> ExperimentConfig:
    """Read a YAML experiment config; every problem is a `ConfigError` naming the file."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config ({error})") from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    return config_from_dict(data, source=str(path))
