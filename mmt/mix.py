"""The data mix: how often training draws the pieces of each source group.

A piece's *group* is the first folder of its source path, which `mmt prepare` keeps as
the start of its id ("bach/bwv66.6.mxl" -> id "bach__bwv66.6.mxl" -> group "bach"; a
piece at the top of its dataset is its own group). A config's `data.mix` maps groups to
weights: a piece of weight w is drawn w times as often as a piece of weight 1 (groups
not named weigh 1; weight 0 leaves a group out). Over many steps, group g takes the share

    w_g * n_g / sum over groups h of (w_h * n_h)        (n_g: the group's training pieces)

of the training items. `mmt.training.epoch_permutation` turns the weights into each
epoch's order (see there), as a pure function of (seed, epoch), so resumed runs still
equal uninterrupted ones.
"""

from __future__ import annotations

import typing
from collections import Counter
from typing import Sequence

import numpy as np

from mmt.errors import MMTError

GROUP_SEPARATOR = "__"  # `mmt.data_prep.sources.path_id` joins path parts with it


class MixError(MMTError, ValueError):
    """A data mix names a group that no training piece is in."""


def piece_group(piece_id: str) -> str:
    """The source group of a piece id: its first folder ("bach__bwv66.6.mxl" -> "bach")."""
    return piece_id.split(GROUP_SEPARATOR, 1)[0]


def group_counts(ids: Sequence[str]) -> Counter:
    """Pieces per group."""
    return Counter(piece_group(piece) for piece in ids)


def item_weights(ids: Sequence[str], mix: typing.Mapping[str, float] | None, source: str = "data.mix"
                 ) -> np.ndarray | None:
    """Each piece's weight under `mix` (None: no mix, every piece once an epoch).

    Raises:
        MixError: naming `source` and the key, when a group of `mix` holds none of `ids`,
            or when every piece weighs 0.
    """
    if mix is None:
        return None
    counts = group_counts(ids)
    unknown = [group for group in mix if group not in counts]
    if unknown:
        raise MixError(f"{source}: no training piece is in group {unknown[0]!r}; groups are "
                       f"{', '.join(sorted(counts))}")
    weights = np.array([float(mix.get(piece_group(piece), 1.0)) for piece in ids])
    if not np.any(weights > 0):
        raise MixError(f"{source}: every training piece has weight 0")
    return weights


def group_shares(ids: Sequence[str], weights: np.ndarray | None) -> dict[str, float]:
    """Each group's expected share of the training items drawn (the formula in the module docstring)."""
    weights = np.ones(len(ids)) if weights is None else np.asarray(weights, dtype=float)
    totals: dict[str, float] = {}
    for piece, weight in zip(ids, weights):
        group = piece_group(piece)
        totals[group] = totals.get(group, 0.0) + float(weight)
    whole = sum(totals.values())
    return {group: total / whole for group, total in totals.items()}
