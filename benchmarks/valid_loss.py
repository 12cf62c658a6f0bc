"""Validation loss of checkpoints on one split of a prepared folder, to compare models on the same pieces.

Every piece of the split, unaugmented, cropped as training validates (the model's
`max_seq_len` rows), in batches of 8, scored by `mmt.training.evaluate`: the
token-weighted mean loss per field and their sum (nats). Prints one line per checkpoint.

Usage: python benchmarks/valid_loss.py DATA SPLIT CHECKPOINT [CHECKPOINT ...]
  e.g. python benchmarks/valid_loss.py data/music21 valid music21-small runs/other/best
"""

from __future__ import annotations

import argparse
import contextlib

import torch

from mmt.checkpoint import load_model
from mmt.data import MusicDataset, collate
from mmt.training import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a prepared folder (mmt prepare)")
    parser.add_argument("split", help="train, valid or test")
    parser.add_argument("checkpoints", nargs="+", help="checkpoint directories")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for path in args.checkpoints:
        model = load_model(path)
        dataset = MusicDataset(args.data, args.split, model.encoding, model.config.max_seq_len)
        batches = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=False, collate_fn=collate)
        losses = evaluate(model, batches, torch.device("cpu"), contextlib.nullcontext)
        fields = " ".join(f"{name}={value:.3f}" for name, value in losses.items())
        print(f"{path}: {len(dataset)} pieces of {args.data} {args.split}: {fields}", flush=True)


if __name__ == "__main__":
    main()
