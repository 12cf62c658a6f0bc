"""Preparation speed at Lakh scale: `mmt prepare lmd` at -j 1 and -j 2 against symusic's bare parse rate.

Builds a Lakh-shaped tree in a temp folder (`lmd_full/<first hex digit>/<md5>.mid`, the
name being the MD5 of the bytes): `--files` synthetic type-1 MIDI files of varied sizes
(1 to 16 tracks; a log-normal number of notes, median about 1,500 per file; drums,
programs, a tempo map and a meter; some zero-length notes written note-off first), and
among them a few corrupt ones (random bytes, cut short). Then, on the same files, in one
run:

- `symusic`: `symusic.Score(path)` of every file, nothing else (the bare parse rate);
- `read_notes`: `mmt.io.read_notes(path, 12)` of every file: our reader (symusic's parse,
  its notes to an array; see `mmt/midi.py`) to the notes array at 12 per beat, nothing written;
- `prepare_j1`, `prepare_j2`: `prepare_dataset("lmd", ...)` (what `mmt prepare lmd` runs)
  into a fresh OUT with 1 and 2 worker processes: read, clean, filter, write the notes
  files, the journal and the manifest. Seconds are the whole call, listing included;
  `cpu_seconds` the CPU time of this process and its workers (less than the seconds times
  the jobs when the disk or other programs make it wait), split into `main_cpu_seconds`
  (this process: the listing, the journal, the index and, at -j 2, the pool's threads that
  send tasks and receive records) and `workers_cpu_seconds`. At -j 2 the main process's CPU
  time shares the two cores with the workers', so (main + workers) / 2 bounds the run's seconds
  from below: `prepare_j2_floor_seconds`. Each runs `--repeats` times,
  -j 1 and -j 2 alternating so that a slow spell of a shared disk hits both; the median
  run is reported, every run's seconds in `runs_seconds`. `prepare_j2_over_j1` is the
  ratio of the median runs' rates; `prepare_j2_over_j1_pairs` the ratio of each -j 1 run
  to the -j 2 run right after it (the machine's speed drifts less within a pair), and
  their median.
- `split_j1`, `split_j2`: the machine's own ceiling for -j 2 at that moment: `convert_source`
  (what a worker runs for each file: read, clean, filter, write) of every file in one process,
  and in two forked processes that take every other file, with no listing, journal, pool or
  index; run right after each pair of preparations. `split_j2_over_j1_pairs` is each repeat's
  ratio, `prepare_over_split_pairs` each repeat's prepare ratio over its split ratio: the share
  of what this machine gave two processes right then that `mmt prepare -j 2` got.

`notes` is the number of notes symusic finds in the files a method read, so notes/s of
every method counts the same notes. Results are printed as JSON (and written to `--json`).
The machine may be shared: `load_average` says how busy it was.

Usage: python benchmarks/prepare.py [--files 3000] [--seed 0] [--repeats 5]
       [--json benchmarks/results/prepare-cpu.json] [--tmp /dev/shm]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TICKS = 480
_VARLEN = [bytes([d]) if d < 128 else bytes([0x80 | (d >> 7), d & 0x7F]) for d in range(1 << 14)]


def _varlen(value: int) -> bytes:
    return _VARLEN[value] if value < len(_VARLEN) else bytes([0x80 | (value >> 14), 0x80 | ((value >> 7) & 0x7F),
                                                             value & 0x7F])


def _track_bytes(events: list[tuple[int, int, bytes]]) -> bytes:
    """An MTrk chunk of (tick, order, message bytes) events, sorted by (tick, order)."""
    events.sort(key=lambda e: (e[0], e[1]))
    parts, now = [], 0
    for tick, _, message in events:
        parts.append(_varlen(tick - now))
        parts.append(message)
        now = tick
    parts.append(b"\x00\xff\x2f\x00")
    data = b"".join(parts)
    return b"MTrk" + len(data).to_bytes(4, "big") + data


def synthetic_midi(rng: np.random.Generator) -> tuple[bytes, int]:
    """One synthetic MIDI file and its number of notes."""
    n_tracks = int(rng.integers(1, 17))
    total = int(np.clip(rng.lognormal(np.log(1500), 0.8), 20, 40_000))
    per_track = rng.multinomial(total, np.ones(n_tracks) / n_tracks)
    bars = max(8, total // (n_tracks * 12))
    conductor = [(0, 0, b"\xff\x58\x04" + bytes([int(rng.choice([3, 4, 6])), 2, 24, 8])),
                 (0, 0, b"\xff\x51\x03" + int(rng.integers(300_000, 900_000)).to_bytes(3, "big"))]
    for _ in range(int(rng.integers(0, 4))):
        tick = int(rng.integers(0, bars * 4 * TICKS))
        conductor.append((tick, 0, b"\xff\x51\x03" + int(rng.integers(300_000, 900_000)).to_bytes(3, "big")))
    chunks = [_track_bytes(conductor)]
    for index, count in enumerate(per_track):
        channel = 9 if index == 0 and rng.random() < 0.6 else index % 9
        events = [(0, 1, bytes([0xC0 | channel, int(rng.integers(0, 128))]))]
        onsets = np.sort(rng.integers(0, bars * 16, size=count)) * (TICKS // 4)
        lengths = rng.choice([0, 60, 120, 240, 480, 960], size=count, p=[0.03, 0.2, 0.3, 0.27, 0.15, 0.05])
        pitches = rng.integers(35, 82, size=count) if channel == 9 else rng.integers(36, 96, size=count)
        velocities = rng.integers(30, 128, size=count)
        for start, length, pitch, velocity in zip(onsets.tolist(), lengths.tolist(), pitches.tolist(),
                                                  velocities.tolist()):
            # note-offs before note-ons at one tick; a zero-length note's off first too
            events.append((start, 3, bytes([0x90 | channel, pitch, velocity])))
            events.append((start + length, 2, bytes([0x80 | channel, pitch, 0])))
        chunks.append(_track_bytes(events))
    header = b"MThd" + (6).to_bytes(4, "big") + (1).to_bytes(2, "big") + len(chunks).to_bytes(2, "big") + \
        TICKS.to_bytes(2, "big")
    return header + b"".join(chunks), total


def build_tree(root: Path, n_files: int, seed: int) -> dict:
    """Write the Lakh-shaped tree; returns counts and sizes."""
    rng = np.random.default_rng(seed)
    sizes, corrupt = [], 0
    for i in range(n_files):
        data, _ = synthetic_midi(rng)
        if i % 500 == 7:
            data, corrupt = rng.bytes(int(rng.integers(10, 3000))), corrupt + 1
        elif i % 500 == 13:
            data, corrupt = data[: len(data) // 3], corrupt + 1
        md5 = hashlib.md5(data).hexdigest()
        path = root / "lmd_full" / md5[0] / f"{md5}.mid"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        sizes.append(len(data))
    return {"files": n_files, "corrupt": corrupt, "bytes_median": int(np.median(sizes)),
            "bytes_max": int(max(sizes)), "bytes_total": int(sum(sizes))}


def middle(values: list, key=None):
    """The middle one of `values` once sorted (the upper of the two middle ones of an even count)."""
    return sorted(values, key=key)[len(values) // 2]


def rate(files: int, notes: int, seconds: float) -> dict:
    return {"files": files, "notes": notes, "seconds": round(seconds, 3), "files_per_s": round(files / seconds, 1),
            "notes_per_s": round(notes / seconds)}


def symusic_counts(paths: list[Path]) -> tuple[dict[Path, int], float]:
    """Notes symusic finds in each file (0 when it cannot parse it), and the seconds it took."""
    import symusic

    counts = {}
    started = time.perf_counter()
    for path in paths:
        try:
            counts[path] = sum(track.note_num() for track in symusic.Score(path).tracks)
        except Exception:
            counts[path] = 0
    return counts, time.perf_counter() - started


def read_notes_seconds(paths: list[Path]) -> float:
    """Seconds `mmt.io.read_notes` takes for `paths` (failures included)."""
    from mmt.io import read_notes

    started = time.perf_counter()
    for path in paths:
        try:
            read_notes(path, 12)
        except Exception:
            pass
    return time.perf_counter() - started


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds so far of this process and of its (ended) workers."""
    times = os.times()
    return times.user + times.system, times.children_user + times.children_system


def prepare_seconds(src: Path, out: Path, jobs: int) -> tuple[float, dict, dict]:
    """Wall seconds, CPU seconds (main, workers, total) and ok/skipped/failed counts of one
    preparation into a fresh `out`."""
    from mmt.data_prep import prepare_dataset

    started, (main, workers) = time.perf_counter(), _cpu_seconds()
    summary = prepare_dataset("lmd", src, out, jobs=jobs, progress=False, log=None)
    seconds = time.perf_counter() - started
    main_after, workers_after = _cpu_seconds()
    cpu = {"main": main_after - main, "workers": workers_after - workers}
    return seconds, {**cpu, "total": cpu["main"] + cpu["workers"]}, summary.counts


def _convert_all(out: Path, sources: list) -> None:
    """`convert_source` of each of `sources` into `out` (a split worker's work)."""
    from mmt.data_prep.filters import Filters
    from mmt.data_prep.pipeline import convert_source
    from mmt.encoding import Encoding

    encoding, filters = Encoding(), Filters()
    for source in sources:
        convert_source(source, out, encoding, filters)


def split_seconds(sources: list, out: Path, jobs: int) -> float:
    """Wall seconds of `_convert_all` over `sources` by `jobs` forked processes, each taking every
    `jobs`-th source (1: in this process), into a fresh `out`."""
    import functools
    import multiprocessing

    from mmt.meter import METER_DIR

    for folder in ("notes", METER_DIR):
        (out / folder).mkdir(parents=True)
    started = time.perf_counter()
    if jobs == 1:
        _convert_all(out, sources)
    else:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            pool.map(functools.partial(_convert_all, out), [sources[i::jobs] for i in range(jobs)], chunksize=1)
    return time.perf_counter() - started


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each preparation, alternating -j 1 and -j 2")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--tmp", type=Path, help="build the tree and the OUTs here (default: the system's temp "
                        "folder); a RAM folder such as /dev/shm takes the disk out of the figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mmt-bench-prepare-", dir=args.tmp) as tmp:
        src = Path(tmp) / "lmd"
        tree = build_tree(src, args.files, args.seed)
        paths = sorted(src.rglob("*.mid"))
        result = {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                  "folder": str(Path(tmp).parent), "load_average_before": [round(x, 2) for x in os.getloadavg()],
                  "tree": tree}
        counts, seconds = symusic_counts(paths)
        notes = sum(counts.values())
        result["symusic"] = rate(len(paths), notes, seconds)
        print(f"symusic: {json.dumps(result['symusic'])}", file=sys.stderr, flush=True)
        result["read_notes"] = rate(len(paths), notes, read_notes_seconds(paths))
        print(f"read_notes: {json.dumps(result['read_notes'])}", file=sys.stderr, flush=True)
        from mmt.data_prep import list_sources

        sources = list_sources("lmd", src)
        runs: dict[int, list[tuple[float, dict, dict]]] = {1: [], 2: []}
        splits: dict[int, list[float]] = {1: [], 2: []}
        for repeat in range(args.repeats):  # alternating, so a slow spell of the disk hits both
            for jobs in (1, 2):
                out = Path(tmp) / f"out-j{jobs}-{repeat}"
                runs[jobs].append(prepare_seconds(src, out, jobs))
                print(f"prepare -j {jobs} run {repeat + 1}: {runs[jobs][-1][0]:.3f} s", file=sys.stderr, flush=True)
                shutil.rmtree(out)  # untimed: each run starts with the same files in the folder (and in RAM)
            for jobs in (1, 2):
                out = Path(tmp) / f"split-j{jobs}-{repeat}"
                splits[jobs].append(split_seconds(sources, out, jobs))
                print(f"split -j {jobs} run {repeat + 1}: {splits[jobs][-1]:.3f} s", file=sys.stderr, flush=True)
                shutil.rmtree(out)
        for jobs, timed in runs.items():
            seconds, cpu, status = middle(timed, key=lambda run: run[0])  # the median run
            result[f"prepare_j{jobs}"] = {**rate(len(paths), notes, seconds), "cpu_seconds": round(cpu["total"], 3),
                                          "main_cpu_seconds": round(cpu["main"], 3),
                                          "workers_cpu_seconds": round(cpu["workers"], 3),
                                          "runs_seconds": [round(run[0], 3) for run in timed], "counts": status}
            print(f"prepare_j{jobs}: {json.dumps(result[f'prepare_j{jobs}'])}", file=sys.stderr, flush=True)
        result["prepare_j2_floor_seconds"] = round(result["prepare_j2"]["cpu_seconds"] / 2, 3)
        for jobs, timed in splits.items():
            result[f"split_j{jobs}"] = {**rate(len(paths), notes, middle(timed)),
                                        "runs_seconds": [round(t, 3) for t in timed]}
        result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    j1, j2, bare = (result[k]["files_per_s"] for k in ("prepare_j1", "prepare_j2", "symusic"))
    pairs = [a[0] / b[0] for a, b in zip(runs[1], runs[2])]  # each run of -j 1 against the -j 2 run after it
    split_pairs = [a / b for a, b in zip(splits[1], splits[2])]
    shares = [p / s for p, s in zip(pairs, split_pairs)]
    result["ratios"] = {"symusic_over_prepare_j1": round(bare / j1, 2), "prepare_j2_over_j1": round(j2 / j1, 2),
                        "prepare_j2_over_j1_pairs": [round(r, 2) for r in sorted(pairs)],
                        "prepare_j2_over_j1_pairs_median": round(middle(pairs), 2),
                        "split_j2_over_j1_pairs": [round(r, 2) for r in sorted(split_pairs)],
                        "split_j2_over_j1_pairs_median": round(middle(split_pairs), 2),
                        "prepare_over_split_pairs": [round(r, 2) for r in sorted(shares)],
                        "prepare_over_split_pairs_median": round(middle(shares), 2),
                        "symusic_over_read_notes": round(bare / result["read_notes"]["files_per_s"], 2)}
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
