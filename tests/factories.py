"""The one tiny-model factory and the one prepared-folder builder the tests share.

After audiocraft's 'debug' models: built in code, no downloads, small enough that a
forward pass takes milliseconds on one CPU thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from mmt import Encoding, ModelConfig
from mmt.model import MusicTransformer


def tiny_model(pos_emb: str = "rotary", *, dim: int = 32, depth: int = 2, heads: int = 4, max_seq_len: int = 64,
               dropout: float = 0.0, encoding: Encoding | None = None, seed: int = 0,
               row_conditioning: bool = False, tie_pitch: bool = False) -> MusicTransformer:
    """An untrained `MusicTransformer` with seeded weights, in eval mode.

    With `row_conditioning`, its condition tables are random too (a new model's are zero), so
    that the fields a head reads change its logits.
    """
    torch.manual_seed(seed)
    config = ModelConfig(dim=dim, depth=depth, heads=heads, max_seq_len=max_seq_len, pos_emb=pos_emb,
                         dropout=dropout, row_conditioning=row_conditioning, tie_pitch=tie_pitch)
    model = MusicTransformer(config, encoding or Encoding()).eval()
    if row_conditioning:
        with torch.no_grad():
            for table in model.conditions:
                table.weight.normal_()
    return model


def march(model: MusicTransformer, fields: tuple[str, ...] = ("beat", "position", "pitch", "duration"),
          step: float = 10.0) -> MusicTransformer:
    """Bias the heads of `fields` towards their lowest codes (in place), so that each draw takes
    the smallest code the masks allow.

    An untrained model jumps to the encoding's last beat within a few notes, where the
    canonical note order soon leaves no room and the sample must end. Marched, its notes
    climb one pitch at a time at one onset, so a sample runs to its full length.
    """
    from mmt.constants import FIELDS

    with torch.no_grad():
        for name in fields:
            bias = model.heads[FIELDS.index(name)].bias
            bias.copy_(-step * torch.arange(len(bias), dtype=bias.dtype))
    return model


def write_prepared(root: Path, pieces: Mapping[str, np.ndarray], splits: Mapping[str, Sequence[str]],
                   encoding: Encoding | None = None, meters: Mapping | None = None) -> Path:
    """A prepared directory as `mmt prepare` writes it: notes/<id>.npy, meters/<id>.json,
    <split>.txt, encoding.json.

    `splits` maps a split name to its ids in order (ids need not have a notes file, to test
    missing ones); a split not named has no list file. `meters` maps ids to their
    `mmt.Meter` (pieces not named have no meter file, as in a folder prepared before
    meters were kept).
    """
    from mmt.meter import meter_path

    (root / "notes").mkdir(parents=True, exist_ok=True)
    for name, notes in pieces.items():
        np.save(root / "notes" / f"{name}.npy", np.asarray(notes, dtype=np.int64))
    for name, meter in (meters or {}).items():
        meter.save(meter_path(root, name))
    for split, ids in splits.items():
        (root / f"{split}.txt").write_text("".join(f"{piece}\n" for piece in ids))
    (encoding or Encoding()).save(root / "encoding.json")
    return root
