"""The `mmt` command line: argparse -> library calls. The only place argparse lives (app layer).

Each subcommand has its own section: `_add_<name>(sub)` builds its parser and
`_cmd_<name>(args)` runs it, importing what it needs so `mmt --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Callable

from mmt.errors import MMTError


class CommandError(MMTError):
    """A user-facing failure: printed as `mmt <command>: error: <message>`, exit status 2."""


def _add_threads(p: argparse.ArgumentParser, default: int | None = 1) -> None:
    what = "the config's training.threads" if default is None else str(default)
    p.add_argument("--threads", type=int, metavar="N", default=default,
                   help=f"torch CPU threads (default: {what}; on a machine busy with other jobs more threads than "
                   "free cores only wait on each other: benchmarks/threads.py)")


def _show_warnings_as(prefix: str) -> None:
    """Print mmt's warnings as one line each: `<prefix>: warning: <message>`."""
    import warnings

    from mmt.errors import GenerationWarning

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prefix}: warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    warnings.simplefilter("always", GenerationWarning)


# request fields -> the flags that set them, so that an error names what the user typed
FLAGS = {"prompt_beats": "--prompt-beats", "prompt_bars": "--prompt-bars", "beats": "--beats", "bars": "--bars",
         "n_samples": "-n", "max_new_rows": "--max-rows", "seed": "--seed", "balance": "--balance",
         "quota": "--quota", "temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p",
         "repetition_penalty": "--repetition-penalty", "instruments": "--instruments", "prompt": "--prompt",
         "keep": "--keep", "bars_to_fill": "--bars-to-fill", "edit": "--edit", "range_widen": "--range-widen",
         "key": "--key", "key_strength": "--key-strength", "density": "--density"}


@contextlib.contextmanager
def _flags_named():
    """Re-raise an error about one request field (its `argument`) as a `CommandError` naming that field's flag."""
    try:
        yield
    except MMTError as error:
        if error.argument not in FLAGS:
            raise
        raise CommandError(error.naming(FLAGS[error.argument])) from None


def _device(name: str | None) -> str:
    """A torch device name checked before anything loads (default: cpu)."""
    if name is None:
        return "cpu"  # nothing to check, and no torch import (ground-truth evaluation needs none)
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise CommandError(f"--device {name!r} is not a torch device ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    return name


def _set_threads(args: argparse.Namespace) -> None:
    """Apply --threads (train passes it to the run instead, which would otherwise use its config's)."""
    threads = getattr(args, "threads", None)
    if threads is None:
        return
    if threads < 1:
        raise CommandError(f"--threads must be >= 1, got {threads}")
    if args.command != "train":
        import torch

        torch.set_num_threads(threads)


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
                   help="generation modes: unconditioned, instrument, continuation-<beats>, accompaniment, infill, "
                   "edit (one part of each piece rewritten over bars 5-8, measured beside the real part) "
                   "(default: unconditioned instrument continuation-4 continuation-16)")
    p.add_argument("--ground-truth-only", action="store_true", help="evaluate the ground truth alone (no MODEL)")
    _add_sampling(p)
    p.add_argument("--max-rows", type=int, default=1024, help="most rows generated per sample (default: 1024)")
    p.add_argument("--device", default=None, help="torch device for the model (default: cpu)")
    p.add_argument("--overwrite", action="store_true", help="regenerate samples already in --out")
    p.add_argument("--si", action="store_true",
                   help="also SI_short/SI_mid/SI_long (MusDr's structureness indicators) from audio rendered "
                   "with fluidsynth; skipped with a message where fluidsynth is missing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_threads(p)
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from mmt.analysis.evaluation import DEFAULT_MODES, EvaluationConfig, evaluate

    ground_truth_only = args.ground_truth_only or args.model == "-"
    if ground_truth_only and args.model not in (None, "-"):
        raise CommandError(f"--ground-truth-only takes no MODEL (got {args.model!r})")
    if ground_truth_only and args.modes:
        raise CommandError("--modes needs a MODEL; a ground-truth-only evaluation has no generation modes")
    if not ground_truth_only and args.model is None:
        raise CommandError("MODEL is required (or pass --ground-truth-only, or '-' as MODEL)")
    config = EvaluationConfig(
        n_beats=args.beats,
        modes=() if ground_truth_only else tuple(args.modes or DEFAULT_MODES),
        seed=args.seed,
        sampling=_sampling(args),
        max_new_rows=args.max_rows,
        si=args.si,
    )
    result = evaluate(
        args.data,
        args.out,
        None if ground_truth_only else args.model,
        split=args.split,
        n=args.n,
        config=config,
        device=_device(args.device),
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    out = Path(args.out)
    print((out / "metrics.md").read_text(encoding="utf-8"))
    print(f"{len(result.rows)} samples of {len(result.ids)} pieces -> {out / 'metrics.csv'}, "
          f"{out / 'metrics.md'}, {out / 'settings.json'}")
    if result.failures:
        print(f"{len(result.failures)} failure(s) recorded in {out / 'failures.csv'}", file=sys.stderr)
    for note in result.notes:
        print(note, file=sys.stderr)
    return 0


def _per_field(number: type) -> Callable[[str], object]:
    """An argparse type: one number for every field ("0.9"), or FIELD=NUMBER pairs ("instrument=2.5"
    or "pitch=0.9,duration=0.9": the fields not named take the setting's default)."""
    def parse(text: str):
        try:
            if "=" not in text:
                return number(text)
            pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
            return {name.strip(): number(value) for name, value in pairs}
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number or FIELD=NUMBER[,FIELD=NUMBER...] (e.g. instrument=2.5), got {text!r}") from None

    parse.__name__ = number.__name__  # argparse names the type in its messages
    return parse


PER_FIELD = "; or FIELD=VALUE pairs, e.g. instrument=2.5 (fields not named: temperature 1, no top-k or top-p)"


def _add_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temperature", type=_per_field(float),
                   help="sampling temperature, 0 = greedy (default: the model's)" + PER_FIELD)
    p.add_argument("--top-k", type=_per_field(int),
                   help="keep the k most likely codes per field (default: the model's)" + PER_FIELD)
    p.add_argument("--top-p", type=_per_field(float),
                   help="nucleus sampling threshold (default: the model's)" + PER_FIELD)
    p.add_argument("--repetition-penalty", type=float,
                   help="make codes already drawn less likely, e.g. 1.2 (default: the model's; 1 = off)")


def _sampling(args: argparse.Namespace) -> dict:
    """The sampling settings given on the command line (the model's defaults fill in the rest)."""
    return {name: getattr(args, name) for name in ("temperature", "top_k", "top_p", "repetition_penalty")
            if getattr(args, name) is not None}


def _add_constraints(p: argparse.ArgumentParser) -> None:
    from mmt.constraints import MAX_DENSITY, MAX_KEY_STRENGTH, MAX_WIDEN, PartConstraints

    defaults = PartConstraints()
    group = p.add_argument_group("part constraints", "keep the written parts to their instruments; settings.json "
                                 "records them and, per sample, what was met (mmt.constraints)")
    group.add_argument("--range-widen", type=int, metavar="N",
                       help=f"widen each instrument's usual range (cello C2-A5, viola C3-E6, violin G3-A7, flute "
                       f"C4-C7, ...) by N semitones a side, 0 to {MAX_WIDEN} (default: {defaults.range_widen})")
    group.add_argument("--no-ranges", action="store_true",
                       help="no usual ranges: only the model's own pitch range per instrument")
    group.add_argument("--allow-crossing", action="store_true",
                       help="let a written part go above the part above it (default: cello under viola under "
                       "violin, given parts included)")
    group.add_argument("--key", metavar="TONIC:MODE|source|none",
                       help="make pitches outside this key less likely, e.g. D:major, F#:minor; source: the "
                       "prompt's key signature, else its estimated key; none: off (default: source; none "
                       "without a prompt)")
    group.add_argument("--key-strength", type=float, metavar="X",
                       help=f"logit penalty of an out-of-key pitch, 0 to {MAX_KEY_STRENGTH:g} "
                       f"(default: {defaults.key_strength:g})")
    group.add_argument("--density", type=float, metavar="N",
                       help=f"steer each written part towards N notes per bar, up to {MAX_DENSITY:g} (moves notes "
                       "between parts; default: off)")


def _constraints(args: argparse.Namespace) -> dict:
    """The part constraints given on the command line (`PartConstraints`' defaults fill in the rest)."""
    given = {"range_widen": args.range_widen, "key_strength": args.key_strength, "density": args.density,
             "ranges": False if args.no_ranges else None, "no_crossing": False if args.allow_crossing else None}
    if args.key is not None:
        given["key"] = None if args.key.strip().lower() == "none" else args.key
    return {name: value for name, value in given.items() if value is not None or name == "key"}


# ============================================================================ train
def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model from a YAML config (torchrun --nproc_per_node N -m mmt train ... for DDP)"
    )
    p.add_argument("config", help="experiment config (YAML), e.g. configs/music21-mix.yaml")
    p.add_argument("--data", help="prepared data directory (default: the config's data.path)")
    p.add_argument("--out", help="run directory (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last/ checkpoint")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: the config's training.device")
    p.add_argument("--max-steps", type=int, help="override training.max_steps (e.g. to extend a resumed run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_threads(p, default=None)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses
    import os

    from mmt.config import load_config
    from mmt.training import train

    config = load_config(args.config)
    if args.max_steps is not None:
        if args.max_steps < 1:
            raise CommandError(f"--max-steps must be >= 1, got {args.max_steps}")
        config = dataclasses.replace(
            config, training=dataclasses.replace(config.training, max_steps=args.max_steps))
    out = Path(args.out) if args.out else Path("runs") / config.name
    result = train(config, out, data_dir=args.data, resume=args.resume, device=args.device,
                   progress=not args.no_progress, threads=args.threads)
    if os.environ.get("RANK", "0") == "0":
        best = (f"best valid loss {result.best_valid_loss:.4f} at step {result.best_step}"
                if result.best_valid_loss is not None else "no validation")
        print(f"{config.name}: {result.step} steps, {best}, {result.tokens_per_s:.0f} tokens/s -> {out}")
    return 130 if result.interrupted else 0


# ============================================================================ analyze
def _add_analyze(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="HTML report of what a trained model learned (attention, embeddings, training curve, samples)",
        description="Write a self-contained report (index.html with PNG plots beside it) to --out: the "
        "model's config and training curve, mean relative attention by beat, position, pitch and "
        "instrument over N pieces of a prepared split, the learned pitch/beat/position/duration "
        "embeddings with the octave score, the metrics of an `mmt evaluate` run (--eval) and "
        "generated samples as piano rolls with audio players (--samples).",
    )
    p.add_argument("model", metavar="MODEL", help="checkpoint directory (or a training run's folder: its best/)")
    p.add_argument("--data", required=True, help="prepared data directory (notes/, <split>.txt, encoding.json)")
    p.add_argument("--out", required=True, help="report directory (index.html and its images)")
    p.add_argument("-n", type=int, default=64, help="pieces of the split for the attention analysis (default: 64)")
    p.add_argument("--split", default="valid", help="split to analyse (default: valid)")
    p.add_argument("--eval", dest="eval_dir", help="an `mmt evaluate` output folder: show its metrics table")
    p.add_argument("--samples", help="a folder of generated samples (PNG piano rolls, WAVs beside them, or .npy codes)")
    p.add_argument("--max-samples", type=int, help="most samples shown, each request in turn (default: all)")
    p.add_argument("--batch-size", type=int, default=1, help="pieces per forward pass (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="picks the pieces (default: 0)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--beat-window", type=int, default=16,
                   help="show beat offsets -N..0; whole bars are -4, -8, .. -N (default: 16)")
    p.add_argument("--pitch-window", type=int, default=24, help="show pitch offsets -N..+N (default: 24)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_threads(p)
    p.set_defaults(func=_cmd_analyze)


def _cmd_analyze(args: argparse.Namespace) -> int:
    from mmt.analysis.report import ReportConfig, write_report

    config = ReportConfig(n_sequences=args.n, split=args.split, seed=args.seed, batch_size=args.batch_size,
                          device=_device(args.device), max_samples=args.max_samples, beat_window=args.beat_window,
                          pitch_window=args.pitch_window)
    index = write_report(args.model, args.data, args.out, config, eval_dir=args.eval_dir,
                         samples_dir=args.samples, progress=not args.quiet)
    print(f"report -> {index} (key numbers: {index.parent / 'findings.json'})")
    return 0


# ============================================================================ prepare
def _add_prepare(sub) -> None:
    from mmt.data_prep import DATASETS, Filters  # light: no numpy or music imports
    from mmt.data_prep.sources import SPLITS

    defaults = Filters()
    p = sub.add_parser(
        "prepare",
        help="turn a dataset into training data (notes/<id>.npy, split lists, manifest)",
        description="Read every file of a dataset, clean and filter it, and write notes/<id>.npy, "
        "train.txt/valid.txt/test.txt, encoding.json and manifest.jsonl (one line per source file: "
        "ok / skipped / failed and why). Rerunning resumes an interrupted run and does nothing on a "
        "finished one.",
    )
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("src", help="the dataset's folder (music21, music21-tunes: '-' for the corpus bundled "
                   "with music21)")
    p.add_argument("out", help="the prepared directory to write (or resume)")
    p.add_argument("-j", "--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--shard", metavar="I/N", help="prepare only shard I of N (1-based); merge shards by "
                   "copying their OUT folders into one and running once more without --shard")
    p.add_argument("--splits", nargs="+", choices=SPLITS, metavar="SPLIT",
                   help="prepare only the files of these splits (train valid test); a later run without "
                   "--splits completes the same OUT")
    p.add_argument("--limit", type=int, metavar="N", help="prepare only the first N files of the (filtered) "
                   "listing, in path order; a later run without --limit completes the same OUT")
    p.add_argument("--encoding", help="encoding.json whose resolution the notes take (default: the default encoding)")
    p.add_argument("--min-notes", type=int, default=defaults.min_notes,
                   help=f"skip pieces with fewer notes (default {defaults.min_notes})")
    p.add_argument("--min-beats", type=int, default=defaults.min_beats,
                   help=f"skip pieces shorter than this many beats (default {defaults.min_beats})")
    p.add_argument("--max-beats", type=int, default=defaults.max_beats,
                   help=f"skip pieces longer than this many beats (default {defaults.max_beats})")
    p.add_argument("--max-file-mb", type=float, default=defaults.max_file_mb,
                   help=f"skip files larger than this (default {defaults.max_file_mb:g} MiB)")
    p.add_argument("--timeout", type=float, default=defaults.timeout_s,
                   help=f"fail a file that takes longer to read (default {defaults.timeout_s:g} s; 0: no limit)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_prepare)


def _cmd_prepare(args: argparse.Namespace) -> int:
    from mmt.data_prep import Filters, parse_shard, prepare_dataset
    from mmt.encoding import Encoding

    filters = Filters(min_notes=args.min_notes, min_beats=args.min_beats, max_beats=args.max_beats,
                      max_file_mb=args.max_file_mb, timeout_s=args.timeout)
    summary = prepare_dataset(
        args.dataset, args.src, args.out,
        encoding=Encoding.load(args.encoding) if args.encoding else Encoding(),
        filters=filters, jobs=args.jobs, shard=parse_shard(args.shard), splits=args.splits, limit=args.limit,
        progress=not args.no_progress,
    )
    counts = summary.counts
    rate = f", {summary.files_per_second:.2f} files/s" if summary.processed else ""
    print(f"{summary.out}: {summary.total} files: {counts['ok']} ok, {counts['skipped']} skipped, "
          f"{counts['failed']} failed; {summary.notes} notes; {summary.processed} prepared now"
          f" in {summary.seconds:.1f} s{rate}")
    if not summary.complete:
        left_out = [name for name, used in (("--shard", args.shard), ("--splits", args.splits),
                                            ("--limit", args.limit is not None)) if used]
        print(f"{summary.out}: {summary.missing} files of the dataset are not prepared yet; the index files "
              f"list what is done. Run once more without {' / '.join(left_out) or 'options'} to complete "
              "(shards: copy every shard's OUT here first)")
    print(f"see {summary.out / 'manifest.jsonl'} for each file's status and reason")
    return 0


# ============================================================================ generate
def _add_generate(sub) -> None:
    from mmt.request import DEFAULT_BARS, MODES

    p = sub.add_parser(
        "generate",
        help="sample songs from a trained model (unconditioned, given instruments, or continuing a file)",
        description="Sample songs with a KV cache, all samples in one batch, under the song grammar. "
        "Per sample, --out gets <mode>-<k>.mid, .csv (the codes), .png (piano roll) and, with --audio, "
        ".wav. Modes: " + "; ".join(f"{m.name} ({m.help})" for m in MODES.values()) + ". --bars and "
        "--beats count what is added after the prompt (bar length from the prompt's time signature; "
        "otherwise bars of 4/4).",
    )
    p.add_argument("model", metavar="MODEL", help="checkpoint directory (or a training run's folder: its best/)")
    p.add_argument("--mode", choices=list(MODES), help="default: from what is given (--edit: edit, --keep: "
                   "accompaniment, --bars-to-fill: infill, --instruments: instrument, --prompt: continuation; "
                   "nothing: unconditioned)")
    p.add_argument("--instruments", nargs="+", metavar="NAME_OR_PROGRAM",
                   help="instrument mode: e.g. piano violin cello, or GM programs 0 40 42; accompaniment: the "
                   "parts to write (default: the prompt's instruments not kept)")
    p.add_argument("--prompt", metavar="FILE", help="continuation, accompaniment, infill, edit: a MIDI/MusicXML/kern/abc "
                   "file")
    p.add_argument("--keep", nargs="+", metavar="NAME_OR_PROGRAM",
                   help="accompaniment: the prompt's instruments whose notes are kept exactly")
    p.add_argument("--bars-to-fill", metavar="FIRST-LAST",
                   help="infill: the bars to rewrite, e.g. 9-12 (1-based, inclusive); every other note is kept")
    p.add_argument("--edit", action="append", metavar="PARTS@BARS",
                   help="edit: rewrite these parts over these bars of the --prompt piece, every other note kept as "
                   "it was; e.g. cello@5-8, violin,viola@3, flute@1- (add a flute over the whole piece), all@9-12 "
                   "(infill), all@9-24 on an 8-bar piece (continue to bar 24). Bars are the piece's own (1-based, "
                   "inclusive; a pickup is no bar); repeat --edit for more regions, applied in turn")
    cut = p.add_mutually_exclusive_group()
    cut.add_argument("--prompt-beats", type=float, help="keep the prompt's first N beats (default: all of it)")
    cut.add_argument("--prompt-bars", type=float, help="keep the prompt's first N bars")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--bars", type=float, help=f"add at most this many bars (default: {DEFAULT_BARS:g}; an edit "
                        "or a continuation of a piece cut after whole bars writes all of them); a sample the model "
                        "ends earlier is reported with its length")
    length.add_argument("--beats", type=float, help=f"add at most this many beats (default: {DEFAULT_BARS:g} bars)")
    p.add_argument("-n", "--n-samples", type=int, default=1, help="number of samples, drawn as one batch (default 1)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random, and printed)")
    _add_sampling(p)
    p.add_argument("--balance", type=float, help="favour instruments that have played least: 0 = off "
                   "(default: 1 in the instrument and continuation modes, 0 otherwise)")
    p.add_argument("--quota", type=int, help="new notes each instrument gets, spread over the song: 0 = off "
                   "(default: 8 in the instrument and continuation modes, 0 otherwise)")
    _add_constraints(p)
    p.add_argument("--max-rows", type=int, default=1024, help="most rows generated per sample (default 1024)")
    p.add_argument("--audio", action="store_true", help="also render WAV (needs fluidsynth and a GM soundfont)")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    p.add_argument("--out", required=True, help="output directory (samples already there are kept: new ones "
                   "take the next numbers)")
    p.add_argument("--overwrite", action="store_true", help="number the samples from 000 again, replacing "
                   "those of earlier runs and settings.json")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_threads(p)
    p.set_defaults(func=_cmd_generate)


def _cmd_generate(args: argparse.Namespace) -> int:
    import warnings

    from mmt.checkpoint import load_model, read_checkpoint_info
    from mmt.encoding import Encoding
    from mmt.errors import GenerationWarning
    from mmt.io import audio_available
    from mmt.request import MODES, GenerationRequest, run

    # Everything is checked before the weights load (seconds): the request, the device,
    # and its prompt or instruments against the checkpoint's own encoding.
    with _flags_named():
        request = GenerationRequest.build(
            mode=args.mode, instruments=tuple(args.instruments or ()), prompt=args.prompt,
            keep=tuple(args.keep or ()), bars_to_fill=args.bars_to_fill, edit=tuple(args.edit or ()),
            prompt_beats=args.prompt_beats, prompt_bars=args.prompt_bars, beats=args.beats, bars=args.bars,
            n_samples=args.n_samples, seed=args.seed, max_new_rows=args.max_rows, balance=args.balance,
            quota=args.quota, sampling=_sampling(args), constraints=_constraints(args),
        )
    device = _device(args.device)
    with _flags_named():
        prompt = MODES[request.mode].build(request, Encoding.from_dict(read_checkpoint_info(args.model)["encoding"]))
    model = load_model(args.model, device=device)
    generation = run(model, request, prompt=prompt, device=device, progress=not args.quiet)
    prompt = generation.prompt
    if request.mode == "continuation":
        cut = f"{prompt.start_beats:g} beats" if prompt.plan is None else (
            f"{prompt.plan.region.first_bar - 1} bars ({prompt.start_beats:g} beats)")
        print(f"{args.prompt}: prompt of {cut}, {prompt.n_notes} notes, {len(prompt.codes)} rows")
    if prompt.controls is not None:
        anticipation = model.encoding.anticipation
        before = prompt.n_notes  # an infill's notes before the gap
        kept = f"{before} in the prompt, {len(prompt.controls)} as control rows" if before else "as control rows"
        print(f"{args.prompt}: {before + len(prompt.controls)} notes kept as given ({kept}), new notes from beat "
              f"{prompt.start_beats:g} to {prompt.end_beats:g}; "
              + (f"anticipation {anticipation:g} beats" if anticipation is not None else
                 "this model was trained without controls: anticipation 0 (it sees the kept part's past only)"))
    audio = args.audio and audio_available()
    written = generation.write(args.out, audio=audio, overwrite=args.overwrite, model_name=str(args.model))
    bars = generation.bars_written()
    for k, (codes, paths) in enumerate(zip(generation.samples, written)):
        stem = paths["midi"].stem
        print(f"{stem}: {len(codes)} rows, {bars[k]:g} of {generation.bars_asked:g} bars -> "
              + ", ".join(str(path) for path in paths.values()))
        short = generation.shortfall(k)
        if short:
            warnings.warn(f"{stem} {short}", GenerationWarning)
    print(f"seed {generation.request.seed} (--seed {generation.request.seed} draws these samples again)")
    if args.audio and not audio:
        print("mmt generate: no WAV written: audio needs fluidsynth and a GM soundfont "
              "(`apt-get install fluidsynth fluid-soundfont-gm`, or set MMT_SOUNDFONT to an .sf2 file); "
              "MIDI, CSV and PNG were written", file=sys.stderr)
    return 0


# ============================================================================ instruments
def _add_instruments(sub) -> None:
    p = sub.add_parser("instruments", help="list the instrument names (and aliases) that --instruments and "
                       "--keep take, with their GM programs")
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help="a checkpoint directory or bundled model whose encoding to list (default: the default "
                   "encoding)")
    p.set_defaults(func=_cmd_instruments)


def _cmd_instruments(args: argparse.Namespace) -> int:
    from mmt.checkpoint import read_checkpoint_info
    from mmt.constants import DRUM_PROGRAM
    from mmt.encoding import Encoding

    encoding = Encoding.from_dict(read_checkpoint_info(args.model)["encoding"]) if args.model else Encoding()
    aliases = encoding.instrument_aliases
    width = max(map(len, encoding.instruments))
    for code, name in enumerate(encoding.instruments, start=1):
        programs = [p for p in range(DRUM_PROGRAM) if encoding.program_codes[p] == code]
        where = [_ranges(programs)] if programs else []
        if encoding.program_codes[DRUM_PROGRAM] == code:
            where.append("any on the drum channel (10)")
        line = f"{name:<{width}}  programs {'; '.join(where) or 'none'}"
        named = [alias for alias, target in aliases.items() if target == name]
        print(line + (f"  aliases {', '.join(named)}" if named else ""))
    return 0


def _ranges(numbers: list[int]) -> str:
    """Increasing integers as runs, e.g. [0, 1, 2, 5] -> "0-2, 5"."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in runs)


# ============================================================================ demo
def _add_demo(sub) -> None:
    from mmt_app.demo import DemoConfig

    d = DemoConfig()
    p = sub.add_parser(
        "demo",
        help="the whole pipeline on music21's bundled corpus with the bundled model",
        description="Prepare the test split of music21's bundled corpus, load the bundled model "
        "(music21-small), generate samples in each mode (unconditioned, a string quartet, the "
        "continuation of a test piece's first 8 bars), evaluate them against the test split and write "
        "the analysis report. Everything goes to --out; a second run reuses what the first wrote.",
    )
    p.add_argument("--out", default=str(d.out), help=f"output folder (default: {d.out})")
    p.add_argument("--data", default=str(d.data), help=f"prepared corpus folder (default: {d.data})")
    p.add_argument("--train-data", default=str(d.train_data),
                   help=f"with --train, the folder for the whole corpus, every tune (default: {d.train_data})")
    p.add_argument("--model", help="a checkpoint directory instead of the bundled model")
    p.add_argument("--train", action="store_true",
                   help="prepare the whole corpus (music21-tunes) and train the bundled model's config from "
                   "scratch first (about 40 minutes on two CPU cores)")
    p.add_argument("-n", "--samples", type=int, default=d.n_samples, help=f"samples per mode (default: {d.n_samples})")
    p.add_argument("--eval-pieces", type=int, default=d.n_eval,
                   help=f"test pieces evaluated (default: {d.n_eval})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default: {d.seed})")
    p.add_argument("-j", "--jobs", type=int, default=d.jobs, help=f"preparation workers (default: {d.jobs})")
    p.add_argument("--no-audio", action="store_true", help="no WAVs even when fluidsynth is installed")
    p.add_argument("--device", default=d.device, help=f"torch device (default: {d.device})")
    _add_threads(p)
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from mmt_app.demo import DemoConfig, DemoError, run_demo

    config = DemoConfig(out=Path(args.out), data=Path(args.data), train_data=Path(args.train_data),
                        model=Path(args.model) if args.model else None, train=args.train,
                        n_samples=args.samples, n_eval=args.eval_pieces, seed=args.seed, jobs=args.jobs,
                        audio=not args.no_audio, device=_device(args.device))
    try:
        run_demo(config)
    except DemoError as error:
        raise CommandError(str(error)) from None
    return 0


# ============================================================================ parser
SECTIONS = [_add_encode, _add_evaluate, _add_train, _add_analyze, _add_prepare, _add_generate, _add_instruments,
            _add_demo]


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
    _show_warnings_as(f"mmt {args.command}")
    try:
        _set_threads(args)
        return int(args.func(args) or 0)
    except (MMTError, FileNotFoundError) as error:
        print(f"mmt {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mmt {args.command}: interrupted", file=sys.stderr)
        return 130
