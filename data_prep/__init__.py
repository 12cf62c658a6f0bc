"""Dataset readers and the shared preparation pipeline behind `mmt prepare`.

Each reader module (`lmd`, `sod`, `pop1k7`, `music21_corpus`, `music21_tunes`, `folder`) only lists a
dataset's files as `Source`s (relative path, id, split); `pipeline.prepare` reads,
cleans, filters and writes them, the same way for every dataset. Modules load on first
use, so `import data_prep` stays light.
"""

from __future__ import annotations

import importlib
import os

from mmt.data_prep.filters import Filters, PrepareError

# dataset name (the CLI's DATASET) -> reader module
READERS = {"lmd": "lmd", "sod": "sod", "pop1k7": "pop1k7", "music21": "music21_corpus",
           "music21-tunes": "music21_tunes", "folder": "folder"}
DATASETS = tuple(READERS)


def reader(dataset: str):
    """The reader module of `dataset`."""
    if dataset not in READERS:
        raise PrepareError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    return importlib.import_module(f"mmt.data_prep.{READERS[dataset]}")


def list_sources(dataset: str, src: str | os.PathLike):
    """The sources (`mmt.data_prep.sources.Source`) of `dataset` at `src` (music21: `-` is the bundled corpus)."""
    return reader(dataset).list_sources(src)


def prepare_dataset(dataset: str, src: str | os.PathLike, out: str | os.PathLike, **kwargs):
    """List `dataset` at `src` and prepare it into `out`; keyword arguments go to `pipeline.prepare`.

    Returns the run's `pipeline.Summary`.
    """
    from mmt.data_prep.pipeline import prepare

    return prepare(list_sources(dataset, src), out, dataset=dataset, **kwargs)


def parse_shard(text: str | None) -> tuple[int, int]:
    """"I/N" (1-based, e.g. "2/8") -> (I - 1, N); None -> (0, 1)."""
    if text is None:
        return 0, 1
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise PrepareError(f"--shard must look like I/N (e.g. 2/8), got {text!r}") from None
    if not 1 <= index <= count:
        raise PrepareError(f"--shard I/N needs 1 <= I <= N, got {text!r}")
    return index - 1, count


__all__ = ["DATASETS", "Filters", "PrepareError", "list_sources", "parse_shard", "prepare_dataset", "reader"]
