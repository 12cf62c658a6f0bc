"""Generation speed: the original method (full recompute, batch 1, per-sample loop) vs `mmt.generate`.

Prints one JSON object. Every method runs the same random weights (a rotary model, so
that 1024 rows fit without an absolute position table; paper size by default:
`ModelConfig()`'s dim 512, depth 6, 8 heads) for `--rows` new rows after start-of-song.
An untrained model would end its songs after a few rows, so end-of-song is switched off
for every method (`sample(..., min_new_rows=rows)`; the baseline masks it out too),
and every sample runs the full length.

- `baseline`: the original MMT's way: every step re-runs the whole sequence through the
  model (no cache), batch 1, each field sampled in a Python loop over the batch, with
  the original's only masks (type and beat never decrease; here also no end-of-song).
- `ours_batch_<B>`: `mmt.generate` with a KV cache, the whole batch sampled at once
  under the full grammar masks.

`notes` counts the rows of type note produced (over all samples); `notes_per_s` divides
it by the wall time. Each part's figures also go to stderr as soon as it finishes. `step_ms_at_row` is the mean wall time of one `mmt.generate` step
(batch 1) around rows 50 and 1000 (rows 45..55 and 995..1005), cache included.

Usage: python benchmarks/generation.py [--device cpu|cuda] [--dim 512 --depth 6 --heads 8]
       [--rows 1024] [--batches 1 8 32] [--baseline-rows N] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch

from mmt import sampling
from mmt.constants import FIELDS, Field, RowType
from mmt.encoding import Encoding
from mmt.config import ModelConfig
from mmt.model import MusicTransformer
from mmt.request import start_of_song


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def baseline(model: MusicTransformer, rows: int, seed: int, device: torch.device) -> np.ndarray:
    """The original method: full forward pass every step, per-sample Python sampling, batch 1."""
    generator = torch.Generator(device=device).manual_seed(seed)
    batch = 1
    codes = torch.zeros(batch, 1, 6, dtype=torch.long, device=device)
    codes[:, 0, Field.TYPE] = RowType.START_OF_SONG
    with torch.inference_mode():
        for _ in range(rows):
            logits = model(codes)  # the whole sequence, again
            new = torch.zeros(batch, 1, 6, dtype=torch.long, device=device)
            for b in range(batch):  # one sample at a time
                for f, name in enumerate(FIELDS):
                    scores = logits[f][b, -1].clone()
                    if name == "type":
                        scores[: int(codes[b, -1, Field.TYPE])] = -float("inf")  # type never decreases
                        scores[RowType.END_OF_SONG] = -float("inf")  # run the full length
                    if name == "beat":
                        scores[: int(codes[b, -1, Field.BEAT])] = -float("inf")  # beat never decreases
                    probs = torch.softmax(scores, dim=-1)
                    new[b, 0, f] = torch.multinomial(probs, 1, generator=generator)[0]
            codes = torch.cat([codes, new], dim=1)
    return codes.cpu().numpy()


def count_notes(samples) -> int:
    return int(sum(np.sum(np.asarray(s)[:, Field.TYPE] == RowType.NOTE) for s in samples))


def run_ours(model, rows: int, batch: int, seed: int, device: torch.device) -> tuple[float, list, list[float]]:
    """(seconds, samples, time of each step's start) for one `mmt.generate` call."""
    stamps: list[float] = []
    draw = sampling.draw_rows

    def timed(*args, **kwargs):
        synchronize(device)
        stamps.append(time.perf_counter())
        return draw(*args, **kwargs)

    sampling.draw_rows = timed
    try:
        synchronize(device)
        start = time.perf_counter()
        samples = sampling.sample(model, start_of_song(), n_samples=batch, max_new_rows=rows, min_new_rows=rows,
                                  seed=seed, device=device)
        synchronize(device)
        seconds = time.perf_counter() - start
    finally:
        sampling.draw_rows = draw
    return seconds, samples, stamps


def step_ms(stamps: list[float], row: int, half: int = 5) -> float | None:
    """Mean step time (ms) around new row `row` (step k draws row k + 1)."""
    steps = np.diff(np.asarray(stamps))  # steps[k]: from drawing row k + 1 to drawing row k + 2
    lo, hi = max(row - 1 - half, 0), min(row - 1 + half + 1, len(steps))
    if lo >= hi:
        return None
    return float(steps[lo:hi].mean() * 1000)


def main() -> None:
    defaults = ModelConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dim", type=int, default=defaults.dim)
    parser.add_argument("--depth", type=int, default=defaults.depth)
    parser.add_argument("--heads", type=int, default=defaults.heads)
    parser.add_argument("--rows", type=int, default=1024, help="new rows per sample (default 1024)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32], help="batch sizes for ours")
    parser.add_argument("--baseline-rows", type=int, default=None,
                        help="rows for the baseline (default: --rows; 0 skips it)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    config = ModelConfig(dim=args.dim, depth=args.depth, heads=args.heads, dropout=0.0,
                         max_seq_len=max(args.rows + 1, defaults.max_seq_len), pos_emb="rotary")
    model = MusicTransformer(config, Encoding()).to(device).eval()
    # Random weights jump to the last beat within a few notes, where the canonical note order
    # soon leaves no room and ends a sample. Heads biased to their lowest codes make the notes
    # climb one pitch at a time instead, so every run reaches its full length (a step's cost
    # does not depend on the codes drawn).
    with torch.no_grad():
        for field in (Field.BEAT, Field.POSITION, Field.PITCH, Field.DURATION):
            model.heads[field].bias.copy_(-10.0 * torch.arange(len(model.heads[field].bias), device=device))
    result: dict = {
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "model": {**config.to_dict(), "parameters": model.n_parameters()},
        "rows": args.rows,
    }
    sampling.sample(model, start_of_song(), max_new_rows=8, min_new_rows=8, seed=args.seed, device=device)  # warm-up

    baseline_rows = args.rows if args.baseline_rows is None else args.baseline_rows
    if baseline_rows > 0:
        synchronize(device)
        start = time.perf_counter()
        codes = baseline(model, baseline_rows, args.seed, device)
        synchronize(device)
        seconds = time.perf_counter() - start
        notes = count_notes(codes)
        result["baseline"] = {"batch": 1, "rows": baseline_rows, "seconds": seconds, "notes": notes,
                              "notes_per_s": notes / seconds}
        print(f"baseline: {json.dumps(result['baseline'])}", file=sys.stderr, flush=True)

    for batch in args.batches:
        seconds, samples, stamps = run_ours(model, args.rows, batch, args.seed, device)
        notes = count_notes(samples)
        entry = {"batch": batch, "rows": args.rows, "seconds": seconds, "notes": notes, "notes_per_s": notes / seconds}
        if batch == 1 or "step_ms_at_row" not in result:
            result["step_ms_at_row"] = {str(r): step_ms(stamps, r) for r in (50, 1000) if r <= args.rows}
            result["step_ms_batch"] = batch
        result[f"ours_batch_{batch}"] = entry
        print(f"ours_batch_{batch}: {json.dumps(entry)}", file=sys.stderr, flush=True)

    if "baseline" in result and result["baseline"]["rows"] == args.rows:
        base = result["baseline"]["notes_per_s"]
        result["speedup_notes_per_s"] = {
            key: result[key]["notes_per_s"] / base for key in result if key.startswith("ours_batch_")
        }
    steps = result.get("step_ms_at_row", {})
    if steps.get("50") and steps.get("1000"):
        result["step_ratio_1000_vs_50"] = steps["1000"] / steps["50"]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
