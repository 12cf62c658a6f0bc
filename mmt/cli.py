"""The `mmt` command line: argparse -> library calls. The only place argparse lives.

Each subcommand has its own section: `_add_<name>(sub)` builds its parser and
`_cmd_<name>(args)` runs it, importing what it needs so `mmt --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class CommandError(Exception):
    """A user-facing failure: printed as `mmt <command>: error: <message>`, exit status 2."""


# ============================================================================ encode
def _add_encode(sub) -> None:
    p = sub.add_parser("encode", help="encode a MIDI/MusicXML/kern/abc file and write its rows as CSV")
    p.add_argument("file")
    p.add_argument("--out", help="CSV path (default: beside the input)")
    p.add_argument("--encoding", help="encoding.json (default: the default encoding)")
    p.set_defaults(func=_cmd_encode)


def _cmd_encode(args: argparse.Namespace) -> int:
    from mmt.encoding import Encoding, encode
    from mmt.io import read_music, write_csv

    encoding = Encoding.load(args.encoding) if args.encoding else Encoding()
    codes = encode(read_music(args.file), encoding)
    out = Path(args.out) if args.out else Path(args.file).with_suffix(".csv")
    write_csv(out, codes, encoding)
    print(f"{args.file}: {len(codes)} rows -> {out}")
    return 0


# ============================================================================ evaluate
def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="metrics (H1, H4, GS, muspy's) of ground truth and generated samples, mean and 95%% CI per mode",
        description="Evaluate a model on the first N pieces of a prepared split: the ground truth and "
        "one sample per piece in each mode, all trimmed to --beats beats. Writes metrics.csv (one row "
        "per sample), metrics.md (mean and 95% CI per mode) and settings.json to --out; generated "
        "codes go to --out/samples/ and a rerun with the same settings resumes from them.",
    )
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help="checkpoint directory (or a training run's folder); '-' for ground truth only")
    p.add_argument("--data", required=True, help="prepared data directory (notes/, <split>.txt, encoding.json)")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("-n", type=int, default=None, help="evaluate the first N pieces of the split (default: all)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--beats", type=int, default=64, help="trim every sample to this many beats (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--modes", nargs="+", default=None, metavar="MODE",
                   help="generation modes: unconditioned, instrument, continuation-<beats> "
                   "(default: unconditioned instrument continuation-4 continuation-16)")
    p.add_argument("--ground-truth-only", action="store_true", help="evaluate the ground truth alone (no MODEL)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)")
    p.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (default: off)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold (default: off)")
    p.add_argument("--max-rows", type=int, default=1024, help="most rows generated per sample (default: 1024)")
    p.add_argument("--device", default=None, help="torch device for the model (default: cpu)")
    p.add_argument("--overwrite", action="store_true", help="regenerate samples already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from analysis.evaluation import DEFAULT_MODES, EvaluationConfig, evaluate

    ground_truth_only = args.ground_truth_only or args.model == "-"
    if ground_truth_only and args.model not in (None, "-"):
        raise CommandError(f"--ground-truth-only takes no MODEL (got {args.model!r})")
    if ground_truth_only and args.modes:
        raise CommandError("--modes needs a MODEL; a ground-truth-only evaluation has no generation modes")
    if not ground_truth_only and args.model is None:
        raise CommandError("MODEL is required (or pass --ground-truth-only, or '-' as MODEL)")
    config = EvaluationConfig(
        n_beats=args.beats,
        modes=tuple(args.modes) if args.modes else DEFAULT_MODES,
        seed=args.seed,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        max_new_rows=args.max_rows,
    )
    result = evaluate(
        args.data,
        args.out,
        None if ground_truth_only else args.model,
        split=args.split,
        n=args.n,
        config=config,
        device=args.device,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    out = Path(args.out)
    print((out / "metrics.md").read_text(encoding="utf-8"))
    print(f"{len(result.rows)} samples of {len(result.ids)} pieces -> {out / 'metrics.csv'}, "
          f"{out / 'metrics.md'}, {out / 'settings.json'}")
    if result.failures:
        print(f"{len(result.failures)} failure(s) recorded in {out / 'failures.csv'}", file=sys.stderr)
    return 0


# ============================================================================ parser
SECTIONS = [_add_encode, _add_evaluate]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmt", description="Multitrack symbolic music generation and analysis with token tuples."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SECTIONS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CommandError, FileNotFoundError, ValueError) as error:
        print(f"mmt {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mmt {args.command}: interrupted", file=sys.stderr)
        return 130
