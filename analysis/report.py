"""The `mmt analyze` report: one self-contained `index.html` with PNG plots beside it.

Sections: the model (config, size, checkpoint metadata), its training curve (from the
run's `log.csv`), mean relative attention (beat, position, pitch, instrument; see
`mmt.analysis.attention`), the learned embeddings (see `mmt.analysis.embedding`), the metrics
table of an `mmt evaluate` run and generated samples as piano rolls with audio players.
Every file is written atomically; the HTML needs no server, script or stylesheet from
outside (open it straight from disk).
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import re
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from mmt.analysis import AnalysisError
from mmt.analysis.attention import (
    RELATIVE_FIELDS,
    GroupAttention,
    RelativeAttention,
    group_attention,
    model_relative_attention,
    musical_groups,
    plot_head_gain,
    plot_mean_gain,
    split_sequences,
)
from mmt.analysis.embedding import (
    PIANO_HIGH,
    PIANO_LOW,
    cosine_similarity,
    duration_labels,
    embedding_weights,
    interval_similarity,
    octave_bump,
    octave_score,
    pitch_tables,
    plot_interval_lines,
    plot_interval_similarity,
    plot_pitch_pca,
    plot_pitch_similarity,
    plot_similarity,
)
from mmt.constants import FIELDS, pitch_name
from mmt.files import read_json, save_figure, write_atomic, write_text_atomic
from mmt.training import read_log

SAMPLE_DIR = "samples"


@dataclass(frozen=True)
class ReportConfig:
    """Settings of `write_report`.

    Attributes:
        n_sequences: how many pieces of the split feed the attention analysis (None: all).
        split: the prepared split to read ("valid" by default).
        seed: picks the pieces (and nothing else is random).
        batch_size: pieces per forward pass.
        device: torch device for the model.
        beat_window: show beat offsets -beat_window..0.
        pitch_window: show pitch offsets -pitch_window..+pitch_window.
        beat_similarity_beats: how many beats the beat-embedding similarity matrix shows.
        pitch_low, pitch_high: the pitch range of the octave score and the PCA plot.
        max_samples: the most generated samples shown (None: all of them).
    """

    n_sequences: int | None = 64
    split: str = "valid"
    seed: int = 0
    batch_size: int = 1
    device: str = "cpu"
    beat_window: int = 16
    pitch_window: int = 24
    beat_similarity_beats: int = 64
    pitch_low: int = PIANO_LOW
    pitch_high: int = PIANO_HIGH
    max_samples: int | None = None

    def __post_init__(self) -> None:
        if self.n_sequences is not None and self.n_sequences < 1:
            raise AnalysisError(f"n_sequences must be >= 1, got {self.n_sequences}")
        for name, least in (("batch_size", 1), ("beat_window", 4), ("pitch_window", 12), ("beat_similarity_beats", 1)):
            if getattr(self, name) < least:
                raise AnalysisError(f"{name} must be >= {least}, got {getattr(self, name)}")
        if self.max_samples is not None and self.max_samples < 0:
            raise AnalysisError(f"max_samples must be >= 0, got {self.max_samples}")


# --------------------------------------------------------------------------- inputs
def find_training_log(checkpoint_dir: str | os.PathLike) -> Path | None:
    """The run's `log.csv`: in the checkpoint directory or its parent (a run's `best/`, `last/`)."""
    checkpoint_dir = Path(checkpoint_dir)
    for folder in (checkpoint_dir, checkpoint_dir.parent):
        if (folder / "log.csv").is_file():
            return folder / "log.csv"
    return None


def log_columns(rows: Sequence[dict]) -> dict[str, np.ndarray]:
    """The numeric columns of a training log's rows (`mmt.training.read_log`) as arrays: blank cells
    become NaN; columns with no number at all (text, or nothing) are left out."""
    columns: dict[str, np.ndarray] = {}
    for name in rows[0].keys() if rows else []:
        values = np.array([value if isinstance(value, (int, float)) else math.nan
                           for value in (row.get(name) for row in rows)], dtype=float)
        if np.isfinite(values).any():
            columns[name] = values
    return columns


# --------------------------------------------------------------------------- plots
def plot_training_curve(log: dict[str, np.ndarray], path: str | os.PathLike, train_log=None) -> Path | None:
    """Losses against steps: overall (train, validation) on the left, validation per field on the right.

    Returns None when the log has no step column or no loss column.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "step" not in log:
        return None
    step = log["step"]
    overall = [c for c in ("train_loss", "valid_loss", "loss", "total") if c in log]
    per_field = [c for c in (f"valid_{f}" for f in FIELDS) if c in log]
    per_field = per_field or [c for c in FIELDS if c in log]
    if not overall and not per_field:
        return None
    fig, axes = plt.subplots(1, 2 if per_field else 1, figsize=(11 if per_field else 6.5, 3.6), dpi=110,
                             squeeze=False)
    ax = axes[0, 0]
    if train_log is not None and "step" in train_log and "loss" in train_log:
        ax.plot(train_log["step"], train_log["loss"], color="0.8", lw=0.7, label="training loss (every step)")
    for column in overall:
        ax.plot(step, log[column], marker="o", ms=3, label=column.replace("_", " "))
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy (sum over fields)")
    ax.set_title("Loss")
    ax.legend(fontsize=8)
    if per_field:
        ax = axes[0, 1]
        for column in per_field:
            ax.plot(step, log[column], marker="o", ms=3, label=column.removeprefix("valid_"))
        ax.set_xlabel("training step")
        ax.set_ylabel("cross-entropy")
        ax.set_yscale("log")
        ax.set_title("Validation loss of each field")
        ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return save_figure(fig, path)


# --------------------------------------------------------------------------- samples
@dataclass(frozen=True)
class Sample:
    name: str
    image: str  # relative to the report
    audio: str | None
    midi: str | None = None
    request: str | None = None  # what was asked for, from the settings.json beside it


def request_label(run: dict) -> str:
    """A generation run of `settings.json` in words, e.g. "instrument mode: violin, cello; 16 bars added; seed 3".

    The prompt is named by the run's `source` when it has one (what the demo records for a piece of
    prepared data), else by its file name."""
    parts = [f"{run.get('mode', '?')} mode"]
    if run.get("instruments"):
        parts[0] += ": " + ", ".join(map(str, run["instruments"]))
    source = run.get("source") or Path(str(run.get("prompt"))).name
    if run.get("keep"):
        parts.append(f"{source} with {', '.join(map(str, run['keep']))} kept (pale on the piano roll)")
    if run.get("bars_to_fill"):
        first, last = run["bars_to_fill"]
        bars = f"bar {first}" if first == last else f"bars {first}-{last}"
        parts.append(f"{source}: {bars} rewritten, every other note kept (pale on the piano roll)")
    if run.get("prompt") and not run.get("keep") and not run.get("bars_to_fill"):
        cut = next((f"first {_amount(run[k], k.removeprefix('prompt_'))}" for k in ("prompt_bars", "prompt_beats")
                    if run.get(k) is not None), "whole")
        parts.append(f"prompt: {cut} of {source}, ending at beat {run.get('prompt_ends_at_beat', 0):g}")
    length = next((f"{_amount(run[k], k)} added" for k in ("bars", "beats") if run.get(k) is not None), None)
    if length:
        parts.append(length)
    if run.get("seed") is not None:
        parts.append(f"seed {run['seed']}")
    return "; ".join(parts)


def _amount(value: float, units: str) -> str:
    """E.g. "1 bar", "2.5 beats"."""
    return f"{value:g} {units.removesuffix('s') if value == 1 else units}"


def _read_json_or_none(path: Path):
    try:
        return read_json(path, AnalysisError, "settings")
    except (AnalysisError, OSError):
        return None


def _sample_requests(folder: Path) -> dict[str, tuple[int, str]]:
    """Sample stem -> (its run's place in `folder/settings.json`, the request in words): the runs
    `mmt generate` (and the demo) recorded there, or, in a mode's folder of an `mmt evaluate` output
    (`samples/<mode>/<piece id>.npy`), the mode and the piece each sample was drawn for."""
    runs = _read_json_or_none(folder / "settings.json")
    if isinstance(runs, list):
        return {stem: (index, request_label(run)) for index, run in enumerate(runs) if isinstance(run, dict)
                for stem in run.get("samples", [])}
    evaluation = _read_json_or_none(folder.parent.parent / "settings.json")
    if isinstance(evaluation, dict) and folder.name in evaluation.get("modes", []):
        where = f"of the {evaluation.get('split', '?')} split of {evaluation.get('data', '?')}"
        return {path.stem: (0, f"{folder.name} mode; piece {path.stem} {where}")
                for path in sorted(folder.glob("*.npy"))}
    return {}


def _copy(src: Path, dst: Path) -> Path:
    return write_atomic(dst, lambda tmp: shutil.copyfile(src, tmp))


def _in_order(found: list[tuple[Path, Path | None]], places: dict[Path, dict[str, tuple[int, str]]],
              limit: int | None) -> list[tuple[Path, Path | None]]:
    """Samples by request (a run of `settings.json`, else a folder: the modes of `mmt evaluate`), the
    requests in the order they were made, each one's samples sorted: all of them one request after
    another, or up to `limit` one request at a time in turn (so that each shows before any shows two).
    `places`: folder -> `_sample_requests(folder)`."""
    requests: dict[tuple, list] = {}
    for item in sorted(found, key=lambda item: item[0]):
        folder = item[0].parent
        place = places[folder].get(item[0].stem, (len(places[folder]), ""))[0]
        requests.setdefault((folder, place), []).append(item)
    queues = [requests[key] for key in sorted(requests)]
    if limit is None:
        return [item for queue in queues for item in queue]
    turns = [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]
    return turns[:limit]


def collect_samples(samples_dir: str | os.PathLike, out_dir: Path, encoding, limit: int | None = None
                    ) -> list[Sample]:
    """Copy the piano rolls (and the WAVs and MIDI files beside them) into the report's `samples/`:
    all of them, or up to `limit` (see `_in_order`), each with the request it was drawn for in words.

    Piano rolls are the `*.png` files under `samples_dir` (what `mmt generate` writes); a
    code array `*.npy` (L x 6) with no PNG beside it is decoded and drawn here.
    """
    from mmt.encoding import decode
    from mmt.io import write_pianoroll_png

    samples_dir = Path(samples_dir)
    if not samples_dir.is_dir():
        raise FileNotFoundError(f"{samples_dir}: no such samples directory")
    found: list[tuple[Path, Path | None]] = [(p, None) for p in sorted(samples_dir.rglob("*.png"))]
    for codes_path in sorted(samples_dir.rglob("*.npy")):
        if not codes_path.with_suffix(".png").exists():
            found.append((codes_path.with_suffix(".png"), codes_path))
    samples = []
    labels = {folder: _sample_requests(folder) for folder in {image.parent for image, _ in found}}
    for image_path, codes_path in _in_order(found, labels, limit):
        relative = image_path.relative_to(samples_dir).with_suffix("")
        name = relative.as_posix()
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name)
        target = out_dir / SAMPLE_DIR / f"{stem}.png"
        if codes_path is None:
            _copy(image_path, target)
        else:
            try:
                codes = np.load(codes_path, allow_pickle=False)
                write_pianoroll_png(target, decode(codes, encoding), title=name)
            except (OSError, ValueError) as error:
                print(f"mmt analyze: skipping {codes_path}: {error}")
                continue
        copied = {}
        for suffix in (".wav", ".mid"):
            source = image_path.with_suffix(suffix)
            if source.is_file():
                _copy(source, out_dir / SAMPLE_DIR / f"{stem}{suffix}")
                copied[suffix] = f"{SAMPLE_DIR}/{stem}{suffix}"
        label = labels[image_path.parent].get(image_path.stem, (0, None))[1]
        samples.append(Sample(name, f"{SAMPLE_DIR}/{stem}.png", copied.get(".wav"), copied.get(".mid"), label))
    return samples


# --------------------------------------------------------------------------- text
EXPLAIN = {
    "findings": (
        "What the numbers below say, in words. \"Uniform attention\" is the share a kind of note would "
        "get if every pair of a note and an earlier note had the same weight (so it is simply how common "
        "such pairs are); \"X% more attention than uniform\" means the model's share is (1 + X) times "
        "it. The offsets each group is compared with are measured the same way, so a group is favoured "
        "over them exactly when its X is the larger. "
        "With few pieces or a small model these numbers are noisy: compare them with those of an "
        "untrained model of the same size before reading much into small differences."
    ),
    "training": (
        "How the model's error fell while it learned. The loss is the cross-entropy of the next "
        "row of the score: lower means the model found the real next note more likely. The "
        "validation loss is measured on pieces the model never trained on; when it stops falling "
        "while the training loss keeps falling, the model has started to memorise."
    ),
    "attention": (
        "A transformer reads the notes of a piece one after another. To predict what comes next, "
        "each of its <em>attention heads</em> looks back at the earlier notes and decides how much "
        "each one matters. Here we ask which earlier notes it prefers, in musical terms. For every "
        "note and every earlier note we measure their distance (in beats, in ticks within the beat, "
        "in semitones, or same/different instrument). The <em>gain</em> at a distance is the share "
        "of attention the model gives to notes at that distance minus the share it would give if it "
        "looked at all earlier notes equally. Above zero: the model looks there more than chance; "
        "below zero: it looks away. Distances are always <em>earlier note minus current note</em>, "
        "so -4 beats means \"the note four beats ago\". The current note is the last note the model "
        "has read while it predicts the <em>next</em> one: a model that copies the note a bar before "
        "the next note looks at -4 beats only when the next note falls on the same beat (chords, fast "
        "notes); in a melody of one note per beat the same habit peaks at -3, -7, -11."
    ),
    "beat": (
        "Distance in beats to the earlier note (0 = same beat, -4 = four beats ago). A model that "
        "has learned musical form tends to look back whole bars: in 4/4, peaks at -4, -8, -12, -16 "
        "(red bars). Markers show each layer's average, so you can see where in the network a "
        "preference arises."
    ),
    "position": (
        "Distance in ticks inside the beat between the onsets (a beat has {resolution} ticks; 0 = "
        "the same place in the beat, e.g. both on the beat). A peak at 0 means the model compares a "
        "note with earlier notes at the same rhythmic position."
    ),
    "pitch": (
        "Interval in semitones from the current note to the earlier note: -12 means the earlier note "
        "is an octave <em>lower</em>, +7 a fifth <em>higher</em>. Red bars are the unison and octaves "
        "(0, &plusmn;12, &plusmn;24), orange bars fifths and fourths (&plusmn;7, &plusmn;5, &plusmn;19, "
        "&plusmn;17). Peaks on consonant intervals mean the model relates notes harmonically."
    ),
    "instrument": (
        "Whether the earlier note is played by the same instrument as the current note or by a "
        "different one. A positive gain for \"same\" means each part mostly listens to itself."
    ),
    "heads": (
        "The same gain for every head separately (rows: layer L, head H; red: more attention than "
        "chance, blue: less). Different heads often specialise."
    ),
    "embeddings": (
        "The model turns every pitch, beat, position and duration into a vector of numbers (an "
        "<em>embedding</em>) that it learns from the music. Nobody tells it that C4 and C5 are "
        "related; if it finds out, their vectors point the same way. <em>Cosine similarity</em> "
        "measures that: 1 for vectors pointing the same way, 0 for unrelated ones, -1 for opposite."
    ),
    "octave": (
        "The <strong>octave score</strong> is the mean similarity of pitch pairs an octave apart "
        "minus the mean similarity of all other pairs, over the pitches {low}..{high}. About 0: "
        "octaves mean nothing special to the model; towards 1: it treats pitches an octave apart "
        "as nearly the same note. An untrained model scores about 0."
    ),
    "intervals": "The mean similarity of two pitches by the interval between them.",
    "pitch_tables": (
        "The octave score above is of the <em>input</em> embedding, the table the paper plots: how the "
        "model reads a pitch. The model holds two more tables of pitch vectors: the pitch head's rows, "
        "with which it <em>predicts</em> a pitch (the score of pitch p is the hidden state's dot "
        "product with row p), and, in a row-conditioned model, the table that tells the duration "
        "head which pitch was drawn. Each may learn octaves to a different degree. (A model that ties "
        "its pitch weights, <code>model.tie_pitch</code>, reads and predicts pitches with one table, "
        "listed once as the input embedding.) The octave score "
        "compares octave pairs with all other pairs, most of them far apart, so a table in which "
        "neighbouring pitches are alike scores above 0 without favouring octaves; the <strong>octave "
        "bump</strong> compares the octave with its neighbours only: the similarity at 12 semitones "
        "minus the mean at 11 and 13 (about 0 without a peak at the octave, 1 for pitch classes)."
    ),
    "pca": (
        "Every pitch's vector squeezed onto a flat map (its two main directions of variation); the "
        "colour is the pitch class, so all Cs share a colour. A model that has learned pitch "
        "classes puts same-coloured points together; a line through neighbouring pitches shows "
        "how it orders the keyboard."
    ),
    "pitch_similarity": (
        "The similarity of every pair of pitches (the map is symmetric; the diagonal is 1). Stripes "
        "parallel to the diagonal, 12 semitones away, are octaves."
    ),
    "beat_similarity": (
        "The similarity of the beat embeddings of the first {beats} beats. A checkerboard with period "
        "4 means the model treats beats of the same place in a 4/4 bar alike."
    ),
    "position_similarity": (
        "The similarity of the positions inside a beat (in ticks; 0 is on the beat). Related positions "
        "(e.g. the off-beat halves and the triplets) may group together."
    ),
    "duration_similarity": (
        "The similarity of the note durations the encoding knows (in beats: 1 = a quarter note, "
        "1/2 = an eighth, 4 = a whole note)."
    ),
    "metrics": (
        "The metrics table of an <code>mmt evaluate</code> run: pitch-class entropy over one bar (H1) "
        "and four bars (H4), grooving similarity (GS) and others, for the real music and for the "
        "model's samples. Samples that sound like the real music have values close to the ground "
        "truth's."
    ),
    "samples": (
        "Pieces the model wrote, drawn as piano rolls: time in beats from left to right, pitch "
        "upwards, one colour per instrument."
    ),
}


def _p(text: str) -> str:
    return f"<p class='explain'>{text}</p>"


def _figure(src: str, alt: str) -> str:
    return f"<figure><img src='{html.escape(src)}' alt='{html.escape(alt)}'></figure>"


def _table(rows: Sequence[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table class='kv'>{body}</table>"


CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1.5em; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2.2em; }
h3 { margin-top: 1.6em; }
.sub { color: #666; margin-top: 0; }
.explain { max-width: 52em; }
.note { color: #777; font-style: italic; }
figure { margin: 0.6em 0 1.4em 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em 0; font-size: 0.93em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; }
table.kv th { background: #f6f6f6; font-weight: 600; }
table.metrics th { background: #f0f3f8; }
table.metrics td { font-variant-numeric: tabular-nums; }
.score { font-size: 2em; font-weight: 700; margin: 0.2em 0; }
.findings li { margin: 0.35em 0; }
.finding { background: #f5f8fc; border-left: 4px solid #4a7ab5; padding: 0.4em 0.8em; max-width: 52em; }
.samples { display: grid; grid-template-columns: 1fr; gap: 1.2em; }
.sample h4 { margin: 0.2em 0; font-family: monospace; font-weight: 500; }
audio { width: 100%; max-width: 600px; }
code { background: #f4f4f4; padding: 0 0.25em; }
nav a { margin-right: 1em; }
"""


# --------------------------------------------------------------------------- findings in words
def _percent(value: float) -> str:
    """|value| as a percentage: one decimal below 10%, none above."""
    return f"{abs(value):.1%}" if abs(value) < 0.1 else f"{abs(value):.0%}"


def group_sentence(description: str, summary: GroupAttention) -> str:
    """One plain sentence on a group of offsets, e.g. "... get 23% more attention than uniform ..."."""
    if not np.isfinite(summary.excess):
        return f"There were no pairs of {description} to measure."
    more = "more" if summary.excess >= 0 else "less"
    return (
        f"{description[0].upper()}{description[1:]} get {_percent(summary.excess)} {more} attention than "
        f"uniform attention would give them ({summary.share:.1%} of the attention on earlier notes, "
        f"against {summary.uniform:.1%}); {summary.heads_above} of {summary.n_heads} heads give them more "
        f"than uniform. {_others_clause(summary)}"
    )


def _others_clause(summary: GroupAttention) -> str:
    """The offsets compared with, measured as the group is (share against uniform share)."""
    if not np.isfinite(summary.others_excess):
        return "The other offsets compared hold no pairs."
    more = "more" if summary.others_excess >= 0 else "less"
    return (f"The other offsets compared get {_percent(summary.others_excess)} {more} ({summary.others_share:.1%} "
            f"against {summary.others_uniform:.1%}).")


def octave_sentence(score: float, low: str, high: str) -> str:
    """The octave score in words: what the value says about the pitch embeddings."""
    if score >= 0.3:
        meaning = "the model places pitches an octave apart much closer together than other pitch pairs"
    elif score >= 0.05:
        meaning = "pitches an octave apart are somewhat more alike than other pitch pairs"
    elif score > -0.05:
        meaning = "no sign that octaves mean anything special to the model (random embeddings score about 0)"
    else:
        meaning = "pitches an octave apart are less alike than other pitch pairs"
    return f"Octave score {score:+.3f} (pitches {low}..{high}; 0 = none, 1 = octaves identical): {meaning}."


def training_sentence(log: dict[str, np.ndarray]) -> str | None:
    """The validation loss from the first to the best logged step, or None without those columns."""
    if "step" not in log or "valid_loss" not in log:
        return None
    finite = np.isfinite(log["valid_loss"]) & np.isfinite(log["step"])
    if not finite.any():
        return None
    steps, losses = log["step"][finite], log["valid_loss"][finite]
    best = int(np.argmin(losses))
    return (
        f"Training: {len(steps)} validations up to step {int(steps[-1])}; the validation loss went from "
        f"{losses[0]:.3f} (step {int(steps[0])}) to {losses[best]:.3f} at its best (step {int(steps[best])})"
        + ("." if best == len(steps) - 1 else f", and was {losses[-1]:.3f} at the last validation.")
    )


def checkpoint_sentence(log: dict[str, np.ndarray], info: dict) -> str | None:
    """Where the checkpoint stands in its training log: the log's row at the step its `config.json`
    records, checked against the validation loss it records too (None without a step to look up)."""
    step, loss = info.get("step"), (info.get("metrics") or {}).get("valid_loss")
    if not isinstance(step, int) or "step" not in log:
        return None
    rows = np.flatnonzero(log["step"] == step)
    if not rows.size:
        return f"The checkpoint records step {step}, which this log does not have."
    logged = float(log["valid_loss"][rows[-1]]) if "valid_loss" in log else math.nan
    if not math.isfinite(logged):
        return f"The checkpoint is step {step} of this log."
    if isinstance(loss, (int, float)) and not math.isclose(loss, logged, rel_tol=1e-6):
        return (f"The checkpoint records step {step} and validation loss {loss:.3f}, but this log has "
                f"{logged:.3f} at step {step}: the log is not this checkpoint's, or numbers its steps otherwise.")
    return f"The checkpoint is step {step} of this log (validation loss {logged:.3f})."


def _strongest(result: RelativeAttention) -> tuple[str, float] | None:
    """(label, gain) of the offset with the largest mean gain (for beat/position/pitch, 0 excluded)."""
    gain = result.mean_gain
    keep = np.isfinite(gain)
    if result.field != "instrument":
        keep &= result.offsets != 0
    if not keep.any():
        return None
    i = int(np.flatnonzero(keep)[np.argmax(gain[keep])])
    return result.labels[i], float(gain[i])


# --------------------------------------------------------------------------- sections
WINDOW_XLABELS = {
    "beat": "beats from the current note back to the earlier note (negative: earlier)",
    "position": "ticks within the beat: earlier note's minus current note's",
    "pitch": "semitones from the current note to the earlier note (negative: lower)",
    "instrument": "earlier note's instrument, compared with the current note's",
}
TITLES = {"beat": "Beat distance", "position": "Position in the beat", "pitch": "Pitch interval",
          "instrument": "Same or different instrument"}
UNITS = {"beat": " beats", "position": " ticks", "pitch": " semitones"}


def _model_section(model, checkpoint: Path, info: dict) -> str:
    encoding = model.encoding
    rows: list[tuple[str, object]] = list(model.config.to_dict().items())
    rows += [("parameters", f"{sum(p.numel() for p in model.parameters()):,}"),
             ("encoding resolution", f"{encoding.resolution} ticks per beat"),
             ("max beat", encoding.max_beat), ("instruments", len(encoding.instruments)),
             ("checkpoint", checkpoint)]
    rows += [(key, info[key]) for key in ("step", "epoch", "best_step") if key in info]
    for key, value in info.items():
        if isinstance(value, dict) and key not in ("model", "encoding") and value and all(
                isinstance(v, (int, float)) for v in value.values()):
            rows += [(f"{key}: {k}", f"{v:.4g}" if isinstance(v, float) else v) for k, v in value.items()]
    return "<h2 id='model'>Model</h2>" + _table(rows)


def _training_section(checkpoint: Path, info: dict, out_dir: Path, findings: list[str]) -> str:
    log_path = find_training_log(checkpoint)
    part = "<h2 id='training'>Training</h2>" + _p(EXPLAIN["training"])
    if log_path is None:
        return part + (f"<p class='note'>No training log: no <code>log.csv</code> in {html.escape(str(checkpoint))} "
                       "or its parent folder.</p>")
    try:
        log = log_columns(read_log(log_path))
        train_log_path = log_path.parent / "train_log.csv"
        train_log = log_columns(read_log(train_log_path)) if train_log_path.is_file() else None
        image = plot_training_curve(log, out_dir / "training.png", train_log)
    except (OSError, csv.Error, UnicodeDecodeError) as error:
        return part + f"<p class='note'>Could not read {html.escape(str(log_path))}: {html.escape(str(error))}</p>"
    if image is None:
        return part + f"<p class='note'>{html.escape(str(log_path))} has no step and loss columns to plot.</p>"
    sentence = training_sentence(log)
    if sentence is not None:
        findings.append(sentence)
    where = checkpoint_sentence(log, info)
    shown = " ".join(text for text in (sentence, where) if text is not None)
    if shown:
        part += f"<p class='finding'>{html.escape(shown)}</p>"
    return part + _figure("training.png", "training curve") + f"<p class='note'>From {html.escape(str(log_path))}.</p>"


def _attention_section(results: dict[str, RelativeAttention], config: ReportConfig, encoding, data_dir,
                       max_seq_len: int, out_dir: Path, findings: list[str], numbers: dict) -> str:
    windows = {
        "beat": (-config.beat_window, 0),
        "position": (-(encoding.resolution - 1), encoding.resolution - 1),
        "pitch": (-config.pitch_window, config.pitch_window),
        "instrument": (0, 1),
    }
    groups = musical_groups(encoding.resolution, config.beat_window, config.pitch_window)
    summaries = {g.name: group_attention(results[g.field], g.group, g.others) for g in groups}
    numbers["attention_groups"] = {g.name: {"description": g.description, **summaries[g.name].to_dict()}
                                   for g in groups}
    sentences = {g.name: group_sentence(g.description, summaries[g.name]) for g in groups}
    detail = {"pitch": "By interval: " + "; ".join(
        f"{name} {summaries['pitch_' + name].share:.1%} against {summaries['pitch_' + name].uniform:.1%} uniform"
        for name in ("unison", "fifth", "octave")) + "."}
    headline = {"beat": "beat_bars", "pitch": "pitch_consonant", "position": "position_same",
                "instrument": "instrument_same"}

    first = results["beat"]
    part = "<h2 id='attention'>What the model listens to: mean relative attention</h2>" + _p(EXPLAIN["attention"])
    part += (f"<p class='note'>Measured on {first.n_sequences} pieces of the <code>{html.escape(config.split)}</code> "
             f"split of {html.escape(str(data_dir))} (each cut to {max_seq_len} rows), over {first.n_pairs:,} "
             "pairs of notes; averaged over all layers and heads.</p>")
    numbers["attention"] = {"n_sequences": first.n_sequences, "n_pairs": first.n_pairs}
    for field in RELATIVE_FIELDS:
        shown = results[field].window(*windows[field])
        plot_mean_gain(shown, out_dir / f"attention_{field}.png", f"{TITLES[field]}: attention gain, all heads",
                       WINDOW_XLABELS[field])
        plot_head_gain(shown, out_dir / f"attention_{field}_heads.png",
                       f"{TITLES[field]}: attention gain of each head", WINDOW_XLABELS[field])
        sentence = sentences[headline[field]]
        findings.append(f"{TITLES[field]}: {sentence[0].lower()}{sentence[1:]}")
        strongest = _strongest(shown)
        extra = [detail[field]] if field in detail else []
        if strongest is not None and field != "instrument":
            extra.append(f"The largest gain in the plot ({strongest[1]:+.4f}) is at {strongest[0]}{UNITS[field]} "
                         "(0 left out).")
        numbers["attention"][field] = {
            "offsets": shown.offsets.tolist(),
            "mean_gain": [None if not np.isfinite(v) else float(v) for v in shown.mean_gain],
            "baseline": [float(v) for v in shown.baseline],
            "strongest": None if strongest is None else {"offset": strongest[0], "gain": strongest[1]},
        }
        part += f"<h3>{TITLES[field]}</h3>" + _p(EXPLAIN[field].format(resolution=encoding.resolution))
        part += f"<p class='finding'>{html.escape(' '.join([sentence, *extra]))}</p>"
        part += _figure(f"attention_{field}.png", f"mean attention gain by {field}")
        part += _p(EXPLAIN["heads"]) + _figure(f"attention_{field}_heads.png", f"attention gain by {field}, per head")
    write_atomic(out_dir / "attention.npz", lambda tmp: _save_npz(tmp, results))
    return part


def _embedding_section(model, config: ReportConfig, out_dir: Path, findings: list[str], numbers: dict) -> str:
    encoding = model.encoding
    pitch = embedding_weights(model, "pitch")
    low, high = config.pitch_low, config.pitch_high
    score = octave_score(pitch, low, high)
    intervals = interval_similarity(pitch, low, high)
    low_name, high_name = pitch_name(low), pitch_name(high)
    sentence = octave_sentence(score, low_name, high_name)
    similarity_sentence = (
        f"Mean similarity of pitch pairs an octave apart {intervals[11]:+.3f}, a fifth apart {intervals[6]:+.3f}, "
        f"over all intervals of 1..24 semitones {intervals.mean():+.3f}."
    )
    tables = pitch_tables(model)
    table_scores = {name: octave_score(weights, low, high) for name, weights in tables.items()}
    table_bumps = {name: octave_bump(weights, low, high) for name, weights in tables.items()}
    bumps = ", ".join(f"{name} {value:+.3f}" for name, value in table_bumps.items())
    findings.append(f"{sentence} Octave bump (similarity at 12 semitones minus the mean at 11 and 13) of each "
                    f"table of pitch vectors: {bumps}.")
    numbers.update(octave_score=score, octave_score_range=[low, high], octave_scores=table_scores,
                   octave_bumps=table_bumps,
                   interval_similarity={str(i + 1): float(v) for i, v in enumerate(intervals)})
    plot_interval_similarity(pitch, out_dir / "pitch_intervals.png", low, high)
    plot_interval_lines(tables, out_dir / "pitch_intervals_tables.png", low, high)
    plot_pitch_pca(pitch, out_dir / "pitch_pca.png", low, high)
    plot_pitch_similarity(pitch, out_dir / "pitch_similarity.png")
    beats = min(config.beat_similarity_beats, encoding.max_beat)
    plot_similarity(cosine_similarity(embedding_weights(model, "beat")[:beats]), [str(b) for b in range(beats)],
                    out_dir / "beat_similarity.png", f"Beat embeddings (beats 0..{beats - 1})", "beat",
                    tick_every=4 if beats > 20 else 1)
    plot_similarity(cosine_similarity(embedding_weights(model, "position")),
                    [str(t) for t in range(encoding.resolution)], out_dir / "position_similarity.png",
                    "Position embeddings", "tick within the beat")
    plot_similarity(cosine_similarity(embedding_weights(model, "duration")),
                    duration_labels(encoding.known_durations, encoding.resolution),
                    out_dir / "duration_similarity.png", "Duration embeddings", "duration (beats)")
    part = "<h2 id='embeddings'>What the model learned about pitch, time and duration</h2>"
    part += _p(EXPLAIN["embeddings"])
    part += f"<div class='score'>octave score {score:+.3f}</div>"
    part += _p(EXPLAIN["octave"].format(low=low_name, high=high_name))
    part += f"<p class='finding'>{html.escape(sentence)} {html.escape(similarity_sentence)}</p>"
    part += _p(EXPLAIN["intervals"]) + _figure("pitch_intervals.png", "mean similarity by interval")
    part += "<h3>Every table of pitch vectors</h3>" + _p(EXPLAIN["pitch_tables"])
    part += "<table><tr><th>table</th><th>octave score</th><th>octave bump</th></tr>" + "".join(
        f"<tr><td>{html.escape(name)}</td><td>{value:+.3f}</td><td>{table_bumps[name]:+.3f}</td></tr>"
        for name, value in table_scores.items())
    part += "</table>" + _figure("pitch_intervals_tables.png", "mean similarity by interval, every pitch table")
    part += "<h3>Pitch map</h3>" + _p(EXPLAIN["pca"]) + _figure("pitch_pca.png", "PCA of the pitch embeddings")
    part += "<h3>Pitch similarity</h3>" + _p(EXPLAIN["pitch_similarity"])
    part += _figure("pitch_similarity.png", "pitch similarity matrix")
    part += "<h3>Beats</h3>" + _p(EXPLAIN["beat_similarity"].format(beats=beats))
    part += _figure("beat_similarity.png", "beat similarity matrix")
    part += "<h3>Positions</h3>" + _p(EXPLAIN["position_similarity"])
    part += _figure("position_similarity.png", "position similarity matrix")
    part += "<h3>Durations</h3>" + _p(EXPLAIN["duration_similarity"])
    part += _figure("duration_similarity.png", "duration similarity matrix")
    return part


def metrics_table_html(rows: Sequence[dict], modes: Sequence[str], names: Sequence[str]) -> str:
    """The metrics table of `mmt.analysis.evaluation.table_cells` as an HTML table (every cell escaped)."""
    from mmt.analysis.evaluation import table_cells

    header, *body = table_cells(rows, modes, names)
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    lines = "".join("<tr><th>" + html.escape(cells[0]) + "</th>"
                    + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells[1:]) + "</tr>" for cells in body)
    return f"<table class='metrics'><thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>"


def _metrics_section(eval_dir, out_dir: Path) -> str:
    from mmt.analysis.evaluation import CI_DESCRIPTION, read_table

    part = "<h2 id='metrics'>Evaluation metrics</h2>" + _p(EXPLAIN["metrics"])
    if eval_dir is None:
        return part + ("<p class='note'>No evaluation given (run <code>mmt evaluate MODEL --data DIR --out EVAL"
                       "</code> and pass <code>--eval EVAL</code>).</p>")
    eval_dir = Path(eval_dir)
    if not (eval_dir / "metrics.csv").is_file():
        return part + f"<p class='note'>No metrics.csv in {html.escape(str(eval_dir))}.</p>"
    try:
        rows, modes, names, settings = read_table(eval_dir)
    except (AnalysisError, OSError, KeyError, TypeError, ValueError, csv.Error) as error:
        return part + f"<p class='note'>Could not read {html.escape(str(eval_dir))}: {html.escape(str(error))}</p>"
    part += (f"<p class='note'>{html.escape(str(settings.get('n', '?')))} pieces of the "
             f"<code>{html.escape(str(settings.get('split', '?')))}</code> split of "
             f"{html.escape(str(settings.get('data', '?')))}; every sample trimmed to the last bar line at or "
             f"before {html.escape(str(settings.get('n_beats', '?')))} beats; seed "
             f"{html.escape(str(settings.get('seed', '?')))}. Mean ± 95% CI half-width "
             f"({html.escape(CI_DESCRIPTION)}); (n=k) where the metric is undefined for some samples.</p>")
    part += metrics_table_html(rows, modes, names)
    descriptions = settings.get("metrics") or {}
    part += "<ul>" + "".join(f"<li><code>{html.escape(name)}</code>: {html.escape(str(descriptions[name]))}</li>"
                             for name in names if name in descriptions) + "</ul>"
    links = []
    for name in ("metrics.csv", "metrics.md"):
        if (eval_dir / name).is_file():
            links.append(f"<a href='{name}'>{name}</a>")
            _copy(eval_dir / name, out_dir / name)
    return part + f"<p class='note'>Every sample's values and the evaluation's notes: {', '.join(links)}.</p>"


def _samples_section(samples_dir, eval_dir, out_dir: Path, encoding, limit: int | None, numbers: dict) -> str:
    part = "<h2 id='samples'>Generated samples</h2>" + _p(EXPLAIN["samples"])
    if samples_dir is None and eval_dir is not None and (Path(eval_dir) / "samples").is_dir():
        samples_dir = Path(eval_dir) / "samples"  # what `mmt evaluate` generated
    if samples_dir is None:
        return part + ("<p class='note'>No samples given (pass <code>--samples DIR</code> or an "
                       "<code>--eval</code> folder with <code>samples/</code>).</p>")
    samples = collect_samples(samples_dir, out_dir, encoding, limit)
    numbers["samples"] = [asdict(s) for s in samples]
    if not samples:
        return part + (f"<p class='note'>No piano rolls (.png) or code arrays (.npy) in "
                       f"{html.escape(str(samples_dir))}.</p>")
    part += (f"<p class='note'>{len(samples)} samples from {html.escape(str(samples_dir))}, each with what was "
             "asked for.</p><div class='samples'>")
    for sample in samples:
        part += f"<div class='sample'><h4>{html.escape(sample.name)}</h4>"
        if sample.request:
            part += f"<p class='note'>{html.escape(sample.request)}</p>"
        part += _figure(sample.image, f"piano roll of {sample.name}")
        if sample.audio:
            part += f"<audio controls preload='none' src='{html.escape(sample.audio)}'></audio>"
        if sample.midi:
            part += f"<p><a href='{html.escape(sample.midi)}'>MIDI</a></p>"
        part += "</div>"
    return part + "</div>"


# --------------------------------------------------------------------------- the report
def write_report(
    model_path: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: ReportConfig = ReportConfig(),
    eval_dir: str | os.PathLike | None = None,
    samples_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> Path:
    """Analyse a trained model and write `index.html`, its PNGs, `findings.json` and `analysis.json`.

    `findings.json` holds the key numbers and the findings in words: for each musical
    group of offsets (`mmt.analysis.attention.musical_groups`: whole bars back, unison /
    fifth / octave, same position, same instrument) the share of attention against the
    uniform share, and the same two figures for the offsets it is compared with; the octave score; the
    training summary. `analysis.json` adds the plotted gains per offset.

    Args:
        model_path: a checkpoint directory or a training run's folder (its `best/`).
        data_dir: a prepared data directory; `config.split` feeds the attention analysis.
        out_dir: where the report goes (created).
        config: what to compute and show.
        eval_dir: an `mmt evaluate` output folder: its metrics table is shown (from `metrics.csv`
            and `settings.json`), and its `samples/` when `samples_dir` is not given.
        samples_dir: a folder of generated samples (PNGs, WAVs, or code arrays `.npy`).
        progress: show a progress bar.

    Returns:
        the path of `index.html`.
    """
    from mmt.checkpoint import load_model, read_checkpoint_info, resolve_checkpoint

    out_dir = Path(out_dir)
    checkpoint = resolve_checkpoint(model_path)
    info = read_checkpoint_info(checkpoint)
    model = load_model(checkpoint, device=config.device)
    encoding = model.encoding
    count, sequences = split_sequences(data_dir, config.split, encoding, model.config.max_seq_len,
                                       config.n_sequences, config.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    findings: list[str] = []
    numbers: dict = {"model": str(checkpoint), "data": str(data_dir), "settings": asdict(config),
                     "parameters": sum(p.numel() for p in model.parameters())}

    sections = [_model_section(model, checkpoint, info), _training_section(checkpoint, info, out_dir, findings)]
    results = model_relative_attention(model, sequences, RELATIVE_FIELDS, config.batch_size, config.device,
                                       progress=progress, total=count)
    sections.append(_attention_section(results, config, encoding, data_dir, model.config.max_seq_len, out_dir,
                                       findings, numbers))
    sections.append(_embedding_section(model, config, out_dir, findings, numbers))
    sections.append(_metrics_section(eval_dir, out_dir))
    sections.append(_samples_section(samples_dir, eval_dir, out_dir, encoding, config.max_samples, numbers))

    key_numbers = {key: numbers[key] for key in ("model", "data", "attention_groups", "octave_score",
                                                 "octave_score_range", "octave_scores", "octave_bumps")}
    key_numbers["n_sequences"], key_numbers["n_pairs"] = results["beat"].n_sequences, results["beat"].n_pairs
    key_numbers["findings"] = findings
    write_text_atomic(out_dir / "findings.json", json.dumps(key_numbers, indent=1, default=str) + "\n")
    write_text_atomic(out_dir / "analysis.json", json.dumps(numbers, indent=1, default=str) + "\n")
    return write_text_atomic(out_dir / "index.html", _page(checkpoint, findings, sections))


def _page(checkpoint: Path, findings: list[str], sections: list[str]) -> str:
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = " ".join(f"<a href='#{a}'>{t}</a>" for a, t in (
        ("findings", "Findings"), ("model", "Model"), ("training", "Training"), ("attention", "Attention"),
        ("embeddings", "Embeddings"), ("metrics", "Metrics"), ("samples", "Samples")))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>mmt analysis: {html.escape(str(checkpoint))}</title><style>{CSS}</style></head><body>\n"
        f"<h1>What the model learned</h1><p class='sub'>{html.escape(str(checkpoint))} &middot; {created}</p>\n"
        f"<nav>{nav}</nav>\n<h2 id='findings'>Findings</h2>" + _p(EXPLAIN["findings"])
        + "<ul class='findings'>" + "".join(f"<li>{html.escape(f)}</li>" for f in findings) + "</ul>\n"
        + "\n".join(sections)
        + "\n<p class='note'>Written by <code>mmt analyze</code>. The numbers behind this page: "
        "<a href='findings.json'>findings.json</a> (the key numbers), <a href='analysis.json'>analysis.json</a> "
        "(every plotted value), <a href='attention.npz'>attention.npz</a> (attention per layer, head and "
        "offset).</p></body></html>\n"
    )


def _save_npz(path: Path, results: dict[str, RelativeAttention]) -> None:
    arrays = {}
    for field, result in results.items():
        arrays[f"{field}_offsets"] = result.offsets
        arrays[f"{field}_gamma"] = result.gamma
        arrays[f"{field}_baseline"] = result.baseline
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)
