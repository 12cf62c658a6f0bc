"""Does one instrument take a sampled piece over? The instrument head's share of each declared instrument, note by note.

For a model and an ensemble, draws `-n` samples of `--bars` bars in instrument mode with
the sampler's help off (balance 0, quota 0, no pitch ranges: the model alone), then reads
each sample back through the model (teacher forcing) and takes, at every note row, the
instrument head's probabilities renormalised over the declared instruments. For the note
ranges 0-9, 10-39, 40-99 and 100 on it prints, averaged over the samples that reach them:

- `least`: the smallest mean share of a declared instrument in that range (1/k when the k
  instruments are even; near 0 when one of them has fallen silent for good);
- `most`: the largest (near 1 when one instrument has the piece).

With `--data DIR`, the model reads real pieces instead of its own samples: the first `-n`
pieces of `--split` with two or more instruments, each its first `max_seq_len` rows (as
training validates), so that the shares it gives when the past is real music show beside
those it gives its own samples.

    python benchmarks/instrument_share.py [--model music21-small] [--instruments piano,violin,cello] [-n 16]
    python benchmarks/instrument_share.py --data data/music21 [--split test] [-n 16]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmt import GenerationRequest, load_model  # noqa: E402
from mmt.constants import Field, RowType  # noqa: E402
from mmt.data import MusicDataset  # noqa: E402
from mmt.model import next_row_logits  # noqa: E402
from mmt.request import run  # noqa: E402

RANGES = ((0, 10), (10, 40), (40, 100), (100, None))


def shares(model, codes: np.ndarray, instrument_codes: list[int]) -> np.ndarray:
    """(notes, k): the instrument head's probabilities of the k declared instruments, renormalised,
    at each note row of `codes` given every row before it."""
    with torch.no_grad():
        logits = next_row_logits(model, torch.as_tensor(codes[None], dtype=torch.long))[Field.INSTRUMENT][0]
    p = logits[:, instrument_codes].softmax(-1).numpy()
    return p[codes[1:, Field.TYPE] == RowType.NOTE]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="music21-small", help="checkpoint directory or bundled model name")
    parser.add_argument("--instruments", default="piano,violin,cello", help="comma-separated names")
    parser.add_argument("-n", type=int, default=16, help="samples")
    parser.add_argument("--bars", type=float, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", help="a prepared folder: read its pieces instead of sampling")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    if args.data:
        per_sample = []
        dataset = MusicDataset(args.data, args.split, model.encoding, model.config.max_seq_len)
        for index in range(len(dataset)):
            codes = dataset[index]
            declared = codes[codes[:, Field.TYPE] == RowType.INSTRUMENT, Field.INSTRUMENT].tolist()
            if len(declared) >= 2:
                per_sample.append(shares(model, codes, declared))
            if len(per_sample) == args.n:
                break
        print(f"{args.model}, the first {len(per_sample)} pieces of {args.data} {args.split} with 2+ instruments:")
    else:
        model.pitch_ranges = {}
        names = tuple(args.instruments.split(","))
        generation = run(model, GenerationRequest(mode="instrument", instruments=names, bars=args.bars,
                                                  n_samples=args.n, seed=args.seed, balance=0.0, quota=0))
        codes_of = [model.encoding.instrument_code(name) for name in names]
        per_sample = [shares(model, codes, codes_of) for codes in generation.samples]
        print(f"{args.model}, {'+'.join(names)}, {args.n} samples of {args.bars:g} bars, no help:")
    print("| notes | samples | least | most |\n|---|---|---|---|")
    for low, high in RANGES:
        means = [p[low:high].mean(0) for p in per_sample if len(p) > low]
        label = f"{low}-{high - 1}" if high else f"{low}-"
        if means:
            least, most = np.mean([m.min() for m in means]), np.mean([m.max() for m in means])
            print(f"| {label} | {len(means)} | {least:.3f} | {most:.3f} |")


if __name__ == "__main__":
    main()
