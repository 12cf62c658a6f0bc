"""Edits of real multi-part pieces: the written parts against the real ones, with and without the part constraints.

For each of `--pieces` string quartets of music21's corpus (beethoven, haydn, mozart,
schumann_robert: the first, in path order, of the test split whose parts include a cello; the
bundled model never trained on them), on its first 12 bars, the bundled model (or `--model`) draws
`--samples` samples of three edits:

- `cello@5-8`: the cello rewritten over bars 5-8 (the real part: the cello's notes there);
- `flute@1-8` on the first 8 bars: a flute added (no real part to compare with);
- `all@9-12` on the first 8 bars: a continuation to bar 12 (the real parts: bars 9-12).

once with the request's default constraints (ranges, no crossing, the source's key) and once
with them off (`ranges: false, no_crossing: false, key: none`). For every written part it
prints, from `mmt.constraints.measure`: notes per bar, share in the instrument's usual range,
crossings (onsets where it sounds above the part above it or below the part below), share out
of the source's key; the same of the real parts. Means over pieces and samples; JSON.

Usage: python benchmarks/edit.py [--model music21-small] [--pieces 4] [--samples 4] [--seed 0] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from mmt.edit import cut_music

EDITS = (("cello@5-8", 12), ("flute@1-8", 8), ("all@9-12", 8))
OFF = {"ranges": False, "no_crossing": False, "key": None}
FIGURES = ("notes_per_bar", "in_range", "crossings", "out_of_key")


QUARTETS = ("beethoven", "haydn", "mozart", "schumann_robert")


def quartets(count: int) -> list[tuple[str, object]]:
    """(path, music cut to 12 bars) of the first `count` test-split corpus quartets with a cello part."""
    import mmt
    from mmt.data_prep.music21_corpus import list_sources
    from mmt.edit import bars_to_beats
    from mmt.meter import Meter

    found = []
    for source in sorted(list_sources("-"), key=lambda s: str(s.path)):
        path = str(source.path)
        if (source.split != "test" or source.rel.split("/")[0] not in QUARTETS or not path.endswith(".mxl")
                or len(found) == count):
            continue
        try:
            music = mmt.read_music(path)
        except Exception:  # a piece the reader cannot take is not this benchmark's subject
            continue
        if not any(t.program == 42 and t.notes for t in music.tracks) or len(music.tracks) < 3:
            continue
        found.append((path, cut_music(music, bars_to_beats(Meter.from_music(music), 12))))
    return found


def real_parts(music, plan, encoding, constraints) -> dict:
    """`measure` of the real notes the edit's region replaced (its parts' notes in its bars)."""
    from mmt.constraints import measure_region
    from mmt.encoding import encode

    return measure_region(encode(music, encoding), encoding, plan.write, plan.start_beats, plan.end_beats,
                          constraints, beats_per_bar=_bar(music, plan.start_beats))


def _bar(music, beat: float) -> float:
    from mmt.meter import Meter

    return Meter.from_music(music).beats_per_bar(beat)


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.mean(values)), 3) if values else None


def main(argv: list[str] | None = None) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="music21-small")
    parser.add_argument("--pieces", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import torch

    import mmt
    from mmt.request import GenerationRequest, run

    torch.set_num_threads(1)
    model = mmt.load_model(args.model)
    encoding = model.encoding
    pieces = quartets(args.pieces)
    # figures[edit][setting][part][figure] -> values over pieces and samples
    figures = defaultdict(lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))
    for index, (path, music) in enumerate(pieces):
        for edit, bars in EDITS:
            source = music if bars == 12 else cut_music(music, _bars_to_beats(music, bars))
            used = None
            for setting, constraints in (("constrained", {}), ("free", OFF)):
                request = GenerationRequest(mode="edit", prompt=source, edit=(edit,), n_samples=args.samples,
                                            seed=args.seed + index, constraints=constraints)
                generation = run(model, request)
                used = used or generation.constraints   # the constrained run's: the source's key
                for met in generation.met:
                    for part, values in met["parts"].items():
                        for name in FIGURES:
                            figures[edit][setting][part][name].append(values[name])
                print(f"{Path(path).name} {edit} {setting}: done", file=sys.stderr, flush=True)
            if edit != "flute@1-8":  # the real parts of the region, measured as the written ones
                plan = generation.prompt.plan
                truth = music if edit == "cello@5-8" else cut_music(music, plan.end_beats)
                real = real_parts(truth, plan, encoding, used)
                for part, values in real["parts"].items():
                    for name in FIGURES:
                        figures[edit]["real"][part][name].append(values[name])
    result = {"model": args.model, "pieces": [Path(p).name for p, _ in pieces], "samples": args.samples,
              "seed": args.seed, "edits": {edit: {setting: {part: {name: mean(values) for name, values in parts.items()}
                                                           for part, parts in by_part.items()}
                                                  for setting, by_part in by_setting.items()}
                                           for edit, by_setting in figures.items()}}
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return result


def _bars_to_beats(music, bars: int) -> float:
    from mmt.edit import bars_to_beats
    from mmt.meter import Meter

    return bars_to_beats(Meter.from_music(music), bars)


if __name__ == "__main__":
    main()
