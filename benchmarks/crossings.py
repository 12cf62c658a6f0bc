"""How often parts cross: music21's string quartets against the bundled model's string trios.

`mmt.analysis.metrics.crossing_rates`: at the onsets where two adjacent parts both sound, the
share where the lower one sounds above the upper one; and the same pooled over every adjacent
pair ("all pairs").

- The quartets: every .mxl of music21's corpus under beethoven, haydn, mozart and
  schumann_robert with four string parts (violin, violin, viola, cello, in score order, the
  lowest last); adjacent pairs cello/viola, viola/violin II, violin II/violin I.
- The trios: `--samples` samples of `--bars` bars of violin, viola and cello from the model
  (`--model`, seed `--seed`), left alone (`ranges`, `no_crossing` and `key` off) and with the
  request's default constraints; pairs cello/viola and viola/violin.

Prints JSON (percentages); `--json FILE` writes it too. `--quartets 0` skips the corpus (it
takes a few minutes to read).

Usage: python benchmarks/crossings.py [--model music21-small] [--samples 16] [--bars 16] [--seed 0] [--quartets 60]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

QUARTETS = ("beethoven", "haydn", "mozart", "schumann_robert")
STRINGS = {40, 41, 42}  # violin, viola, cello
LEFT_ALONE = {"ranges": False, "no_crossing": False, "key": None}


def percent(values) -> float | None:
    values = [v for v in values if not math.isnan(v)]
    return round(100 * sum(values) / len(values), 1) if values else None


def quartet_rates(limit: int) -> dict:
    """Mean crossing rates of the corpus's four-part string quartets (the first `limit`, in path order)."""
    import mmt
    from mmt.analysis.metrics import crossing_rates
    from mmt.data_prep.music21_corpus import list_sources

    pairs, pooled, names = [], [], []
    for source in list_sources("-"):
        if len(names) == limit:
            break
        if source.rel.split("/")[0] not in QUARTETS or not source.rel.endswith(".mxl"):
            continue
        try:
            music = mmt.read_music(str(source.path))
        except Exception as error:  # a file the reader cannot take is not this benchmark's subject
            print(f"{source.rel}: skipped ({error})", file=sys.stderr)
            continue
        tracks = [k for k, track in enumerate(music.tracks) if track.notes]
        if len(tracks) != 4 or {music.tracks[k].program for k in tracks} - STRINGS:
            continue
        rates, pooled_rate = crossing_rates(music, tracks[::-1])
        pairs.append(rates)
        pooled.append(pooled_rate)
        names.append(source.rel)
    return {"pieces": len(names), "cello/viola": percent(p[0] for p in pairs),
            "viola/violin II": percent(p[1] for p in pairs), "violin II/violin I": percent(p[2] for p in pairs),
            "all pairs": percent(pooled)}


def trio_rates(model, samples: int, bars: int, seed: int, constraints: dict) -> dict:
    """Mean crossing rates of string trios the model writes."""
    from mmt.analysis.metrics import crossing_rates
    from mmt.encoding import decode
    from mmt.request import GenerationRequest, run

    request = GenerationRequest(mode="instrument", instruments=("violin", "viola", "cello"), bars=bars,
                                n_samples=samples, seed=seed, constraints=constraints)
    pairs, pooled = [], []
    for codes in run(model, request).samples:
        music = decode(codes, model.encoding)
        by_name = {track.name: k for k, track in enumerate(music.tracks)}
        order = [by_name[name] for name in ("cello", "viola", "violin") if name in by_name]
        if len(order) < 3:
            continue
        rates, pooled_rate = crossing_rates(music, order)
        pairs.append(rates)
        pooled.append(pooled_rate)
    return {"samples": len(pairs), "cello/viola": percent(p[0] for p in pairs),
            "viola/violin": percent(p[1] for p in pairs), "all pairs": percent(pooled)}


def main(argv: list[str] | None = None) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="music21-small")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quartets", type=int, default=60, help="most quartet movements read (0: none)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import torch

    import mmt

    torch.set_num_threads(1)
    model = mmt.load_model(args.model)
    result = {"model": args.model, "seed": args.seed, "bars": args.bars,
              "trio left alone": trio_rates(model, args.samples, args.bars, args.seed, LEFT_ALONE),
              "trio with the default constraints": trio_rates(model, args.samples, args.bars, args.seed, {})}
    if args.quartets:
        result["music21 string quartets"] = quartet_rates(args.quartets)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
