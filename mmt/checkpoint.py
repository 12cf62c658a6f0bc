"""Model checkpoints: a directory with `model.safetensors` and `config.json`.

`config.json` carries everything needed to rebuild the network without the YAML it was
trained from: the model config, the encoding, and whatever metadata the writer adds
(training step, validation metrics, the experiment config), plus the SHA-256 of the
weights file so a damaged or swapped file is caught before torch sees it.

A checkpoint directory is written as a whole: its files go into a temporary sibling
directory that then replaces the old one, so a crash leaves either the old checkpoint
or the new one, never a mix. Training keeps its resumable state (`training_state.pt`)
in the same directory through `extra_files`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from mmt.encoding import Encoding, EncodingError
from mmt.model import ModelConfig, MusicTransformer

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT = "mmt-checkpoint"
FORMAT_VERSION = 1
_RESERVED = {"format", "format_version", "model", "encoding", "weights_sha256", "mmt_version"}


class CheckpointError(ValueError):
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def recover_directory(directory: str | os.PathLike) -> bool:
    """Undo a swap that a crash cut short: put `.<name>.*.old` back when `directory` is missing.

    `write_directory` moves the old directory aside before moving the new one in; a
    process killed between the two leaves only the old copy (complete) under its
    temporary name. Returns whether a directory was put back.
    """
    directory = Path(directory)
    if directory.exists() or not directory.parent.is_dir():
        return False
    olds = sorted(directory.parent.glob(f".{directory.name}.*.old"), key=lambda p: p.stat().st_mtime)
    if not olds:
        return False
    os.replace(olds[-1], directory)
    return True


def write_directory(directory: str | os.PathLike, writers: Mapping[str, Callable[[Path], object]]) -> Path:
    """Write a directory of files as one unit: fill a temporary sibling, then swap it in.

    Args:
        directory: the directory to (re)place.
        writers: file name -> function writing that file at the given path.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(directory)
    for debris in directory.parent.glob(f".{directory.name}.*.old"):
        shutil.rmtree(debris, ignore_errors=True)  # left by a crash after the swap
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    old = None
    try:
        for name, write in writers.items():
            write(tmp / name)
        if directory.exists():
            old = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".old"))
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
    tensors = {name: t.detach().to("cpu", torch.float32 if t.is_floating_point() else t.dtype).contiguous()
               for name, t in model.state_dict().items()}

    def write_weights(path: Path) -> None:
        save_file(tensors, str(path), metadata={"format": FORMAT})

    def write_config(path: Path) -> None:
        info = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "mmt_version": __version__,
            "model": model.config.to_dict(),
            "encoding": model.encoding.to_dict(),
            "weights_sha256": _sha256(path.parent / WEIGHTS),
            **_json_ready(metadata),
        }
        path.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")

    writers = {WEIGHTS: write_weights, CONFIG: write_config, **(extra_files or {})}
    return write_directory(directory, writers)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint directory for `path`: itself, or `<path>/best` for a training run's folder."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint directory")
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
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError(f"{config_path}: not an mmt checkpoint config (format is not {FORMAT!r})")
    if info.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path}: checkpoint format version {info['format_version']} is newer than this "
            f"mmt understands ({FORMAT_VERSION}); upgrade mmt"
        )
    for key in ("model", "encoding"):
        if not isinstance(info.get(key), dict):
            raise CheckpointError(f"{config_path}: damaged checkpoint config (no '{key}' section)")
    return info


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> MusicTransformer:
    """Rebuild a `MusicTransformer` from a checkpoint directory alone, in eval mode.

    Args:
        path: a checkpoint directory, or a training output directory (its `best/`).
        device: where to put the model.

    Raises:
        CheckpointError: naming the path, when the directory is missing, a file is damaged
            (bad JSON, weights not matching their recorded hash, unreadable safetensors),
            or the weights do not fit the recorded model config.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = resolve_checkpoint(path)
    info = read_checkpoint_info(directory)
    config_path = directory / CONFIG
    try:
        config = ModelConfig(**info["model"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{config_path}: bad model config ({error})") from None
    try:
        encoding = Encoding.from_dict(info["encoding"], source=str(config_path))
    except EncodingError as error:
        raise CheckpointError(f"bad encoding in checkpoint: {error}") from None

    weights = directory / WEIGHTS
    if not weights.exists():
        raise CheckpointError(f"{weights}: missing weights file")
    expected = info.get("weights_sha256")
    if expected is not None and _sha256(weights) != expected:
        raise CheckpointError(
            f"{weights}: damaged checkpoint (weights do not match the SHA-256 recorded in {CONFIG})"
        )
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{weights}: damaged weights file ({error})") from None

    model = MusicTransformer(config, encoding)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
                         for k in set(own) & set(state) if state[k].shape != own[k].shape)
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)} tensor(s), e.g. {', '.join(missing[:3])}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected tensor(s), e.g. {', '.join(unexpected[:3])}")
        if wrong_shape:
            problems.append(f"{len(wrong_shape)} tensor(s) of the wrong shape, e.g. {', '.join(wrong_shape[:2])}")
        raise CheckpointError(f"{weights}: weights do not match the model in {CONFIG}: " + "; ".join(problems))
    model.load_state_dict(state)
    model.checkpoint_dir = directory  # where it came from, for records such as an evaluation's
    return model.to(device).eval()
