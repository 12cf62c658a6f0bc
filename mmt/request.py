"""One generation request, one path: what the CLI, evaluation, the demo and `mmt.generate` run.

A `GenerationRequest` says what to draw: the mode, the instruments or the prompt (a file,
a `muspy.Music` or code rows) and where it is cut, how much to add, how to sample and
with which seed. `run(model, request)` builds the mode's prompt, calls the sampler
(`mmt.sampling.sample`) and returns a `Generation` that knows how to write itself.

The modes live in `MODES`, one `Mode` each (what it takes, how its prompt is built); a
new mode is added there and nowhere else: the command line's `--mode` choices, the
request's checks and the evaluation's mode names all read that table.

Editing is one gesture: regions of parts x bars of a piece rewritten, every other note kept
as it was (`mmt.edit`). The edit mode takes any regions; infill (every part over some bars),
accompaniment (new parts over the whole piece beside kept ones) and the continuation of a
music file cut after whole bars are presets of it, on the same path: each builds one region.

Lengths (`bars`, `beats`) count what is added after the prompt: for continuation, after
the prompt's cut; otherwise from the song's start. Bars follow the prompt's first time
signature (4/4 without one).
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

import numpy as np

from mmt.config import ConfigError, SamplingParams, check_arguments
from mmt.constants import INSTRUMENT_REGISTERS, Field, RowType
from mmt.constraints import PartConstraints, measure, request_constraints
from mmt.encoding import Encoding, encode, onsets
from mmt.edit import ALL_PARTS, Region, RegionPlan, bars_to_beats, drawn_notes, end_of_music, merge, parse_region
from mmt.edit import cut_music, instrument_of, piece_bars, plan_region
from mmt.errors import GenerationError, GenerationWarning
from mmt.files import sha256_file
from mmt.meter import Meter

DEFAULT_BEATS_PER_BAR = 4.0


# ---------------------------------------------------------------------- prompts
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

    Bars follow the song's time signatures (`bars_to_beats`; 4/4 without one). With
    neither limit, the whole song is kept.

    Returns:
        int64 codes: start-of-song, the instrument header (every instrument of the song,
        also those with no note before the cut), start-of-notes, the notes starting before
        the cut; no end-of-song.
    """
    if n_beats is not None and n_bars is not None:
        raise GenerationError("give n_beats or n_bars, not both")
    if n_bars is not None:
        n_beats = bars_to_beats(Meter.from_music(music), n_bars)
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
        beats_per_bar: bar length in quarter-note beats at the cut, for lengths in bars.
        music: the song the prompt was cut from, when it came from one.
        meter: its time signatures and tempos, which the generated songs keep.
        controls: the given notes the model never writes (accompaniment: the kept
            instruments; infill: every note after the gap), as control rows; the sampler
            inserts each when its time comes. None: none.
        end_beats: where the new music must end (an edit: its region's end); None:
            `start_beats` plus the request's length.
        plan: an edit's region as the sampler gets it (`mmt.edit.RegionPlan`); the written
            piece is then `music` with the region rewritten (`mmt.edit.merge`). None: not an edit.
        regions: an edit's regions after the first, applied to each sample in turn.
    """

    codes: np.ndarray
    start_beats: float = 0.0
    beats_per_bar: float = DEFAULT_BEATS_PER_BAR
    music: object = None
    meter: Meter | None = None
    controls: np.ndarray | None = None
    end_beats: float | None = None
    plan: RegionPlan | None = None
    regions: tuple[Region, ...] = ()

    @property
    def n_notes(self) -> int:
        """The prompt's own notes (a continuation's opening, an infill's notes before the gap), controls aside."""
        return int((self.codes[:, Field.TYPE] == RowType.NOTE).sum())


def edit_prompt(music, regions: Sequence[Region], encoding: Encoding) -> Prompt:
    """The prompt of an edit of `music`: its first region planned for the sampler (`plan_region`)."""
    plan = plan_region(music, regions[0], encoding)
    meter = Meter.from_music(music)
    return Prompt(plan.prompt, plan.start_beats, meter.beats_per_bar(plan.start_beats), music, meter, plan.controls,
                  plan.end_beats, plan, tuple(regions[1:]))


@dataclass(frozen=True)
class Mode:
    """A generation mode: what a request of it takes, and how its prompt is built.

    `needs` and `takes` name the request fields (of `REQUEST_INPUTS`) the mode must have
    and may have; a request giving a field its mode does not take is refused, naming the
    modes that take it. `balance` and `quota` are the mode's defaults for the instrument
    balance and the notes each instrument gets (see `mmt.sampling.sample`): where the user
    chose the instruments (or the prompt did), each should get a real part.
    """

    name: str
    help: str
    build: Callable[["GenerationRequest", Encoding], Prompt]
    needs: tuple[str, ...] = ()
    takes: tuple[str, ...] = ()
    balance: float = 0.0
    quota: int = 0

    @property
    def takes_instruments(self) -> bool:
        return "instruments" in self.takes

    @property
    def takes_prompt(self) -> bool:
        return "prompt" in self.takes

    @property
    def cuts_prompt(self) -> bool:
        """The prompt is a song's opening, cut after N beats or bars (a continuation)."""
        return "prompt_beats" in self.takes


def _unconditioned(request: "GenerationRequest", encoding: Encoding) -> Prompt:
    return Prompt(start_of_song())


def _instrument(request: "GenerationRequest", encoding: Encoding) -> Prompt:
    try:
        return Prompt(instrument_prompt(request.instruments, encoding))
    except ValueError as error:  # an unknown instrument name or program
        raise GenerationError(str(error)) from None


def _continuation(request: "GenerationRequest", encoding: Encoding) -> Prompt:
    """A music file or `muspy.Music` cut after whole bars (or not cut) is the edit `all@P+1-P+N` of its
    first P bars (P: all its bars when not cut; N: `bars`); code rows and cuts or lengths in beats
    are continued from their cut as they stand."""
    source = request.prompt
    if not isinstance(source, np.ndarray) and request.prompt_beats is None and request.beats is None:
        music, meter, _, _ = _given_song(request, encoding)
        whole = piece_bars(meter, end_of_music(music, encoding.resolution))
        kept = whole if request.prompt_bars is None else request.prompt_bars
        if kept != int(kept):
            raise GenerationError(f"prompt_bars must be whole bars to continue a piece, got {kept:g}",
                                  argument="prompt_bars")
        if kept > whole:
            warnings.warn(f"{_describe(source)}: the prompt is {_bars(whole)} long, shorter than the {int(kept)} asked "
                          f"for; the new music starts at bar {int(kept) + 1}", GenerationWarning, stacklevel=2)
        cut = cut_music(music, bars_to_beats(meter, kept))
        if not any(t.notes for t in cut.tracks):
            raise GenerationError(f"{_describe(source)}: the prompt has no notes before its cut, so there is "
                                  "nothing to continue")
        bars = DEFAULT_BARS if request.bars is None else request.bars
        if bars != int(bars):
            raise GenerationError(f"bars must be whole bars to continue a piece, got {bars:g}", argument="bars")
        return edit_prompt(cut, [Region((ALL_PARTS,), int(kept) + 1, int(kept + bars))], encoding)
    if isinstance(source, np.ndarray):
        if request.prompt_bars is not None:
            raise GenerationError("a prompt of code rows has no time signature: cut it with prompt_beats")
        codes = cut_codes(np.asarray(source, dtype=np.int64), encoding, request.prompt_beats)
        start = request.prompt_beats if request.prompt_beats is not None else _end_beats(codes, encoding)
        return Prompt(codes, start)
    music = read_prompt(source)
    meter = Meter.from_music(music)
    beats = request.prompt_beats if request.prompt_bars is None else bars_to_beats(meter, request.prompt_bars)
    song = encode(music, encoding)
    codes = cut_codes(song, encoding, beats)
    if not np.any(codes[:, Field.TYPE] == RowType.NOTE):
        raise GenerationError(f"{_describe(source)}: the prompt has no notes of an instrument this model knows "
                              "before its cut, so there is nothing to continue")
    end = _end_beats(song, encoding)
    if beats is not None and beats > end:
        warnings.warn(f"{_describe(source)}: the prompt is {end:g} beats long, shorter than the {beats:g} asked "
                      f"for; the new music starts at beat {beats:g}", GenerationWarning, stacklevel=2)
    start = beats if beats is not None else end
    return Prompt(codes, start, meter.beats_per_bar(start), music, meter)


def _given_song(request: "GenerationRequest", encoding: Encoding):
    """(music, meter, its rows, its note rows) of a request's prompt file or `muspy.Music`."""
    if isinstance(request.prompt, np.ndarray):
        raise GenerationError(f"mode {request.mode} needs the prompt as a music file or muspy.Music "
                              "(its meter places the bars), not code rows")
    music = read_prompt(request.prompt)
    codes = encode(music, encoding)
    notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
    if len(notes) == 0:
        raise GenerationError(f"{_describe(request.prompt)}: the prompt has no notes of an instrument this model knows")
    return music, Meter.from_music(music), codes, notes


def _codes_of(names: Sequence[str | int], encoding: Encoding) -> list[int]:
    try:
        return sorted({encoding.instrument_code(_as_program(name)) for name in names})
    except ValueError as error:  # an unknown instrument name or program
        raise GenerationError(str(error)) from None


def _accompaniment(request: "GenerationRequest", encoding: Encoding) -> Prompt:
    """The edit `W@1-` (W: the parts to write) of the piece reduced to its kept parts K: every bar
    of W written beside K, which stays note for note. A length cuts the piece first."""
    music, meter, _, notes = _given_song(request, encoding)
    played = np.unique(notes[:, Field.INSTRUMENT]).tolist()
    names = {code: encoding.instruments[code - 1] for code in played}
    keep = _codes_of(request.keep, encoding)
    missing = [encoding.instruments[code - 1] for code in keep if code not in played]
    if missing:
        raise GenerationError(f"{_describe(request.prompt)}: no notes of the kept instrument(s) {', '.join(missing)}; "
                              f"it plays {', '.join(names.values())}")
    write = _codes_of(request.instruments, encoding) if request.instruments else [c for c in played if c not in keep]
    both = [encoding.instruments[code - 1] for code in write if code in keep]
    if both:
        raise GenerationError(f"{', '.join(both)}: an instrument is either kept (--keep) or written (--instruments)")
    if not write:
        raise GenerationError(f"{_describe(request.prompt)}: every instrument is kept; name the parts to write "
                              "with instruments (--instruments)")
    kept = copy.deepcopy(music)
    kept.tracks = [t for t in kept.tracks if instrument_of(t, encoding) in keep]
    last = None
    if request.length_given:
        limit = request.beats if request.bars is None else bars_to_beats(meter, request.bars)
        kept = cut_music(kept, limit)
        last = max(piece_bars(meter, limit), 1)
    region = Region(tuple(encoding.instruments[c - 1] for c in write), 1, last)
    return edit_prompt(kept, [region], encoding)


def _infill(request: "GenerationRequest", encoding: Encoding) -> Prompt:
    """The edit `all@FIRST-LAST` of the prompt's bars to fill."""
    music, meter, _, notes = _given_song(request, encoding)
    first, last = request.bars_to_fill
    start = bars_to_beats(meter, first - 1)
    length = _end_of_notes(notes, encoding)
    if start >= length:
        raise _input_error(f"{_describe(request.prompt)}: bar {first} starts at beat {start:g}, after the "
                           f"music ends (beat {length:g}); ", "bars_to_fill", " must lie inside it")
    return edit_prompt(music, [Region((ALL_PARTS,), first, last)], encoding)


def _edit(request: "GenerationRequest", encoding: Encoding) -> Prompt:
    """The request's regions of its prompt piece, the first planned for the sampler."""
    music, _, _, _ = _given_song(request, encoding)
    return edit_prompt(music, request.edit, encoding)


def _bars(n: int) -> str:
    return f"{n} bar" if n == 1 else f"{n} bars"


def _end_of_notes(notes: np.ndarray, encoding: Encoding) -> float:
    """The beat where the last of `notes` (note or control rows) stops sounding."""
    durations = np.asarray(encoding.known_durations)[notes[:, Field.DURATION] - 1]
    return float((onsets(notes, encoding.resolution) + durations).max() / encoding.resolution)


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


DEFAULT_BARS = 32.0
DEFAULT_BALANCE = 1.0
DEFAULT_QUOTA = 8  # new notes per instrument: enough to count as a part in 16 bars

LENGTH = ("beats", "bars")
MODES: dict[str, Mode] = {mode.name: mode for mode in (
    Mode("unconditioned", "a song from nothing", _unconditioned, (), LENGTH),
    Mode("instrument", "a song for the given instruments", _instrument, ("instruments",), ("instruments", *LENGTH),
         DEFAULT_BALANCE, DEFAULT_QUOTA),
    Mode("continuation", "the continuation of a prompt cut after N beats or bars", _continuation, ("prompt",),
         ("prompt", "prompt_beats", "prompt_bars", *LENGTH), DEFAULT_BALANCE, DEFAULT_QUOTA),
    Mode("accompaniment", "new parts for a prompt whose --keep instruments are kept note for note "
         "(--instruments: the parts to write; default: the prompt's others)", _accompaniment, ("prompt", "keep"),
         ("prompt", "keep", "instruments", *LENGTH), DEFAULT_BALANCE, DEFAULT_QUOTA),
    Mode("infill", "the prompt's --bars-to-fill rewritten, every other note kept (the edit all@FIRST-LAST)", _infill,
         ("prompt", "bars_to_fill"), ("prompt", "bars_to_fill")),
    Mode("edit", "the prompt's --edit regions (PARTS@BARS: cello@5-8, flute@1-, all@9-12) rewritten, every other "
         "note kept as it was", _edit, ("prompt", "edit"), ("prompt", "edit"), DEFAULT_BALANCE, DEFAULT_QUOTA),
)}

REQUEST_INPUTS: dict[str, str] = {
    "instruments": "instruments (names or GM programs)", "prompt": "a prompt (a music file)",
    "prompt_beats": "prompt_beats (the prompt's cut)", "prompt_bars": "prompt_bars (the prompt's cut)",
    "keep": "the instruments to keep (keep)", "bars_to_fill": "the bars to fill (bars_to_fill)",
    "edit": "regions to rewrite (edit)",
    "beats": "a length in beats", "bars": "a length in bars",
}
"""The request fields a mode needs or takes, and how an error names them (the field's name last)."""


def _input_error(before: str, name: str, after: str = "") -> GenerationError:
    """The error `before` + how `REQUEST_INPUTS` names field `name` + `after`, knowing where it names the field."""
    text = REQUEST_INPUTS[name]
    return GenerationError(before + text + after, argument=name, at=len(before) + text.rindex(name))


def parse_bars(value) -> tuple[int, int]:
    """Bars to fill as (first, last), 1-based and inclusive, from "9-12", "9" or (9, 12)."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", value)
        if not match:
            raise GenerationError(f"bars_to_fill must look like 9-12 (first and last bar), got {value!r}",
                                  argument="bars_to_fill")
        value = (int(match.group(1)), int(match.group(2) or match.group(1)))
    try:
        first, last = value
    except (TypeError, ValueError):
        raise GenerationError(f"bars_to_fill must be a first and a last bar, got {value!r}",
                              argument="bars_to_fill") from None
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in (first, last)) \
            or not 1 <= first <= last:
        raise GenerationError(f"bars_to_fill must be whole bars with 1 <= first <= last, got {value!r}",
                              argument="bars_to_fill")
    return int(first), int(last)


# ---------------------------------------------------------------------- the request
@dataclass(frozen=True, eq=False)
class GenerationRequest:
    """What to generate; checked when built, so a bad request fails before any model loads.

    Attributes:
        mode: a key of `MODES`.
        instruments: instrument mode: names or GM programs; accompaniment: the parts to
            write (default: the prompt's instruments not kept).
        prompt: continuation: a music file's path, a `muspy.Music`, or code rows;
            accompaniment and infill: a music file's path or a `muspy.Music`.
        keep: accompaniment: the instruments whose notes are kept exactly (names or programs).
        bars_to_fill: infill: the first and last bar to rewrite (1-based, inclusive; bars
            follow the prompt's meter, a pickup is no bar), e.g. (9, 12) or "9-12".
        edit: edit mode: the regions to rewrite, each `PARTS@BARS` text ("cello@5-8",
            "flute@1-", "all@9-12"), a `mmt.edit.Region` or (parts, first bar, last bar);
            applied in turn.
        prompt_beats, prompt_bars: keep the prompt's first N beats / bars (None: all of it).
        beats, bars: the most music added after the prompt (neither: `DEFAULT_BARS` bars).
        n_samples: samples drawn together as one batch.
        sampling: `SamplingParams` fields that override the model's sampling defaults
            (`model.sampling`), e.g. {"top_p": 0.9}.
        balance: how strongly instruments that have played least are favoured, 0 (off) to 10
            (None: the mode's default).
        quota: new notes each instrument gets, on a schedule over the song's length (None:
            the mode's default; 0: off).
        seed: the random seed (None: a random one, recorded in the `Generation`).
        max_new_rows: the most rows added per sample.
        constraints: `mmt.constraints.PartConstraints` fields that keep the written parts to
            their instruments (defaults: usual ranges, no crossing, `key` "source": the
            source's key signature or estimated key, none without a source), e.g.
            {"range_widen": 3, "no_crossing": False, "key": "D:major", "key_strength": 1}.
    """

    mode: str = "unconditioned"
    instruments: tuple = ()
    prompt: object = None
    prompt_beats: float | None = None
    prompt_bars: float | None = None
    keep: tuple = ()
    bars_to_fill: tuple | str | None = None
    edit: tuple = ()
    beats: float | None = None
    bars: float | None = None
    n_samples: int = 1
    sampling: Mapping = field(default_factory=dict)
    balance: float | None = None
    quota: int | None = None
    seed: int | None = None
    max_new_rows: int = 1024
    constraints: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise GenerationError(f"unknown mode {self.mode!r}; modes are {', '.join(MODES)}")
        mode = MODES[self.mode]
        for name in ("instruments", "keep"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, (str, int)) else tuple(value or ()))
        if self.bars_to_fill is not None:
            object.__setattr__(self, "bars_to_fill", parse_bars(self.bars_to_fill))
        edit = (self.edit,) if isinstance(self.edit, (str, Region)) else tuple(self.edit or ())
        object.__setattr__(self, "edit", tuple(parse_region(region) for region in edit))
        for name in REQUEST_INPUTS:
            value = getattr(self, name)
            given = value is not None and not (isinstance(value, tuple) and len(value) == 0)
            if name in mode.needs and not given:
                raise _input_error(f"mode {self.mode} needs ", name)
            if given and name not in mode.takes:
                owners = [m.name for m in MODES.values() if name in m.takes]
                raise GenerationError(f"{name} is for the {' and '.join(owners)} mode{'s' if len(owners) > 1 else ''}, "
                                      f"not {self.mode}", argument=name)
        for a, b in (("prompt_beats", "prompt_bars"), ("beats", "bars")):
            if getattr(self, a) is not None and getattr(self, b) is not None:
                raise GenerationError(f"give {a} or {b}, not both")
        check_arguments(**{name: getattr(self, name) for name in (
            "prompt_beats", "prompt_bars", "beats", "bars", "n_samples", "max_new_rows", "seed", "balance", "quota")})
        if not isinstance(self.sampling, Mapping):
            raise GenerationError(f"sampling must map SamplingParams fields to values, got {self.sampling!r}")
        unknown = sorted(set(self.sampling) - set(SamplingParams.DEFAULTS))
        if unknown:
            raise GenerationError(f"unknown sampling setting(s) {', '.join(map(str, unknown))}; "
                                  f"settings are {', '.join(SamplingParams.DEFAULTS)}")
        try:
            SamplingParams(**self.sampling)
        except ConfigError as error:
            raise GenerationError(str(error), argument=error.argument) from None
        object.__setattr__(self, "sampling", MappingProxyType(dict(self.sampling)))
        if not isinstance(self.constraints, Mapping):
            raise GenerationError(f"constraints must map PartConstraints fields to values, got {self.constraints!r}")
        request_constraints(self.constraints)  # checked now ("source", the default key, resolves in `run`)
        object.__setattr__(self, "constraints", MappingProxyType(dict(self.constraints)))

    def sampling_params(self, defaults: SamplingParams) -> SamplingParams:
        """`defaults` (a model's) with this request's sampling settings in their place."""
        return replace(defaults, **self.sampling)

    @property
    def length_given(self) -> bool:
        return self.beats is not None or self.bars is not None

    @classmethod
    def build(cls, *, mode: str | None = None, sampling: Mapping | None = None, **fields) -> "GenerationRequest":
        """A request from keyword arguments: the mode follows from what is given when not named
        (keep: accompaniment; bars_to_fill: infill; instruments: instrument mode; a prompt:
        continuation), and `temperature`, `top_k`,
        `top_p`, `repetition_penalty` (when not None) join `sampling`."""
        if mode is None:
            mode = ("edit" if fields.get("edit") else
                    "accompaniment" if fields.get("keep") else
                    "infill" if fields.get("bars_to_fill") is not None else
                    "instrument" if fields.get("instruments") else
                    "continuation" if fields.get("prompt") is not None else "unconditioned")
        sampling = dict(sampling or {})
        for name in SamplingParams.DEFAULTS:
            value = fields.pop(name, None)
            if value is not None:
                sampling[name] = value
        return cls(mode=mode, sampling=sampling, **fields)

    def settings(self) -> dict:
        """The request as JSON-ready values (what `settings.json` records)."""
        prompt = self.prompt
        if prompt is not None and not isinstance(prompt, (str, os.PathLike)):
            prompt = f"<{type(prompt).__name__}>"
        return {"mode": self.mode, "instruments": [str(i) for i in self.instruments],
                "prompt": None if prompt is None else str(prompt), "prompt_beats": self.prompt_beats,
                "prompt_bars": self.prompt_bars, "keep": [str(i) for i in self.keep],
                "bars_to_fill": None if self.bars_to_fill is None else list(self.bars_to_fill),
                "edit": [str(region) for region in self.edit],
                "beats": self.beats, "bars": self.bars,
                "n_samples": self.n_samples, "sampling": _plain(self.sampling), "balance": self.balance,
                "quota": self.quota, "seed": self.seed, "max_new_rows": self.max_new_rows,
                "constraints": _plain(self.constraints)}


def _plain(value):
    """Read-only mappings (as frozen settings hold them) as plain dicts, for JSON."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Generation:
    """What `run` drew: the samples, the prompt they continue, and how (the request with its
    seed, the sampling settings and balance actually used)."""

    request: GenerationRequest
    prompt: Prompt
    samples: list[np.ndarray]
    encoding: Encoding
    sampling: SamplingParams
    balance: float
    quota: int
    max_beats: float
    constraints: PartConstraints | None = None
    met: tuple = ()  # per sample, what it met of the constraints (`mmt.constraints.measure`)
    pieces: list | None = None   # an edit's written pieces (`mmt.edit.merge`), one per sample
    weights_sha256: str | None = None
    prompt_sha256: str | None = None

    def settings(self, model_name: str | None = None) -> dict:
        """Everything needed to draw these samples again (what `settings.json` records), with the
        SHA-256 of the model's weights file and of the prompt file (None: a model built in code,
        a prompt that is no file), and the bars asked for beside each sample's (`bars_written`)."""
        from mmt import __version__

        anticipation = None if self.prompt.controls is None else (self.encoding.anticipation or 0.0)
        return {**self.request.settings(), "sampling_used": self.sampling.to_dict(), "balance_used": self.balance,
                "quota_used": self.quota, "anticipation_beats": anticipation,
                "prompt_ends_at_beat": self.prompt.start_beats, "max_beats": self.max_beats,
                "constraints_used": None if self.constraints is None else self.constraints.to_dict(),
                "constraints_met": list(self.met),
                "bars_asked": self.bars_asked, "sample_bars": self.bars_written(),
                "model": model_name, "weights_sha256": self.weights_sha256, "prompt_sha256": self.prompt_sha256,
                "mmt_version": __version__}

    @property
    def bars_asked(self) -> float:
        """The bars of new music asked for: from where new notes begin to `max_beats` (2 decimals)."""
        return self._bars(self.max_beats)

    def bars_written(self) -> list[float]:
        """Per sample, the bars from where new notes begin to the end of its last note, given notes
        (control rows) aside (2 decimals; 0: no note after the prompt)."""
        return [self._bars(self._end_of_music(codes)) for codes in self.samples]

    def shortfall(self, k: int) -> str | None:
        """Why sample `k` stops before the last bar asked, e.g. "ends after 8.67 of the 16 bars asked
        (the model ended the song at beat 48)"; None when its music reaches that bar."""
        codes = self.samples[k]
        end = self._end_of_music(codes)
        written, asked = self._bars(end), self.bars_asked
        if written > max(asked - 1, 0):
            return None
        why = (f"the model ended the song at beat {end:g}"
               if len(codes) and codes[-1, Field.TYPE] == RowType.END_OF_SONG else
               f"cut at {self.request.max_new_rows} new rows, max_new_rows")
        return f"ends after {written:g} of the {asked:g} bars asked ({why})"

    def _end_of_music(self, codes: np.ndarray) -> float:
        """The beat where a sample's last note (not a given control) stops sounding, or where new notes begin."""
        notes = codes[codes[:, Field.TYPE] == RowType.NOTE]
        return max(_end_of_notes(notes, self.encoding) if len(notes) else 0.0, self.prompt.start_beats)

    def _bars(self, end_beats: float) -> float:
        """Bars from the new music's start to `end_beats`, of the prompt's bar length at its cut (as `run`
        counts the bars asked)."""
        return round((end_beats - self.prompt.start_beats) / self.prompt.beats_per_bar, 2)

    def write(self, out_dir: str | os.PathLike, audio: bool = False, overwrite: bool = False,
              model_name: str | None = None) -> list[dict[str, Path]]:
        """Write each sample as `<mode>-<k>` MIDI, CSV, piano roll (and WAV); returns the paths.

        Numbers k continue after the samples already in `out_dir` (nothing is overwritten)
        unless `overwrite`, which starts again at 000. `settings.json` in `out_dir` lists
        every run written there with its settings and the names of its samples.
        """
        from mmt.files import write_text_atomic
        from mmt.io import write_codes

        out_dir = Path(out_dir)
        settings_path = out_dir / SETTINGS_FILE
        runs = [] if overwrite else _read_runs(settings_path)
        first = 0 if overwrite else _next_index(out_dir, self.request.mode)
        stems = [f"{self.request.mode}-{first + k:03d}" for k in range(len(self.samples))]
        prompt_end = self.prompt.start_beats if self.prompt.start_beats > 0 else None
        keys = _key_signatures(self.prompt.music, self.encoding.resolution)
        pieces = self.pieces or [None] * len(self.samples)
        paths = [write_codes(out_dir, stem, codes, self.encoding, audio=audio, prompt_end=prompt_end,
                             meter=self.prompt.meter, key_signatures=keys, given=self._given(codes), music=piece,
                             given_keys=None if piece is None else _kept_keys(self.prompt.music, piece))
                 for stem, codes, piece in zip(stems, self.samples, pieces)]
        runs.append({**self.settings(model_name), "samples": stems})
        write_text_atomic(settings_path, json.dumps(runs, indent=1) + "\n")
        return paths


    def _given(self, codes: np.ndarray) -> np.ndarray | None:
        """The rows of a sample's kept notes where some were given (the prompt's notes and the controls:
        an infill keeps both), drawn pale on its piano roll; None otherwise."""
        if self.prompt.controls is None:
            return None
        kept = self.prompt.codes[self.prompt.codes[:, Field.TYPE] == RowType.NOTE]
        return np.vstack([kept, codes[codes[:, Field.TYPE] == RowType.CONTROL]])


SETTINGS_FILE = "settings.json"


def _kept_keys(source, piece) -> set:
    """(track name, tick, pitch) of the notes of an edited `piece` that come from `source` (drawn pale)."""
    ours = {(note.time, note.pitch, note.duration, note.velocity) for track in source.tracks for note in track.notes}
    return {(track.name, note.time, note.pitch) for track in piece.tracks for note in track.notes
            if (note.time, note.pitch, note.duration, note.velocity) in ours}


def _key_signatures(music, resolution: int) -> list:
    """The key signatures of `music` (none without one) with times at `resolution` ticks per beat."""
    keys = []
    for key in getattr(music, "key_signatures", None) or []:
        key = copy.deepcopy(key)
        key.time = round(key.time * resolution / (music.resolution or 1))
        keys.append(key)
    return keys


def _next_index(out_dir: Path, mode: str) -> int:
    """One past the highest k of the `<mode>-<k>.*` files in `out_dir` (0 when there are none)."""
    taken = [int(m.group(1)) for p in out_dir.glob(f"{mode}-*") if (m := re.fullmatch(rf"{mode}-(\d+)\.\w+", p.name))]
    return max(taken, default=-1) + 1


def _read_runs(path: Path) -> list:
    """The runs an earlier `Generation.write` recorded in `settings.json` (none when missing or unreadable)."""
    try:
        runs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return runs if isinstance(runs, list) else []


def note_ranges(model) -> dict[str, tuple[int, int]]:
    """The pitch range each instrument's new notes keep to: the model's own (its training data's,
    `model.pitch_ranges`), and for an instrument its data lacked, that instrument's sounding range
    (`mmt.constants.INSTRUMENT_REGISTERS`: a tuba asked of a model trained without tubas plays
    E1-D4). None at all for a model without ranges (or with them switched off: `{}`)."""
    own = dict(getattr(model, "pitch_ranges", None) or {})
    if not own:
        return {}
    known = set(model.encoding.instruments)
    return {**{name: bounds for name, bounds in INSTRUMENT_REGISTERS.items() if name in known}, **own}


def run(model, request: GenerationRequest, *, prompt: Prompt | None = None, device=None,
        progress: bool = False) -> Generation:
    """Build the request's prompt (unless given), sample, and return the `Generation` (its request
    has the seed used).

    The sampling settings are the model's defaults (`model.sampling`) with the request's
    in their place; new notes keep to the instruments' pitch ranges (`note_ranges`: the
    model's, or the instrument's register where its data had none) and to the request's
    `constraints` (`mmt.constraints.request_constraints`; what each sample met is measured into
    the `Generation`) and, in a continuation or
    infill, start at or after the prompt's
    cut. The prompt's controls (accompaniment, infill) are fed an anticipation interval
    ahead of their time: the model's own (`encoding.anticipation`), or 0 for a model
    trained without controls, which a `GenerationWarning` says.
    """
    from mmt.sampling import sample

    encoding: Encoding = model.encoding
    mode = MODES[request.mode]
    prompt = prompt if prompt is not None else mode.build(request, encoding)
    if request.seed is None:
        request = replace(request, seed=random.SystemRandom().randrange(2**63))
    params = request.sampling_params(getattr(model, "sampling", SamplingParams()))
    balance = mode.balance if request.balance is None else request.balance
    quota = mode.quota if request.quota is None else request.quota
    length = request.beats if request.bars is None else request.bars * prompt.beats_per_bar
    if length is None:
        length = DEFAULT_BARS * prompt.beats_per_bar
    max_beats = prompt.start_beats + length if prompt.end_beats is None else prompt.end_beats
    if prompt.controls is not None and not encoding.knows_controls:
        warnings.warn(f"mode {request.mode}: this model was trained without control rows, so the kept notes are "
                      "fed at their own time (anticipation 0): it sees the kept part's past only",
                      GenerationWarning, stacklevel=2)
    def draw(prompt: Prompt, n_samples: int, seed: int) -> tuple[list[np.ndarray], PartConstraints | None]:
        given = prompt.codes if prompt.controls is None else np.vstack([prompt.codes, prompt.controls])
        constraints = request_constraints(request.constraints, prompt.music, given, encoding)
        limit = max_beats if prompt.plan is None else prompt.end_beats
        drawn = sample(model, prompt.codes, n_samples=n_samples, params=params, seed=seed,
                       max_new_rows=request.max_new_rows, max_beats=limit,
                       start_beats=prompt.start_beats if prompt.start_beats > 0 else None,
                       pitch_ranges=note_ranges(model), balance=balance, quota=quota,
                       controls=prompt.controls, write_instruments=None if prompt.plan is None else prompt.plan.write,
                       end_from_beats=None if prompt.plan is None else prompt.plan.last_bar_beats,
                       constraints=constraints, beats_per_bar=prompt.beats_per_bar, device=device, progress=progress)
        return drawn, constraints

    def met(codes: np.ndarray, prompt: Prompt, constraints: PartConstraints | None) -> dict:
        return measure(codes, encoding, constraints, prompt_notes=prompt.n_notes, start_beats=prompt.start_beats,
                       end_beats=prompt.end_beats, max_beats=max_beats if prompt.plan is None else prompt.end_beats,
                       beats_per_bar=prompt.beats_per_bar)

    samples, constraints = draw(prompt, request.n_samples, request.seed)
    measured = [met(codes, prompt, constraints) for codes in samples]
    pieces = None
    if prompt.plan is not None:  # an edit: the source's notes written back around each region
        pieces = [merge(prompt.music, drawn_notes(s, prompt.plan, encoding), prompt.plan, encoding) for s in samples]
        for k, region in enumerate(prompt.regions, start=1):  # later regions: one sample at a time
            for i, piece in enumerate(pieces):
                step = edit_prompt(piece, [region], encoding)
                (samples[i],), step_constraints = draw(step, 1, (request.seed + 7919 * k + i) % 2**63)
                measured[i] = met(samples[i], step, step_constraints)
                pieces[i] = merge(piece, drawn_notes(samples[i], step.plan, encoding), step.plan, encoding)
    prompt_sha256 = sha256_file(request.prompt) if isinstance(request.prompt, (str, os.PathLike)) else None
    return Generation(request, prompt, samples, encoding, params, balance, quota, max_beats, constraints=constraints,
                      met=tuple(measured), pieces=pieces, weights_sha256=getattr(model, "weights_sha256", None),
                      prompt_sha256=prompt_sha256)


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
