"""What `--density` does to the notes per bar of written parts, for the bundled model (or `--model`).

A string trio (violin, viola, cello) of `--bars` bars from nothing, `--samples` samples per
setting (seed `--seed`), with the request's default constraints and density off, then each of
`--densities`; it prints each part's notes per bar (`mmt.constraints.measure`, the mean over
samples) as JSON.

Usage: python benchmarks/density.py [--model music21-small] [--bars 8] [--samples 4] [--densities 1 2 4 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="music21-small")
    parser.add_argument("--bars", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--densities", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    import mmt
    from mmt.request import GenerationRequest, run

    torch.set_num_threads(1)
    model = mmt.load_model(args.model)
    rows = {}
    for density in (None, *args.densities):
        request = GenerationRequest(mode="instrument", instruments=("violin", "viola", "cello"), bars=args.bars,
                                    n_samples=args.samples, seed=args.seed, constraints={"density": density})
        parts: dict[str, list] = {}
        for met in run(model, request).met:
            for part, values in met["parts"].items():
                parts.setdefault(part, []).append(values["notes_per_bar"])
        rows["off" if density is None else f"{density:g}"] = {part: round(float(np.mean(values)), 2)
                                                              for part, values in sorted(parts.items())}
    result = {"model": args.model, "bars": args.bars, "samples": args.samples, "seed": args.seed,
              "notes_per_bar": rows}
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
