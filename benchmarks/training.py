"""Training throughput on this machine: tokens/s of `mmt.training.train` by threads, batch shape and model size.

Every case runs the real training loop (`mmt.training.train`: data loading, augmentation,
encoding, cropping, forward, backward, AdamW) on a synthetic prepared folder whose pieces
all fill the case's context, so every batch is exactly batch x length rows and the
figures measure the shape, not the data's length distribution. Each case trains
`--warmup` steps (validated and checkpointed after them, so that the last measurement
leaves warm-up out), then `--steps` more; its `tokens_per_s` is the loop's own figure
for those last steps (`log.csv`'s tokens_per_s: target rows per second of steps, data
loading included, validation and checkpointing left out).

torch.compile is measured apart (`--compile`): the same model's forward, backward and
AdamW step on one fixed random batch, eager against `torch.compile`d, with the
compile time reported.

The machine is shared: each case records the 1-minute load average before and after
it, and the JSON records the machine's cores.

Usage: python benchmarks/training.py [--out benchmarks/results/training-cpu.json]
       [--threads 1 2] [--shapes 8x512 16x256 4x1024] [--sizes 128x3x4 256x4x4]
       [--steps 12] [--warmup 3] [--compile]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mmt.config import ModelConfig, config_from_dict
from mmt.encoding import Encoding
from mmt.model import MusicTransformer, compute_loss
from mmt.training import train

PROGRAMS = (0, 40, 41, 42, 52)  # piano, violin, viola, cello, voices


def synthetic_prepared(root: Path, n_pieces: int, n_notes: int, seed: int = 0) -> Path:
    """A prepared folder of `n_pieces` random pieces of `n_notes` notes each (train and valid alike)."""
    rng = np.random.default_rng(seed)
    (root / "notes").mkdir(parents=True, exist_ok=True)
    ids = [f"piece{i}" for i in range(n_pieces)]
    for piece in ids:
        onsets = np.sort(rng.integers(0, n_notes * 6, n_notes))  # about two notes a beat
        notes = np.stack([onsets // 12, onsets % 12, rng.integers(40, 90, n_notes), rng.choice([6, 12, 24], n_notes),
                          rng.choice(PROGRAMS, n_notes)], axis=1)
        np.save(root / "notes" / f"{piece}.npy", notes.astype(np.int64))
    for split in ("train", "valid"):
        (root / f"{split}.txt").write_text("".join(f"{piece}\n" for piece in ids))
    Encoding().save(root / "encoding.json")
    return root


def model_shape(text: str) -> dict:
    """"DIMxDEPTHxHEADS" -> the model section's keys."""
    dim, depth, heads = (int(v) for v in text.split("x"))
    return {"dim": dim, "depth": depth, "heads": heads}


def batch_shape(text: str) -> tuple[int, int]:
    """"BATCHxLENGTH" -> (batch, length)."""
    batch, length = (int(v) for v in text.split("x"))
    return batch, length


def n_parameters(shape: dict, length: int) -> int:
    config = ModelConfig(**shape, max_seq_len=length, pos_emb="rotary")
    return MusicTransformer(config, Encoding()).n_parameters()


def run_case(data: Path, shape: dict, batch: int, length: int, threads: int, steps: int, warmup: int) -> dict:
    """Train one case in a temporary folder; its figures over the steps after warm-up."""
    config = config_from_dict({
        "name": "throughput",
        "model": {**shape, "dropout": 0.1, "max_seq_len": length, "pos_emb": "rotary"},
        "training": {"seed": 0, "batch_size": batch, "max_steps": warmup + steps, "lr": 1e-3, "warmup_steps": 10,
                     "lr_schedule": "cosine", "valid_every": warmup, "valid_batches": 1, "patience": None,
                     "threads": threads, "device": "cpu", "tensorboard": False},
        "data": {"augment": True},
    })
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(sys.stderr):  # keep stdout JSON only
        result = train(config, out, data_dir=data, progress=False)
    measured = result.history[-1]
    return {
        "dim": shape["dim"], "depth": shape["depth"], "heads": shape["heads"],
        "parameters": n_parameters(shape, length), "batch": batch, "length": length, "threads": threads,
        "steps": steps, "tokens_per_s": round(measured["tokens_per_s"], 1),
        "ms_per_step": round(1000 / measured["steps_per_s"], 1),
        "load_1min_before": round(load_before, 2), "load_1min_after": round(os.getloadavg()[0], 2),
    }


def compile_case(shape: dict, batch: int, length: int, threads: int, steps: int) -> dict:
    """Eager against torch.compile on one random batch: ms per step (after the first), compile time."""
    torch.set_num_threads(threads)
    encoding = Encoding()
    generator = torch.Generator().manual_seed(0)
    codes = torch.stack([torch.randint(1, n, (batch, length), generator=generator) for n in encoding.n_tokens.values()],
                        dim=-1)
    mask = torch.ones(batch, length, dtype=torch.bool)
    out = {"dim": shape["dim"], "depth": shape["depth"], "heads": shape["heads"], "batch": batch, "length": length,
           "threads": threads, "load_1min_before": round(os.getloadavg()[0], 2)}
    for name in ("eager", "compiled"):
        torch.manual_seed(0)
        model = MusicTransformer(ModelConfig(**shape, max_seq_len=length, pos_emb="rotary"), encoding).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        step_model = torch.compile(model) if name == "compiled" else model
        times = []
        for _ in range(steps + 1):
            start = time.perf_counter()
            loss, _ = compute_loss(step_model, codes, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
        out[f"{name}_first_step_s"] = round(times[0], 2)
        out[f"{name}_ms_per_step"] = round(1000 * float(np.mean(times[1:])), 1)
        out[f"{name}_tokens_per_s"] = round(batch * (length - 1) / float(np.mean(times[1:])), 1)
    out["load_1min_after"] = round(os.getloadavg()[0], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/training-cpu.json")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shapes", nargs="+", default=["8x512", "16x256", "4x1024"], help="BATCHxLENGTH")
    parser.add_argument("--sizes", nargs="+", default=["128x3x4", "192x4x6", "256x4x4", "256x6x8"], help="DIMxDEPTHxHEADS")
    parser.add_argument("--steps", type=int, default=8, help="measured steps per case")
    parser.add_argument("--warmup", type=int, default=3, help="steps before the measured ones")
    parser.add_argument("--compile", action="store_true", help="also eager vs torch.compile (first size and shape)")
    args = parser.parse_args()
    shapes = [batch_shape(s) for s in args.shapes]
    sizes = [model_shape(s) for s in args.sizes]
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for batch, length in shapes:
            data = synthetic_prepared(Path(tmp) / f"len{length}", n_pieces=max(4 * batch, 16), n_notes=length)
            for shape in sizes:
                for threads in args.threads:
                    case = run_case(data, shape, batch, length, threads, args.steps, args.warmup)
                    print(json.dumps(case), file=sys.stderr, flush=True)
                    cases.append(case)
    compiled = []
    if args.compile:
        for threads in args.threads:
            case = compile_case(sizes[0], *shapes[0], threads, max(args.steps // 2, 3))
            print(json.dumps(case), file=sys.stderr, flush=True)
            compiled.append(case)
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "python": platform.python_version()},
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "cases": cases, "compile": compiled,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
