"""Cached, batched, grammar-constrained generation: `generate` and `prompt_from_music`.

How a sample is drawn:

- One pass over the prompt (start-of-song alone, an instrument header, or a user's
  song) fills the model's preallocated key/value cache (`MusicTransformer.new_cache`,
  `decode`); after that every step feeds only the newest row (`model.decode(row,
  cache)`), so a step costs one row's forward pass plus attention over the cached rows.
- All samples of a batch move in lockstep and every field of the next row is sampled
  for the whole batch at once (Gumbel-max over masked, filtered logits); there is no
  per-sample Python loop. A finished sample keeps being fed padding rows (all zeros),
  which cannot influence the other samples (attention is per sample).
- Fields are sampled in the order type, beat, position, pitch, duration, instrument.
  The model predicts all six fields of the next row from the same hidden state, so a
  field cannot be conditioned on the fields already drawn for that row except through
  the grammar masks (as in the original MMT). The masks:

  * start-of-song only as the first row (it is always given, never sampled);
  * before start-of-notes: instrument rows (each instrument at most once, codes
    increasing, as `encode` sorts them) or start-of-notes (once at least one
    instrument is declared);
  * after start-of-notes: notes or end-of-song (end-of-song only after `min_new_rows`);
  * a note's fields are never 0 ("undefined"); its beat never decreases; its position
    never decreases within the same beat; its instrument is one declared in the header.
    Drums take any pitch the encoding has (it defines no narrower drum range).

- A sample stops at its own end-of-song. With `max_beats` (or `max_bars`), a note that
  would start at or after the limit is replaced by end-of-song, so the song ends cleanly.
  The beat field cannot go past the encoding's last beat (`max_beat` - 1): a model that
  wants later beats can only draw that one, so a long sample would pile its notes onto
  it. A note drawn on the last beat therefore ends the sample too (once end-of-song is
  allowed: with `min_new_rows` the sample keeps going, as benchmarks of untrained models
  need).

Beyond the model's context (`max_seq_len` rows): with rotary or no position embedding the
cache keeps the first rows (start-of-song, the instrument header and start-of-notes:
the "attention sink") plus a sliding window of the latest rows, as in StreamingLLM
(Xiao et al., 2023). When the cache is full, the oldest `window_shift` rows after the
sink are cut out of every layer's cached keys and values
(`MusicTransformer.drop_cached_rows`); the kept rows move up and their keys are rotated
back accordingly, so they sit at positions 0..len-1 inside the cache, as StreamingLLM
assigns them. The cost of a shift is one copy of the cache (no recomputation); rows
past the window are no longer seen. With absolute
position embeddings the model cannot go past its context: a `ValueError` says so when a
sample still running would need a row beyond `max_seq_len`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from mmt.constants import FIELDS, Field, RowType
from mmt.encoding import Encoding, encode, grammar_violations

DEFAULT_BEATS_PER_BAR = 4.0
DEFAULT_WINDOW_SHIFT = 32


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
        raise ValueError("give n_beats or n_bars, not both")
    if n_bars is not None:
        n_beats = n_bars * beats_per_bar(music)
    if n_beats is not None and n_beats <= 0:
        raise ValueError(f"the prompt must keep a positive number of beats, got {n_beats}")
    codes = encode(music, encoding)
    codes = codes[codes[:, Field.TYPE] != RowType.END_OF_SONG]
    if n_beats is None:
        return codes
    cut = round(n_beats * encoding.resolution)
    is_note = codes[:, Field.TYPE] == RowType.NOTE
    onset = (codes[:, Field.BEAT] - 1) * encoding.resolution + codes[:, Field.POSITION] - 1
    return codes[~is_note | (onset < cut)]


def instrument_prompt(instruments: Sequence[str | int], encoding: Encoding) -> np.ndarray:
    """Start-of-song, one row per instrument (names or GM programs; sorted, distinct), start-of-notes."""
    if len(instruments) == 0:
        raise ValueError("instrument mode needs at least one instrument")
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


def check_prompt(prompt: np.ndarray, encoding: Encoding) -> np.ndarray:
    """`prompt` as an int64 (L x 6) array, or a ValueError saying what is wrong with it."""
    prompt = np.asarray(prompt)
    if prompt.ndim != 2 or prompt.shape[1] != 6 or len(prompt) == 0:
        raise ValueError(f"a prompt must be a non-empty (L, 6) code array, got shape {prompt.shape}")
    if not np.issubdtype(prompt.dtype, np.integer):
        raise ValueError(f"a prompt must hold integer codes, got {prompt.dtype}")
    prompt = prompt.astype(np.int64)
    types = prompt[:, Field.TYPE]
    if np.any(types == RowType.END_OF_SONG):
        raise ValueError("the prompt holds an end-of-song row; a prompt is a song to continue")
    probe = prompt
    if not np.any(types == RowType.START_OF_NOTES):
        son = np.zeros((1, 6), dtype=np.int64)
        son[0, Field.TYPE] = RowType.START_OF_NOTES
        probe = np.vstack([prompt, son])
    problems = grammar_violations(probe, encoding, complete=False)
    if problems:
        raise ValueError(f"the prompt is not a well-formed song start: {'; '.join(problems)}")
    return prompt


# ---------------------------------------------------------------------- sampling settings
def per_field(value, name: str, default) -> tuple:
    """A scalar or a {field: value} dict as one value per field in `FIELDS` order."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(FIELDS))
        if unknown:
            raise ValueError(f"{name}: unknown field(s) {', '.join(unknown)}; fields are {', '.join(FIELDS)}")
        return tuple(value.get(f, default) for f in FIELDS)
    return (default if value is None else value,) * len(FIELDS)


@dataclass(frozen=True)
class SamplingParams:
    """Temperature, top-k and top-p of every field (`FIELDS` order); None switches a filter off."""

    temperature: tuple[float, ...]
    top_k: tuple[int | None, ...]
    top_p: tuple[float | None, ...]

    @classmethod
    def build(cls, temperature=1.0, top_k=None, top_p=None) -> "SamplingParams":
        params = cls(per_field(temperature, "temperature", 1.0), per_field(top_k, "top_k", None),
                     per_field(top_p, "top_p", None))
        for f, t, k, p in zip(FIELDS, params.temperature, params.top_k, params.top_p):
            if t is None or t < 0 or math.isnan(t):
                raise ValueError(f"temperature of {f} must be >= 0 (0: greedy), got {t}")
            if k is not None and k < 1:
                raise ValueError(f"top_k of {f} must be >= 1, got {k}")
            if p is not None and not 0 < p <= 1:
                raise ValueError(f"top_p of {f} must be in (0, 1], got {p}")
        return params


def sample_masked(logits: Tensor, allowed: Tensor, temperature: float, top_k: int | None,
                  top_p: float | None, generator: torch.Generator) -> Tensor:
    """One code per batch row from `logits` (B, V) restricted to `allowed` (B, V) (at least one True).

    Temperature 0 picks the most likely allowed code. Otherwise top-k and then top-p
    (nucleus) filtering apply to the allowed codes and a code is drawn by Gumbel-max
    (the uniform noise comes from `generator`, always B x V draws, so a seed fixes it).
    """
    logits = logits.float().masked_fill(~allowed, -math.inf)
    noise = torch.rand(logits.shape, generator=generator, device=logits.device)
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None and top_p < 1:
        ordered, order = logits.sort(dim=-1, descending=True)
        probs = ordered.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the codes ranked above each one
        drop = before >= top_p  # the best code always stays (before = 0)
        logits = logits.masked_fill(drop.scatter(-1, order, drop), -math.inf)
    gumbel = -torch.log(-torch.log(noise.clamp(1e-12, 1 - 1e-7)))
    return (logits + gumbel).argmax(-1)


# ---------------------------------------------------------------------- grammar state
class GrammarState:
    """Where each sample of a batch stands in the song grammar (all tensors of batch size B)."""

    def __init__(self, prompt: np.ndarray, batch: int, encoding: Encoding, device) -> None:
        types = prompt[:, Field.TYPE]
        n_instruments = encoding.n_tokens["instrument"]
        declared_codes = prompt[types == RowType.INSTRUMENT, Field.INSTRUMENT]
        notes = prompt[types == RowType.NOTE]
        son = np.flatnonzero(types == RowType.START_OF_NOTES)

        def full(value, dtype=torch.long):
            return torch.full((batch,), int(value), dtype=dtype, device=device)

        self.in_notes = full(len(son) > 0, torch.bool)
        self.son_row = full(son[0] if len(son) else -1)  # index of start-of-notes, -1 while in the header
        declared = torch.zeros(batch, n_instruments, dtype=torch.bool, device=device)
        declared[:, torch.as_tensor(declared_codes, dtype=torch.long, device=device)] = True
        self.declared = declared
        self.last_instrument = full(declared_codes.max() if len(declared_codes) else 0)
        self.last_beat = full(notes[-1, Field.BEAT] if len(notes) else 0)
        self.last_position = full(notes[-1, Field.POSITION] if len(notes) else 0)
        self.finished = full(False, torch.bool)
        self.codes = torch.arange(n_instruments, device=device)
        self.n_types = encoding.n_tokens["type"]
        self.device = device

    def type_mask(self, allow_eos: bool) -> Tensor:
        """Allowed row types (B, n_types)."""
        batch = self.in_notes.shape[0]
        mask = torch.zeros(batch, self.n_types, dtype=torch.bool, device=self.device)
        header = ~self.in_notes
        room = self.last_instrument < len(self.codes) - 1
        mask[:, RowType.INSTRUMENT] = header & room
        mask[:, RowType.START_OF_NOTES] = header & self.declared.any(-1)
        mask[:, RowType.NOTE] = self.in_notes
        mask[:, RowType.END_OF_SONG] = self.in_notes & allow_eos
        mask[:, RowType.START_OF_SONG] = self.finished  # anything for a finished sample; it is ignored
        return mask

    def update(self, rows: Tensor, row_index: int) -> None:
        """Record the rows (B, 6) just appended at `row_index` by the unfinished samples."""
        live = ~self.finished
        row_type = rows[:, Field.TYPE]
        is_note = live & (row_type == RowType.NOTE)
        is_instrument = live & (row_type == RowType.INSTRUMENT)
        is_son = live & (row_type == RowType.START_OF_NOTES)
        self.last_beat = torch.where(is_note, rows[:, Field.BEAT], self.last_beat)
        self.last_position = torch.where(is_note, rows[:, Field.POSITION], self.last_position)
        instrument = rows[:, Field.INSTRUMENT]
        self.last_instrument = torch.where(is_instrument, instrument, self.last_instrument)
        self.declared |= is_instrument[:, None] & (self.codes[None, :] == instrument[:, None])
        self.son_row = torch.where(is_son, torch.full_like(self.son_row, row_index), self.son_row)
        self.in_notes |= is_son
        self.finished |= live & (row_type == RowType.END_OF_SONG)


def draw_rows(logits: Sequence[Tensor], state: GrammarState, params: SamplingParams, encoding: Encoding,
              generator: torch.Generator, allow_eos: bool, limit_ticks: int | None) -> Tensor:
    """The next row (B, 6) of every sample, sampled field by field under the grammar masks.

    Finished samples get padding rows (all zeros).
    """
    batch = logits[0].shape[0]
    device = logits[0].device

    def codes_from(minimum: Tensor, n: int) -> Tensor:  # allowed: code >= max(1, minimum)
        return torch.arange(n, device=device)[None, :] >= minimum.clamp(min=1)[:, None]

    def draw(field: Field, allowed: Tensor) -> Tensor:
        return sample_masked(logits[field], allowed, params.temperature[field], params.top_k[field],
                             params.top_p[field], generator)

    n = encoding.n_tokens
    if allow_eos:  # the last beat ends the sample (see the module docstring)
        last_beat_onset = (encoding.max_beat - 1) * encoding.resolution
        limit_ticks = last_beat_onset if limit_ticks is None else min(limit_ticks, last_beat_onset)
    row_type = draw(Field.TYPE, state.type_mask(allow_eos))
    beat = draw(Field.BEAT, codes_from(state.last_beat, n["beat"]))
    same_beat = beat == state.last_beat
    position = draw(Field.POSITION, codes_from(torch.where(same_beat, state.last_position, 0), n["position"]))
    pitch = draw(Field.PITCH, codes_from(torch.zeros_like(beat), n["pitch"]))
    duration = draw(Field.DURATION, codes_from(torch.zeros_like(beat), n["duration"]))
    header_row = row_type == RowType.INSTRUMENT
    instrument_allowed = torch.where(header_row[:, None], state.codes[None, :] > state.last_instrument[:, None],
                                     state.declared)
    instrument_allowed[:, 0] |= ~instrument_allowed.any(-1)  # a finished sample may have nothing allowed
    instrument = draw(Field.INSTRUMENT, instrument_allowed)

    is_note = row_type == RowType.NOTE
    if limit_ticks is not None:
        onset = (beat - 1) * encoding.resolution + position - 1
        past = is_note & (onset >= limit_ticks)
        row_type = torch.where(past, torch.full_like(row_type, RowType.END_OF_SONG), row_type)
        is_note = is_note & ~past
    zero = torch.zeros_like(beat)
    rows = torch.stack([
        row_type,
        torch.where(is_note, beat, zero),
        torch.where(is_note, position, zero),
        torch.where(is_note, pitch, zero),
        torch.where(is_note, duration, zero),
        torch.where(is_note | header_row, instrument, zero),
    ], dim=-1)
    return rows.masked_fill(state.finished[:, None], 0)


# ---------------------------------------------------------------------- generate
def generate(
    model,
    prompt: np.ndarray | None = None,
    *,
    n_samples: int = 1,
    instruments: Sequence[str | int] | None = None,
    max_new_rows: int = 1024,
    max_beats: float | None = None,
    max_bars: float | None = None,
    beats_per_bar: float = DEFAULT_BEATS_PER_BAR,
    temperature=1.0,
    top_k=None,
    top_p=None,
    seed: int | None = None,
    device=None,
    progress: bool = False,
    min_new_rows: int = 0,
    window_shift: int = DEFAULT_WINDOW_SHIFT,
) -> list[np.ndarray]:
    """Sample songs from a `MusicTransformer` (see the module docstring for the method).

    Args:
        model: a `MusicTransformer` (its `.encoding` defines the codes).
        prompt: codes to continue (start-of-song, header, maybe start-of-notes and notes;
            no end-of-song), e.g. from `prompt_from_music`. None: start-of-song alone.
        n_samples: samples drawn together as one batch.
        instruments: instrument mode: names or GM programs; the header is exactly these
            (sorted, distinct) and notes use only them. Not together with `prompt`.
        max_new_rows: the most rows added to the prompt; a sample that reaches it is cut
            there without end-of-song.
        max_beats: a note that would start at or after this beat (counted from the song's
            start, prompt included) ends the sample with end-of-song instead.
        max_bars: the same in bars of `beats_per_bar` beats (4 by default: bars of 4/4;
            pass the prompt's `beats_per_bar(music)` to follow its time signature).
        temperature, top_k, top_p: a scalar or a {field: value} dict (fields not named
            keep 1.0 / off). Temperature 0 is greedy.
        seed: seeds a `torch.Generator`; the same seed (and settings) gives the same samples.
        device: where to run; the model is moved there. Default: the model's device.
        progress: show a progress bar over the steps.
        min_new_rows: end-of-song is not allowed before this many new rows (benchmarks use
            it to run untrained models to full length).
        window_shift: past the context (rotary / no position embedding), rows dropped
            from the cache window at a time.

    Returns:
        `n_samples` int64 arrays (rows x 6), each starting with the prompt (or
        start-of-song) and ending with end-of-song unless cut at `max_new_rows`.

    Raises:
        ValueError: bad arguments, a malformed prompt, or (absolute position embedding)
            a sample that needs more rows than the model's context.
    """
    from tqdm.auto import tqdm

    encoding: Encoding = model.encoding
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if max_new_rows < 1:
        raise ValueError(f"max_new_rows must be >= 1, got {max_new_rows}")
    if window_shift < 1:
        raise ValueError(f"window_shift must be >= 1, got {window_shift}")
    if max_beats is not None and max_bars is not None:
        raise ValueError("give max_beats or max_bars, not both")
    if max_bars is not None:
        max_beats = max_bars * beats_per_bar
    limit_ticks = None if max_beats is None else round(max_beats * encoding.resolution)
    params = SamplingParams.build(temperature, top_k, top_p)
    if instruments is not None:
        if prompt is not None:
            raise ValueError("give a prompt or instruments, not both")
        prompt = instrument_prompt(instruments, encoding)
    elif prompt is None:
        prompt = np.zeros((1, 6), dtype=np.int64)
        prompt[0, Field.TYPE] = RowType.START_OF_SONG
    prompt = check_prompt(prompt, encoding)

    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(device)
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
    try:
        with torch.inference_mode():
            rows = _run(model, prompt, n_samples, max_new_rows, min_new_rows, limit_ticks, params,
                        generator, window_shift, device, tqdm if progress else None)
    finally:
        model.train(was_training)
    return rows


def _run(model, prompt: np.ndarray, batch: int, max_new_rows: int, min_new_rows: int,
         limit_ticks: int | None, params: SamplingParams, generator: torch.Generator,
         window_shift: int, device, bar) -> list[np.ndarray]:
    encoding = model.encoding
    context = model.config.max_seq_len
    n_prompt = len(prompt)
    out = torch.zeros(batch, n_prompt + max_new_rows, 6, dtype=torch.long, device=device)
    out[:, :n_prompt] = torch.as_tensor(prompt, device=device)
    state = GrammarState(prompt, batch, encoding, device)
    length = torch.full((batch,), n_prompt + max_new_rows, dtype=torch.long, device=device)

    _check_context(model, n_prompt)
    sink = None
    fed = out[:, :n_prompt]
    if n_prompt > context:  # a long prompt (rotary / no position embedding): its sink and latest rows
        sink = _sink_rows(state, n_prompt - 1, context)
        fed = torch.cat([fed[:, :sink], fed[:, n_prompt - (context - sink):]], dim=1)
    # never more than the context: past it the window slides (or, absolute positions, `_check_context` stops)
    cache = model.new_cache(batch, min(context, fed.shape[1] + max_new_rows))
    logits = [lg[:, -1] for lg in model.decode(fed, cache)]
    steps = range(max_new_rows) if bar is None else bar(range(max_new_rows), desc="generating", unit="row")
    for step in steps:
        index = n_prompt + step
        rows = draw_rows(logits, state, params, encoding, generator, step >= min_new_rows, limit_ticks)
        was_finished = state.finished.clone()
        state.update(rows, index)
        out[:, index] = rows
        ended = state.finished & ~was_finished
        length = torch.where(ended, torch.full_like(length, index + 1), length)
        if step == max_new_rows - 1 or bool(state.finished.all()):
            break
        if cache.length >= context:
            if not model.supports_long_context:
                _check_context(model, cache.length + 1)
            if sink is None:
                sink = _sink_rows(state, index, context)
            model.drop_cached_rows(cache, sink, min(window_shift, cache.length - sink - 1))
        logits = [lg[:, -1] for lg in model.decode(rows[:, None], cache)]
    codes = out.cpu().numpy()
    return [codes[i, :n].copy() for i, n in enumerate(length.tolist())]


def _check_context(model, rows: int) -> None:
    if not model.supports_long_context and rows > model.config.max_seq_len:
        raise ValueError(
            f"this model uses absolute position embeddings and cannot go past its context of "
            f"{model.config.max_seq_len} rows (a sample needs {rows}); lower max_new_rows, set "
            f"max_beats, or use a rotary / no-position-embedding model"
        )


def _sink_rows(state: GrammarState, index: int, context: int) -> int:
    """Rows kept at the cache's start: start-of-song through start-of-notes of every sample."""
    live = ~state.finished
    if bool((live & ~state.in_notes).any()):
        raise ValueError(
            f"a sample's instrument header fills the model's context ({context} rows); "
            "the sliding window needs start-of-notes inside it"
        )
    sink = int(state.son_row[live].max()) + 1 if bool(live.any()) else 1
    if sink >= context - 1:
        raise ValueError(f"the header ({sink} rows) leaves no room for a sliding window in {context} rows")
    return sink
