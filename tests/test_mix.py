"""The data mix: source groups of piece ids, weights from a config's `data.mix`, weighted epochs."""

from __future__ import annotations

import numpy as np
import pytest

from mmt.config import ConfigError, config_from_dict
from mmt.mix import MixError, group_shares, item_weights, piece_group
from mmt.training import epoch_batches, epoch_permutation

IDS = ["bach__bwv66.6.mxl", "bach__bwv1.6.mxl", "essenFolksong__altdeu10.abc_2", "song.mid",
       "palestrina__Agnus_01.krn", "palestrina__Agnus_02.krn"]


def test_piece_group_is_the_first_folder_of_the_source():
    assert [piece_group(piece) for piece in IDS] == ["bach", "bach", "essenFolksong", "song.mid", "palestrina",
                                                     "palestrina"]


def test_item_weights_and_shares():
    weights = item_weights(IDS, {"bach": 3, "essenFolksong": 0, "palestrina": 1.5})
    assert weights.tolist() == [3.0, 3.0, 0.0, 1.0, 1.5, 1.5]
    assert group_shares(IDS, weights) == pytest.approx({"bach": 0.6, "essenFolksong": 0.0, "song.mid": 0.1,
                                                        "palestrina": 0.3})
    assert group_shares(IDS, None) == pytest.approx({"bach": 2 / 6, "essenFolksong": 1 / 6, "song.mid": 1 / 6,
                                                     "palestrina": 2 / 6})
    assert item_weights(IDS, None) is None
    with pytest.raises(MixError, match="conf.yaml: no training piece is in group 'chopin'; groups are bach, "
                                       "essenFolksong, palestrina, song.mid"):
        item_weights(IDS, {"bach": 2, "chopin": 1}, "conf.yaml")
    with pytest.raises(MixError, match="every training piece has weight 0"):
        item_weights(["bach__a"], {"bach": 0})


def test_mix_in_a_config():
    config = config_from_dict({"data": {"mix": {"bach": 12, "essenFolksong": 0.25}}}, "c.yaml")
    assert dict(config.data.mix) == {"bach": 12, "essenFolksong": 0.25}
    assert config.to_dict()["data"]["mix"] == {"bach": 12, "essenFolksong": 0.25}
    with pytest.raises(ConfigError, match="c.yaml: .*the weight of group 'bach' must be a number >= 0, got -1"):
        config_from_dict({"data": {"mix": {"bach": -1}}}, "c.yaml")
    with pytest.raises(ConfigError, match="c.yaml: .*at least one group must have a weight above 0"):
        config_from_dict({"data": {"mix": {"bach": 0}}}, "c.yaml")
    with pytest.raises(ConfigError, match="c.yaml: 'data.mix' has the wrong type"):
        config_from_dict({"data": {"mix": [1, 2]}}, "c.yaml")


def test_weighted_epochs_literal_orders():
    weights = np.array([3, 3, 0, 1, 1, 1.5])
    # unweighted: every item once, the same permutations as before mixes existed
    assert [epoch_permutation(6, 0, e).tolist() for e in range(3)] == [
        [3, 2, 5, 4, 0, 1], [1, 4, 3, 0, 2, 5], [5, 2, 0, 1, 4, 3]]
    # weighted: the items each epoch draws, in the unweighted order; the heaviest (0, 1)
    # are in every epoch, weight 0 (item 2) in none
    assert [epoch_permutation(6, 0, e, weights).tolist() for e in range(3)] == [
        [3, 5, 4, 0, 1], [1, 0], [0, 1, 4, 3]]
    assert epoch_batches(6, 2, 1, 0, 0, 2, 0, weights) == [[0, 1], [4, 3]]
    assert epoch_batches(6, 4, 1, 0, 0, 1, 0, weights) == [[1, 0, 1, 0]]  # cyclic fill of the last step


def test_weighted_epochs_draw_items_in_proportion_to_their_weight():
    weights = np.array([4.0, 2.0, 1.0, 1.0, 0.0])
    counts = np.zeros(5)
    for epoch in range(2000):
        order = epoch_permutation(5, 7, epoch, weights)
        assert len(set(order.tolist())) == len(order)  # at most once an epoch
        np.add.at(counts, order, 1)
    assert counts[0] == 2000 and counts[4] == 0
    assert counts / counts[0] == pytest.approx([1.0, 0.5, 0.25, 0.25, 0.0], abs=0.03)
