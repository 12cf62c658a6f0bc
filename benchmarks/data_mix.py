"""The data mix of a config on a prepared folder: pieces, notes, and each source group's share of training.

For every source group of the training split (`mmt.mix.piece_group`: the first folder of
a piece's source), prints its pieces, notes, the instruments that play most of its
notes, the config's `data.mix` weight, and four shares:

- pieces: its share of the training pieces (what an unweighted run draws);
- steps: its expected share of the items training draws under the mix (`mmt.mix.group_shares`);
- drawn: the share it actually gets in the run the config describes (the items of its
  `max_steps` steps of `batch_size`, from `mmt.training.epoch_batches`, as training draws them);
- rows: its expected share of the training rows (an item is at most the context long:
  min(notes + 3, max_seq_len) rows per draw, header rows ignored).

Usage: python benchmarks/data_mix.py DATA CONFIG [--top 3]
  e.g. python benchmarks/data_mix.py /work/data/music21-tunes configs/music21-ensembles.yaml
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from mmt.config import load_config
from mmt.constants import DRUM_PROGRAM, DRUMS, NoteCol
from mmt.mix import group_shares, item_weights, piece_group
from mmt.prepared import PreparedData
from mmt.training import epoch_batches


def group_table(data: PreparedData, ids: list[str], weights: np.ndarray | None, max_seq_len: int,
                drawn: Counter, top: int) -> list[dict]:
    """One row per group, largest expected share of steps first."""
    encoding = data.encoding
    shares = group_shares(ids, weights)
    weights = np.ones(len(ids)) if weights is None else weights
    rows: dict[str, dict] = {}
    for piece, weight in zip(ids, weights):
        notes = data.notes(piece)
        row = rows.setdefault(piece_group(piece), {"pieces": 0, "notes": 0, "weighted_rows": 0.0,
                                                   "instruments": Counter(), "weight": float(weight)})
        row["pieces"] += 1
        row["notes"] += len(notes)
        row["weighted_rows"] += weight * min(len(notes) + 3, max_seq_len)
        programs, counts = np.unique(notes[:, NoteCol.PROGRAM], return_counts=True)
        for program, count in zip(programs, counts):
            name = DRUMS if program == DRUM_PROGRAM else encoding.program_instrument[int(program)]
            row["instruments"][name or "(dropped)"] += int(count)
    total_rows = sum(row["weighted_rows"] for row in rows.values())
    total_drawn = sum(drawn.values())
    table = []
    for group, row in rows.items():
        table.append({
            "group": group, "pieces": row["pieces"], "notes": row["notes"], "weight": row["weight"],
            "share_pieces": row["pieces"] / len(ids), "share_steps": shares[group],
            "share_drawn": drawn[group] / total_drawn, "share_rows": row["weighted_rows"] / total_rows,
            "instruments": ", ".join(f"{name} {count / row['notes']:.0%}"
                                     for name, count in row["instruments"].most_common(top)),
        })
    return sorted(table, key=lambda r: (-r["share_steps"], r["group"]))


def drawn_groups(ids: list[str], weights: np.ndarray | None, batch_size: int, seed: int, max_steps: int) -> Counter:
    """Items per group in the first `max_steps` steps of a one-process run, as training draws them."""
    counts: Counter = Counter()
    steps, epoch = 0, 0
    while steps < max_steps:
        for batch in epoch_batches(len(ids), batch_size, 1, 0, seed, epoch, 0, weights)[: max_steps - steps]:
            counts.update(piece_group(ids[i]) for i in batch)
            steps += 1
        epoch += 1
    return counts


def print_table(table: list[dict], title: str) -> None:
    print(title)
    print("| group | pieces | notes | weight | pieces % | steps % | drawn % | rows % | instruments (share of notes) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['group']} | {r['pieces']:,} | {r['notes']:,} | {r['weight']:g} | {r['share_pieces']:.1%} | "
              f"{r['share_steps']:.1%} | {r['share_drawn']:.1%} | {r['share_rows']:.1%} | {r['instruments']} |")
    print(f"| total | {sum(r['pieces'] for r in table):,} | {sum(r['notes'] for r in table):,} | | 100% | 100% | "
          f"100% | 100% | |")


def mean_rows(data: PreparedData, ids: list[str], weights: np.ndarray | None, max_seq_len: int) -> float:
    """Expected rows of an item drawn under the mix: min(notes + 3, max_seq_len), weighted."""
    weights = np.ones(len(ids)) if weights is None else weights
    rows = np.array([min(len(data.notes(piece)) + 3, max_seq_len) for piece in ids])
    return float((weights * rows).sum() / weights.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a prepared folder (mmt prepare)")
    parser.add_argument("config", help="an experiment config (its data.mix, batch_size, max_steps, seed)")
    parser.add_argument("--top", type=int, default=3, help="instruments shown per group")
    args = parser.parse_args()
    config = load_config(args.config)
    data = PreparedData(args.data)
    ids = data.split(config.data.train_split)
    weights = item_weights(ids, config.data.mix, f"{args.config}: data.mix")
    tc = config.training
    drawn = drawn_groups(ids, weights, tc.batch_size, tc.seed, tc.max_steps)
    table = group_table(data, ids, weights, config.data_max_seq_len, drawn, args.top)
    print_table(table, f"{args.config} on {args.data} ({config.data.train_split} split; drawn: "
                       f"{tc.max_steps:,} steps of {tc.batch_size}, seed {tc.seed})")
    rows = mean_rows(data, ids, weights, config.data_max_seq_len)
    print(f"\nrows per item drawn: {rows:.0f} on average (at most {config.data_max_seq_len}); a step of "
          f"{tc.batch_size} items: about {rows * tc.batch_size:,.0f} rows, padded to the longest item")


if __name__ == "__main__":
    main()
