"""Model checkpoints: a directory with `model.safetensors` and `config.json`.

`config.json` carries everything needed to rebuild the network without the YAML it was
trained from: the model config, the encoding, and whatever metadata the writer adds
(training step, validation metrics, the experiment config), plus the SHA-256 of the
weights file so a damaged or swapped file is caught before torch sees it.

A checkpoint directory is written as a whole: its files go into a temporary sibling
directory that then replaces the old one, so a crash leaves either the old checkpoint
or the new one, never a mix; the temporary siblings carry their writer's process id and
host in their names, so the next write (or `recover_directory`) removes those of a
writer that is gone and leaves a live one's. Training keeps its resumable state
(`training_state.pt`) in the same directory through `extra_files`.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from mmt.config import ConfigError, ModelConfig, SamplingParams, config_from_dict
from mmt.encoding import Encoding, EncodingError
from mmt.errors import MMTError
from mmt.files import default_mode, sha256_file
from mmt.locks import Owner
from mmt.model import MusicTransformer

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT = "mmt-checkpoint"
FORMAT_VERSION = 1
BUNDLED_DIR = Path(__file__).resolve().parent / "models"
_RESERVED = {"format", "format_version", "model", "encoding", "weights_sha256", "mmt_version", "sampling",
             "pitch_ranges"}


class CheckpointError(MMTError, ValueError):
    """A checkpoint directory is missing, damaged or does not match the model."""


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def _json_ready(value):
    """Metadata as plain JSON (tensors and numpy scalars to numbers, NaN to null)."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _json_ready(value.tolist())
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return _json_ready(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _owner_prefix(directory: Path) -> str:
    """The name prefix of this process's temporary siblings of `directory`: `.<name>.<pid>@<host>.`"""
    return f".{directory.name}.{os.getpid()}@{socket.gethostname()}."


def _stale(path: Path, directory: Path) -> bool:
    """Whether a temporary sibling (`.<name>.<pid>@<host>.XXXX.tmp|old`) was left by a writer that is gone.

    One without an owner in its name was left by an mmt older than the owner names: stale too.
    """
    match = re.fullmatch(rf"\.{re.escape(directory.name)}\.(\d+)@(.+)\.[^.]+\.(tmp|old)", path.name)
    return match is None or Owner(int(match[1]), match[2]).gone


def _debris(directory: Path, kind: str) -> list[Path]:
    """Temporary siblings of `directory` of `kind` ("tmp" or "old") whose writer is gone, oldest first."""
    found = [p for p in directory.parent.glob(f".{glob.escape(directory.name)}.*.{kind}") if _stale(p, directory)]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def recover_directory(directory: str | os.PathLike) -> bool:
    """Undo what a crashed writer of `directory` left: a swap cut short, then its temporary folders.

    `write_directory` fills `.<name>.<owner>.XXXX.tmp`, moves the old directory aside to
    `.<name>.<owner>.XXXX.old`, moves the new one in, and removes the old one. A process
    killed between the two moves leaves only the old copy (complete) under its temporary
    name: it is put back when `directory` is missing. Then every temporary sibling of a
    writer that is gone is removed (each `.tmp` a whole checkpoint, optimizer state
    included); those of a live writer (another process of this host) are left alone.
    Returns whether a directory was put back.
    """
    directory = Path(directory)
    if not directory.parent.is_dir():
        return False
    olds = _debris(directory, "old")
    restored = not directory.exists() and bool(olds)
    if restored:
        os.replace(olds.pop(), directory)
    for debris in olds + _debris(directory, "tmp"):
        shutil.rmtree(debris, ignore_errors=True)
    return restored


def _plain_permissions(folder: Path) -> None:
    """Give `folder` and its files the permissions of a plain `mkdir` and `open` (mkdtemp's are 0o700)."""
    for path in folder.iterdir():
        os.chmod(path, default_mode(directory=path.is_dir()))
    os.chmod(folder, default_mode(directory=True))


def write_directory(directory: str | os.PathLike, writers: Mapping[str, Callable[[Path], object]]) -> Path:
    """Write a directory of files as one unit: fill a temporary sibling, then swap it in.

    Args:
        directory: the directory to (re)place.
        writers: file name -> function writing that file at the given path.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(directory)
    prefix = _owner_prefix(directory)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=prefix, suffix=".tmp"))
    old = None
    try:
        for name, write in writers.items():
            write(tmp / name)
        _plain_permissions(tmp)
        if directory.exists():
            old = Path(tempfile.mkdtemp(dir=directory.parent, prefix=prefix, suffix=".old"))
            os.rmdir(old)
            os.replace(directory, old)
        os.replace(tmp, directory)
    except BaseException:
        if old is not None and old.exists() and not directory.exists():
            os.replace(old, directory)  # put the previous checkpoint back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return directory


def save_model(
    model: nn.Module,
    directory: str | os.PathLike,
    /,
    *,
    extra_files: Mapping[str, Callable[[Path], object]] | None = None,
    **metadata,
) -> Path:
    """Save `model` as a checkpoint directory (atomically, replacing any old one).

    Args:
        model: a `MusicTransformer` (a DDP or compiled wrapper is unwrapped).
        directory: where to write `model.safetensors` and `config.json`.
        extra_files: more files for the same directory (name -> writer), e.g. the
            training state; they are swapped in together with the weights.
        **metadata: JSON-able values stored in `config.json`, e.g. `step=1000,
            metrics={"valid_loss": 2.3}`.

    Returns:
        the directory.
    """
    from safetensors.torch import save_file

    from mmt import __version__

    model = unwrap(model)
    if not isinstance(model, MusicTransformer):
        raise TypeError(f"save_model expects a MusicTransformer, got {type(model).__name__}")
    clash = sorted(set(metadata) & _RESERVED)
    if clash:
        raise ValueError(f"metadata key(s) {', '.join(clash)} are reserved by the checkpoint format")
    aliases = model.tied_weights  # one tensor under two names is saved once (safetensors refuses shared memory)
    tensors = {name: t.detach().to("cpu", torch.float32 if t.is_floating_point() else t.dtype).contiguous()
               for name, t in model.state_dict().items() if name not in aliases}

    def write_weights(path: Path) -> None:
        save_file(tensors, str(path), metadata={"format": FORMAT})

    def write_config(path: Path) -> None:
        info = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "mmt_version": __version__,
            "model": model.config.to_dict(),
            "encoding": model.encoding.to_dict(),
            "sampling": model.sampling.to_dict(),
            "pitch_ranges": {name: list(bounds) for name, bounds in model.pitch_ranges.items()},
            "weights_sha256": sha256_file(path.parent / WEIGHTS),
            **_json_ready(metadata),
        }
        path.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")

    writers = {WEIGHTS: write_weights, CONFIG: write_config, **(extra_files or {})}
    return write_directory(directory, writers)


def bundled_models() -> list[str]:
    """Names of the models that ship with the package (`mmt/models/<name>/`)."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / CONFIG).is_file())


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint directory for `path`: itself, `<path>/best` for a training run's folder,
    or the bundled model of that name (e.g. "music21-small") when no such path exists."""
    path = Path(path)
    if not path.exists() and str(path) in bundled_models():
        return BUNDLED_DIR / str(path)
    if not path.exists():
        names = ", ".join(bundled_models()) or "none"
        raise CheckpointError(f"{path}: no such checkpoint directory (bundled models: {names})")
    if not path.is_dir():
        raise CheckpointError(f"{path}: a checkpoint is a directory (with {WEIGHTS} and {CONFIG}), not a file")
    if not (path / CONFIG).exists():
        for sub in ("best", "last"):
            if (path / sub / CONFIG).exists():
                return path / sub
        raise CheckpointError(f"{path}: not a checkpoint (no {CONFIG})")
    return path


def read_checkpoint_info(path: str | os.PathLike) -> dict:
    """The parsed `config.json` of a checkpoint (model config, encoding, step, metrics, ...)."""
    directory = resolve_checkpoint(path)
    config_path = directory / CONFIG
    try:
        info = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{config_path}: damaged checkpoint config (not valid JSON: {error})") from None
    except OSError as error:
        raise CheckpointError(f"{config_path}: cannot read the checkpoint config ({error.strerror or error})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError(f"{config_path}: not an mmt checkpoint config (format is not {FORMAT!r})")
    version = info.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{config_path}: damaged checkpoint config (format_version {version!r} is not an integer)")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path}: checkpoint format version {info['format_version']} is newer than this "
            f"mmt understands ({FORMAT_VERSION}); upgrade mmt"
        )
    for key in ("model", "encoding"):
        if not isinstance(info.get(key), dict):
            raise CheckpointError(f"{config_path}: damaged checkpoint config (no '{key}' section)")
    return info


def _model_config(info: dict, config_path: Path) -> ModelConfig:
    """The model section, type-checked as a config file's `model:` section is (`mmt.config`)."""
    try:
        return config_from_dict({"model": info["model"]}, source=str(config_path)).model
    except ConfigError as error:
        reason = str(error).removeprefix(f"{config_path}: ")
        raise CheckpointError(f"{config_path}: bad model config ({reason})") from None


def _weights_sha256(weights: Path) -> str:
    try:
        return sha256_file(weights)
    except OSError as error:
        raise CheckpointError(f"{weights}: cannot read the weights ({error.strerror or error})") from None


def _check_shapes(weights: Path, model: nn.Module) -> None:
    """Compare the tensors named in the weights file's header with `model`'s, reading no tensor.

    `model` may live on the meta device: a damaged config (dim 1000000) is refused before
    anything of its size is allocated.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{weights}: damaged weights file ({error})") from None
    own = {name: tuple(t.shape) for name, t in model.state_dict().items() if name not in model.tied_weights}
    missing = sorted(set(own) - set(shapes))
    unexpected = sorted(set(shapes) - set(own))
    wrong_shape = sorted(f"{k} (file {shapes[k]}, model {own[k]})" for k in set(own) & set(shapes)
                         if shapes[k] != own[k])
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s), e.g. {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s), e.g. {', '.join(unexpected[:3])}")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} tensor(s) of the wrong shape, e.g. {', '.join(wrong_shape[:2])}")
    if problems:
        raise CheckpointError(f"{weights}: weights do not match the model in {CONFIG}: " + "; ".join(problems))


def _check_finite(weights: Path, state: Mapping[str, torch.Tensor]) -> None:
    """Refuse NaN or infinite weights (a diverged run or a damaged file), which would generate silently."""
    bad = sorted(name for name, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all())
    if bad:
        raise CheckpointError(f"{weights}: {len(bad)} tensor(s) hold NaN or infinite values, e.g. {', '.join(bad[:3])}")


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> MusicTransformer:
    """Rebuild a `MusicTransformer` from a checkpoint directory alone, in eval mode.

    Args:
        path: a checkpoint directory, or a training output directory (its `best/`).
        device: where to put the model.

    Raises:
        CheckpointError: naming the path, when the directory is missing, a file is damaged
            (bad JSON, a config value of the wrong type or out of bounds, weights not
            matching their recorded hash, unreadable safetensors, NaN or infinite weights),
            or the weights do not fit the recorded model config. Shapes are checked
            before the model is built, so a damaged config allocates nothing of its size.

    The model keeps where it came from: `checkpoint_dir`, and `weights_sha256`, the SHA-256
    of the weights file as read (what a generation's `settings.json` records).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = resolve_checkpoint(path)
    info = read_checkpoint_info(directory)
    config_path = directory / CONFIG
    config = _model_config(info, config_path)
    try:
        encoding = Encoding.from_dict(info["encoding"], source=str(config_path))
    except EncodingError as error:
        raise CheckpointError(f"bad encoding in checkpoint: {error}") from None

    weights = directory / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights}: {'not a file' if weights.exists() else 'missing weights file'}")
    expected = info.get("weights_sha256")
    digest = _weights_sha256(weights)
    if expected is not None and digest != expected:
        raise CheckpointError(
            f"{weights}: damaged checkpoint (weights do not match the SHA-256 recorded in {CONFIG})"
        )
    with torch.device("meta"):
        _check_shapes(weights, MusicTransformer(config, encoding))
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{weights}: damaged weights file ({error})") from None
    _check_finite(weights, state)
    model = MusicTransformer(config, encoding)
    for alias, owner in model.tied_weights.items():
        state[alias] = state[owner]
    model.load_state_dict(state)
    model.sampling = _sampling_defaults(info, config_path)
    model.pitch_ranges = _pitch_ranges(info, encoding, config_path)
    model.checkpoint_dir = directory  # where it came from, for records such as an evaluation's
    model.weights_sha256 = digest  # what it was loaded from, for a generation's settings.json
    return model.to(device).eval()


def _sampling_defaults(info: dict, config_path: Path) -> SamplingParams:
    """The checkpoint's sampling defaults: its `sampling` entry, else its run's `sampling:` section."""
    section = info.get("sampling")
    if section is None:
        section = (info.get("experiment") or {}).get("sampling")
    try:
        return config_from_dict({"sampling": section}, source=str(config_path)).sampling
    except ConfigError as error:
        raise CheckpointError(f"bad sampling defaults: {error}") from None


def _pitch_ranges(info: dict, encoding: Encoding, config_path: Path) -> dict[str, tuple[int, int]]:
    ranges = info.get("pitch_ranges") or {}
    if not isinstance(ranges, dict):
        raise CheckpointError(f"{config_path}: pitch_ranges must map instrument names to [low, high]")
    out = {}
    for name, bounds in ranges.items():
        ok = (name in encoding.instruments and isinstance(bounds, list) and len(bounds) == 2
              and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 127 for b in bounds)
              and bounds[0] <= bounds[1])
        if not ok:
            raise CheckpointError(f"{config_path}: pitch_ranges: {name!r}: {bounds!r} is not a known instrument's "
                                  "[low, high] MIDI pitches")
        out[name] = (bounds[0], bounds[1])
    return out
