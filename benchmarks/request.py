"""Does generation honour the request? Instrument coverage, duplicate notes and metrics per ensemble.

For a model (default: the bundled `music21-small`) and each ensemble, draws `-n` samples of
`--bars` bars in instrument mode, once with the sampler's request-honouring help switched
off (balance 0, quota 0, no pitch ranges) and once as `mmt generate` draws them (the
mode's balance and quota, the model's pitch ranges), and prints for each:

- `all_play`: the share of samples in which every requested instrument has at least
  `--min-notes` notes (target: 0.95 or more);
- `plays`: for each requested instrument, the share of samples in which it has at least
  `--min-notes` notes, and how many of the `-n` samples that is (`all_play` is at most the
  least of them; the bundled model's target: 13 of 16 for each of piano, violin and cello);
- `duplicates`: notes per sample that repeat an earlier note's beat, position, pitch and
  instrument (target: 0; the sampler's masks make them impossible);
- the notes of each instrument (mean per sample) and the mean of H1, H4, GS and
  polyphony (`analysis.metrics`), so that help which turns the music into noise shows;
- `leap`: the mean step in semitones of each instrument's top line (`top_line_leap`), so that
  notes handed to instruments at random (parts that hop between registers) show (drums left
  out); with `--data DIR`, the same of the real pieces of 2+ instruments and no drums of DIR's
  valid and test splits, each's first `--bars` bars of 4 beats, for comparison.

`--sampling` puts sampling settings over the model's defaults (e.g. a temperature for the
instrument field alone); `--plain` draws only without help.

    python benchmarks/request.py [--model music21-small] [-n 16] [--bars 16] [--seed 0] [--data data/music21]
        [--sampling '{"temperature": {"instrument": 2.0}}'] [--plain]

Writes the figures to benchmarks/results/request-<model>.json as well (or to `--json`).
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

from mmt.analysis.metrics import compute_metrics  # noqa: E402
from mmt import GenerationRequest, decode, encode_notes, load_model  # noqa: E402
from mmt.constants import Field, NoteCol, RowType  # noqa: E402
from mmt.request import run  # noqa: E402

ENSEMBLES = {
    "piano+strings": ("piano", "violin", "cello"),
    "string trio": ("violin", "viola", "cello"),
    "winds": ("flute", "oboe", "clarinet", "bassoon"),
    "brass": ("trumpet", "trombone", "tuba"),
    "piano+drums": ("piano", "drums"),
    "voices+piano": ("voices", "piano"),
}
METRICS = ("h1", "h4", "gs", "polyphony")  # analysis.metrics
COLUMNS = (*METRICS, "leap")


def duplicates(codes: np.ndarray) -> int:
    """Notes that repeat an earlier note's beat, position, pitch and instrument."""
    notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
    keys = notes[:, [Field.BEAT, Field.POSITION, Field.PITCH, Field.INSTRUMENT]]
    return len(keys) - len(np.unique(keys, axis=0))


def note_counts(codes: np.ndarray, instrument_codes: list[int]) -> list[int]:
    """Notes of each instrument code in one sample's rows."""
    notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
    return [int(np.sum(notes[:, Field.INSTRUMENT] == code)) for code in instrument_codes]


def sampling_json(text: str) -> dict:
    """An argparse type: sampling settings as a JSON object, e.g. '{"temperature": {"instrument": 2.5}}'."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object of sampling settings, got {text!r}")
    return value


def top_line_leap(codes: np.ndarray, instrument_codes: list[int]) -> float:
    """Mean |pitch step| (semitones) of each instrument's top line: at every onset of an instrument
    its highest note, then the steps between consecutive onsets, averaged over the instruments
    with two onsets or more (NaN without any). Parts that hop between registers, as when notes
    are handed to instruments at random, leap further than parts that keep a line."""
    notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
    leaps = []
    for code in instrument_codes:
        own = notes[notes[:, Field.INSTRUMENT] == code]
        if len(own) < 2:
            continue
        onset = own[:, Field.BEAT].astype(np.int64) * 10_000 + own[:, Field.POSITION]
        order = np.lexsort((-own[:, Field.PITCH], onset))
        onset, pitch = onset[order], own[order, Field.PITCH]
        first = np.r_[True, onset[1:] != onset[:-1]]  # the highest note comes first at each onset
        line = pitch[first].astype(np.int64)
        if len(line) >= 2:
            leaps.append(float(np.mean(np.abs(np.diff(line)))))
    return float(np.mean(leaps)) if leaps else math.nan


def ground_truth_leap(data_dir: Path, bars: float) -> dict:
    """`top_line_leap` of the real valid and test pieces with two or more instruments and no drums,
    their first `bars` bars (of 4 beats: the benchmark's samples are in 4/4)."""
    from mmt.prepared import PreparedData

    data = PreparedData(data_dir)
    leaps = []
    drums = data.encoding.instrument_code("drums")
    for piece in [*data.split("valid"), *data.split("test")]:
        notes = data.notes(piece)
        notes = notes[notes[:, NoteCol.BEAT] < 4 * bars]
        if not len(notes):
            continue
        codes = encode_notes(notes, data.encoding)
        declared = codes[codes[:, Field.TYPE] == RowType.INSTRUMENT, Field.INSTRUMENT].tolist()
        if len(declared) >= 2 and drums not in declared:
            leaps.append(top_line_leap(codes, declared))
    return {"pieces": len(leaps), "leap": float(np.nanmean(leaps)) if leaps else math.nan}


def measure(model, instruments: tuple[str, ...], helped: bool, args) -> dict:
    """Draw the samples of one ensemble and configuration and measure them."""
    ranges = model.pitch_ranges
    if not helped:
        model.pitch_ranges = {}
    try:
        request = GenerationRequest(mode="instrument", instruments=instruments, bars=args.bars,
                                    n_samples=args.n, seed=args.seed, balance=None if helped else 0.0,
                                    quota=None if helped else 0, sampling=args.sampling)
        started = time.perf_counter()
        generation = run(model, request)
        seconds = time.perf_counter() - started
    finally:
        model.pitch_ranges = ranges
    codes_of = [model.encoding.instrument_code(name) for name in instruments]
    counts = np.array([note_counts(codes, codes_of) for codes in generation.samples])
    metrics = [compute_metrics(decode(codes, model.encoding)) for codes in generation.samples]
    pitched = [code for code in codes_of if code != model.encoding.instrument_code("drums")]
    leaps = [top_line_leap(codes, pitched) for codes in generation.samples]
    return {
        "all_play": float(np.mean(counts.min(axis=1) >= args.min_notes)),
        "plays": dict(zip(instruments, (counts >= args.min_notes).mean(axis=0).round(4).tolist())),
        "duplicates": float(np.mean([duplicates(codes) for codes in generation.samples])),
        "notes_per_instrument": dict(zip(instruments, counts.mean(axis=0).round(1).tolist())),
        **{name: float(np.nanmean([m[name] for m in metrics])) for name in METRICS},
        "leap": float(np.nanmean(leaps)),
        "balance": generation.balance, "quota": generation.quota, "pitch_ranges": bool(model.pitch_ranges) and helped,
        "seconds": round(seconds, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="music21-small", help="checkpoint directory or bundled model name")
    parser.add_argument("-n", type=int, default=16, help="samples per ensemble and configuration")
    parser.add_argument("--bars", type=float, default=16, help="bars per sample")
    parser.add_argument("--min-notes", type=int, default=8, help="notes an instrument needs to count as playing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sampling", type=sampling_json, default={},
                        help="sampling settings over the model's defaults, as JSON, e.g. "
                             "'{\"temperature\": {\"instrument\": 1.5}}'")
    parser.add_argument("--plain", action="store_true", help="only the draws without help")
    parser.add_argument("--data", type=Path,
                        help="a prepared directory: also the leap of its real valid and test pieces")
    parser.add_argument("--json", type=Path, help="where to write the figures (default: "
                        "benchmarks/results/request-<model>.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    print(f"{args.model}: sampling defaults {model.sampling.to_dict()}; pitch ranges for "
          f"{len(model.pitch_ranges)} instruments", file=sys.stderr)
    results = {}
    header = (f"| ensemble | help | all play | plays | duplicates | notes per instrument | "
              f"{' | '.join(COLUMNS)} |")
    print(header + "\n|" + "---|" * (6 + len(COLUMNS)))
    for name, instruments in ENSEMBLES.items():
        for helped in (False,) if args.plain else (False, True):
            result = measure(model, instruments, helped, args)
            results[f"{name} ({'helped' if helped else 'plain'})"] = result
            notes = ", ".join(f"{k} {v:g}" for k, v in result["notes_per_instrument"].items())
            plays = ", ".join(f"{k} {v:.2f} ({round(v * args.n)}/{args.n})" for k, v in result["plays"].items())
            values = " | ".join("n/a" if math.isnan(result[m]) else f"{result[m]:.3f}" for m in COLUMNS)
            print(f"| {name} | {'balance, quota, ranges' if helped else 'none'} | {result['all_play']:.2f} | "
                  f"{plays} | {result['duplicates']:.2f} | {notes} | {values} |", flush=True)
    if args.data is not None:
        results["ground truth"] = ground_truth_leap(args.data, args.bars)
        print(f"ground truth ({args.data} valid + test, {results['ground truth']['pieces']} pieces of 2+ instruments, "
              f"first {args.bars:g} bars): leap {results['ground truth']['leap']:.3f}")
    out = args.json or Path(__file__).resolve().parent / "results" / f"request-{Path(args.model).name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "n": args.n, "bars": args.bars, "min_notes": args.min_notes,
                               "seed": args.seed, "sampling_defaults": model.sampling.to_dict(),
                               "sampling": args.sampling, "results": results}, indent=1) + "\n")
    print(f"-> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
