"""The evaluate job: metrics of ground truth and generated samples, per mode, with 95% CIs.

For the first `n` pieces of a prepared split (in the split file's order) it computes the
metrics of `mmt.analysis.metrics` on

- `ground-truth`: the piece itself (`notes/<id>.npy` -> `mmt.encode_notes` -> `mmt.decode`);
- `unconditioned`: a sample from start-of-song alone;
- `instrument`: a sample whose header is the piece's instruments;
- `continuation-<B>`: a sample continuing the piece's first B beats (prompt included);
- `accompaniment`: new parts for the piece's melody (the instrument of the highest mean
  pitch, `melody_instrument`), kept note for note; pieces of one instrument are left out;
- `infill`: bars 5-8 (`INFILL_BARS`, in the piece's own meter) rewritten, every other
  note kept; pieces whose notes end before bar 5 are left out;
- `edit`: one part rewritten over the same bars (the edit `<part>@5-8`), every other note
  kept; the part is one of the piece's pitched parts, chosen by the sample's seed
  (`edit_part`); pieces of one part, or ending before bar 5, are left out. Besides the
  piece's metrics, the rewritten part is measured over those bars (`PART_METRICS`: notes
  per bar, share in its instrument's usual range, crossings per bar, H1, scale
  consistency), and the same of the real part in the ground truth's row, so that the table
  sets the written part beside the real one;

every one trimmed to the same length (`n_beats`, 64 by default as in the MMT paper), cut at
the last bar line at or before it (`bar_cut`): notes starting at or after the cut are
dropped, the others end at the cut at the latest.

Bars. The ground truth and its continuations are cut into the piece's own bars (its
time signatures, kept by `mmt prepare` in `meters/<id>.json`), and so are the
accompaniments and infills (they keep their prompt's meter); unconditioned and
instrument samples have no meter of their own and take the model's default, 4/4. A data
directory prepared before meters were kept gives 4/4 for every piece, and `metrics.md`
says so. With `si`, the structureness indicators (`mmt.analysis.structure`) are computed
from each trimmed piece rendered to audio with fluidsynth.

It writes to its output folder `metrics.csv` (one row per sample: id, mode, every metric),
`metrics.md` (mean and 95% confidence interval per mode and metric), `settings.json`
(generation settings, seed, model, data, n) and `samples/<mode>/<id>.npy` (the generated
codes). A rerun with the same settings reuses the saved samples, so an interrupted job
resumes where it stopped; pieces or samples that fail are listed in `failures.csv` and the
job goes on.

Edits run with the request's default part constraints (`mmt.constraints`: usual ranges,
no crossing, the source's key).

Confidence interval: mean +- 1.96 * s / sqrt(n), with `s` the sample standard deviation
(ddof=1) and `n` the number of samples where the metric is defined (NaN values are left
out); the normal approximation of a 95% interval for the mean.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import muspy
import numpy as np

from mmt.analysis import AnalysisError
from mmt.analysis.metrics import METRIC_DESCRIPTIONS, METRICS, compute_metrics
from mmt.analysis.structure import SI_DESCRIPTIONS, SI_METRICS, si_unavailable_reason, structure_indicators
from mmt.constants import DRUMS, Field, RowType
from mmt.constraints import measure_region
from mmt.encoding import Encoding, decode
from mmt.files import read_json, write_atomic, write_text_atomic
from mmt.meter import Meter
from mmt.prepared import PreparedData
from mmt.edit import parse_region
from mmt.request import MODES, GenerationRequest, bars_to_beats, run

GROUND_TRUTH = "ground-truth"
UNCONDITIONED = "unconditioned"
INSTRUMENT = "instrument"
CONTINUATION = "continuation"
INFILL_BARS = (5, 8)  # the bars an `infill` or `edit` evaluation rewrites: four bars inside the usual 16
EDIT = "edit"
PART_METRICS: tuple[str, ...] = ("part_notes_per_bar", "part_in_range", "part_crossings_per_bar", "part_h1",
                                 "part_scale_consistency")
"""The columns of `part_metrics`: an edit's rewritten part (and the real one) over its bars."""
PART_DESCRIPTIONS: dict[str, str] = {
    "part_notes_per_bar": "edit: the rewritten part's notes per bar over bars 5-8 (ground truth: the real part's)",
    "part_in_range": "edit: share of the part's notes there inside its instrument's usual range "
                     "(mmt.constants.INSTRUMENT_REGISTERS); n/a for instruments off the table",
    "part_crossings_per_bar": "edit: onsets per bar where the part sounds above the nearest part above it or below "
                              "the nearest part below (the order of mmt.constraints.part_order); n/a for chordal "
                              "instruments",
    "part_h1": "edit: H1 of the part alone over bars 5-8 (pitch-class entropy of each bar's notes, mean over bars)",
    "part_scale_consistency": "edit: muspy's scale consistency of the part's notes over bars 5-8",
}
DEFAULT_MODES: tuple[str, ...] = (UNCONDITIONED, INSTRUMENT, f"{CONTINUATION}-4", f"{CONTINUATION}-16")
DESCRIPTIONS = {**METRIC_DESCRIPTIONS, **SI_DESCRIPTIONS, **PART_DESCRIPTIONS}
Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile
CI_DESCRIPTION = "mean +- 1.96 * s / sqrt(n); s = sample std (ddof=1), n = samples where the metric is defined"


@dataclass(frozen=True)
class EvaluationConfig:
    """What to generate and how, for `evaluate`.

    Attributes:
        n_beats: every sample (ground truth included) is trimmed to this many beats; it is
            also the generation limit (`max_beats`).
        modes: generation modes: "unconditioned", "instrument", "continuation-<beats>",
            "accompaniment", "infill", "edit".
            Empty for a ground-truth-only evaluation.
        seed: sample k of mode m for the i-th piece uses a seed derived from (seed, i, m).
        sampling: sampling settings that override the model's defaults (e.g. {"top_p": 0.9}).
        max_new_rows: the most rows generated per sample.
        si: also compute SI_short/SI_mid/SI_long from audio (needs fluidsynth and librosa).
    """

    n_beats: int = 64
    modes: tuple[str, ...] = DEFAULT_MODES
    seed: int = 0
    sampling: dict = field(default_factory=dict)
    max_new_rows: int = 1024
    si: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "modes", tuple(self.modes))
        object.__setattr__(self, "sampling", dict(self.sampling))
        GenerationRequest(sampling=self.sampling)  # checks the settings (a GenerationError names the bad one)
        if self.n_beats < 1:
            raise AnalysisError(f"n_beats must be >= 1, got {self.n_beats}")
        if self.max_new_rows < 1:
            raise AnalysisError(f"max_new_rows must be >= 1, got {self.max_new_rows}")
        if len(set(self.modes)) != len(self.modes):
            raise AnalysisError(f"modes repeat: {', '.join(self.modes)}")
        for mode in self.modes:
            _, prompt_beats = parse_mode(mode)
            if prompt_beats is not None and prompt_beats >= self.n_beats:
                raise AnalysisError(f"mode {mode}: the prompt must be shorter than the {self.n_beats} beats evaluated")

    def generation_settings(self) -> dict:
        """The settings that decide the generated samples (recorded and checked on resume)."""
        return {"n_beats": self.n_beats, "seed": self.seed, "sampling": dict(self.sampling),
                "max_new_rows": self.max_new_rows}


@dataclass(frozen=True)
class EvaluationResult:
    """What `evaluate` measured: one row per sample, the summary, and the failures."""

    rows: list[dict]
    summary: dict[str, dict[str, tuple[float, float, int]]]
    failures: list[dict] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------- pieces and modes
def parse_mode(mode: str) -> tuple[str, int | None]:
    """(generation mode, prompt beats) of an evaluation mode name.

    A generation mode that cuts a prompt is evaluated as `<mode>-<beats>`: the piece's
    first `beats` beats are the prompt (e.g. "continuation-4"); the others by their name.
    """
    name, _, beats = mode.rpartition("-")
    if name in MODES and MODES[name].cuts_prompt and beats.isdigit() and int(beats) > 0:
        return name, int(beats)
    if mode in MODES and evaluable(MODES[mode]) and not MODES[mode].cuts_prompt:
        return mode, None
    examples = [m.name + ("-<beats>" if m.cuts_prompt else "") for m in MODES.values() if evaluable(m)]
    raise AnalysisError(f"unknown mode {mode!r}; modes are {', '.join(examples)} (e.g. {CONTINUATION}-4)")


PIECE_INPUTS = frozenset({"instruments", "prompt", "keep", "bars_to_fill", "edit"})
"""The request fields `piece_request` fills from a test piece."""


class NotApplicable(AnalysisError):
    """A mode has nothing to do on a piece (an accompaniment of a one-instrument piece); the
    message says why, of the pieces ("have one instrument (nothing to accompany)")."""


def evaluable(mode) -> bool:
    """Whether an evaluation can build a request of `mode` from a test piece alone."""
    return set(mode.needs) <= PIECE_INPUTS


def keeps_meter(mode: str) -> bool:
    """Whether samples of `mode` keep their piece's meter (a mode with a prompt); the others
    take the model's default, 4/4."""
    return MODES[parse_mode(mode)[0]].takes_prompt


def melody_instrument(notes: np.ndarray, encoding: Encoding) -> int:
    """The instrument code of the note rows `notes` with the highest mean pitch, drums left
    out: the part an accompaniment keeps as the melody. 0 when only drums play."""
    drums = [code for code, name in enumerate(encoding.instruments, start=1) if name == DRUMS]
    codes = np.setdiff1d(np.unique(notes[:, Field.INSTRUMENT]), drums)
    if len(codes) == 0:
        return 0
    return int(max(codes, key=lambda c: notes[notes[:, Field.INSTRUMENT] == c, Field.PITCH].mean()))


def header_instruments(codes: np.ndarray, encoding: Encoding) -> list[str]:
    """Instrument names declared in the header rows of `codes`."""
    header = codes[codes[:, Field.TYPE] == RowType.INSTRUMENT, Field.INSTRUMENT]
    return [encoding.instruments[int(code) - 1] for code in header]


def bar_cut(music: muspy.Music, n_beats: float) -> float:
    """Where to trim `music` to at most `n_beats` beats: the last bar line at or before it.

    Bars follow `music`'s time signatures (4/4 without one): 64 beats keep 16 bars of 4/4,
    21 bars of 3/4 (63 beats). A first bar longer than `n_beats` is cut at `n_beats`.
    """
    cut = Meter.from_music(music).bar_floor(n_beats)
    return cut if cut > 0 else float(n_beats)


def trim_music(music: muspy.Music, n_beats: float) -> muspy.Music:
    """A copy of `music` cut to its first `n_beats` beats.

    Notes starting at or after the cut are dropped; the others are shortened to end at
    the cut at the latest. Tracks are kept, and the time signatures, tempos and bar lines
    before the cut.
    """
    cut = round(n_beats * music.resolution)
    trimmed = copy.deepcopy(music)
    for events in (trimmed.time_signatures, trimmed.tempos, trimmed.barlines):
        events[:] = [event for event in events if event.time < cut]
    for track in trimmed.tracks:
        track.notes = [
            muspy.Note(time=n.time, pitch=n.pitch, duration=min(n.duration, cut - n.time), velocity=n.velocity)
            for n in track.notes
            if n.time < cut
        ]
    return trimmed


def edit_part(truth_codes: np.ndarray, encoding: Encoding, seed: int) -> str:
    """The part an `edit` evaluation rewrites: of the piece's pitched parts (its header's
    instruments, drums aside; in header order), the one at `seed` modulo their number.
    Raises `NotApplicable` for a piece of fewer than two parts or without a pitched one."""
    parts = header_instruments(truth_codes, encoding)
    pitched = [name for name in parts if name != DRUMS]
    if len(parts) < 2 or not pitched:
        raise NotApplicable("have one part or no pitched part (nothing to rewrite beside)")
    return pitched[seed % len(pitched)]


def part_metrics(codes: np.ndarray, music: muspy.Music, encoding: Encoding, part: str) -> dict[str, float]:
    """`PART_METRICS` of instrument `part` over bars `INFILL_BARS` of a piece: its codes (note and
    control rows) and its decoded `music` (with the piece's meter).

    Notes per bar, in-range share and crossings per bar from `mmt.constraints.measure_region`
    (the other parts given); H1 (`pitch_class_entropy_bars`) and scale consistency of the
    part's notes in those bars alone. A part without notes there: 0 notes per bar, the others NaN.
    """
    from mmt.analysis.metrics import pitch_class_entropy_bars, scale_consistency

    meter = Meter.from_music(music)
    start, end = (bars_to_beats(meter, bar) for bar in (INFILL_BARS[0] - 1, INFILL_BARS[1]))
    figures = measure_region(codes, encoding, [encoding.instruments.index(part) + 1], start, end,
                             beats_per_bar=meter.beats_per_bar(start))
    found, bars = figures["parts"].get(part), figures["bars"]
    if found is None:
        return {name: (0.0 if name == "part_notes_per_bar" else math.nan) for name in PART_METRICS}
    alone = copy.deepcopy(music)
    low, high = round(start * music.resolution), round(end * music.resolution)
    alone.tracks = [track for track in alone.tracks if track.name == part]
    for track in alone.tracks:
        track.notes = [note for note in track.notes if low <= note.time < high]

    def number(value) -> float:
        return math.nan if value is None else float(value)

    return {"part_notes_per_bar": found["notes"] / bars, "part_in_range": number(found["in_range"]),
            "part_crossings_per_bar": math.nan if found["crossings"] is None else found["crossings"] / bars,
            "part_h1": pitch_class_entropy_bars(alone), "part_scale_consistency": scale_consistency(alone)}


def sample_seed(seed: int, piece_index: int, mode: str) -> int:
    """The seed of the sample of `mode` for the `piece_index`-th piece (independent of the others)."""
    sequence = np.random.SeedSequence([seed, piece_index, zlib.crc32(mode.encode("utf-8"))])
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def piece_request(mode: str, truth: muspy.Music, truth_codes: np.ndarray, data_encoding: Encoding,
                  config: EvaluationConfig, seed: int):
    """The generation request of `mode` for a piece: its instruments, its opening as the
    prompt, its melody kept (accompaniment), its bars `INFILL_BARS` to fill (infill) or one
    part (`edit_part`) to rewrite over them (edit).

    Accompaniment and infill take the piece cut to `config.n_beats` as their prompt. Raises
    `NotApplicable` where the mode has nothing to do on the piece.
    """
    name, prompt_beats = parse_mode(mode)
    spec = MODES[name]
    fields = {}
    if "beats" in spec.takes:
        fields["beats"] = config.n_beats - (prompt_beats or 0)
    if spec.cuts_prompt:
        fields.update(prompt=truth, prompt_beats=prompt_beats)
    elif spec.takes_prompt:
        fields["prompt"] = trim_music(truth, bar_cut(truth, config.n_beats))
        if "bars_to_fill" in spec.takes or "edit" in spec.takes:
            gap = bars_to_beats(Meter.from_music(truth), INFILL_BARS[0] - 1) * truth.resolution
            if gap >= fields["prompt"].get_end_time():
                raise NotApplicable(f"end before bar {INFILL_BARS[0]} (nothing to fill)")
        if "bars_to_fill" in spec.takes:
            fields["bars_to_fill"] = INFILL_BARS
        if "edit" in spec.takes:
            part = edit_part(truth_codes, data_encoding, seed)
            fields["edit"] = (f"{part}@{INFILL_BARS[0]}-{INFILL_BARS[1]}",)
    notes = truth_codes[truth_codes[:, Field.TYPE] == RowType.NOTE]
    if "keep" in spec.takes:
        if len(np.unique(notes[:, Field.INSTRUMENT])) < 2:
            raise NotApplicable("have one instrument (nothing to accompany)")
        fields["keep"] = (data_encoding.instruments[melody_instrument(notes, data_encoding) - 1],)
    elif spec.takes_instruments:
        fields["instruments"] = tuple(header_instruments(truth_codes, data_encoding))
    return GenerationRequest(mode=name, n_samples=1, sampling=config.sampling, seed=seed,
                             max_new_rows=config.max_new_rows, **fields)


# ---------------------------------------------------------------------- statistics and tables
def mean_ci(values: Iterable[float]) -> tuple[float, float, int]:
    """(mean, 95% half-width, n) of the defined (non-NaN) values.

    Half-width = 1.96 * s / sqrt(n), `s` the sample standard deviation (ddof=1);
    NaN with fewer than two values (mean NaN with none).
    """
    data = np.array([v for v in values if not math.isnan(v)], dtype=float)
    n = len(data)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(data.mean())
    if n < 2:
        return mean, math.nan, 1
    return mean, float(Z_95 * data.std(ddof=1) / math.sqrt(n)), n


def summarize(rows: Sequence[dict], modes: Sequence[str],
              names: Sequence[str] = METRICS) -> dict[str, dict[str, tuple[float, float, int]]]:
    """mode -> metric -> (mean, 95% half-width, n) over the rows of that mode."""
    return {
        mode: {name: mean_ci(row[name] for row in rows if row["mode"] == mode) for name in names}
        for mode in modes
    }


def _format_cell(mean: float, half: float, n: int, n_samples: int) -> str:
    if n == 0:
        return "n/a"
    text = f"{mean:.3f}" if math.isnan(half) else f"{mean:.3f} ± {half:.3f}"
    return text if n == n_samples else f"{text} (n={n})"


def table_cells(rows: Sequence[dict], modes: Sequence[str], names: Sequence[str] = METRICS) -> list[list[str]]:
    """The metrics table as text cells: a header (metric, then each mode), the samples per mode, then
    one row per metric of mean ± 95% CI half-width, "(n=k)" where the metric is undefined for some
    samples, "n/a" where for all of them."""
    summary = summarize(rows, modes, names)
    counts = {mode: sum(1 for row in rows if row["mode"] == mode) for mode in modes}
    return [["metric", *modes], ["samples", *(str(counts[mode]) for mode in modes)],
            *([name, *(_format_cell(*summary[mode][name], counts[mode]) for mode in modes)] for name in names)]


def markdown_table(rows: Sequence[dict], modes: Sequence[str], names: Sequence[str] = METRICS) -> str:
    """Mean ± 95% CI half-width per metric (rows) and mode (columns), as Markdown."""
    descriptions = DESCRIPTIONS
    header, *body = table_cells(rows, modes, names)
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---|" * len(modes),
             *("| " + " | ".join(cells) + " |" for cells in body)]
    notes = [
        "",
        f"Mean ± 95% CI half-width ({CI_DESCRIPTION}); "
        "(n=k) where the metric is undefined (NaN) for some samples, which are left out.",
        "",
        "How to read it: no metric has a best value of its own; the closer a mode's mean is to "
        "the ground-truth column, the more its samples resemble the data in that respect. "
        "H1, H4 and GS follow MusDr's published definitions (Wu and Yang, ISMIR 2020): GS on 16 "
        "onset slots per beat whatever the file's resolution, so it can be set beside published "
        "figures; SI is MusDr's structureness indicator, from audio.",
        "",
        *[f"- `{name}`: {descriptions[name]}" for name in names],
    ]
    return "\n".join(lines + notes) + "\n"


def _format_value(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def csv_text(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """CSV text of `rows` with a header of `columns` (floats at full precision, NaN as `nan`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_format_value(row[c]) for c in columns])
    return buffer.getvalue()


def read_metrics_csv(path: str | os.PathLike) -> list[dict]:
    """Rows of a `metrics.csv` written by `evaluate` (metrics as floats)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            {key: (float(value) if key in METRICS or key in SI_METRICS or key in PART_METRICS else value)
             for key, value in row.items()}
            for row in csv.DictReader(handle)
        ]


def read_table(out_dir: str | os.PathLike) -> tuple[list[dict], list[str], list[str], dict]:
    """What the table of `metrics.md` in an `evaluate` output folder is made of, from the values
    behind it: (rows, columns, metric names, settings) for `table_cells`, read from `metrics.csv`,
    `settings.json` and `failures.csv`. As in `metrics.md`, a mode that left pieces out (ran on
    neither nor failed on them) has the ground truth of the pieces it ran on beside it."""
    out_dir = Path(out_dir)
    settings = read_json(out_dir / "settings.json", AnalysisError, "evaluation settings")
    rows = read_metrics_csv(out_dir / "metrics.csv")
    failed: set[tuple[str, str]] = set()
    if (out_dir / "failures.csv").is_file():
        with open(out_dir / "failures.csv", newline="", encoding="utf-8") as handle:
            failed = {(row["id"], row["mode"]) for row in csv.DictReader(handle)}
    modes = list(settings["modes"])
    truth = {row["id"] for row in rows if row["mode"] == GROUND_TRUTH}
    left_out = [mode for mode in modes if mode != GROUND_TRUTH and truth - {
        row["id"] for row in rows if row["mode"] == mode} - {piece for piece, where in failed if where == mode}]
    table_rows, table_modes = with_subset_truth(rows, modes, left_out)
    return table_rows, table_modes, list(settings["metrics"]), settings


# ---------------------------------------------------------------------- the job
def _sample_path(out_dir: Path, mode: str, piece_id: str) -> Path:
    return out_dir / "samples" / mode / f"{piece_id}.npy"


def _check_resume(settings_path: Path, settings: dict, overwrite: bool, restart: bool = False) -> bool:
    """Refuse to mix samples made with other settings into this output folder.

    Returns whether the folder's samples are to be made afresh: `overwrite`, or, with
    `restart`, an earlier evaluation with other settings (which is refused without it).
    """
    if overwrite or not settings_path.exists():
        return overwrite
    try:
        old = json.loads(settings_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False  # a damaged settings file is rewritten; its samples are regenerated below
    keys = ("model", "data", "split", "generation")
    changed = [key for key in keys if old.get(key) != settings[key]]
    if changed and restart:
        print(f"{settings_path.parent}: the earlier evaluation there used other settings ({', '.join(changed)}); "
              "evaluating afresh")
        return True
    if changed:
        raise AnalysisError(
            f"{settings_path}: an earlier evaluation in this folder used other settings "
            f"({', '.join(changed)}); choose another --out or pass --overwrite"
        )
    return False


def evaluate(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    model=None,
    *,
    split: str = "test",
    n: int | None = None,
    config: EvaluationConfig = EvaluationConfig(),
    device=None,
    overwrite: bool = False,
    restart: bool = False,
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate ground truth and (with a model) generated samples; write the result files.

    Args:
        data_dir: a prepared data directory (`notes/`, `<split>.txt`, `encoding.json`).
        out_dir: where `metrics.csv`, `metrics.md`, `settings.json`, `samples/` go.
        model: a checkpoint path, a `MusicTransformer`, or None for ground truth only
            (then `config.modes` is ignored).
        split: which split file to read.
        n: evaluate the first `n` pieces of the split (all when None).
        config: trimming length, modes, seed and sampling settings.
        device: where to run the model (`mmt.load_model`/`mmt.generate`).
        overwrite: regenerate samples even when `out_dir` holds some from earlier.
        restart: when `out_dir` holds an evaluation made with other settings (another model,
            data, split or generation settings), make it afresh instead of refusing (the
            demo's own folder, after the bundled model changed); the same settings resume.
        progress: show a progress bar.

    Returns:
        an `EvaluationResult` (the rows of `metrics.csv`, the summary, the failures).
    """
    from tqdm.auto import tqdm

    from mmt import __version__

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if n is not None and n < 1:
        raise AnalysisError(f"n must be >= 1, got {n}")
    data = PreparedData(data_dir)
    data_encoding = data.encoding
    ids = data.split(split)
    if not ids:
        raise AnalysisError(f"{data_dir / (split + '.txt')}: the split is empty")
    ids = ids[:n] if n is not None else ids

    model_name = None
    if model is not None:
        if isinstance(model, (str, os.PathLike)):
            import mmt

            model = mmt.load_model(model, device=device or "cpu")
        model_name = describe_model(model)
        if model.encoding.resolution != data_encoding.resolution:
            raise AnalysisError(
                f"the model's encoding has {model.encoding.resolution} ticks per beat but "
                f"{data_dir / 'encoding.json'} has {data_encoding.resolution}; they must match"
            )
    modes = (GROUND_TRUTH, *config.modes) if model is not None else (GROUND_TRUTH,)
    names: tuple[str, ...] = METRICS
    notes: list[str] = []
    if config.si:
        reason = si_unavailable_reason()
        if reason:
            notes.append(f"SI not computed: {reason}.")
        else:
            names = METRICS + SI_METRICS
    if EDIT in modes:
        names = names + PART_METRICS

    settings = {
        "model": model_name,
        "data": str(data_dir),
        "split": split,
        "n": len(ids),
        "modes": list(modes),
        "n_beats": config.n_beats,
        "seed": config.seed,
        "generation": config.generation_settings() if model is not None else None,
        "sampling_used": (GenerationRequest(sampling=config.sampling).sampling_params(model.sampling).to_dict()
                          if model is not None else None),
        "confidence_interval": CI_DESCRIPTION,
        "sample_seeds": "numpy SeedSequence([seed, piece index, crc32(mode)])",
        "metrics": {name: DESCRIPTIONS[name] for name in names},
        "mmt_version": __version__,
        "ids": ids,
    }
    settings_path = out_dir / "settings.json"
    overwrite = _check_resume(settings_path, settings, overwrite, restart)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(settings_path, json.dumps(settings, indent=1) + "\n")

    rows: list[dict] = []
    failures: list[dict] = []
    left_out: dict[str, list] = {}  # mode -> [pieces it has nothing to do on, why]
    meters: dict[str, int] = {}  # the pieces' first time signatures ("unknown": prepared without meters)
    bar = tqdm(total=len(ids) * len(modes), desc="evaluate", unit="sample", disable=not progress)
    for index, piece_id in enumerate(ids):
        try:
            truth_codes = data.codes(piece_id)
            meter = data.meter(piece_id)
            truth = decode(truth_codes, data_encoding, meter=meter)
        except ValueError as error:
            failures.append({"id": piece_id, "mode": "*", "error": str(error)})
            bar.update(len(modes))
            continue
        part = None  # the part the edit mode rewrites on this piece (None: it has nothing to do here)
        if EDIT in modes:
            try:
                edit_seed = sample_seed(config.seed, index, EDIT)
                part = parse_region(piece_request(EDIT, truth, truth_codes, data_encoding, config,
                                                  edit_seed).edit[0]).parts[0]
            except NotApplicable:
                pass
        for mode in modes:
            try:
                if mode == GROUND_TRUTH:
                    music = truth
                else:
                    path = _sample_path(out_dir, mode, piece_id)
                    codes = None
                    if path.exists() and not overwrite:
                        try:
                            codes = np.load(path, allow_pickle=False)
                        except (OSError, ValueError):
                            codes = None  # a damaged sample is made again
                    if codes is None:
                        request = piece_request(mode, truth, truth_codes, data_encoding, config,
                                                sample_seed(config.seed, index, mode))
                        codes = run(model, request, device=device).samples[0]
                        write_atomic(path, lambda tmp, c=codes: _save_npy(tmp, c))
                    music = decode(codes, model.encoding, meter=meter if keeps_meter(mode) else None)
                trimmed = trim_music(music, bar_cut(music, config.n_beats))
                row = {"id": piece_id, "mode": mode, **compute_metrics(trimmed)}
                if SI_METRICS[0] in names:
                    row.update(structure_indicators(trimmed))
                if PART_METRICS[0] in names:
                    row.update(dict.fromkeys(PART_METRICS, math.nan))
                    if mode == GROUND_TRUTH and part is not None:
                        row.update(part_metrics(truth_codes, truth, data_encoding, part))
                    elif mode == EDIT:
                        row.update(part_metrics(codes, music, model.encoding, part))
                rows.append(row)
            except NotApplicable as why:
                left_out.setdefault(mode, [0, str(why)])[0] += 1
            except Exception as error:  # one failed sample must not end the job; it is recorded
                failures.append({"id": piece_id, "mode": mode, "error": f"{type(error).__name__}: {error}"})
            bar.update(1)
        key = "unknown" if meter is None else "%d/%d" % meter.time_signature_at(0.0)
        meters[key] = meters.get(key, 0) + 1
    bar.close()

    for mode, (count, why) in left_out.items():
        notes.append(f"{mode}: {count} of {len(ids)} pieces {why}, left out.")
    if meters.get("unknown"):
        notes.append(f"{meters['unknown']} piece(s) of {data_dir} have no meter file (prepared before "
                     "meters were kept): cut into 4/4 bars. Run `mmt prepare` on the folder again to add them.")
    columns = ["id", "mode", *names]
    write_text_atomic(out_dir / "metrics.csv", csv_text(rows, columns))
    table_rows, table_modes = with_subset_truth(rows, modes, left_out)
    write_text_atomic(out_dir / "metrics.md",
                      _markdown_document(table_rows, table_modes, settings, names, meters, notes))
    failures_path = out_dir / "failures.csv"
    if failures:
        write_text_atomic(failures_path, csv_text(failures, ["id", "mode", "error"]))
    elif failures_path.exists():
        failures_path.unlink()
    return EvaluationResult(rows=rows, summary=summarize(rows, modes, names), failures=failures, ids=ids,
                            notes=notes)


def _save_npy(tmp: Path, codes: np.ndarray) -> None:
    # np.save appends ".npy" to a name without it; write through a handle to keep the temp name.
    with open(tmp, "wb") as handle:
        np.save(handle, codes, allow_pickle=False)


def describe_model(model) -> str:
    """The model's checkpoint directory and weights hash (the SHA-256 its `config.json` records),
    or, for a model not loaded from a checkpoint, a SHA-256 of its parameters."""
    import hashlib

    directory = getattr(model, "checkpoint_dir", None)
    if directory is not None:
        from mmt.checkpoint import read_checkpoint_info

        recorded = read_checkpoint_info(directory).get("weights_sha256")
        if recorded:
            return f"{directory} (weights sha256 {recorded[:16]})"
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    where = f"{directory}, " if directory is not None else ""
    return f"<{type(model).__name__} in memory> ({where}parameters sha256 {digest.hexdigest()[:16]})"


def with_subset_truth(rows: Sequence[dict], modes: Sequence[str],
                      left_out: Iterable[str]) -> tuple[list[dict], list[str]]:
    """Rows and columns for the table: before each mode that left pieces out, the ground
    truth of the pieces it ran on (column "ground-truth (<mode>'s N)"), so that it is set
    beside the same pieces' metrics and not the whole split's."""
    table_rows, table_modes = list(rows), []
    for mode in modes:
        if mode in left_out:
            ran = {row["id"] for row in rows if row["mode"] == mode}
            column = f"{GROUND_TRUTH} ({mode}'s {len(ran)})"
            table_rows += [{**row, "mode": column} for row in rows if row["mode"] == GROUND_TRUTH and row["id"] in ran]
            table_modes.append(column)
        table_modes.append(mode)
    return table_rows, table_modes


def _markdown_document(rows: Sequence[dict], modes: Sequence[str], settings: dict,
                       names: Sequence[str] = METRICS, meters: dict[str, int] | None = None,
                       notes: Sequence[str] = ()) -> str:
    model = settings["model"] or "none (ground truth only)"
    seen = ", ".join(f"{signature} ×{count}" for signature, count in sorted((meters or {}).items()))
    generated = [mode for mode in modes if not mode.startswith(GROUND_TRUTH)]
    own = ", ".join([GROUND_TRUTH, *(mode for mode in generated if keeps_meter(mode))])
    default = [mode for mode in generated if not keeps_meter(mode)]
    bars = f"Bars: {own} in each piece's own meter (first time signatures: {seen or 'none'})"
    bars += f"; {', '.join(default)} in 4/4, the model's default." if default else "."
    head = (
        f"# Evaluation: {settings['data']} ({settings['split']} split)\n\n"
        f"Model: {model}. Pieces: {settings['n']}. Every sample trimmed to the last bar line at or before "
        f"{settings['n_beats']} beats. Seed: {settings['seed']}.\n\n{bars}\n\n"
        + "".join(f"{note}\n\n" for note in notes)
    )
    return head + markdown_table(rows, modes, names)

