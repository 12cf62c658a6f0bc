"""Does generation honour the request? Instrument coverage, duplicate notes and metrics per ensemble.

For a model (default: the bundled `music21-small`) and each ensemble, draws `-n` samples of
`--bars` bars in instrument mode, once with the sampler's request-honouring help switched
off (balance 0, quota 0, no pitch ranges) and once as `mmt generate` draws them (the
mode's balance and quota, the model's pitch ranges), and prints for each:

- `all_play`: the share of samples in which every requested instrument has at least
  `--min-notes` notes (target: 0.95 or more);
- `duplicates`: notes per sample that repeat an earlier note's beat, position, pitch and
  instrument (target: 0; the sampler's masks make them impossible);
- the notes of each instrument (mean per sample) and the mean of H1, H4, GS and
  polyphony (`analysis.metrics`), so that help which turns the music into noise shows.

    python benchmarks/request.py [--model music21-small] [-n 16] [--bars 16] [--seed 0]

Writes the figures to benchmarks/results/request-<model>.json as well.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.metrics import compute_metrics  # noqa: E402
from mmt import GenerationRequest, decode, load_model  # noqa: E402
from mmt.constants import Field, RowType  # noqa: E402
from mmt.request import run  # noqa: E402

ENSEMBLES = {
    "piano+strings": ("piano", "violin", "cello"),
    "string trio": ("violin", "viola", "cello"),
    "winds": ("flute", "oboe", "clarinet", "bassoon"),
    "brass": ("trumpet", "trombone", "tuba"),
    "piano+drums": ("piano", "drums"),
    "voices+piano": ("voices", "piano"),
}
METRICS = ("h1", "h4", "gs", "polyphony")


def duplicates(codes: np.ndarray) -> int:
    """Notes that repeat an earlier note's beat, position, pitch and instrument."""
    notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
    keys = notes[:, [Field.BEAT, Field.POSITION, Field.PITCH, Field.INSTRUMENT]]
    return len(keys) - len(np.unique(keys, axis=0))


def measure(model, instruments: tuple[str, ...], helped: bool, args) -> dict:
    """Draw the samples of one ensemble and configuration and measure them."""
    ranges = model.pitch_ranges
    if not helped:
        model.pitch_ranges = {}
    try:
        request = GenerationRequest(mode="instrument", instruments=instruments, bars=args.bars,
                                    n_samples=args.n, seed=args.seed, balance=None if helped else 0.0,
                                    quota=None if helped else 0)
        started = time.perf_counter()
        generation = run(model, request)
        seconds = time.perf_counter() - started
    finally:
        model.pitch_ranges = ranges
    codes_of = [model.encoding.instrument_code(name) for name in instruments]
    counts = np.array([[int(np.sum((codes[:, Field.TYPE] == RowType.NOTE) & (codes[:, Field.INSTRUMENT] == code)))
                        for code in codes_of] for codes in generation.samples])
    metrics = [compute_metrics(decode(codes, model.encoding)) for codes in generation.samples]
    return {
        "all_play": float(np.mean(counts.min(axis=1) >= args.min_notes)),
        "duplicates": float(np.mean([duplicates(codes) for codes in generation.samples])),
        "notes_per_instrument": dict(zip(instruments, counts.mean(axis=0).round(1).tolist())),
        **{name: float(np.nanmean([m[name] for m in metrics])) for name in METRICS},
        "balance": generation.balance, "quota": generation.quota, "pitch_ranges": bool(model.pitch_ranges) and helped,
        "seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="music21-small", help="checkpoint directory or bundled model name")
    parser.add_argument("-n", type=int, default=16, help="samples per ensemble and configuration")
    parser.add_argument("--bars", type=float, default=16, help="bars per sample")
    parser.add_argument("--min-notes", type=int, default=8, help="notes an instrument needs to count as playing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    print(f"{args.model}: sampling defaults {model.sampling.to_dict()}; pitch ranges for "
          f"{len(model.pitch_ranges)} instruments", file=sys.stderr)
    results = {}
    header = f"| ensemble | help | all play | duplicates | notes per instrument | {' | '.join(METRICS)} |"
    print(header + "\n|" + "---|" * (5 + len(METRICS)))
    for name, instruments in ENSEMBLES.items():
        for helped in (False, True):
            result = measure(model, instruments, helped, args)
            results[f"{name} ({'helped' if helped else 'plain'})"] = result
            notes = ", ".join(f"{k} {v:g}" for k, v in result["notes_per_instrument"].items())
            values = " | ".join("n/a" if math.isnan(result[m]) else f"{result[m]:.3f}" for m in METRICS)
            print(f"| {name} | {'balance, quota, ranges' if helped else 'none'} | {result['all_play']:.2f} | "
                  f"{result['duplicates']:.2f} | {notes} | {values} |", flush=True)
    out = Path(__file__).resolve().parent / "results" / f"request-{Path(args.model).name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "n": args.n, "bars": args.bars, "min_notes": args.min_notes,
                               "seed": args.seed, "results": results}, indent=1) + "\n")
    print(f"-> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
