"""What anticipation buys: a model trained with control rows against one trained without.

Train the two small models first (a few minutes each on one CPU thread):

    mmt train benchmarks/configs/anticipation-on.yaml  --data data/music21-tunes --out runs/anticipation-on
    mmt train benchmarks/configs/anticipation-off.yaml --data data/music21-tunes --out runs/anticipation-off
    python benchmarks/anticipation.py --on runs/anticipation-on/last --off runs/anticipation-off/last \\
        --data data/music21-tunes --out benchmarks/results/anticipation-cpu.json

On held-out pieces (the test split, and the validation split for accompaniment, which
needs pieces of two or more instruments):

1. **Loss** (nats per note row, the six fields' cross-entropies summed) of the true notes
   the model must write, given the rest:
   - infill: the notes of beats 16-24 (bars 5-6 of 4/4) given every other note of the
     piece's first 64 beats;
   - accompaniment: the notes of every instrument but the highest-pitched one (the
     melody), given the melody;
   each as the anticipating model reads it (controls `anticipation` beats ahead), as the
   same model reads it with interval 0 (controls at their own time: only the past of the
   given part), and as the model trained without controls reads it (given notes as notes
   at their own time, which is how `mmt generate` feeds it). For accompaniment also
   without the melody at all (the instrument mode's view), and the whole song read as an
   ordinary one (melody declared, every note in canonical order).
2. **Generated** infills and accompaniments (one sample per piece and model): how close
   the written notes' pitch-class histogram is to the true notes' (overlap, 0 to 1) and
   how many notes were written per true note.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mmt.analysis.evaluation import melody_instrument
from mmt.checkpoint import load_model
from mmt.constants import Field, RowType
from mmt.data import beat_window
from mmt.encoding import decode, encode_notes, onsets, song_with_controls
from mmt.model import next_row_logits
from mmt.prepared import PreparedData
from mmt.request import GenerationRequest, run

WINDOW_BEATS = 64
GAP = (16, 24)  # beats: bars 5-6 of 4/4


def note_loss(model, codes: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-row loss (nats, fields summed) of the rows flagged in `targets` given the rows before them."""
    x = torch.as_tensor(codes[None], dtype=torch.long)
    with torch.inference_mode():
        logits = next_row_logits(model, x)
    total = torch.zeros(len(codes) - 1)
    for field, lg in enumerate(logits):
        total += torch.nn.functional.cross_entropy(lg[0], x[0, 1:, field], reduction="none")
    return total.numpy()[targets[1:]]


def as_fed(codes: np.ndarray, encoding) -> np.ndarray:
    """Rows as the sampler feeds them to a model: control rows as notes where it knows no controls."""
    if encoding.knows_controls:
        return codes
    codes = codes.copy()
    codes[codes[:, Field.TYPE] == RowType.CONTROL, Field.TYPE] = RowType.NOTE
    return codes


def layouts(codes: np.ndarray, given: np.ndarray, header: np.ndarray, on, off) -> dict:
    """The readings of one piece: name -> (model, rows, flags of the target note rows)."""
    zero = replace(on.encoding, anticipation=0.0)
    out = {}
    for name, model, encoding in (("anticipation", on, on.encoding), ("interval 0, same model", on, zero),
                                  ("trained without controls (interval 0)", off, zero)):
        rows = song_with_controls(codes, given, encoding, header)
        out[name] = (model, as_fed(rows, model.encoding), rows[:, Field.TYPE] == RowType.NOTE)
    return out


def pc_overlap(written: np.ndarray, truth: np.ndarray) -> float:
    """Overlap (sum of minima) of two pitch-class histograms of note rows; NaN if either is empty."""
    if len(written) == 0 or len(truth) == 0:
        return float("nan")
    a = np.bincount((written[:, Field.PITCH] - 1) % 12, minlength=12) / len(written)
    b = np.bincount((truth[:, Field.PITCH] - 1) % 12, minlength=12) / len(truth)
    return float(np.minimum(a, b).sum())


def window_codes(data: PreparedData, piece: str, encoding, beats: int = WINDOW_BEATS) -> np.ndarray:
    notes, _ = beat_window(data.notes(piece), 0, beats)
    return encode_notes(notes, encoding)


def infill_pieces(data, ids, encoding, context, n):
    """Pieces with notes inside the gap and after it whose first 64 beats fit the context."""
    for piece in ids:
        codes = window_codes(data, piece, encoding)
        notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
        tick = onsets(notes, encoding.resolution) / encoding.resolution
        if len(codes) <= context and ((tick >= GAP[0]) & (tick < GAP[1])).sum() >= 4 and (tick >= GAP[1]).sum() >= 4:
            yield piece, codes
            n -= 1
            if n == 0:
                return


def accompaniment_pieces(data, ids, encoding, context):
    """Pieces of two or more instruments, cut to the most of 64, 32 or 16 beats that fits the context."""
    for piece in ids:
        for beats in (WINDOW_BEATS, 32, 16):
            codes = window_codes(data, piece, encoding, beats)
            notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
            if len(np.unique(notes[:, Field.INSTRUMENT])) >= 2 and len(codes) <= context:
                yield piece, codes
                break


def summarize(values: list[float]) -> dict:
    v = np.asarray([x for x in values if np.isfinite(x)])
    if len(v) == 0:
        return {"mean": None, "ci95": None, "n": 0}
    ci = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else None
    return {"mean": round(float(v.mean()), 4), "ci95": None if ci is None else round(float(ci), 4), "n": len(v)}


def generated(model, music, encoding, truth_rows, seed, **fields) -> tuple[float, float]:
    """(pitch-class overlap with the truth, notes written per true note) of one sample."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generation = run(model, GenerationRequest(prompt=music, seed=seed, n_samples=1, max_new_rows=600, **fields))
    codes = generation.samples[0]
    prompt_notes = int((generation.prompt.codes[:, Field.TYPE] == RowType.NOTE).sum())
    written = codes[codes[:, Field.TYPE] == RowType.NOTE][prompt_notes:]
    return pc_overlap(written, truth_rows), len(written) / max(len(truth_rows), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--on", required=True, help="checkpoint trained with controls")
    parser.add_argument("--off", required=True, help="checkpoint trained without controls")
    parser.add_argument("--data", required=True, help="a prepared folder (its test and valid splits are used)")
    parser.add_argument("--n-infill", type=int, default=200, help="pieces for the infill loss")
    parser.add_argument("--n-generate", type=int, default=20, help="pieces per mode for generation")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    on, off = load_model(args.on).eval(), load_model(args.off).eval()
    assert on.encoding.knows_controls and not off.encoding.knows_controls
    encoding = on.encoding
    data = PreparedData(args.data)
    context = on.config.max_seq_len
    result = {"on": str(args.on), "off": str(args.off), "data": str(args.data),
              "anticipation_beats": encoding.anticipation, "context_rows": context,
              "machine": platform.platform(), "torch_threads": 1}

    # ---- infill
    losses: dict[str, list[float]] = {}
    infills = list(infill_pieces(data, data.split("test"), encoding, context, args.n_infill))
    for piece, codes in infills:
        notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
        beat = onsets(notes, encoding.resolution) / encoding.resolution
        gap_key = {tuple(r) for r in notes[(beat >= GAP[0]) & (beat < GAP[1])].tolist()}
        header = np.unique(notes[:, Field.INSTRUMENT])
        for name, (model, rows, is_note) in layouts(codes, beat >= GAP[1], header, on, off).items():
            targets = is_note & np.array([tuple(r) in gap_key for r in rows.tolist()])
            losses.setdefault(name, []).append(float(note_loss(model, rows, targets).mean()))
    result["infill_loss"] = {name: summarize(v) for name, v in losses.items()}
    result["infill_pieces"] = len(infills)

    # ---- accompaniment
    losses = {}
    accompaniments = list(accompaniment_pieces(data, data.split("test") + data.split("valid"), encoding, context))
    for piece, codes in accompaniments:
        notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
        kept = melody_instrument(notes, encoding)
        given = notes[:, Field.INSTRUMENT] == kept
        header = np.setdiff1d(np.unique(notes[:, Field.INSTRUMENT]), [kept])
        for name, (model, rows, is_note) in layouts(codes, given, header, on, off).items():
            losses.setdefault(name, []).append(float(note_loss(model, rows, is_note).mean()))
        # the whole song as an ordinary one (melody declared, notes in canonical order): the past of the
        # melody and its notes at the same onset and lower pitch, as an unconditional model reads a song
        notes_fed = codes[:, Field.TYPE] == RowType.NOTE
        whole_targets = notes_fed & (codes[:, Field.INSTRUMENT] != kept)
        for name, model in (("whole song, model with controls", on), ("whole song, model without controls", off)):
            losses.setdefault(name, []).append(float(note_loss(model, codes, whole_targets).mean()))
        alone = song_with_controls(codes, given, replace(encoding, anticipation=0.0), header)
        alone = alone[alone[:, Field.TYPE] != RowType.CONTROL]
        for name, model in (("no melody, model with controls", on), ("no melody, model without controls", off)):
            rows = as_fed(alone, model.encoding)
            losses.setdefault(name, []).append(
                float(note_loss(model, rows, rows[:, Field.TYPE] == RowType.NOTE).mean()))
    result["accompaniment_loss"] = {name: summarize(v) for name, v in losses.items()}
    result["accompaniment_pieces"] = [piece for piece, _ in accompaniments]

    # ---- generation
    scores: dict[str, dict[str, list[float]]] = {}
    for k, (piece, codes) in enumerate(infills[:args.n_generate]):
        notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
        beat = onsets(notes, encoding.resolution) / encoding.resolution
        truth = notes[(beat >= GAP[0]) & (beat < GAP[1])]
        music = decode(codes, encoding)
        for name, model in (("infill, anticipation", on), ("infill, trained without controls", off)):
            overlap, ratio = generated(model, music, encoding, truth, k, mode="infill",
                                       bars_to_fill=(GAP[0] // 4 + 1, GAP[1] // 4))
            scores.setdefault(name, {}).setdefault("pitch_class_overlap", []).append(overlap)
            scores[name].setdefault("notes_per_true_note", []).append(ratio)
    for k, (piece, codes) in enumerate(accompaniments[:args.n_generate]):
        notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
        kept = melody_instrument(notes, encoding)
        truth = notes[notes[:, Field.INSTRUMENT] != kept]
        music = decode(codes, encoding)
        names = [encoding.instruments[c - 1] for c in np.unique(truth[:, Field.INSTRUMENT])]
        for name, model in (("accompaniment, anticipation", on), ("accompaniment, trained without controls", off)):
            overlap, ratio = generated(model, music, encoding, truth, k, mode="accompaniment",
                                       keep=(encoding.instruments[kept - 1],), instruments=tuple(names))
            scores.setdefault(name, {}).setdefault("pitch_class_overlap", []).append(overlap)
            scores[name].setdefault("notes_per_true_note", []).append(ratio)
    result["generated"] = {name: {metric: summarize(v) for metric, v in d.items()} for name, d in scores.items()}
    result["seconds"] = round(time.time() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
