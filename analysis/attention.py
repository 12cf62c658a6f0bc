"""Mean relative attention: where, in musical terms, a model's attention heads look.

After Dong et al., "Multitrack Music Transformer", ICASSP 2023, section 4.4. For a field
d (beat, position, pitch) and an offset k, over every sequence and every pair of a query
row s and a key row t *before* it (t < s) where both rows are notes:

    gamma_k    = sum a[s, t] * 1[x_t - x_s = k]  /  sum a[s, t]
    baseline_k = (number of pairs with x_t - x_s = k)  /  (number of pairs)
    gain_k     = gamma_k - baseline_k

a[s, t] is the post-softmax attention of query s on key t (one layer, one head); x is the
field's value (beat index, tick within the beat, MIDI pitch). The baseline is the same
fraction with every a[s, t] = 1, i.e. what attention spread evenly over the earlier notes
would give; a positive gain means the head looks at notes k away more than chance.

Sign convention: k = x_t - x_s = (key's value) - (query's value). Keys come before the
query and notes are sorted by time, so beat offsets are k <= 0: k = -4 means "the key
note starts 4 beats before the query note". For pitch, k = -12 means "the key note is an
octave below the query note". For instruments the offsets are two classes, "same" and
"different" instrument.

Only pairs t < s count (not the query itself, not later keys), and the sums run over
note rows only (the header, padding and end-of-song are left out of both numerator and
denominator). The original implementation's baseline also counted future keys and the
query itself; this one follows the formula above.

"Averaged" results are the plain mean of the per-head gammas (every head weighs the
same); the baseline is common to all heads, so the mean gain is the mean of the gains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from mmt.analysis import AnalysisError
from mmt.constants import Field, RowType
from mmt.encoding import Encoding
from mmt.files import save_figure

RELATIVE_FIELDS: tuple[str, ...] = ("beat", "position", "pitch", "instrument")
INSTRUMENT_LABELS: tuple[str, ...] = ("same", "different")


def offset_range(field: str, encoding: Encoding) -> np.ndarray:
    """All offsets k a field can take: -(n - 1)..(n - 1) for n values; [0, 1] for instrument."""
    if field == "instrument":
        return np.arange(2)
    if field not in RELATIVE_FIELDS:
        raise AnalysisError(f"field must be one of {', '.join(RELATIVE_FIELDS)}, got {field!r}")
    n_values = encoding.n_tokens[field] - 1  # code 0 is "undefined"
    return np.arange(-(n_values - 1), n_values)


@dataclass(frozen=True)
class RelativeAttention:
    """Mean relative attention of one field, per layer and head.

    Attributes:
        field: "beat", "position", "pitch" or "instrument".
        offsets: (K,) the offsets k (for instrument: 0 = same, 1 = different).
        labels: (K,) a printable label per offset.
        gamma: (layers, heads, K) attention fraction per offset; NaN for a head whose
            attention on the counted pairs summed to zero.
        baseline: (K,) fraction of the counted pairs at each offset (uniform attention).
        n_pairs: number of counted (query, key) pairs.
        n_sequences: number of sequences summed over.
    """

    field: str
    offsets: np.ndarray
    labels: tuple[str, ...]
    gamma: np.ndarray
    baseline: np.ndarray
    n_pairs: int
    n_sequences: int

    @property
    def gain(self) -> np.ndarray:
        """(layers, heads, K) gamma - baseline."""
        return self.gamma - self.baseline

    @property
    def gain_per_layer(self) -> np.ndarray:
        """(layers, K) gain averaged over each layer's heads."""
        return np.nanmean(self.gain, axis=1)

    @property
    def mean_gain(self) -> np.ndarray:
        """(K,) gain averaged over every layer and head."""
        return np.nanmean(self.gain.reshape(-1, len(self.offsets)), axis=0)

    def window(self, low: int, high: int) -> "RelativeAttention":
        """The same result restricted to offsets low..high (inclusive)."""
        keep = (self.offsets >= low) & (self.offsets <= high)
        return RelativeAttention(
            self.field, self.offsets[keep], tuple(np.asarray(self.labels)[keep]), self.gamma[..., keep],
            self.baseline[keep], self.n_pairs, self.n_sequences,
        )


@dataclass(frozen=True)
class GroupAttention:
    """How much attention a group of offsets gets, against uniform attention, beside the offsets it is compared with.

    One definition throughout: the *excess* of a set of offsets is its share of the
    attention on earlier notes divided by its share under uniform attention, minus 1
    (0.25 = "25% more attention than uniform"). The group and the others are measured the
    same way, so the group is favoured over the others exactly when its excess is the
    larger. (A mean of per-offset gains gamma_k - baseline_k is no such measure: offsets
    with many pairs weigh the same as offsets with few, so it could rank the group below
    the others while the group's share is twice its uniform share.)

    Attributes:
        field: the field of the offsets.
        group: the offsets of the group (e.g. beats -4, -8, -12, -16).
        others: the offsets it is compared with.
        share: fraction of all attention on earlier notes that goes to the group's
            offsets, averaged over heads.
        uniform: the same fraction under uniform attention (the sum of the group's baselines).
        excess: share / uniform - 1 (NaN when no pair falls in the group).
        others_share, others_uniform, others_excess: the same three for the offsets `others`.
        heads_above: number of heads whose own share exceeds `uniform`.
        n_heads: number of heads with a defined share.
    """

    field: str
    group: tuple[int, ...]
    others: tuple[int, ...]
    share: float
    uniform: float
    excess: float
    others_share: float
    others_uniform: float
    others_excess: float
    heads_above: int
    n_heads: int

    def to_dict(self) -> dict:
        """JSON-able values (NaN as None)."""
        def clean(value):
            if isinstance(value, float) and not np.isfinite(value):
                return None
            return list(value) if isinstance(value, tuple) else value

        return {name: clean(getattr(self, name)) for name in self.__dataclass_fields__}


def group_attention(result: RelativeAttention, group: Sequence[int], others: Sequence[int]) -> GroupAttention:
    """Summarise the attention on the offsets `group` (see `GroupAttention`).

    Shares are fractions of *all* attention on earlier notes (every offset of `result`),
    so the group's figures do not depend on which offsets `others` lists; the others'
    figures are the same sums over their offsets. Offsets not in `result` raise ValueError.
    """
    index = {int(k): i for i, k in enumerate(result.offsets)}
    missing = [k for k in (*group, *others) if k not in index]
    if missing or not group or not others:
        raise AnalysisError(f"{result.field}: offsets {missing} not in the result, or an empty group")
    g, o = [index[k] for k in group], [index[k] for k in others]
    per_head = _head_shares(result, g)
    share, uniform = _mean_share(per_head), float(result.baseline[g].sum())
    others_share, others_uniform = _mean_share(_head_shares(result, o)), float(result.baseline[o].sum())
    return GroupAttention(
        field=result.field,
        group=tuple(int(k) for k in group),
        others=tuple(int(k) for k in others),
        share=share,
        uniform=uniform,
        excess=_excess(share, uniform),
        others_share=others_share,
        others_uniform=others_uniform,
        others_excess=_excess(others_share, others_uniform),
        heads_above=int((per_head > uniform).sum()),
        n_heads=len(per_head),
    )


def _head_shares(result: RelativeAttention, columns: list[int]) -> np.ndarray:
    """Each head's share of attention on the offsets at `columns` (heads with no defined share left out)."""
    per_head = result.gamma[..., columns].sum(axis=-1).reshape(-1)  # (layers * heads,)
    return per_head[np.isfinite(per_head)]


def _mean_share(per_head: np.ndarray) -> float:
    return float(per_head.mean()) if len(per_head) else math.nan


def _excess(share: float, uniform: float) -> float:
    """share / uniform - 1: how much more (or, negative, less) attention than uniform."""
    return share / uniform - 1 if uniform > 0 else math.nan


@dataclass(frozen=True)
class OffsetGroup:
    """A musically meaningful set of offsets and the offsets it is compared with."""

    name: str
    field: str
    description: str
    group: tuple[int, ...]
    others: tuple[int, ...]


def musical_groups(resolution: int, beat_window: int = 16, pitch_window: int = 24) -> tuple[OffsetGroup, ...]:
    """The comparisons the report states in words (and writes to findings.json).

    - beat_bars: keys a whole number of 4/4 bars back (-4, -8, .. down to -beat_window)
      against the other earlier beats (-beat_window..-1); the same beat (0) is in neither.
    - pitch_consonant: unison, fifths and octaves (0, +-7, +-12) against every other
      interval in -pitch_window..+pitch_window; pitch_unison, pitch_fifth, pitch_octave:
      each of them alone against the same others.
    - position_same: the same tick inside the beat (0) against every other tick offset.
    - instrument_same: the same instrument against a different one.
    """
    if beat_window < 4 or pitch_window < 12:
        raise AnalysisError(f"beat_window must be >= 4 and pitch_window >= 12, got {beat_window}, {pitch_window}")
    bars = tuple(range(-4, -beat_window - 1, -4))
    consonant = (0, -7, 7, -12, 12)
    pitch_others = tuple(k for k in range(-pitch_window, pitch_window + 1) if k not in consonant)
    return (
        OffsetGroup("beat_bars", "beat", "notes a whole number of 4/4 bars back "
                    f"({', '.join(str(k) for k in bars)} beats)", bars,
                    tuple(k for k in range(-beat_window, 0) if k not in bars)),
        OffsetGroup("pitch_consonant", "pitch", "notes a unison, fifth or octave away (0, ±7, ±12 semitones)",
                    consonant, pitch_others),
        OffsetGroup("pitch_unison", "pitch", "notes of the same pitch (0 semitones)", (0,), pitch_others),
        OffsetGroup("pitch_fifth", "pitch", "notes a fifth away (±7 semitones)", (-7, 7), pitch_others),
        OffsetGroup("pitch_octave", "pitch", "notes an octave away (±12 semitones)", (-12, 12), pitch_others),
        OffsetGroup("position_same", "position", "notes at the same place in the beat (0 ticks)", (0,),
                    tuple(k for k in range(-(resolution - 1), resolution) if k != 0)),
        OffsetGroup("instrument_same", "instrument", "notes of the same instrument", (0,), (1,)),
    )


@dataclass
class RelativeAttentionSums:
    """The running sums behind `RelativeAttention`; add the sums of several batches with `+`.

    Attributes:
        weighted: (layers, heads, K) sum of a[s, t] over counted pairs at each offset.
        counts: (K,) number of counted pairs at each offset.
    """

    field: str
    offsets: np.ndarray
    weighted: np.ndarray
    counts: np.ndarray
    n_sequences: int

    def __add__(self, other: "RelativeAttentionSums") -> "RelativeAttentionSums":
        if self.field != other.field or self.weighted.shape != other.weighted.shape:
            raise AnalysisError(
                f"cannot add sums of {self.field} {self.weighted.shape} and {other.field} {other.weighted.shape}"
            )
        return RelativeAttentionSums(
            self.field, self.offsets, self.weighted + other.weighted, self.counts + other.counts,
            self.n_sequences + other.n_sequences,
        )

    def result(self) -> RelativeAttention:
        """gamma, baseline (and so gain) from the sums."""
        total_attention = self.weighted.sum(axis=-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            gamma = np.where(total_attention > 0, self.weighted / total_attention, np.nan)
        n_pairs = int(self.counts.sum())
        baseline = self.counts / n_pairs if n_pairs else np.full(len(self.offsets), np.nan)
        if self.field == "instrument":
            labels = INSTRUMENT_LABELS
        else:
            labels = tuple(f"{k:+d}" if k else "0" for k in self.offsets)
        return RelativeAttention(self.field, self.offsets, labels, gamma, baseline, n_pairs, self.n_sequences)


def _pair_offsets(codes: Tensor, field: str, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Counted pairs and their offsets: (valid (B, L, L) bool [b, s, t], offset (B, L, L) long)."""
    column = codes[..., Field[field.upper()]]
    is_note = (codes[..., Field.TYPE] == RowType.NOTE) & (column >= 1)
    if mask is not None:
        is_note &= mask.bool()
    length = codes.shape[1]
    before = torch.ones(length, length, dtype=torch.bool, device=codes.device).tril(-1)  # t < s
    valid = is_note[:, :, None] & is_note[:, None, :] & before
    if field == "instrument":
        offset = (column[:, None, :] != column[:, :, None]).long()  # 0 same, 1 different
    else:
        offset = column[:, None, :] - column[:, :, None]  # [b, s, t] = x_t - x_s
    return valid, offset


def relative_attention_sums(
    attention: Tensor,
    codes: Tensor | np.ndarray,
    field: str,
    encoding: Encoding,
    mask: Tensor | None = None,
) -> RelativeAttentionSums:
    """Sums of attention and of pair counts per offset for one batch (vectorized, no pair loop).

    Args:
        attention: (layers, B, heads, L, L) post-softmax attention, [.., s, t] = query s on key t.
        codes: (B, L, 6) codes of the same batch (or (L, 6) for B = 1).
        field: "beat", "position", "pitch" or "instrument".
        encoding: sizes the range of offsets so sums of different batches line up.
        mask: (B, L) True for real rows; padding is never counted.
    """
    codes = torch.as_tensor(codes, device=attention.device)
    if codes.dim() == 2:
        codes = codes[None]
    if attention.dim() != 5 or attention.shape[1] != codes.shape[0] or attention.shape[-1] != codes.shape[1]:
        raise AnalysisError(
            f"attention must be (layers, B, heads, L, L) matching codes (B, L, 6) = {tuple(codes.shape)}, "
            f"got {tuple(attention.shape)}"
        )
    offsets = offset_range(field, encoding)
    valid, offset = _pair_offsets(codes, field, mask)
    b, s, t = valid.nonzero(as_tuple=True)
    bins = offset[b, s, t] - int(offsets[0])
    if len(bins) and (bins.min() < 0 or bins.max() >= len(offsets)):
        raise AnalysisError(f"{field} codes out of range for this encoding")
    layers, _, heads = attention.shape[:3]
    weights = attention.transpose(1, 2)[:, :, b, s, t].double()  # (layers, heads, P)
    weighted = torch.zeros(layers, heads, len(offsets), dtype=torch.float64, device=attention.device)
    weighted.index_add_(2, bins, weights)
    counts = torch.bincount(bins, minlength=len(offsets))
    return RelativeAttentionSums(
        field, offsets, weighted.cpu().numpy(), counts.cpu().numpy().astype(np.int64), int(codes.shape[0])
    )


def mean_relative_attention(
    attention: Tensor,
    codes: Tensor | np.ndarray,
    field: str,
    encoding: Encoding,
    mask: Tensor | None = None,
) -> RelativeAttention:
    """Mean relative attention of one batch of attention maps (see the module docstring)."""
    return relative_attention_sums(attention, codes, field, encoding, mask).result()


# --------------------------------------------------------------------------- models
def model_relative_attention(
    model,
    sequences: Iterable[np.ndarray],
    fields: Sequence[str] = RELATIVE_FIELDS,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    progress: bool = False,
    total: int | None = None,
) -> dict[str, RelativeAttention]:
    """Run `model` over code arrays and compute the mean relative attention of each field.

    Args:
        model: a `MusicTransformer` (put in eval mode here).
        sequences: code arrays (L, 6); each is cropped to the model's `max_seq_len`.
        fields: which fields to analyse.
        batch_size: sequences per forward pass (memory grows as layers x heads x L^2).
        device: where to run the model.
        progress: show a tqdm bar.
        total: number of sequences, for the progress bar.
    """
    from tqdm import tqdm

    from mmt.data import collate

    model = model.to(device).eval()
    sums: dict[str, RelativeAttentionSums] = {}
    batch: list[np.ndarray] = []

    def flush() -> None:
        packed = collate(batch)
        codes, mask = packed["codes"].to(device), packed["mask"].to(device)
        with torch.no_grad():
            attention = model.attention_maps(codes, mask)
        for field in fields:
            part = relative_attention_sums(attention, codes, field, model.encoding, mask)
            sums[field] = sums[field] + part if field in sums else part
        batch.clear()

    for codes in tqdm(sequences, total=total, desc="attention", unit="seq", disable=not progress):
        batch.append(np.asarray(codes, dtype=np.int64)[: model.config.max_seq_len])
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if not sums:
        raise AnalysisError("no sequences to analyse")
    return {field: sums[field].result() for field in fields}


def split_sequences(
    data_dir, split: str, encoding: Encoding, max_seq_len: int, n: int | None = None, seed: int = 0
) -> tuple[int, Iterable[np.ndarray]]:
    """(count, lazy iterator) over up to `n` items of a prepared split, chosen at random with `seed`."""
    from mmt.data import MusicDataset

    dataset = MusicDataset(data_dir, split, encoding, max_seq_len, augment=False, seed=seed)
    if len(dataset) == 0:
        raise AnalysisError(f"{data_dir}: split {split!r} is empty")
    order = np.random.default_rng(seed).permutation(len(dataset))
    chosen = sorted(order[: n if n is not None else len(dataset)].tolist())
    return len(chosen), (dataset[i] for i in chosen)


# --------------------------------------------------------------------------- plots
# Bar colours and what they mean, per field: (colour, legend label, test on the offset k).
HIGHLIGHTS: dict[str, tuple[tuple[str, str, object], ...]] = {
    "beat": (("tab:red", "whole 4/4 bars back (multiples of 4)", lambda k: k != 0 and k % 4 == 0),),
    "position": (("tab:red", "same place in the beat", lambda k: k == 0),),
    "pitch": (
        ("tab:red", "unison and octaves (0, ±12, ±24)", lambda k: k % 12 == 0),
        ("tab:orange", "fifths and fourths (±7, ±5, ±19, ±17)", lambda k: abs(k) % 12 in (5, 7)),
    ),
    "instrument": (("tab:red", "same instrument", lambda k: k == 0),),
}
OTHER_COLOUR = "tab:blue"


def _highlight(field: str, offsets: np.ndarray) -> list[str]:
    """Bar colours: whole bars (beat), unison/octaves and fourths/fifths (pitch) stand out."""
    colours = []
    for k in offsets:
        colour = OTHER_COLOUR
        for candidate, _, test in HIGHLIGHTS.get(field, ()):
            if test(int(k)):
                colour = candidate
                break
        colours.append(colour)
    return colours


def plot_mean_gain(result: RelativeAttention, path, title: str, xlabel: str) -> Path:
    """Bars: gain averaged over every head, coloured by musical meaning; markers: each layer's average."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    x = np.arange(len(result.offsets))
    colours = _highlight(result.field, result.offsets)
    width = max(8.5, min(14.0, 0.22 * len(x) + 5.5))  # room for the legend on the right
    fig, ax = plt.subplots(figsize=(width, 3.8), dpi=110)
    ax.bar(x, result.mean_gain, color=colours, width=0.8)
    per_layer = result.gain_per_layer
    shades = np.linspace(0.0, 0.6, len(per_layer)) if len(per_layer) > 1 else [0.0]
    markers = "os^Dv<>p"
    handles = [Patch(color=c, label=label) for c, label, _ in HIGHLIGHTS.get(result.field, ())
               if c in colours]
    handles.append(Patch(color=OTHER_COLOUR, label="other offsets" if handles else "all heads"))
    for layer, values in enumerate(per_layer):
        style = dict(ls="", marker=markers[layer % len(markers)], ms=4, color=str(shades[layer]))
        ax.plot(x, values, **style)
        if len(per_layer) <= 8:
            handles.append(Line2D([], [], label=f"layer {layer + 1} (mean of its heads)", **style))
    ax.axhline(0, color="0.3", lw=0.8)
    step = 1 if len(x) <= 25 else 2
    ax.set_xticks(x[::step])
    ax.set_xticklabels(np.asarray(result.labels)[::step], fontsize=8)
    ax.set_xlim(-0.7, len(x) - 0.3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("attention gain\n(share minus uniform share)")
    ax.set_title(title)
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_head_gain(result: RelativeAttention, path, title: str, xlabel: str) -> Path:
    """Heat map of the gain of every head (rows: layer.head) at every offset (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers, heads, n = result.gain.shape
    gain = result.gain.reshape(layers * heads, n)
    limit = float(np.nanmax(np.abs(gain))) if np.isfinite(gain).any() else 1.0
    limit = limit if limit > 0 else 1.0
    width = max(6.5, min(13.0, 0.22 * n + 4))
    height = max(2.6, min(12.0, 0.22 * layers * heads + 1.4))
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    image = ax.imshow(gain, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    for layer in range(1, layers):
        ax.axhline(layer * heads - 0.5, color="0.2", lw=0.8)
    ax.set_yticks(np.arange(layers * heads))
    ax.set_yticklabels([f"L{l + 1} H{h + 1}" for l in range(layers) for h in range(heads)],
                       fontsize=7 if layers * heads <= 48 else 5)
    step = 1 if n <= 25 else 2
    ax.set_xticks(np.arange(n)[::step])
    ax.set_xticklabels(np.asarray(result.labels)[::step], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.set_ylabel("layer, head")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="attention gain\n(red: more than uniform)")
    fig.tight_layout()
    return save_figure(fig, path)
