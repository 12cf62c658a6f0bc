"""Generation time with torch's default thread count vs one thread, on an idle and on a busy CPU.

The same request (the bundled model, a string trio, 2 samples of 16 bars, seed 0) is drawn
with `torch.get_num_threads()` at torch's default and at 1, first as the machine is, then
with one busy-looping process per core beside it (what other jobs on a shared machine do
to torch's spin-waiting threads). Prints the seconds of each (the best of `--repeat`) and
the load average before each, in one run:

    python benchmarks/threads.py [--model music21-small] [--repeat 2]

The figures go to benchmarks/results/threads-cpu.json as well. They are why `mmt generate`,
`evaluate`, `analyze` and `demo` run on one thread unless `--threads` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmt import GenerationRequest, load_model  # noqa: E402
from mmt.request import run  # noqa: E402


def hog(stop) -> None:
    """Keep one core busy until `stop` is set."""
    while not stop.is_set():
        sum(range(10_000))


def seconds(model, threads: int, repeat: int) -> float:
    torch.set_num_threads(threads)
    request = GenerationRequest(mode="instrument", instruments=("violin", "viola", "cello"), bars=16, n_samples=2,
                                seed=0)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run(model, request)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="music21-small")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    default = torch.get_num_threads()
    model = load_model(args.model)
    run(model, GenerationRequest(max_new_rows=8, seed=0))  # warm-up
    results = {"cpus": os.cpu_count(), "default_threads": default}
    for busy in (False, True):
        stop = multiprocessing.Event()
        hogs = [multiprocessing.Process(target=hog, args=(stop,)) for _ in range(os.cpu_count() or 1)] if busy else []
        for process in hogs:
            process.start()
        try:
            time.sleep(1.0 if busy else 0.0)
            for threads in (default, 1):
                load = os.getloadavg()[0]
                key = f"{'busy' if busy else 'as is'}, {threads} thread{'s' if threads > 1 else ''}"
                results[key] = {"seconds": round(seconds(model, threads, args.repeat), 2), "load_average": load}
                print(f"{key}: {results[key]}", flush=True)
        finally:
            stop.set()
            for process in hogs:
                process.join()
    out = Path(__file__).resolve().parent / "results" / "threads-cpu.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"-> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
