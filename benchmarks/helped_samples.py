"""Training data from a model's own samples that play every requested instrument (self-training).

A model sampled without help lets one requested instrument take the piece over: on its own
samples the least-played declared instrument's share of the instrument head falls to ~0.01
within 40 notes (benchmarks/results/instrument-coverage.md), a context real music never
shows it (exposure bias). This script draws instrument-mode samples, keeps those in which
each instrument has at least `--min-notes` notes (and, with `--max-leap`, whose parts keep a
line: `top_line_leap` of `benchmarks/request.py` at most that), and writes a prepared
directory: the base directory's pieces (linked, not copied) plus the samples as the group
`helped` of the train split (ids `helped__<batch>_<sample>`); valid and test are the base's.
Fine-tuning on it (with `data.mix: {helped: w}`) shows the model contexts like its own in
which every instrument keeps playing.

How the samples are drawn: by default with the sampler's help (balance, quota, pitch ranges);
with `--left-alone` without it (balance 0, quota 0, no pitch ranges), and `--sampling` puts
settings over the model's defaults (e.g. '{"temperature": {"instrument": 2.5}}').

Ensembles: half from families a user asks for (strings, woodwinds, brass, piano with others,
voices with piano or strings), half any 2-4 of the common instruments; 2-4 instruments, one
ensemble per batch of `--batch` samples, drawn from `--seed`.

    python benchmarks/helped_samples.py MODEL BASE OUT [-n 1536] [--batch 16] [--bars 16-24]
        [--left-alone] [--sampling JSON] [--max-leap 5] [--shard 0/2]

Resumable: a batch whose record is in `OUT/helped.jsonl` is not drawn again; `--shard i/n`
draws only the batches b with b % n == i, so n processes can share the work.

Tried twice on the bundled model (benchmarks/results/instrument-coverage.md, stages 7 and 8):
with the help on, 900 steps with these samples as a quarter of the items did not make it keep
its instruments when left alone and made its parts leap more (the quota hands notes to
instruments regardless of their line); left alone at instrument temperature 2.5 with
`--max-leap 5`, 1,200 steps gained 6-8 points of all-play on average, within the noise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from request import note_counts, sampling_json, top_line_leap  # noqa: E402  (benchmarks/request.py)

from mmt.files import write_atomic  # noqa: E402
from mmt.prepared import SPLITS, PreparedData  # noqa: E402

GROUP = "helped"
COMMON = ("piano", "violin", "viola", "cello", "contrabass", "flute", "oboe", "clarinet", "bassoon", "horn",
          "trumpet", "trombone", "tuba", "voices", "harpsichord", "organ", "nylon-string-guitar", "harp", "drums")
FAMILIES = (
    ("violin", "violin", "viola", "cello", "contrabass"),
    ("flute", "oboe", "clarinet", "bassoon", "horn"),
    ("trumpet", "trumpet", "horn", "trombone", "tuba"),
    ("piano", "violin", "viola", "cello", "flute", "clarinet", "voices", "drums"),
    ("voices", "piano", "organ", "violin", "cello"),
)


def draw_ensemble(rng: np.random.Generator) -> tuple[str, ...]:
    """2-4 distinct instruments: from a family (half the time) or from `COMMON`."""
    size = int(rng.integers(2, 5))
    if rng.random() < 0.5:
        family = FAMILIES[int(rng.integers(len(FAMILIES)))]
        pool = list(dict.fromkeys(family))
        if family[0] in ("piano", "voices"):  # the lead instrument always plays in these families
            rest = [name for name in pool[1:]]
            picked = [family[0], *rng.choice(rest, size=min(size, len(pool)) - 1, replace=False)]
        else:
            picked = list(rng.choice(pool, size=min(size, len(pool)), replace=False))
    else:
        picked = list(rng.choice(COMMON, size=size, replace=False))
    return tuple(str(name) for name in picked)


def save_npy(path: Path, array: np.ndarray) -> None:
    """`np.save` to exactly `path` (np.save given a name appends ".npy")."""
    with open(path, "wb") as file:
        np.save(file, array)


def read_records(path: Path) -> list[dict]:
    """The batches recorded so far (every shard's)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def link_base(base: PreparedData, out: Path) -> None:
    """OUT holds the base's encoding, splits, notes and meters (hard links where the file system allows)."""
    for sub in ("notes", "meters"):
        source = base.root / sub
        if not source.is_dir():
            continue
        (out / sub).mkdir(parents=True, exist_ok=True)
        for path in source.iterdir():
            target = out / sub / path.name
            if not target.exists():
                try:
                    os.link(path, target)
                except FileExistsError:  # another shard linked it first
                    pass
                except OSError:
                    shutil.copy2(path, target)
    shutil.copy2(base.encoding_path, out / base.encoding_path.name)
    for split in SPLITS:
        shutil.copy2(base.root / f"{split}.txt", out / f"{split}.txt")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="checkpoint directory or bundled model name")
    parser.add_argument("base", help="the prepared directory the model was trained on")
    parser.add_argument("out", help="the prepared directory to write (base + helped samples)")
    parser.add_argument("-n", type=int, default=1536, help="samples to draw (kept ones are fewer)")
    parser.add_argument("--batch", type=int, default=16, help="samples per ensemble, drawn as one batch")
    parser.add_argument("--bars", default="16-24", help="bars per sample, LOW-HIGH (drawn per batch)")
    parser.add_argument("--min-notes", type=int, default=8, help="notes each instrument needs for a sample to be kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--left-alone", action="store_true", help="draw without the sampler's help")
    parser.add_argument("--sampling", type=sampling_json, default={}, help="sampling settings over the model's, JSON")
    parser.add_argument("--max-leap", type=float, help="keep only samples whose top_line_leap is at most this")
    parser.add_argument("--shard", default="0/1", help="i/n: draw only the batches b with b %% n == i")
    args = parser.parse_args(argv)

    import torch
    from tqdm import tqdm

    from mmt import GenerationRequest, load_model
    from mmt.encoding import decode, notes_from_music
    from mmt.request import run

    torch.set_num_threads(args.threads)
    low_bars, high_bars = (int(x) for x in args.bars.split("-"))
    shard, shards = (int(x) for x in args.shard.split("/"))
    base = PreparedData(args.base)
    out = Path(args.out)
    if out.resolve() == base.root.resolve():
        sys.exit(f"{out}: the output must not be the base directory")
    out.mkdir(parents=True, exist_ok=True)
    link_base(base, out)
    model = load_model(args.model)
    if args.left_alone:
        model.pitch_ranges = {}
    encoding = model.encoding
    ours, theirs = encoding.to_dict(), base.encoding.to_dict()
    differ = [key for key in ours if key != "anticipation" and ours[key] != theirs.get(key)]
    if differ:  # the anticipation interval is the model's, the notes do not depend on it
        sys.exit(f"{base.encoding_path}: the model's encoding differs from the base directory's in {differ}")

    records_path = out / "helped.jsonl"
    done = {record["batch"] for record in read_records(records_path)}
    rng = np.random.default_rng(args.seed)
    n_batches = -(-args.n // args.batch)
    plan = [(draw_ensemble(rng), int(rng.integers(low_bars, high_bars + 1))) for _ in range(n_batches)]
    for batch, (instruments, bars) in enumerate(tqdm(plan, desc="helped samples", unit="batch")):
        if batch in done or batch % shards != shard:
            continue
        request = GenerationRequest(mode="instrument", instruments=instruments, bars=bars, n_samples=args.batch,
                                    seed=args.seed * 100_003 + batch, sampling=args.sampling,
                                    balance=0.0 if args.left_alone else None, quota=0 if args.left_alone else None)
        generation = run(model, request)
        codes_of = [encoding.instrument_code(name) for name in instruments]
        pitched = [code for code in codes_of if code != encoding.instrument_code("drums")]
        kept = []
        for index, codes in enumerate(generation.samples):
            if min(note_counts(codes, codes_of)) < args.min_notes:
                continue
            if args.max_leap is not None and not top_line_leap(codes, pitched) <= args.max_leap:
                continue
            notes = notes_from_music(decode(codes, encoding), encoding.resolution)
            piece = f"{GROUP}__{batch}_{index}"
            write_atomic(out / "notes" / f"{piece}.npy", lambda tmp, n=notes: save_npy(tmp, n))
            kept.append(piece)
        record = {"batch": batch, "instruments": list(instruments), "bars": bars, "kept": kept}
        with records_path.open("a") as file:  # one short write: other shards' lines stay whole
            file.write(json.dumps(record) + "\n")
    records = read_records(records_path)
    helped = [piece for record in sorted(records, key=lambda r: r["batch"]) for piece in record["kept"]]
    train = base.split("train") + helped
    write_atomic(out / "train.txt", lambda tmp: Path(tmp).write_text("\n".join(train) + "\n"))
    print(f"{out}: {len(helped)} helped samples kept of {len(records) * args.batch} drawn "
          f"({len(records)} ensembles), train split {len(train)} pieces")


if __name__ == "__main__":
    main()
