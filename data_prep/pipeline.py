"""The one preparation pipeline every dataset goes through.

    list (the dataset's reader) -> read (`mmt.io.read_notes`) -> clean -> filter -> write

- clean: notes at the encoding's resolution (`mmt.encoding.notes_from_ticks`: onsets round to
  the nearest tick, zero durations become 1 tick, drum tracks get program 128, empty
  tracks vanish); duplicate notes (same onset, pitch and program) keep the longest;
  notes sorted by (beat, position, pitch, duration, program).
- filter (`Filters`): too few notes the encoding can represent, too few or too many
  beats, a file too large to read safely.
- write: `meters/<id>.json` (the piece's time signatures and tempos, `mmt.meter.Meter`)
  and `notes/<id>.npy` (N x 5 int64), then, once every file is done,
  `manifest.jsonl` (one line per source file), `train.txt`/`valid.txt`/`test.txt`
  (ids of the ok files), `encoding.json` and `prepare.json` (the settings).

Robustness: a file that cannot be read is recorded as failed with its reason and the
run goes on, also when it kills its worker process (see `_convert_in_workers`); each
finished file is appended at once to a journal (`records/<all|shard-I-of-N>.jsonl`), so
a run killed at any point resumes where it stopped; every file is written atomically and
the index files are only rewritten when their content changes, so a second run over a
finished OUT does no work and changes no file (but `.lock`, which names its holder).
A piece counts as done when both its notes and its meter are on disk: an OUT prepared
before meters were kept still loads (4/4 assumed), and running prepare on it again
re-reads its files to add the meters. Workers die with the main process, also when it
is killed with SIGKILL alone. `--shard I/N` prepares the files whose path hashes to
shard I; shards merge by copying their OUT folders into one and running once more
without `--shard`.
`--splits` and `--limit` narrow a run to part of the listing (see `select_sources`);
they are not settings of OUT, so a later run without them completes the same OUT.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import io
import json
import multiprocessing
import os
import signal
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import numpy as np

from mmt.data_prep.filters import Filters, PrepareError
from mmt.data_prep.sources import SPLITS, Source, shard_of
from mmt.constants import DRUM_PROGRAM, NoteCol
from mmt.encoding import Encoding
from mmt.files import replace_bytes, write_text_atomic
from mmt.io import MusicReadError, read_notes
from mmt.locks import folder_lock
from mmt.meter import METER_DIR, meter_file

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

OK, SKIPPED, FAILED = "ok", "skipped", "failed"
STATUSES = (OK, SKIPPED, FAILED)


@dataclass(frozen=True)
class Summary:
    """What a run did and what OUT holds for its share of the dataset."""

    out: Path
    counts: dict[str, int]   # ok / skipped / failed over the files of this run's share
    total: int                # files in this run's share
    notes: int                # notes in the ok files of this share
    processed: int            # files converted by this run (0 on a finished OUT)
    seconds: float            # time spent converting them
    missing: int              # files of the whole dataset with no record yet in OUT

    @property
    def complete(self) -> bool:
        """Every file of the whole dataset has a record: the index files are final."""
        return self.missing == 0

    @property
    def files_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else float("nan")


# ---------------------------------------------------------------------- one file
def clean_notes(notes: np.ndarray) -> np.ndarray:
    """Drop duplicate notes (same onset, pitch, program: the longest stays) and sort.

    Sorted by (beat, position, pitch, duration, program).
    """
    notes = np.ascontiguousarray(notes, dtype=np.int64).reshape(-1, 5)
    if len(notes) < 2:
        return notes
    columns = [NoteCol.BEAT, NoteCol.POSITION, NoteCol.PITCH, NoteCol.PROGRAM, NoteCol.DURATION]
    by_column = np.ascontiguousarray(notes.T)   # a column per row: reductions and shifts run on contiguous memory
    low = by_column.min(axis=1)
    widths = [int(span).bit_length() for span in (by_column.max(axis=1) - low)[columns].tolist()]
    if sum(widths) > 62:  # too wide to pack into one key (not a piece of music): sort by the columns
        return _clean_notes_by_columns(notes)
    # one int64 per note: onset and pitch, then program, then duration in the lowest bits
    code = np.zeros(len(notes), dtype=np.int64)
    for column, width in zip(columns, widths):
        code <<= width
        code |= by_column[column] - low[column]
    order = np.argsort(code, kind="stable")   # stable: timsort, fast on the tracks' runs of sorted onsets
    code = code[order]
    duration_bits, program_bits = widths[4], widths[3]
    onset_and_pitch = code >> (duration_bits + program_bits)
    note_key = code >> duration_bits
    longest = np.ones(len(code), dtype=bool)   # the last of each run of one onset, pitch and program
    longest[:-1] = note_key[1:] != note_key[:-1]
    order, code, onset_and_pitch = order[longest], code[longest], onset_and_pitch[longest]
    duration = code & ((1 << duration_bits) - 1)
    # sorted by (onset, pitch, program): by (onset, pitch, duration, program) too unless some note
    # is shorter than the one before it at the same onset and pitch (another program's)
    if ((onset_and_pitch[1:] == onset_and_pitch[:-1]) & (duration[1:] < duration[:-1])).any():
        program = (code >> duration_bits) & ((1 << program_bits) - 1)
        order = order[np.argsort((onset_and_pitch << (duration_bits + program_bits)) | (duration << program_bits)
                                 | program, kind="stable")]
    return notes[order]


def _clean_notes_by_columns(notes: np.ndarray) -> np.ndarray:
    """`clean_notes` by `np.lexsort` of the columns, for values too wide to pack."""
    def by(*columns):
        return np.lexsort([notes[:, c] for c in columns[::-1]])

    notes = notes[by(NoteCol.BEAT, NoteCol.POSITION, NoteCol.PITCH, NoteCol.PROGRAM, NoteCol.DURATION)]
    key = notes[:, [NoteCol.BEAT, NoteCol.POSITION, NoteCol.PITCH, NoteCol.PROGRAM]]
    longest = np.ones(len(notes), dtype=bool)
    longest[:-1] = (key[1:] != key[:-1]).any(axis=1)
    notes = notes[longest]
    return notes[by(NoteCol.BEAT, NoteCol.POSITION, NoteCol.PITCH, NoteCol.DURATION, NoteCol.PROGRAM)]


def piece_beats(notes: np.ndarray, resolution: int) -> int:
    """Length in beats, to the end of the last note (rounded up)."""
    if len(notes) == 0:
        return 0
    end = notes[:, NoteCol.BEAT] * resolution + notes[:, NoteCol.POSITION] + notes[:, NoteCol.DURATION]
    return int(-(-end.max() // resolution))


def instrument_names(notes: np.ndarray, encoding: Encoding) -> list[str]:
    """Names of the instruments the notes use, in code order (unmodelled programs left out)."""
    codes = np.flatnonzero(np.bincount(encoding.program_codes[notes[:, NoteCol.PROGRAM]]))  # sorted, unique
    return [encoding.instruments[c - 1] for c in codes.tolist() if c > 0]


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so that readers' `except Exception` let it through."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise `_Timeout` in this (main) thread after `seconds`; no limit elsewhere or when 0."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _record(source: Source, status: str, reason: str = "", notes: int = 0, beats: int = 0,
            instruments: list[str] | None = None) -> dict:
    return {"id": source.id, "source": source.rel, "split": source.split, "status": status, "reason": reason,
            "notes": notes, "beats": beats, "instruments": instruments or []}


def _reason(error: BaseException, path: Path) -> str:
    """The error message without the leading "<path>: " that `read_music` puts there."""
    message = str(error)
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else f"{type(error).__name__}: {message}"


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _not_a_file(path: Path, mode: int) -> str:
    """The reason a listed path that is not a regular file is not read.

    Never opened: a FIFO blocks, `/dev/zero` never ends. A folder is listed only when it
    could not be listed itself (see `mmt.data_prep.sources.walk`).
    """
    if stat.S_ISDIR(mode):
        try:
            with os.scandir(path):
                pass
        except OSError as error:
            return f"cannot list this folder ({error.strerror or error}); its files are not prepared"
        return "a folder that could not be listed when the dataset was; run again to prepare its files"
    kind = next((name for is_kind, name in _KINDS if is_kind(mode)), "not a file")
    return f"not a regular file ({kind})"


def convert_source(source: Source, out: Path, encoding: Encoding, filters: Filters) -> dict:
    """Read, clean, filter and (when kept) write one source; returns its manifest record. Never raises."""
    if source.skip:
        return _record(source, SKIPPED, source.skip)
    path = source.path
    try:
        info = path.stat()
    except OSError as error:
        return _record(source, FAILED, f"cannot stat ({error.strerror or error})")
    if not stat.S_ISREG(info.st_mode):
        return _record(source, FAILED, _not_a_file(path, info.st_mode))
    size = info.st_size
    if size == 0:
        return _record(source, FAILED, "empty file")
    if size > filters.max_file_mb * 2**20:
        return _record(source, SKIPPED, f"file too large ({size / 2**20:.1f} MiB > {filters.max_file_mb:g} MiB)")
    try:
        with _time_limit(filters.timeout_s):
            notes, meter = read_notes(path, encoding.resolution, source.piece)
            notes = clean_notes(notes)
    except _Timeout:
        return _record(source, FAILED, f"timed out after {filters.timeout_s:g} s")
    except (MusicReadError, FileNotFoundError) as error:
        return _record(source, FAILED, _reason(error, path))
    except Exception as error:  # a reader bug or a file no reader expected: record it, go on
        return _record(source, FAILED, f"{type(error).__name__}: {error}")
    modelled = encoding.program_codes[np.clip(notes[:, NoteCol.PROGRAM], 0, DRUM_PROGRAM)] > 0
    n_notes, beats = int(modelled.sum()), piece_beats(notes, encoding.resolution)
    instruments = instrument_names(notes, encoding)
    details = {"notes": n_notes, "beats": beats, "instruments": instruments}
    if len(notes) == 0:
        return _record(source, SKIPPED, "no notes", **details)
    if n_notes == 0:
        return _record(source, SKIPPED, "no notes the encoding can represent", **details)
    if n_notes < filters.min_notes:
        return _record(source, SKIPPED, f"too few notes ({n_notes} < {filters.min_notes})", **details)
    if beats < filters.min_beats:
        return _record(source, SKIPPED, f"too short ({beats} < {filters.min_beats} beats)", **details)
    if beats > filters.max_beats:
        return _record(source, SKIPPED, f"too long ({beats} > {filters.max_beats} beats)", **details)
    notes_file, meter_json = _piece_files(out, source.id)
    replace_bytes(meter_json, meter.to_json().encode("utf-8"))
    replace_bytes(notes_file, _npy_bytes(notes))
    return _record(source, OK, **details)


def _piece_files(out: Path, piece_id: str) -> tuple[str, str]:
    """A prepared piece's notes and meter files, as str paths (cheaper than pathlib's, the same files)."""
    return os.path.join(os.fspath(out), "notes", f"{piece_id}.npy"), meter_file(out, piece_id)


def _npy_bytes(array: np.ndarray) -> bytes:
    """What `np.save` writes for `array`."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


# ---------------------------------------------------------------------- the OUT folder
def _shard_tag(shard: tuple[int, int]) -> str:
    return "all" if shard[1] == 1 else f"shard-{shard[0] + 1}-of-{shard[1]}"


def _write_if_changed(path: Path, text: str) -> bool:
    """Write `text` atomically unless the file already holds it; True when written."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    write_text_atomic(path, text)
    return True


def _check_settings(out: Path, settings: dict, encoding: Encoding, log: Callable[[str], None] | None = None) -> None:
    """Refuse to mix settings in one OUT; write `prepare.json` and `encoding.json` on first use.

    The notes store GM programs at the encoding's resolution, so only the resolution ties
    them to an encoding: an OUT written with another program table (an older mmt's) keeps
    its notes and gets this encoding's `encoding.json`.
    """
    settings_path = out / "prepare.json"
    if settings_path.is_file():
        try:
            stored = json.loads(settings_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise PrepareError(f"{settings_path}: not valid JSON ({error})") from error
        differ = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
        if differ:
            details = ", ".join(f"{k}: {stored.get(k)!r} there, {settings.get(k)!r} now" for k in differ)
            raise PrepareError(f"{out} was prepared with other settings ({details}); use another OUT folder")
    encoding_path = out / "encoding.json"
    stored = Encoding.load(encoding_path) if encoding_path.is_file() else encoding
    if stored.resolution != encoding.resolution:
        raise PrepareError(f"{encoding_path}: OUT holds notes at {stored.resolution} ticks per beat, not "
                           f"{encoding.resolution}; use another OUT folder")
    if stored != encoding and log:
        log(f"{encoding_path}: updated to this encoding (the notes keep their programs, so they stay valid)")
    _write_if_changed(settings_path, json.dumps(settings, indent=1, sort_keys=True) + "\n")
    _write_if_changed(encoding_path, json.dumps(encoding.to_dict(), indent=1) + "\n")


def _clean_temporaries(out: Path) -> None:
    """Remove the temp files of atomic writes that a killed run left behind (we hold the lock)."""
    for folder in (out, out / "notes", out / METER_DIR, out / "records"):
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp*"):
                tmp.unlink(missing_ok=True)


def _read_journal(path: Path) -> list[dict]:
    """Records of one journal; a line cut short by a kill is dropped and cut off the file."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    records = []
    for line in data[:end].decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("status") in STATUSES and "source" in record:
            records.append(record)
    return records


def _load_records(out: Path) -> dict[str, dict]:
    """Every finished file recorded by any run (any shard) in OUT, by source path.

    A later line (a file redone) replaces an earlier one; journals are read in name order.
    """
    records: dict[str, dict] = {}
    for journal in sorted((out / "records").glob("*.jsonl")):
        for record in _read_journal(journal):
            records[record["source"]] = record
    return records


def _valid(record: dict, source: Source, out: Path) -> bool:
    """A record still stands: same id and split, and an ok file's notes and meter are on disk."""
    if record.get("id") != source.id or record.get("split") != source.split:
        return False
    if source.skip and (record["status"] != SKIPPED or record["reason"] != source.skip):
        return False
    return record["status"] != OK or all(_is_file(path) for path in _piece_files(out, source.id))


_MISSING = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)


def _is_file(path: str) -> bool:
    """`Path(path).is_file()`: False when missing (or not a regular file), other OS errors raised."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError as error:
        if error.errno not in _MISSING:
            raise
        return False
    except ValueError:
        return False


def _line(record: dict) -> str:
    """A record as its journal and manifest line."""
    return json.dumps(record) + "\n"


def _lines(records: Iterable[dict], known: dict[str, tuple[dict, str]] | None = None) -> str:
    """The lines of `records`; `known`: (record, line) already made, by source: a record that is
    the very object made into a line there is not dumped again."""
    known = known or {}

    def line(record: dict) -> str:
        made = known.get(record["source"])
        return made[1] if made is not None and made[0] is record else _line(record)

    return "".join(map(line, records))


# ---------------------------------------------------------------------- the run
def select_sources(sources: list[Source], shard: tuple[int, int] = (0, 1),
                   splits: Iterable[str] | None = None, limit: int | None = None) -> list[Source]:
    """The part of a listing that one run prepares, in the listing's order.

    The sources of shard `shard` (index, count; 0-based), then only those of `splits`
    (None: all), then the first `limit` of them (None: all).
    """
    index, count = shard
    chosen = [s for s in sources if count == 1 or shard_of(s.rel, count) == index]
    if splits is not None:
        wanted = set(splits)
        unknown = sorted(wanted - set(SPLITS))
        if unknown:
            raise PrepareError(f"unknown split(s) {', '.join(unknown)}; known: {', '.join(SPLITS)}")
        chosen = [s for s in chosen if s.split in wanted]
    if limit is not None:
        if limit < 0:
            raise PrepareError(f"--limit must be >= 0, got {limit}")
        chosen = chosen[:limit]
    return chosen


def prepare(
    sources: list[Source],
    out: str | os.PathLike,
    *,
    dataset: str,
    encoding: Encoding | None = None,
    filters: Filters = Filters(),
    jobs: int = 1,
    shard: tuple[int, int] = (0, 1),
    splits: Iterable[str] | None = None,
    limit: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> Summary:
    """Prepare `sources` (a reader's listing of the whole dataset) into `out`.

    Args:
        sources: every source of the dataset, as a reader lists them.
        out: the prepared directory (created; resumed when it holds an earlier run).
        dataset: the dataset's name (recorded; an OUT holds one dataset).
        encoding: the encoding whose resolution the notes take (default `Encoding()`).
        filters: which pieces to keep.
        jobs: worker processes (1: convert in this process).
        shard: (index, count), 0-based: prepare only the sources that `shard_of` gives `index`.
        splits: prepare only the sources of these splits (None: all). Not a setting of OUT.
        limit: prepare only the first `limit` sources of the (shard- and split-) filtered
            listing (None: all). Not a setting of OUT.
        progress: show a tqdm bar with ok / skipped / failed counts.
        log: where to print a line about the listing (None: silent).
    """
    encoding = encoding or Encoding()
    if jobs < 1:
        raise PrepareError(f"-j/--jobs must be >= 1, got {jobs}")
    index, count = shard
    if not 0 <= index < count:
        raise PrepareError(f"shard index {index} out of range for {count} shards")
    ids = [s.id for s in sources if not s.skip]
    if len(set(ids)) != len(ids):
        raise PrepareError("the dataset listing has duplicate ids (a reader bug)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"dataset": dataset, "resolution": encoding.resolution, **dataclasses.asdict(filters)}
    with folder_lock(out, "mmt prepare", PrepareError, log):
        _check_settings(out, settings, encoding, log)
        _clean_temporaries(out)
        (out / "notes").mkdir(exist_ok=True)
        (out / METER_DIR).mkdir(exist_ok=True)
        (out / "records").mkdir(exist_ok=True)
        mine = select_sources(sources, shard, splits, limit)
        known = _load_records(out)
        done = {s.rel: known[s.rel] for s in mine if s.rel in known and _valid(known[s.rel], s, out)}
        todo = [s for s in mine if s.rel not in done]
        if log:
            share = f" of {len(sources)}" if len(mine) < len(sources) else ""
            share += f" (shard {index + 1}/{count})" if count > 1 else ""
            log(f"{dataset}: {len(mine)} files{share}, {len(done)} done earlier, {len(todo)} to prepare")
        journal_path = out / "records" / f"{_shard_tag(shard)}.jsonl"
        counts = {status: 0 for status in STATUSES}
        for record in done.values():
            counts[record["status"]] += 1
        journal_existed = journal_path.exists()
        started = time.perf_counter()
        lines: dict[str, tuple[dict, str]] = {}  # this run's records and journal lines, by source: the index reuses them
        if todo:
            _run(todo, out, encoding, filters, jobs, journal_path, done, lines, counts, progress, len(mine), dataset)
            _clean_temporaries(out)  # a worker killed mid-write (see `_convert_in_workers`) leaves one
        seconds = time.perf_counter() - started
        # Compact this run's journal (latest record per file, sorted), so a resumed run and an
        # uninterrupted one leave the same bytes. A journal this run began holds just its records.
        if journal_existed:
            own = {r["source"]: r for r in _load_records_file(journal_path)}
        else:
            own = {s.rel: done[s.rel] for s in todo if s.rel in done}
        if own:
            _write_if_changed(journal_path, _lines((own[k] for k in sorted(own)), lines))
        # When this run covered the whole listing, `done` holds every valid record: no need to re-read them.
        missing = _write_index(sources, out, done if len(mine) == len(sources) else None, lines)
    ok_notes = sum(r["notes"] for r in done.values() if r["status"] == OK)
    return Summary(out=out, counts=counts, total=len(mine), notes=ok_notes, processed=len(todo),
                   seconds=seconds, missing=missing)


def _load_records_file(path: Path) -> list[dict]:
    return _read_journal(path) if path.is_file() else []


WORKER_DIED = ("the worker process died while reading it (killed by the OS, e.g. out of memory, "
               "or a crash in a reader)")
TASKS_PER_POOL = 3000  # files per worker before the pool is renewed (readers' caches would grow; a renewal
                       # costs some 20-40 ms, the reading of 40-odd MIDI files by the C scanner)
MIN_CHUNK_FILES = 4   # the last tasks of a run
CHUNK_FILES = 128     # files per task sent to a worker: each task costs a fixed time (about 0.4 ms of -j 2's
                      # wall time here), so tasks of ~60 ms of work keep it small (benchmarks/prepare.py's files,
                      # -j 2 against -j 1, alternating runs, idle, 2026-11-24: 16 a task 1.58-1.63x, 64
                      # 1.65-1.68x, 128 1.57-1.77x, median 1.74x; one run the disk held up left out)


def _run(todo, out, encoding, filters, jobs, journal_path, done, lines, counts, progress, total, dataset) -> None:
    """Convert `todo`, appending records to the journal as soon as they are known (into `done`,
    each with its journal line into `lines`, by source; `counts` by status).

    With workers, the records of a task (up to `CHUNK_FILES` files) come back together and go
    to the journal in one write: the main process, which shares the cores with the workers,
    so spends about a quarter of the time per file that a write, a flush and a progress
    update per file took (14.6 against 3.8 us). A run killed between a task's files and its
    records converts that task's files again when resumed (`_valid` wants a record).
    """
    from tqdm import tqdm

    convert = functools.partial(convert_source, out=out, encoding=encoding, filters=filters)
    bar = tqdm(total=total, initial=total - len(todo), desc=f"prepare {dataset}", unit="file",
               disable=not progress, dynamic_ncols=True)
    bar.set_postfix(counts, refresh=False)
    try:
        batches = _convert_in_workers(convert, todo, jobs) if jobs > 1 else ([convert(s)] for s in todo)
        with open(journal_path, "a", encoding="utf-8") as journal:
            for records in batches:
                text = [_line(record) for record in records]
                journal.write("".join(text))
                journal.flush()
                for record, line in zip(records, text):
                    done[record["source"]] = record
                    lines[record["source"]] = (record, line)
                    counts[record["status"]] += 1
                if progress:  # tqdm formats the postfix even when disabled
                    bar.set_postfix(counts, refresh=False)
                    bar.update(len(records))
    finally:
        bar.close()


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    """Pool initializer: end this worker when the main process dies, also by SIGKILL.

    Left alone, workers of a killed run wait forever for work. On Linux the kernel kills
    the worker (`prctl(PR_SET_PDEATHSIG)`); elsewhere a thread watches the parent's id.
    """
    armed = False
    if sys.platform.startswith("linux"):
        import ctypes

        armed = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    if os.getppid() != parent:  # it died before the worker got here
        os._exit(1)
    if not armed:
        threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _pool(jobs: int, context) -> ProcessPoolExecutor:
    """A pool of `jobs` forked workers that die with this process."""
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(jobs, mp_context=context, initializer=_die_with_parent, initargs=(os.getpid(),))


def _convert_chunk(convert: Callable[[Source], dict], chunk: list[Source]) -> list[dict]:
    """Records of the files of one task (a worker gets several files at a time)."""
    return [convert(source) for source in chunk]


def _chunks(todo: list[Source], jobs: int) -> list[list[Source]]:
    """`todo` in tasks of up to `CHUNK_FILES` files, shrinking towards the end ("guided" scheduling).

    A task takes a quarter of a worker's share of the files still to hand out, at most
    `CHUNK_FILES` and at least `MIN_CHUNK_FILES`, so every worker gets several tasks and the
    last ones are small: no worker is left with a long task while the others are done.
    """
    chunks, start = [], 0
    while start < len(todo):
        size = max(MIN_CHUNK_FILES, min(CHUNK_FILES, (len(todo) - start) // (4 * jobs)))
        chunks.append(todo[start:start + size])
        start += size
    return chunks


def _convert_in_workers(convert: Callable[[Source], dict], todo: list[Source],
                        jobs: int) -> Iterator[list[dict]]:
    """Records of `todo` converted by `jobs` forked workers, a task's at a time, in the order
    the tasks finish.

    Workers take the files in tasks of a few (`_chunks`), and at most `2 * jobs` tasks are
    in flight, so when a worker dies (the OS kills it, or a reader crashes the interpreter)
    only their files are suspects: each is converted again alone in a fresh process, and
    the one whose process dies again is recorded as failed (`WORKER_DIED`); then the run
    goes on with a new pool. A pool is renewed every `TASKS_PER_POOL * jobs` files.
    """
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("fork")
    queue = list(reversed(_chunks(todo, jobs)))  # pop() from the end takes them in order
    task = functools.partial(_convert_chunk, convert)
    while queue:
        suspects: list[Source] = []
        with _pool(jobs, context) as pool:
            running: dict = {}
            budget = TASKS_PER_POOL * jobs
            while (queue and budget > 0) or running:
                while queue and budget > 0 and len(running) < 2 * jobs:
                    chunk = queue.pop()
                    running[pool.submit(task, chunk)] = chunk
                    budget -= len(chunk)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                try:
                    for future in finished:
                        records = future.result()
                        del running[future]
                        yield records
                except BrokenProcessPool:
                    suspects = [source for chunk in running.values() for source in chunk]
                    break
        for source in suspects:
            yield [_convert_alone(convert, source, context)]


def _convert_alone(convert: Callable[[Source], dict], source: Source, context) -> dict:
    """Convert one file in a fresh process; a failed record if that process dies too."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        with _pool(1, context) as pool:
            return pool.submit(convert, source).result()
    except BrokenProcessPool:
        return _record(source, FAILED, WORKER_DIED)


def _write_index(sources: list[Source], out: Path, valid: dict[str, dict] | None = None,
                 lines: dict[str, tuple[dict, str]] | None = None) -> int:
    """Write manifest.jsonl and the split lists from every record in OUT; returns how many sources have none.

    `valid`: the records of every source, by source path, already known to stand (None: read
    them from OUT's journals and check each). `lines`: (record, line) already made, by source
    path (this run's journal lines). Lines follow the listing's order (sorted by source
    path); split lists are sorted ids.
    """
    records = _load_records(out) if valid is None else valid
    manifest, splits = [], {split: [] for split in SPLITS}
    for source in sources:
        record = records.get(source.rel)
        if record is None or (valid is None and not _valid(record, source, out)):
            continue
        manifest.append(record)
        if record["status"] == OK:
            splits[record["split"]].append(record["id"])
    _write_if_changed(out / "manifest.jsonl", _lines(manifest, lines))
    for split, ids in splits.items():
        _write_if_changed(out / f"{split}.txt", "".join(f"{i}\n" for i in sorted(ids)))
    return len(sources) - len(manifest)
