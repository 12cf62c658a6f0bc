"""One generation request, one path: what the CLI, evaluation, the demo and `mmt.generate` run.

A `GenerationRequest` says what to draw: the mode, the instruments or the prompt (a file,
a `muspy.Music` or code rows) and where it is cut, how much to add, how to sample and
with which seed. `run(model, request)` builds the mode's prompt, calls the sampler
(`mmt.sampling.sample`) and returns a `Generation` that knows how to write itself.

The modes live in `MODES`, one `Mode` each (what it takes, how its prompt is built); a
new mode is added there and nowhere else: the command line's `--mode` choices, the
request's checks and the evaluation's mode names all read that table.

Lengths (`bars`, `beats`) count what is added after the prompt: for continuation, after
the prompt's cut; otherwise from the song's start. Bars follow the prompt's first time
signature (4/4 without one).
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mmt.config import SamplingParams
from mmt.constants import Field, RowType
from mmt.encoding import Encoding, encode
from mmt.errors import GenerationError

DEFAULT_BEATS_PER_BAR = 4.0


# ---------------------------------------------------------------------- prompts
def beats_per_bar(music) -> float:
    """Quarter-note beats per bar of a `muspy.Music`'s first time signature (4 without one)."""
    signatures = sorted(music.time_signatures, key=lambda ts: ts.time)
    if not signatures:
        return DEFAULT_BEATS_PER_BAR
    ts = signatures[0]
    if ts.numerator < 1 or ts.denominator < 1:
        return DEFAULT_BEATS_PER_BAR
    return ts.numerator * 4.0 / ts.denominator


def cut_codes(codes: np.ndarray, encoding: Encoding, n_beats: float | None) -> np.ndarray:
    """A song's rows without end-of-song and without the notes starting at or after `n_beats`.

    The header is kept whole (also instruments with no note before the cut).
    """
    codes = codes[codes[:, Field.TYPE] != RowType.END_OF_SONG]
    if n_beats is None:
        return codes
    cut = round(n_beats * encoding.resolution)
    is_note = codes[:, Field.TYPE] == RowType.NOTE
    onset = (codes[:, Field.BEAT] - 1) * encoding.resolution + codes[:, Field.POSITION] - 1
    return codes[~is_note | (onset < cut)]


def prompt_from_music(music, encoding: Encoding, n_beats: float | None = None,
                      n_bars: float | None = None) -> np.ndarray:
    """A generation prompt from a song: its first `n_beats` beats or `n_bars` bars.

    Bars use the song's first time signature (`beats_per_bar`; 4/4 without one). With
    neither limit, the whole song is kept.

    Returns:
        int64 codes: start-of-song, the instrument header (every instrument of the song,
        also those with no note before the cut), start-of-notes, the notes starting before
        the cut; no end-of-song.
    """
    if n_beats is not None and n_bars is not None:
        raise GenerationError("give n_beats or n_bars, not both")
    if n_bars is not None:
        n_beats = n_bars * beats_per_bar(music)
    if n_beats is not None and not n_beats > 0:
        raise GenerationError(f"the prompt must keep a positive number of beats, got {n_beats}")
    return cut_codes(encode(music, encoding), encoding, n_beats)


def instrument_prompt(instruments: Sequence[str | int], encoding: Encoding) -> np.ndarray:
    """Start-of-song, one row per instrument (names or GM programs; sorted, distinct), start-of-notes."""
    if len(instruments) == 0:
        raise GenerationError("instrument mode needs at least one instrument")
    codes = sorted({encoding.instrument_code(_as_program(i)) for i in instruments})
    rows = np.zeros((len(codes) + 2, 6), dtype=np.int64)
    rows[0, Field.TYPE] = RowType.START_OF_SONG
    rows[1:-1, Field.TYPE] = RowType.INSTRUMENT
    rows[1:-1, Field.INSTRUMENT] = codes
    rows[-1, Field.TYPE] = RowType.START_OF_NOTES
    return rows


def _as_program(value: str | int) -> str | int:
    """A GM program given as text ("40") becomes an int; names stay names."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


def start_of_song() -> np.ndarray:
    """The prompt of an unconditioned song: the start-of-song row alone."""
    rows = np.zeros((1, 6), dtype=np.int64)
    rows[0, Field.TYPE] = RowType.START_OF_SONG
    return rows


# ---------------------------------------------------------------------- modes
@dataclass(frozen=True)
class Prompt:
    """A mode's prompt: the rows to continue, where the new music starts, the bar length.

    Attributes:
        codes: int64 rows (start-of-song, header, maybe start-of-notes and notes).
        start_beats: the beat where new notes begin (the prompt's cut; 0 without notes).
        beats_per_bar: bar length in quarter-note beats, for lengths in bars.
        music: the song the prompt was cut from, when it came from one.
    """

    codes: np.ndarray
    start_beats: float = 0.0
    beats_per_bar: float = DEFAULT_BEATS_PER_BAR
    music: object = None


@dataclass(frozen=True)
class Mode:
    """A generation mode: what a request of it takes, and how its prompt is built."""

    name: str
    help: str
    takes_instruments: bool
    takes_prompt: bool
    build: Callable[["GenerationRequest", Encoding], Prompt]


def _unconditioned(request: "GenerationRequest", encoding: Encoding) -> Prompt:
    return Prompt(start_of_song())


def _instrument(request: "GenerationRequest", encoding: Encoding) -> Prompt:
    try:
        return Prompt(instrument_prompt(request.instruments, encoding))
    except ValueError as error:  # an unknown instrument name or program
        raise GenerationError(str(error)) from None


def _continuation(request: "GenerationRequest", encoding: Encoding) -> Prompt:
    source = request.prompt
    if isinstance(source, np.ndarray):
        if request.prompt_bars is not None:
            raise GenerationError("a prompt of code rows has no time signature: cut it with prompt_beats")
        codes = cut_codes(np.asarray(source, dtype=np.int64), encoding, request.prompt_beats)
        start = request.prompt_beats if request.prompt_beats is not None else _end_beats(codes, encoding)
        return Prompt(codes, start)
    music = read_prompt(source)
    bar = beats_per_bar(music)
    beats = request.prompt_beats if request.prompt_bars is None else request.prompt_bars * bar
    codes = prompt_from_music(music, encoding, n_beats=beats)
    if not np.any(codes[:, Field.TYPE] == RowType.INSTRUMENT):
        raise GenerationError(f"{_describe(source)}: the prompt has no notes of an instrument this model knows")
    return Prompt(codes, beats if beats is not None else _end_beats(codes, encoding), bar, music)


def _end_beats(codes: np.ndarray, encoding: Encoding) -> float:
    """The beat after the last note onset of `codes` (0 without notes): where a whole song is continued."""
    notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
    if len(notes) == 0:
        return 0.0
    last = (notes[:, Field.BEAT] - 1) * encoding.resolution + notes[:, Field.POSITION] - 1
    return float(last.max() // encoding.resolution + 1)


def read_prompt(source):
    """A prompt given as a file path or a `muspy.Music`, as a `muspy.Music`."""
    if isinstance(source, (str, os.PathLike)):
        from mmt.io import read_music

        return read_music(source)
    return source


def _describe(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return "the prompt"


MODES: dict[str, Mode] = {mode.name: mode for mode in (
    Mode("unconditioned", "a song from nothing", False, False, _unconditioned),
    Mode("instrument", "a song for the given instruments", True, False, _instrument),
    Mode("continuation", "the continuation of a prompt cut after N beats or bars", False, True, _continuation),
)}


# ---------------------------------------------------------------------- the request
@dataclass(frozen=True, eq=False)
class GenerationRequest:
    """What to generate; checked when built, so a bad request fails before any model loads.

    Attributes:
        mode: a key of `MODES`.
        instruments: instrument mode: names or GM programs.
        prompt: continuation: a music file's path, a `muspy.Music`, or code rows.
        prompt_beats, prompt_bars: keep the prompt's first N beats / bars (None: all of it).
        beats, bars: the most music added after the prompt (None: until end-of-song or
            `max_new_rows`).
        n_samples: samples drawn together as one batch.
        sampling: temperature, top-k and top-p.
        seed: the random seed (None: a random one, recorded in the `Generation`).
        max_new_rows: the most rows added per sample.
    """

    mode: str = "unconditioned"
    instruments: tuple = ()
    prompt: object = None
    prompt_beats: float | None = None
    prompt_bars: float | None = None
    beats: float | None = None
    bars: float | None = None
    n_samples: int = 1
    sampling: SamplingParams = field(default_factory=SamplingParams)
    seed: int | None = None
    max_new_rows: int = 1024

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise GenerationError(f"unknown mode {self.mode!r}; modes are {', '.join(MODES)}")
        mode = MODES[self.mode]
        if isinstance(self.instruments, (str, int)):
            object.__setattr__(self, "instruments", (self.instruments,))
        object.__setattr__(self, "instruments", tuple(self.instruments or ()))
        if mode.takes_instruments and not self.instruments:
            raise GenerationError(f"mode {self.mode} needs instruments (names or GM programs)")
        if not mode.takes_instruments and self.instruments:
            raise GenerationError(f"instruments belong to the instrument mode, not {self.mode}")
        given_prompt = self.prompt is not None or self.prompt_beats is not None or self.prompt_bars is not None
        if mode.takes_prompt and self.prompt is None:
            raise GenerationError(f"mode {self.mode} needs a prompt (a music file)")
        if not mode.takes_prompt and given_prompt:
            raise GenerationError(f"a prompt and its cut belong to the continuation mode, not {self.mode}")
        for a, b in (("prompt_beats", "prompt_bars"), ("beats", "bars")):
            if getattr(self, a) is not None and getattr(self, b) is not None:
                raise GenerationError(f"give {a} or {b}, not both")
        for name in ("prompt_beats", "prompt_bars", "beats", "bars"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value <= 0):
                raise GenerationError(f"{name} must be a positive number, got {value!r}")
        for name in ("n_samples", "max_new_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GenerationError(f"{name} must be an integer >= 1, got {value!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or not 0 <= self.seed < 2**63):
            raise GenerationError(f"seed must be an integer in 0 .. 2**63-1, got {self.seed!r}")
        if not isinstance(self.sampling, SamplingParams):
            raise GenerationError(f"sampling must be a SamplingParams, got {type(self.sampling).__name__}")

    @classmethod
    def build(cls, *, mode: str | None = None, temperature=None, top_k=None, top_p=None,
              sampling: SamplingParams | None = None, **fields) -> "GenerationRequest":
        """A request from keyword arguments: the mode follows from what is given when not named
        (instruments: instrument mode; a prompt: continuation), and `temperature`, `top_k`,
        `top_p` override `sampling` (default: `SamplingParams()`)."""
        if mode is None:
            mode = ("instrument" if fields.get("instruments") else
                    "continuation" if fields.get("prompt") is not None else "unconditioned")
        sampling = sampling or SamplingParams()
        overrides = {k: v for k, v in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p))
                     if v is not None}
        try:
            sampling = replace(sampling, **overrides)
        except ValueError as error:
            raise GenerationError(str(error)) from None
        return cls(mode=mode, sampling=sampling, **fields)

    def settings(self) -> dict:
        """The request as JSON-ready values (what `settings.json` records)."""
        prompt = self.prompt
        if prompt is not None and not isinstance(prompt, (str, os.PathLike)):
            prompt = f"<{type(prompt).__name__}>"
        return {"mode": self.mode, "instruments": [str(i) for i in self.instruments],
                "prompt": None if prompt is None else str(prompt), "prompt_beats": self.prompt_beats,
                "prompt_bars": self.prompt_bars, "beats": self.beats, "bars": self.bars,
                "n_samples": self.n_samples, "sampling": self.sampling.to_dict(), "seed": self.seed,
                "max_new_rows": self.max_new_rows}


@dataclass(frozen=True)
class Generation:
    """What `run` drew: the samples, the prompt they continue, and the request with its seed."""

    request: GenerationRequest
    prompt: Prompt
    samples: list[np.ndarray]
    encoding: Encoding

    def write(self, out_dir: str | os.PathLike, audio: bool = False, first: int = 0) -> list[dict[str, Path]]:
        """Write sample k as `<mode>-<k>` MIDI, CSV, piano roll (and WAV), k from `first`; returns the paths."""
        from mmt.io import write_codes

        return [write_codes(out_dir, f"{self.request.mode}-{first + k:03d}", codes, self.encoding, audio=audio)
                for k, codes in enumerate(self.samples)]


def run(model, request: GenerationRequest, *, device=None, progress: bool = False) -> Generation:
    """Build the request's prompt, sample, and return the `Generation` (its request has the seed used)."""
    from mmt.sampling import sample

    encoding: Encoding = model.encoding
    prompt = MODES[request.mode].build(request, encoding)
    if request.seed is None:
        request = replace(request, seed=random.SystemRandom().randrange(2**63))
    length = request.beats if request.bars is None else request.bars * prompt.beats_per_bar
    samples = sample(model, prompt.codes, n_samples=request.n_samples, params=request.sampling,
                     seed=request.seed, max_new_rows=request.max_new_rows,
                     max_beats=None if length is None else prompt.start_beats + length,
                     device=device, progress=progress)
    return Generation(request, prompt, samples, encoding)


def generate(model, request: GenerationRequest | None = None, /, *, device=None, progress: bool = False,
             **fields) -> list[np.ndarray]:
    """Sample songs: `generate(model, request)` or `generate(model, **request_fields)`.

    Keyword fields are those of `GenerationRequest` plus `temperature`, `top_k`, `top_p`
    (see `GenerationRequest.build`), e.g.
    `generate(model, instruments=["violin", "cello"], bars=16, top_p=0.9, seed=0)`.

    Returns:
        one int64 code array (rows x 6) per sample, starting with the prompt.
    """
    if request is None:
        request = GenerationRequest.build(**fields)
    elif fields:
        raise GenerationError("give a GenerationRequest or its fields as keywords, not both")
    return run(model, request, device=device, progress=progress).samples
