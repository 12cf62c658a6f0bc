"""The sampler: cached, batched, grammar-constrained continuation of a prompt (`sample`).

`mmt.generate` (in `mmt.request`) builds the prompt of each mode and calls `sample`.
How a sample is drawn:

- One pass over the prompt (start-of-song alone, an instrument header, or a user's
  song) fills a preallocated key/value cache (`mmt.decoding.CachedDecoder`); after that
  every step feeds only the newest row, so a step costs one row's forward pass plus
  attention over the cached rows.
- All samples of a batch move in lockstep and every field of the next row is sampled
  for the whole batch at once (Gumbel-max over masked, filtered logits); there is no
  per-sample Python loop. A finished sample keeps being fed padding rows (all zeros),
  which cannot influence the other samples (attention is per sample).
- Fields are sampled in the order type, beat, position, instrument, pitch, duration
  (`mmt.constants.ROW_ORDER`: the instrument before the pitch, so that the pitch can keep
  to the instrument's range). A row-conditioned model's head reads the fields already
  drawn for the row (`RowLogits`); otherwise all six fields come from the same hidden
  state (as in the original MMT) and a field follows the ones drawn before it only
  through the grammar masks. The masks:

  * start-of-song only as the first row (it is always given, never sampled);
  * before start-of-notes: instrument rows (each instrument at most once, codes
    increasing, as `encode` sorts them) or start-of-notes (once at least one
    instrument is declared);
  * after start-of-notes: notes or end-of-song (end-of-song only after `min_new_rows`);
  * a note's fields are never 0 ("undefined"); its beat never decreases; its position
    never decreases within the same beat; its instrument is one declared in the header.
    Drums take any pitch the encoding has (it defines no narrower drum range).

- Part constraints (`constraints`, a `mmt.constraints.PartConstraints`; `ConstraintState`)
  narrow a note's pitch further, as masks computed for the whole batch at the note's onset:
  its instrument's usual range and, with no-crossing, the band between the nearest
  sounding parts below and above it (given notes count). An instrument with no pitch left
  at the onset is passed over when another may play; a row whose band is empty falls back
  to the range alone, then to the model's range. A key subtracts its strength from the
  out-of-key pitches' logits; a density adds each part's deficit to its instrument logit.
- Given notes (`controls`: an accompaniment's kept parts, the notes after an infill's gap)
  are control rows, never sampled: the prompt's notes get those they reach interleaved
  (`mmt.encoding.anticipate`), and before each draw a sample whose next control is due
  (its latest note reached the control's onset minus the anticipation interval) is fed
  that control instead of a drawn row (`ControlQueue`). Controls leave the grammar state
  alone: the canonical order, the no-duplicate rule, the quota, balance and repetition
  penalty concern the model's own notes. Controls a sample never reached are placed
  before its end-of-song, as the training data places them. A model trained without
  control rows is fed them as note rows at interval 0.
- A sample stops at its own end-of-song. With `max_beats`, a note that
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
(`CachedDecoder.drop_rows`); the kept rows move up and their keys are rotated
back accordingly, so they sit at positions 0..len-1 inside the cache, as StreamingLLM
assigns them. The cost of a shift is one copy of the cache (no recomputation); rows
past the window are no longer seen. With absolute
position embeddings the model cannot go past its context: a `GenerationError` says so when a
sample still running would need a row beyond `max_seq_len`.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from mmt.config import SamplingParams, check_arguments
from mmt.constants import DRUMS, FIELDS, Field, RowType
from mmt.constraints import DENSITY_STRENGTH, PartConstraints, family_index, key_pitch_classes, part_order
from mmt.decoding import CachedDecoder
from mmt.encoding import Encoding, anticipate, as_controls, grammar_violations, onsets
from mmt.errors import GenerationError
from mmt.model import RowLogits

DEFAULT_WINDOW_SHIFT = 32


# ---------------------------------------------------------------------- prompts
def check_prompt(prompt: np.ndarray, encoding: Encoding) -> np.ndarray:
    """`prompt` as an int64 (L x 6) array, or a GenerationError saying what is wrong with it."""
    prompt = np.asarray(prompt)
    if prompt.ndim != 2 or prompt.shape[1] != 6 or len(prompt) == 0:
        raise GenerationError(f"a prompt must be a non-empty (L, 6) code array, got shape {prompt.shape}")
    if not np.issubdtype(prompt.dtype, np.integer):
        raise GenerationError(f"a prompt must hold integer codes, got {prompt.dtype}")
    prompt = prompt.astype(np.int64)
    types = prompt[:, Field.TYPE]
    if np.any(types == RowType.END_OF_SONG):
        raise GenerationError("the prompt holds an end-of-song row; a prompt is a song to continue")
    if np.any(types == RowType.CONTROL):
        raise GenerationError("the prompt holds control rows; give the given notes as `controls`")
    probe = prompt
    if not np.any(types == RowType.START_OF_NOTES):
        son = np.zeros((1, 6), dtype=np.int64)
        son[0, Field.TYPE] = RowType.START_OF_NOTES
        probe = np.vstack([prompt, son])
    problems = grammar_violations(probe, encoding, complete=False)
    if problems:
        raise GenerationError(f"the prompt is not a well-formed song start: {'; '.join(problems)}")
    return prompt


# ---------------------------------------------------------------------- drawing
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


def penalize_repeats(logits: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """CTRL's repetition penalty (Keskar et al., 2019): codes in `seen` get l / r if l > 0, else l * r."""
    if penalty == 1:
        return logits
    logits = logits.float()
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def due_tick(counts: Tensor, quota: int, start_ticks: int, span: int) -> Tensor:
    """The onset tick from which an instrument with `counts` new notes is behind its quota's schedule.

    The schedule spreads `quota` notes over the `span` ticks after `start_ticks`: the n-th
    note (n = 1..quota) is due from start + ceil((n - 1) * span / quota) on, so an
    instrument with c notes is behind from start + ceil(c * span / quota).
    """
    return start_ticks + torch.div(counts * span + quota - 1, quota, rounding_mode="floor")


def lagging(counts: Tensor, declared: Tensor, quota: int, onset: Tensor, start_ticks: int, span: int) -> Tensor:
    """(B, I): declared instruments short of `quota` and behind its schedule (`due_tick`) at `onset` (B,)."""
    return declared & (counts < quota) & (onset[:, None] >= due_tick(counts, quota, start_ticks, span))


def balance_bias(counts: Tensor, declared: Tensor, strength: float) -> Tensor:
    """Logit bias (B, I) that favours the declared instruments with fewer notes so far.

    bias_i = strength * (log(1 + mean count) - log(1 + count_i)), the mean over the declared
    instruments: with strength 1 an instrument with half the mean's notes has its odds
    about doubled; instruments at the mean are left alone. 0 for undeclared instruments.
    """
    counts = counts.float()
    n = declared.sum(-1, keepdim=True).clamp(min=1)
    mean = (counts * declared).sum(-1, keepdim=True) / n
    bias = strength * (torch.log1p(mean) - torch.log1p(counts))
    return torch.where(declared, bias, torch.zeros_like(bias))


# ---------------------------------------------------------------------- grammar state
class GrammarState:
    """Where each sample of a batch stands in the song grammar (all tensors of batch size B).

    Notes follow the encoder's order, (beat, position, pitch, duration, instrument), and
    no two notes share beat, position, pitch and instrument: the masks make any other row
    impossible to draw. For that the state keeps the last note's fields and the
    instruments already used at its onset and pitch (`used`).

    Args:
        prompt: the rows fed before sampling.
        batch: samples.
        encoding: the codes' encoding.
        device: where the tensors live.
        pitch_ranges: instrument name -> (low, high) MIDI pitch; an instrument's notes stay
            inside its range (instruments not named: every pitch).
        start_beats: no new note may start before this beat (a continuation's cut).
        write_instruments: the instrument codes new notes may take (an edit's parts; None: every
            declared one). Quota and balance concern these alone.
    """

    def __init__(self, prompt: np.ndarray, batch: int, encoding: Encoding, device,
                 pitch_ranges: Mapping[str, tuple[int, int]] | None = None, start_beats: float | None = None,
                 write_instruments: Sequence[int] | None = None) -> None:
        types = prompt[:, Field.TYPE]
        n = encoding.n_tokens
        n_instruments = n["instrument"]
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
        writable = torch.ones(n_instruments, dtype=torch.bool, device=device)
        if write_instruments is not None:
            writable[:] = False
            writable[torch.as_tensor(list(write_instruments), dtype=torch.long, device=device)] = True
        self.writable = writable
        self.last_instrument = full(declared_codes.max() if len(declared_codes) else 0)  # the header's
        last = _last_note(notes, encoding, start_beats)
        self.last_beat, self.last_position, self.last_pitch, self.last_duration, self.last_note_instrument = (
            full(value) for value in last[:5])
        used = torch.zeros(n_instruments, dtype=torch.bool, device=device)
        used[torch.as_tensor(last[5], dtype=torch.long, device=device)] = True
        self.used = used.expand(batch, -1).clone()
        self.counts = torch.zeros(batch, n_instruments, dtype=torch.long, device=device)  # new notes only
        self.seen = []
        for field, name in enumerate(FIELDS):
            seen = torch.zeros(n[name], dtype=torch.bool, device=device)
            seen[torch.as_tensor(notes[:, field], dtype=torch.long, device=device)] = True
            self.seen.append(seen.expand(batch, -1).clone())
        low = torch.ones(n_instruments, dtype=torch.long, device=device)
        high = torch.full((n_instruments,), n["pitch"] - 1, dtype=torch.long, device=device)
        for name, (lo, hi) in (pitch_ranges or {}).items():
            code = encoding.instrument_code(name)
            low[code], high[code] = lo + 1, hi + 1
        self.pitch_low, self.pitch_high = low, high
        self.finished = full(False, torch.bool)
        self.codes = torch.arange(n_instruments, device=device)
        self.n = n
        self.device = device

    # ---- what the next note may be
    @property
    def writing(self) -> Tensor:
        """(B, I): the instruments new notes may take: declared, and among the ones to write."""
        return self.declared & self.writable

    def same_onset_instruments(self) -> Tensor:
        """(B, I): declared instruments that can still play a note at the last note's onset.

        Such a note needs a pitch >= the last one inside the instrument's range; the last
        pitch itself only when the instrument has not played it there yet and its
        (duration, instrument) can still follow the last note's.
        """
        return self.writing & self.fits_at_last_onset(self.pitch_low[None, :], self.pitch_high[None, :])

    def fits_at_last_onset(self, low: Tensor, high: Tensor) -> Tensor:
        """(B, I): instruments whose pitches `low`..`high` (codes, broadcast to (B, I)) leave them a note at
        the last note's onset: a higher pitch, or the last pitch itself when still free for them."""
        last_pitch = self.last_pitch[:, None]
        duration_room = (self.last_duration < self.n["duration"] - 1)[:, None]
        same_pitch = ((high >= last_pitch) & (low <= last_pitch)
                      & ~self.used & (duration_room | (self.codes[None, :] > self.last_note_instrument[:, None])))
        return (high > last_pitch) | same_pitch

    def type_mask(self, allow_eos: bool, onset_full: Tensor) -> Tensor:
        """Allowed row types (B, n_types); `onset_full` (B,): no further note fits at the last note's onset."""
        batch = self.in_notes.shape[0]
        mask = torch.zeros(batch, self.n["type"], dtype=torch.bool, device=self.device)
        header = ~self.in_notes
        room = self.last_instrument < len(self.codes) - 1
        no_room = (onset_full & (self.last_position == self.n["position"] - 1)
                   & (self.last_beat == self.n["beat"] - 1))
        mask[:, RowType.INSTRUMENT] = header & room
        mask[:, RowType.START_OF_NOTES] = header & self.declared.any(-1)
        mask[:, RowType.NOTE] = self.in_notes & ~no_room
        mask[:, RowType.END_OF_SONG] = self.in_notes & (allow_eos | no_room)
        mask[:, RowType.START_OF_SONG] = self.finished  # anything for a finished sample; it is ignored
        return mask

    def update(self, rows: Tensor, row_index: int, given: Tensor | None = None) -> None:
        """Record the rows (B, 6) just appended at `row_index` by the unfinished samples.

        Rows flagged `given` (B,) are control rows the sampler inserted: they are not the
        model's notes and leave the state as it was (see the module docstring).
        """
        live = ~self.finished if given is None else ~self.finished & ~given
        row_type = rows[:, Field.TYPE]
        is_note = live & (row_type == RowType.NOTE)
        is_instrument = live & (row_type == RowType.INSTRUMENT)
        is_son = live & (row_type == RowType.START_OF_NOTES)
        instrument = rows[:, Field.INSTRUMENT]
        one_hot = self.codes[None, :] == instrument[:, None]
        same_pitch = ((rows[:, Field.BEAT] == self.last_beat) & (rows[:, Field.POSITION] == self.last_position)
                      & (rows[:, Field.PITCH] == self.last_pitch))
        self.used = torch.where(is_note[:, None], one_hot | (self.used & same_pitch[:, None]), self.used)
        self.counts += (is_note[:, None] & one_hot).long()
        for field in range(len(FIELDS)):
            self.seen[field][is_note, rows[is_note, field]] = True
        for name, field in (("last_beat", Field.BEAT), ("last_position", Field.POSITION),
                            ("last_pitch", Field.PITCH), ("last_duration", Field.DURATION),
                            ("last_note_instrument", Field.INSTRUMENT)):
            setattr(self, name, torch.where(is_note, rows[:, field], getattr(self, name)))
        self.last_instrument = torch.where(is_instrument, instrument, self.last_instrument)
        self.declared |= is_instrument[:, None] & one_hot
        self.son_row = torch.where(is_son, torch.full_like(self.son_row, row_index), self.son_row)
        self.in_notes |= is_son
        self.finished |= live & (row_type == RowType.END_OF_SONG)


def _last_note(notes: np.ndarray, encoding: Encoding, start_beats: float | None) -> tuple:
    """(beat, position, pitch, duration, instrument codes, instruments used at its onset and pitch) of
    the note new ones follow: the prompt's last, or a pitchless one at `start_beats` when that is later."""
    last = (0, 0, 0, 0, 0, [])
    if len(notes):
        b, p, pitch, duration, instrument = (int(v) for v in notes[-1, 1:])
        here = notes[(notes[:, Field.BEAT] == b) & (notes[:, Field.POSITION] == p) & (notes[:, Field.PITCH] == pitch)]
        last = (b, p, pitch, duration, instrument, here[:, Field.INSTRUMENT].tolist())
    if start_beats is not None:
        tick = math.ceil(start_beats * encoding.resolution - 1e-9)
        floor = (tick // encoding.resolution + 1, tick % encoding.resolution + 1)
        if floor > last[:2]:
            last = (*floor, 0, 0, 0, [])
    return last


class ConstraintState:
    """The part constraints (`mmt.constraints.PartConstraints`) as tensors, and the notes they read.

    Per instrument code: the usual range in pitch codes (the model's range where ranges are off or
    the instrument has none) and the place in the no-crossing order (-1: none). The given notes
    (the prompt's and the controls) are the same for every sample: what each instrument sounds
    at each tick is tabled once (`given_low`, `given_high`). New notes are tracked per sample as
    the tick where the latest note of each (instrument, pitch) ends: new onsets never go back,
    so a new note sounds at the current onset exactly when its end is later.
    """

    def __init__(self, constraints: PartConstraints, given: np.ndarray, batch: int, encoding: Encoding,
                 state: GrammarState, beats_per_bar: float, start_ticks: int) -> None:
        device, n = state.device, encoding.n_tokens
        self.constraints = constraints
        names = ("",) + tuple(encoding.instruments)  # code -> name
        self.low, self.high = state.pitch_low.clone(), state.pitch_high.clone()
        for code, name in enumerate(names):
            bounds = constraints.pitch_range(name) if code else None
            if bounds is not None:
                self.low[code], self.high[code] = bounds[0] + 1, bounds[1] + 1
        order = part_order(names[1:]) if constraints.no_crossing else {}
        self.place = torch.tensor([order.get(name, -1) if code else -1 for code, name in enumerate(names)],
                                  dtype=torch.long, device=device)
        family = torch.tensor([family_index(name) if code else -1 for code, name in enumerate(names)],
                              dtype=torch.long, device=device)
        self.same_family = family[:, None] == family[None, :]  # (I, J): parts whose order is kept
        self.durations = torch.as_tensor((0, *encoding.known_durations), dtype=torch.long, device=device)
        self.resolution = encoding.resolution
        self.n_pitch = n["pitch"]
        self.new_end = torch.full((batch, n["instrument"], n["pitch"]), -1, dtype=torch.long, device=device)
        given_low, given_high = _sounding_table(given, encoding, self.place.cpu().numpy())
        self.given_low = torch.as_tensor(given_low, device=device)
        self.given_high = torch.as_tensor(given_high, device=device)
        self.key_bias = torch.zeros(n["pitch"], device=device)
        if constraints.key is not None:
            out = [code for code in range(1, n["pitch"]) if (code - 1) % 12 not in key_pitch_classes(constraints.key)]
            self.key_bias[out] = -float(constraints.key_strength)
        self.drums = encoding.instrument_code(DRUMS) if DRUMS in encoding.instruments else -1
        self.bar_ticks = beats_per_bar * encoding.resolution
        self.start_ticks = start_ticks

    def bands(self, onset: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(low, high, range low, range high), each (B, I): the pitch codes each instrument may take at
        `onset` (B,) under all constraints, and under its range alone."""
        batch = onset.shape[0]
        low = self.low[None, :].expand(batch, -1)
        high = self.high[None, :].expand(batch, -1)
        if not bool((self.place >= 0).any()):
            return low, high, low, high
        codes = torch.arange(self.n_pitch, device=onset.device)
        sounding = self.new_end > onset[:, None, None]
        lowest = torch.where(sounding, codes, self.n_pitch).min(-1).values
        highest = torch.where(sounding, codes, -1).max(-1).values
        if len(self.given_low):
            tick = onset.clamp(0, len(self.given_low) - 1)
            inside = (onset >= 0) & (onset < len(self.given_low))
            lowest = torch.where(inside[:, None], torch.minimum(lowest, self.given_low[tick]), lowest)
            highest = torch.where(inside[:, None], torch.maximum(highest, self.given_high[tick]), highest)
        place = self.place
        parts = (highest >= 0) & (place >= 0)  # (B, J): ordered parts sounding at the onset
        ordered = place >= 0
        big = len(place) + 1
        above = parts[:, None, :] & (place[None, None, :] > place[None, :, None]) & self.same_family  # (B, I, J)
        below = parts[:, None, :] & (place[None, None, :] < place[None, :, None]) & self.same_family
        nearest_above = torch.where(above, place, big).argmin(-1)
        nearest_below = torch.where(below, place, -1).argmax(-1)
        ceiling = torch.where(above.any(-1), lowest.gather(1, nearest_above), self.n_pitch - 1)
        floor = torch.where(below.any(-1), highest.gather(1, nearest_below), 1)
        return (torch.where(ordered, torch.maximum(low, floor), low),
                torch.where(ordered, torch.minimum(high, ceiling), high), low, high)

    def open_bands(self, onset: Tensor, state: GrammarState, same_onset: Tensor,
                   bands: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """(B, I): the instruments that have a pitch left at `onset` under the constraints and the model's
        range (at the last note's onset, `same_onset`, one not below the last pitch)."""
        low, high = bands if bands is not None else self.bands(onset)[:2]
        low, high = torch.maximum(low, state.pitch_low[None, :]), torch.minimum(high, state.pitch_high[None, :])
        return (low <= high) & (~same_onset[:, None] | state.fits_at_last_onset(low, high))

    def density_bias(self, counts: Tensor, declared: Tensor, onset: Tensor) -> Tensor:
        """(B, I): `DENSITY_STRENGTH` times each declared part's deficit against `density` notes per bar
        since the new music began, at most 4 notes either way (see `mmt.constraints`)."""
        expected = self.constraints.density * (onset - self.start_ticks).clamp(min=0).float() / self.bar_ticks
        deficit = (expected[:, None] - counts.float()).clamp(-4, 4)
        return torch.where(declared, DENSITY_STRENGTH * deficit, torch.zeros_like(deficit))

    def advance_bias(self, counts: Tensor, declared: Tensor, onsets: Tensor) -> Tensor:
        """(B, K): the bias of the next note's onset being each of `onsets` (B, K) ticks, so that the
        written parts' total follows `density`: `-DENSITY_STRENGTH * |d(t)|`, with `d(t)` the declared
        parts' mean deficit at onset `t` (`density` notes per bar since the new music began, less the
        notes written), not capped: an onset that leaves the parts behind, or one too early for the
        notes they already have, costs as many logits as notes they would be off."""
        expected = self.constraints.density * (onsets - self.start_ticks).clamp(min=0).float() / self.bar_ticks
        written = (counts * declared).sum(-1).float() / declared.sum(-1).clamp(min=1)
        return -DENSITY_STRENGTH * (expected - written[:, None]).abs()

    def update(self, rows: Tensor, live: Tensor) -> None:
        """Record the new notes among `rows` (B, 6) of the samples `live` (B,) drew."""
        is_note = live & (rows[:, Field.TYPE] == RowType.NOTE)
        if not bool(is_note.any()):
            return
        index = is_note.nonzero().squeeze(-1)
        note = rows[index]
        onset = (note[:, Field.BEAT] - 1) * self.resolution + note[:, Field.POSITION] - 1
        end = onset + self.durations[note[:, Field.DURATION]]
        instrument, pitch = note[:, Field.INSTRUMENT], note[:, Field.PITCH]
        self.new_end[index, instrument, pitch] = torch.maximum(self.new_end[index, instrument, pitch], end)


def _sounding_table(given: np.ndarray, encoding: Encoding, place: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) pitch code each instrument of the no-crossing order sounds at each tick among the
    `given` rows, (T, I) each, T: up to the last given note's end; none sounding: n_pitch / -1."""
    n_pitch, n_instruments = encoding.n_tokens["pitch"], encoding.n_tokens["instrument"]
    rows = given[np.isin(given[:, Field.TYPE], (RowType.NOTE, RowType.CONTROL))] if len(given) else given
    rows = rows[place[rows[:, Field.INSTRUMENT]] >= 0] if len(rows) else rows
    if len(rows) == 0:
        return np.zeros((0, n_instruments), dtype=np.int64), np.zeros((0, n_instruments), dtype=np.int64)
    onset = onsets(rows, encoding.resolution)
    end = onset + np.asarray(encoding.known_durations, dtype=np.int64)[rows[:, Field.DURATION] - 1]
    lowest = np.full((int(end.max()), n_instruments), n_pitch, dtype=np.int64)
    highest = np.full((int(end.max()), n_instruments), -1, dtype=np.int64)
    for start, stop, pitch, instrument in zip(onset, end, rows[:, Field.PITCH], rows[:, Field.INSTRUMENT]):
        np.minimum(lowest[start:stop, instrument], pitch, out=lowest[start:stop, instrument])
        np.maximum(highest[start:stop, instrument], pitch, out=highest[start:stop, instrument])
    return lowest, highest


def _first_allowed(*options: Tensor) -> Tensor:
    """Per row, the first of the masks `options` (B, V) that allows a code (the last one otherwise)."""
    chosen = options[-1]
    for option in reversed(options[:-1]):
        chosen = torch.where(option.any(-1, keepdim=True), option, chosen)
    return chosen


def _capped(allowed: Tensor, where: Tensor, highest: Tensor) -> Tensor:
    """`allowed` (B, V) without the codes above `highest` (B,) in the rows `where` (B,), unless none would be left."""
    capped = allowed & (torch.arange(allowed.shape[-1], device=allowed.device)[None, :] <= highest[:, None])
    use = where & capped.any(-1)
    return torch.where(use[:, None], capped, allowed)


def draw_rows(logits: RowLogits | Sequence[Tensor], state: GrammarState, params: SamplingParams, encoding: Encoding,
              generator: torch.Generator, allow_eos: bool, limit_ticks: int | None, balance: float = 0.0,
              quota: int = 0, start_ticks: int = 0, end_from_ticks: int = 0,
              constraints: ConstraintState | None = None) -> Tensor:
    """The next row (B, 6) of every sample, sampled field by field under the grammar masks.

    Fields are drawn in the order type, beat, position, instrument, pitch, duration, so
    that a note's pitch can be kept inside its instrument's range. `balance` > 0 favours
    the instruments that have played least (`balance_bias`). With a `quota` and a length
    limit, an instrument behind the schedule of `quota` new notes by the limit (`lagging`)
    gets the note, the onsets do not run more than one note's share of the song ahead of
    the instrument with the fewest notes, and end-of-song waits until every instrument has
    its quota. End-of-song also waits until the last note starts at or after `end_from_ticks`
    (an edit's last bar); until then the notes stay before the limit. `constraints` mask each
    note's pitch to its part's band (falling back to the range alone, then to the model's range,
    where a band leaves no pitch), favour at an onset the instruments whose band still has a
    pitch, and add the key and density biases. Finished samples get padding rows (all zeros).
    """
    device = logits[0].device
    n = encoding.n_tokens

    def codes_from(minimum: Tensor, size: int) -> Tensor:  # allowed: code >= max(1, minimum)
        return torch.arange(size, device=device)[None, :] >= minimum.clamp(min=1)[:, None]

    settings = {name: params.per_field(name) for name in SamplingParams.DEFAULTS}

    def draw(field: Field, allowed: Tensor, bias: Tensor | None = None, kept: Tensor | None = None) -> Tensor:
        """Draw `field`; `kept` (B,): the rows whose row type has this field (others end up 0)."""
        allowed = allowed.clone()
        allowed[:, 0] |= ~allowed.any(-1)  # rows whose field is ignored (other row types, finished)
        scores = penalize_repeats(logits[field], state.seen[field], settings["repetition_penalty"][field])
        if bias is not None:
            scores = scores + bias
        codes = sample_masked(scores, allowed, settings["temperature"][field], settings["top_k"][field],
                              settings["top_p"][field], generator)
        if isinstance(logits, RowLogits):  # a row-conditioned model's next heads read the field as the row keeps it
            logits.fix(field, codes if kept is None else torch.where(kept, codes, torch.zeros_like(codes)))
        return codes

    if quota and allow_eos:  # end-of-song waits for every instrument's quota
        allow_eos = (state.counts >= quota) | ~state.writing
        allow_eos = allow_eos.all(-1)
    going_on = None   # samples that may not end yet keep their notes before the limit
    if end_from_ticks:  # an edit's region is written to its last bar
        last_onset = (state.last_beat - 1) * encoding.resolution + state.last_position - 1
        allow_eos = torch.as_tensor(allow_eos, device=device) & (last_onset >= end_from_ticks)
        if limit_ticks is not None:
            going_on = ~allow_eos
            final = torch.full_like(state.last_beat, limit_ticks - 1)
            final_beat = torch.div(final, encoding.resolution, rounding_mode="floor") + 1
            final_position = final % encoding.resolution + 1
    if bool(torch.as_tensor(allow_eos).any()):  # the last beat ends the sample (see the module docstring)
        last_beat_onset = (encoding.max_beat - 1) * encoding.resolution
        limit_ticks = last_beat_onset if limit_ticks is None else min(limit_ticks, last_beat_onset)
    at_last_onset = state.same_onset_instruments()  # what may still play at the last note's onset
    if constraints is not None:  # and still has a pitch there that the constraints allow
        last_onset = (state.last_beat - 1) * encoding.resolution + state.last_position - 1
        open_there = constraints.open_bands(last_onset, state, torch.ones_like(state.finished))
        at_last_onset = at_last_onset & open_there
    full = ~at_last_onset.any(-1)
    row_type = draw(Field.TYPE, state.type_mask(allow_eos, full))
    header_row = row_type == RowType.INSTRUMENT
    note_row = row_type == RowType.NOTE

    last_beat, last_position = state.last_beat, state.last_position
    beat_floor = torch.where(full & (last_position == n["position"] - 1), last_beat + 1, last_beat)
    # while an instrument still lacks its quota, the onsets stay where the schedule leaves it room:
    # before the instrument with the fewest notes, c of them, is due its (c + 2)th (`due_tick`),
    # so the music cannot run ahead of a part to the limit and strand it there
    short = None
    if quota and limit_ticks is not None:
        span = max(limit_ticks - start_ticks, 1)
        lacking = state.writing & (state.counts < quota)
        short = lacking.any(-1)
        fewest = torch.where(lacking, state.counts, quota).min(-1).values
        last_tick = (due_tick(fewest + 1, quota, start_ticks, span) - 1).clamp(min=0)
        limit_beat = torch.div(last_tick, encoding.resolution, rounding_mode="floor") + 1
        limit_position = last_tick % encoding.resolution + 1
    beat_allowed = codes_from(beat_floor, n["beat"])
    if short is not None:
        beat_allowed = _capped(beat_allowed, short, limit_beat)
    if going_on is not None:
        beat_allowed = _capped(beat_allowed, going_on, final_beat)
    steer = constraints is not None and constraints.constraints.density is not None
    last_onset_tick = (last_beat - 1) * encoding.resolution + last_position - 1
    if steer:  # the written parts' total follows the density: time moves on slower behind it, faster ahead
        beat_onsets = (torch.arange(n["beat"], device=device)[None, :] - 1) * encoding.resolution
        beat_onsets = torch.maximum(beat_onsets, last_onset_tick[:, None])  # the last note's own beat: no step
        beat_bias = constraints.advance_bias(state.counts, state.writing, beat_onsets)
    beat = draw(Field.BEAT, beat_allowed, beat_bias if steer else None, kept=note_row)
    same_beat = beat == last_beat
    position_floor = torch.where(same_beat, last_position + full.long(), 0)
    position_allowed = codes_from(position_floor, n["position"])
    position_bias = None
    if steer:
        position_onsets = (beat - 1)[:, None] * encoding.resolution + torch.arange(n["position"], device=device) - 1
        position_bias = constraints.advance_bias(state.counts, state.writing, position_onsets)
    if short is not None:
        position_allowed = _capped(position_allowed, short & (beat == limit_beat), limit_position)
    if going_on is not None:
        position_allowed = _capped(position_allowed, going_on & (beat == final_beat), final_position)
    position = draw(Field.POSITION, position_allowed, position_bias, kept=note_row)
    same_onset = same_beat & (position == last_position)

    note_instruments = torch.where(same_onset[:, None], at_last_onset, state.writing)
    if quota and limit_ticks is not None:
        onset = (beat - 1) * encoding.resolution + position - 1
        behind = note_instruments & lagging(state.counts, state.writing, quota, onset, start_ticks, span)
        note_instruments = torch.where(behind.any(-1, keepdim=True), behind, note_instruments)
    bias = None if balance == 0 else balance_bias(state.counts, state.writing, balance)
    if constraints is not None:
        onset = (beat - 1) * encoding.resolution + position - 1
        band_low, band_high, range_low, range_high = constraints.bands(onset)
        open_band = constraints.open_bands(onset, state, same_onset, (band_low, band_high))
        note_instruments = _first_allowed(note_instruments & open_band, note_instruments)
        if constraints.constraints.density is not None:
            density = constraints.density_bias(state.counts, state.writing, onset)
            bias = density if bias is None else bias + density
    instrument_allowed = torch.where(header_row[:, None], state.codes[None, :] > state.last_instrument[:, None],
                                     note_instruments)
    if bias is not None:
        bias = torch.where(header_row[:, None], 0.0, bias)
    instrument = draw(Field.INSTRUMENT, instrument_allowed, bias, kept=note_row | header_row)

    pitch_codes = torch.arange(n["pitch"], device=device)[None, :]
    low, high = state.pitch_low[instrument][:, None], state.pitch_high[instrument][:, None]
    can_repeat_pitch = ~state.used.gather(1, instrument[:, None]) & (
        (state.last_duration < n["duration"] - 1) | (instrument > state.last_note_instrument))[:, None]
    last_pitch = state.last_pitch[:, None]
    at_onset = (pitch_codes > last_pitch) | ((pitch_codes == last_pitch) & can_repeat_pitch)
    pitch_allowed = (pitch_codes >= low) & (pitch_codes <= high) & (~same_onset[:, None] | at_onset)
    pitch_bias = None
    if constraints is not None:
        def within(lows: Tensor, highs: Tensor) -> Tensor:
            return ((pitch_codes >= lows.gather(1, instrument[:, None]))
                    & (pitch_codes <= highs.gather(1, instrument[:, None])))
        pitch_allowed = _first_allowed(pitch_allowed & within(band_low, band_high),
                                       pitch_allowed & within(range_low, range_high), pitch_allowed)
        pitch_bias = torch.where((instrument == constraints.drums)[:, None], 0.0, constraints.key_bias[None, :])
    pitch = draw(Field.PITCH, pitch_allowed, pitch_bias, kept=note_row)

    same_pitch = same_onset & (pitch == state.last_pitch)
    after_last = state.last_duration + (instrument <= state.last_note_instrument).long()
    duration = draw(Field.DURATION, codes_from(torch.where(same_pitch, after_last, 0), n["duration"]), kept=note_row)

    is_note = note_row
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


# ---------------------------------------------------------------------- the sampler
def sample(
    model,
    prompt: np.ndarray,
    *,
    n_samples: int = 1,
    params: SamplingParams = SamplingParams(),
    seed: int = 0,
    max_new_rows: int = 1024,
    max_beats: float | None = None,
    start_beats: float | None = None,
    pitch_ranges: Mapping[str, tuple[int, int]] | None = None,
    balance: float = 0.0,
    quota: int = 0,
    min_new_rows: int = 0,
    window_shift: int = DEFAULT_WINDOW_SHIFT,
    controls: np.ndarray | None = None,
    anticipation: float | None = None,
    write_instruments: Sequence[int] | None = None,
    end_from_beats: float | None = None,
    constraints: PartConstraints | None = None,
    beats_per_bar: float = 4.0,
    device=None,
    progress: bool = False,
) -> list[np.ndarray]:
    """Continue `prompt` `n_samples` times (see the module docstring for the method).

    This is the engine under `mmt.generate`, which builds the prompt for each mode;
    call it directly to sample from code arrays.

    Args:
        model: a `MusicTransformer` (its `.encoding` defines the codes).
        prompt: codes to continue: start-of-song, the header, maybe start-of-notes and
            notes; no end-of-song.
        n_samples: samples drawn together as one batch.
        params: temperature, top-k and top-p of each field.
        seed: seeds a `torch.Generator`; the same seed (and settings) gives the same samples.
        max_new_rows: the most rows added to the prompt; a sample that reaches it is cut
            there without end-of-song.
        max_beats: a note that would start at or after this beat (counted from the song's
            start) ends the sample with end-of-song instead.
        start_beats: no new note starts before this beat (a continuation's cut).
        pitch_ranges: instrument name -> (low, high) MIDI pitch its notes keep to
            (default: none; `mmt.generate` passes the model's `pitch_ranges`).
        balance: 0 (the model's own choice) to 10: how strongly the declared instruments
            that have played least are favoured (`balance_bias`).
        quota: with `max_beats`, new notes each declared instrument gets: one behind the
            schedule of `quota` notes by the limit (`lagging`) takes the next note, and
            end-of-song waits until every instrument has its quota. 0: off.
        min_new_rows: end-of-song is not allowed before this many new rows (benchmarks use
            it to run untrained models to full length).
        window_shift: past the context (rotary / no position embedding), rows dropped
            from the cache window at a time.
        controls: given notes (note or control rows, any order): the sampler feeds each
            one as a control row when its time comes (`ControlQueue`) and never samples
            them; they come back as control rows in the samples. The prompt then needs
            start-of-notes. None: none.
        anticipation: beats ahead of their time that controls are fed (default: the
            model's, `encoding.anticipation`; 0 for a model trained without controls, the
            only value such a model takes).
        write_instruments: instrument codes the new notes may take (an edit's parts, some of
            them declared for the prompt's notes alone); quota and balance concern these.
            None: every declared instrument.
        end_from_beats: end-of-song is not drawn before a note starts at or after this beat
            (an edit's last bar, so that a region is written to its end); until then the
            notes stay before `max_beats`.
        constraints: a `mmt.constraints.PartConstraints` the new notes keep to (ranges,
            no crossing, key, density; see `ConstraintState`), or None: none.
        beats_per_bar: the bar length that `constraints.density` counts notes per.
        device: where to run; the model is moved there. Default: the model's device.
        progress: show a progress bar over the steps.

    Returns:
        `n_samples` int64 arrays (rows x 6), each starting with the prompt (controls
        interleaved) and ending with end-of-song unless cut at `max_new_rows` drawn rows;
        every control is in it, those the notes never reached just before end-of-song.

    Raises:
        GenerationError: bad arguments (`mmt.config.check_arguments`), a malformed prompt, or (absolute position
            embedding) a sample that needs more rows than the model's context.
    """
    from tqdm.auto import tqdm

    encoding: Encoding = model.encoding
    check_arguments(n_samples=n_samples, max_new_rows=max_new_rows, min_new_rows=min_new_rows,
                    window_shift=window_shift, seed=seed, max_beats=max_beats, balance=balance, quota=quota)
    start_ticks = 0 if start_beats is None else round(start_beats * encoding.resolution)
    limit_ticks = None if max_beats is None else round(max_beats * encoding.resolution)
    prompt = check_prompt(prompt, encoding)
    interval = _interval(encoding, controls, anticipation)
    prefix, pending = _with_controls(prompt, controls, encoding, interval)

    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(device)
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    try:
        with torch.inference_mode():
            state = GrammarState(prompt, n_samples, encoding, device, pitch_ranges, start_beats, write_instruments)
            queue = ControlQueue(pending, prompt, n_samples, encoding, interval, device)
            rules = {"balance": balance, "quota": quota, "start_ticks": start_ticks,
                     "end_from_ticks": 0 if end_from_beats is None else round(end_from_beats * encoding.resolution),
                     "constraints": None}
            if constraints is not None:
                rules["constraints"] = ConstraintState(constraints, np.vstack([prefix, pending]), n_samples, encoding,
                                                       state, beats_per_bar, start_ticks)
            rows = _run(model, prefix, state, queue, max_new_rows, min_new_rows, limit_ticks, params, rules,
                        generator, window_shift, device, tqdm if progress else None)
    finally:
        model.train(was_training)
    return rows


# ---------------------------------------------------------------------- control rows
def _interval(encoding: Encoding, controls, anticipation: float | None) -> int:
    """The anticipation interval in ticks: the model's own (0 for a model without controls) unless given."""
    if anticipation is None:
        return encoding.anticipation_ticks
    if not (math.isfinite(anticipation) and anticipation >= 0):
        raise GenerationError(f"anticipation must be a number of beats >= 0, got {anticipation!r}")
    if anticipation > 0 and not encoding.knows_controls:
        raise GenerationError("this model was trained without control rows: it takes given notes only at "
                              "their own time (anticipation 0)")
    return round(anticipation * encoding.resolution)


def _with_controls(prompt: np.ndarray, controls, encoding: Encoding, interval: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(the rows fed before sampling, the control rows still to insert): the prompt's notes with
    the controls they reach interleaved (`mmt.encoding.anticipate`)."""
    if controls is None or len(controls) == 0:
        return prompt, np.zeros((0, 6), dtype=np.int64)
    controls = np.asarray(controls)
    if controls.ndim != 2 or controls.shape[1] != 6 or not np.issubdtype(controls.dtype, np.integer):
        raise GenerationError(f"controls must be an integer (N, 6) code array, got shape {controls.shape}")
    if not np.all(np.isin(controls[:, Field.TYPE], (RowType.NOTE, RowType.CONTROL))):
        raise GenerationError("controls must be note or control rows")
    if np.any(controls[:, Field.TYPE] == RowType.NOTE):
        controls = as_controls(controls)
    for name in FIELDS[1:]:
        column = controls[:, Field[name.upper()]]
        if np.any((column < 1) | (column >= encoding.n_tokens[name])):
            raise GenerationError(f"a control row's {name} is undefined or out of range")
    controls = controls[np.lexsort(controls[:, ::-1].T)]  # the notes' order: beat, position, pitch, ...
    son = np.flatnonzero(prompt[:, Field.TYPE] == RowType.START_OF_NOTES)
    if len(son) == 0:
        raise GenerationError("a prompt with controls must end its header with start-of-notes")
    head, notes = prompt[:son[0] + 1], prompt[son[0] + 1:]
    body, pending = anticipate(notes, controls, encoding.resolution, interval)
    return np.vstack([head, body]), pending


class ControlQueue:
    """The control rows each sample still has to take, and when (the rule of `mmt.encoding.due_after`).

    A sample's clock is the onset of its latest note (the prompt's, then the model's; 0
    before any). Before each draw, a sample whose next control is due (clock >= its onset
    minus the interval) is given that control row instead of a drawn one. Controls are
    fed as control rows, or as note rows to a model without the control type (which sees
    them only at their own time: interval 0). They never change the grammar state.
    """

    def __init__(self, pending: np.ndarray, prompt: np.ndarray, batch: int, encoding: Encoding, interval: int,
                 device) -> None:
        self.pending = pending
        self.rows = torch.as_tensor(pending, dtype=torch.long, device=device).reshape(-1, 6)
        self.due = onsets(pending, encoding.resolution) if len(pending) else np.zeros(0, dtype=np.int64)
        self.due = torch.as_tensor(self.due - interval, dtype=torch.long, device=device)
        notes = prompt[prompt[:, Field.TYPE] == RowType.NOTE]
        start = int(onsets(notes[-1:], encoding.resolution)[0]) if len(notes) else 0
        self.clock = torch.full((batch,), max(start, 0), dtype=torch.long, device=device)
        self.next = torch.zeros(batch, dtype=torch.long, device=device)
        self.fed_type = RowType.CONTROL if encoding.knows_controls else RowType.NOTE
        self.resolution = encoding.resolution

    def __len__(self) -> int:
        return len(self.pending)

    def due_now(self, finished: Tensor) -> Tensor:
        """(B,): samples whose next control row is due now."""
        if len(self) == 0:
            return torch.zeros_like(finished)
        has = self.next < len(self)
        index = self.next.clamp(max=len(self) - 1)
        return has & ~finished & (self.due[index] <= self.clock)

    def take(self, drawn: Tensor, due: Tensor, finished: Tensor) -> Tensor:
        """The rows (B, 6) the samples get: their due control, else the drawn row; the clocks move."""
        if len(self) == 0:
            return drawn
        rows = torch.where(due[:, None], self.rows[self.next.clamp(max=len(self) - 1)], drawn)
        is_note = ~due & ~finished & (drawn[:, Field.TYPE] == RowType.NOTE)
        onset = (drawn[:, Field.BEAT] - 1) * self.resolution + drawn[:, Field.POSITION] - 1
        self.clock = torch.where(is_note, onset, self.clock)
        self.next = self.next + due.long()
        return rows

    def fed(self, rows: Tensor) -> Tensor:
        """`rows` as the model reads them (control rows as notes for a model without controls)."""
        if self.fed_type == RowType.CONTROL:
            return rows
        control = rows[..., Field.TYPE] == RowType.CONTROL
        return torch.where(control[..., None] & (torch.arange(6, device=rows.device) == Field.TYPE),
                           torch.full_like(rows, RowType.NOTE), rows)

    def finish(self, codes: np.ndarray, taken: int) -> np.ndarray:
        """A sample's rows with the controls it did not take placed before its end-of-song
        (as in the training data: controls the notes never reach come last)."""
        left = self.pending[taken:]
        if len(left) == 0:
            return codes
        if len(codes) and codes[-1, Field.TYPE] == RowType.END_OF_SONG:
            return np.vstack([codes[:-1], left, codes[-1:]])
        return np.vstack([codes, left])


def _run(model, prefix: np.ndarray, state: GrammarState, queue: ControlQueue, max_new_rows: int,
         min_new_rows: int, limit_ticks: int | None, params: SamplingParams, rules: dict,
         generator: torch.Generator, window_shift: int, device, bar) -> list[np.ndarray]:
    encoding = model.encoding
    context = model.config.max_seq_len
    n_prompt = len(prefix)
    batch = state.in_notes.shape[0]
    n_steps = max_new_rows + len(queue)  # drawn rows, and the control rows given between them
    out = torch.zeros(batch, n_prompt + n_steps, 6, dtype=torch.long, device=device)
    out[:, :n_prompt] = torch.as_tensor(prefix, device=device)
    length = torch.full((batch,), n_prompt + n_steps, dtype=torch.long, device=device)
    drawn = torch.zeros(batch, dtype=torch.long, device=device)

    _check_context(model, n_prompt)
    sink = None
    fed = queue.fed(out[:, :n_prompt])
    if n_prompt > context:  # a long prompt (rotary / no position embedding): its sink and latest rows
        sink = _sink_rows(state, n_prompt - 1, context)
        fed = torch.cat([fed[:, :sink], fed[:, n_prompt - (context - sink):]], dim=1)
    # never more than the context: past it the window slides (or, absolute positions, `_check_context` stops)
    decoder = CachedDecoder(model, batch, min(context, fed.shape[1] + n_steps))
    logits = RowLogits(model, decoder.hidden(fed)[:, -1])
    steps = range(n_steps) if bar is None else bar(range(n_steps), desc="generating", unit="row")
    for step in steps:
        index = n_prompt + step
        due = queue.due_now(state.finished)
        rows = draw_rows(logits, state, params, encoding, generator, step >= min_new_rows, limit_ticks, **rules)
        rows = queue.take(rows, due, state.finished)
        was_finished = state.finished.clone()
        state.update(rows, index, given=due)
        if rules["constraints"] is not None:
            rules["constraints"].update(rows, ~due & ~was_finished)
        drawn += (~due & ~was_finished).long()
        state.finished |= drawn >= max_new_rows  # cut there, without end-of-song
        out[:, index] = rows
        ended = state.finished & ~was_finished
        length = torch.where(ended, torch.full_like(length, index + 1), length)
        if step == n_steps - 1 or bool(state.finished.all()):
            break
        if decoder.length >= context:
            if not model.supports_long_context:
                _check_context(model, decoder.length + 1)
            if sink is None:
                sink = _sink_rows(state, index, context)
            decoder.drop_rows(sink, min(window_shift, decoder.length - sink - 1))
        logits = RowLogits(model, decoder.hidden(queue.fed(rows)[:, None])[:, -1])
    codes = out.cpu().numpy()
    taken = queue.next.tolist()
    return [queue.finish(codes[i, :n].copy(), taken[i]) for i, n in enumerate(length.tolist())]


def _check_context(model, rows: int) -> None:
    if not model.supports_long_context and rows > model.config.max_seq_len:
        raise GenerationError(
            f"this model uses absolute position embeddings and cannot go past its context of "
            f"{model.config.max_seq_len} rows (a sample needs {rows}); lower max_new_rows, set "
            f"max_beats, or use a rotary / no-position-embedding model"
        )


def _sink_rows(state: GrammarState, index: int, context: int) -> int:
    """Rows kept at the cache's start: start-of-song through start-of-notes of every sample."""
    live = ~state.finished
    if bool((live & ~state.in_notes).any()):
        raise GenerationError(
            f"a sample's instrument header fills the model's context ({context} rows); "
            "the sliding window needs start-of-notes inside it"
        )
    sink = int(state.son_row[live].max()) + 1 if bool(live.any()) else 1
    if sink >= context - 1:
        raise GenerationError(f"the header ({sink} rows) leaves no room for a sliding window in {context} rows")
    return sink
