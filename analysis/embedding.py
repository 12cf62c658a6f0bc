"""What the learned field embeddings encode: similarity matrices, a pitch PCA, an octave score.

After Dong et al., "Multitrack Music Transformer", ICASSP 2023, section 4.4, which found
that the pitch embeddings of a trained model place pitches an octave apart close together.

Embedding tables are taken without row 0 (code 0 is "undefined"), so row i of a pitch
table is MIDI pitch i, row i of a beat table is beat i, and so on.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from mmt.constants import PITCH_NAMES, pitch_name
from mmt.files import save_figure

# The piano's range, A0 (21) .. C8 (108). Pitches outside it are rare in the training
# data, so their embeddings stay near their random initialisation and would only add
# noise to the octave score.
PIANO_LOW, PIANO_HIGH = 21, 108


def embedding_weights(model, field: str) -> np.ndarray:
    """A model's embedding table of `field` as float64 numpy, without row 0 ("undefined")."""
    return model.field_embedding(field).weight.detach().cpu().double().numpy()[1:]


def pitch_tables(model) -> dict[str, np.ndarray]:
    """Every table of learned pitch vectors in a model, by name, without row 0 ("undefined").

    - "input embedding": what the model reads a pitch as (the table the paper plots, and the
      one the report's headline octave score is of);
    - "output head": the pitch head's rows; the logit of pitch p is the dot product of the
      hidden state with row p, so these are the vectors the model predicts pitches with;
    - "row condition" (row-conditioned models only): what the heads after pitch (the
      duration's) are given of the pitch drawn for the row.

    A model that ties its pitch weights (`ModelConfig.tie_pitch`) reads and predicts pitches
    with one table: it is given once, as the input embedding.
    """
    from mmt.constants import FIELDS, ROW_ORDER, Field

    tables = {"input embedding": embedding_weights(model, "pitch")}
    if not getattr(model.config, "tie_pitch", False):
        tables["output head"] = model.heads[FIELDS.index("pitch")].weight.detach().cpu().double().numpy()[1:]
    if getattr(model, "conditions", None) is not None:
        table = model.conditions[ROW_ORDER.index(Field.PITCH)]
        tables["row condition"] = table.weight.detach().cpu().double().numpy()[1:]
    return tables


def cosine_similarity(weights: np.ndarray) -> np.ndarray:
    """(n, n) cosine similarity of the rows of `weights` (n, dim); a zero row has similarity 0."""
    weights = np.asarray(weights, dtype=np.float64)
    norms = np.linalg.norm(weights, axis=1, keepdims=True)
    unit = np.divide(weights, norms, out=np.zeros_like(weights), where=norms > 0)
    return unit @ unit.T


def pca_2d(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows onto their first two principal components.

    Returns:
        (points (n, 2), explained variance ratio of the two components (2,))
    """
    centred = np.asarray(weights, dtype=np.float64) - np.mean(weights, axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    total = variance.sum()
    ratio = variance[:2] / total if total > 0 else np.zeros(2)
    # Fix each component's sign (largest loading positive) so plots do not flip between runs.
    components = vt[:2] * np.sign(vt[:2][np.arange(2), np.argmax(np.abs(vt[:2]), axis=1)])[:, None]
    return centred @ components.T, ratio


def _check_range(n_pitches: int, low: int, high: int) -> None:
    if not 0 <= low < high < n_pitches or high - low < 13:
        raise ValueError(f"pitch range {low}..{high} must lie in 0..{n_pitches - 1} and span more than an octave")


def interval_similarity(
    pitch_weights: np.ndarray, low: int = PIANO_LOW, high: int = PIANO_HIGH, max_interval: int = 24
) -> np.ndarray:
    """Mean cosine similarity of pitch pairs (p, p + i) with both in low..high, for i = 1..max_interval.

    Returns:
        (max_interval,) array; entry i - 1 is interval i semitones.
    """
    _check_range(len(pitch_weights), low, high)
    similarity = cosine_similarity(pitch_weights)[low:high + 1, low:high + 1]
    return np.array([np.mean(np.diagonal(similarity, offset=i)) for i in range(1, max_interval + 1)])


def octave_score(pitch_weights: np.ndarray, low: int = PIANO_LOW, high: int = PIANO_HIGH) -> float:
    """How much more alike pitches an octave apart are than other pitch pairs.

        score = mean cos(e_p, e_(p+12)) over p, p + 12 in low..high
              - mean cos(e_p, e_q)     over p < q in low..high, q - p != 12

    with e_p the embedding of MIDI pitch p (row p of `pitch_weights`). "Other pairs" are
    all the remaining pairs, so two octaves (24) and more count among them. The default
    range is the piano's, A0 (21) .. C8 (108). About 0 for unrelated (random) embeddings;
    close to 1 when every pitch's embedding equals the one an octave up.
    """
    _check_range(len(pitch_weights), low, high)
    similarity = cosine_similarity(pitch_weights)[low:high + 1, low:high + 1]
    upper_p, upper_q = np.triu_indices(len(similarity), k=1)
    octave = (upper_q - upper_p) == 12
    values = similarity[upper_p, upper_q]
    return float(values[octave].mean() - values[~octave].mean())


def octave_bump(pitch_weights: np.ndarray, low: int = PIANO_LOW, high: int = PIANO_HIGH) -> float:
    """How much more alike pitches an octave apart are than pitches a semitone closer or further.

        bump = s(12) - (s(11) + s(13)) / 2,   s(i) = mean cos(e_p, e_(p+i)) over p, p + i in low..high

    `octave_score` compares octave pairs with *all* other pairs, most of them far apart, so a
    table whose similarity merely falls with distance (neighbouring pitches alike) scores
    above 0 with no preference for octaves; the bump compares the octave with its neighbours
    only, so it is about 0 for such a table and 1 for a table of pitch classes.
    """
    s = interval_similarity(pitch_weights, low, high, max_interval=13)
    return float(s[11] - (s[10] + s[12]) / 2)


def duration_labels(known_durations, resolution: int) -> list[str]:
    """Durations in beats as short fractions, e.g. 6 ticks at 12 per beat -> "1/2"."""
    return [str(Fraction(int(d), resolution)) for d in known_durations]


# --------------------------------------------------------------------------- plots
def plot_similarity(
    similarity: np.ndarray,
    labels: list[str],
    path: str | os.PathLike,
    title: str,
    axis_label: str,
    tick_every: int = 1,
    tick_offset: int = 0,
) -> Path:
    """Heat map of a cosine-similarity matrix, labelled every `tick_every` rows from `tick_offset`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = 6.4 if len(labels) > 20 else 5.2
    fig, ax = plt.subplots(figsize=(size + 1.2, size), dpi=110)
    image = ax.imshow(similarity, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ticks = np.arange(tick_offset, len(labels), tick_every)
    ax.set_xticks(ticks)
    ax.set_xticklabels([labels[i] for i in ticks], rotation=90, fontsize=7)
    ax.set_yticks(ticks)
    ax.set_yticklabels([labels[i] for i in ticks], fontsize=7)
    ax.set_xlabel(axis_label)
    ax.set_ylabel(axis_label)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="cosine similarity")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_pitch_similarity(pitch_weights: np.ndarray, path: str | os.PathLike) -> Path:
    """The 128 x 128 pitch similarity matrix, ticks at every C."""
    labels = [pitch_name(p) for p in range(len(pitch_weights))]
    return plot_similarity(
        cosine_similarity(pitch_weights), labels, path, "Pitch embeddings: cosine similarity", "pitch",
        tick_every=12, tick_offset=0,
    )


def plot_pitch_pca(
    pitch_weights: np.ndarray, path: str | os.PathLike, low: int = PIANO_LOW, high: int = PIANO_HIGH
) -> Path:
    """2-D PCA of the pitch embeddings low..high, each point labelled by name, coloured by pitch class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    pitches = np.arange(low, high + 1)
    points, ratio = pca_2d(np.asarray(pitch_weights)[pitches])
    colours = plt.get_cmap("hsv")(np.arange(12) / 12)
    fig, ax = plt.subplots(figsize=(8, 6.4), dpi=110)
    ax.plot(points[:, 0], points[:, 1], color="0.85", lw=0.6, zorder=1)
    ax.scatter(points[:, 0], points[:, 1], c=colours[pitches % 12], s=22, edgecolors="0.3", linewidths=0.4, zorder=2)
    for (x, y), pitch in zip(points, pitches):
        is_c = pitch % 12 == 0
        ax.annotate(pitch_name(int(pitch)), (x, y), xytext=(3, 2), textcoords="offset points",
                    fontsize=7 if is_c else 5.5, fontweight="bold" if is_c else "normal", color="0.15")
    handles = [Line2D([], [], marker="o", ls="", color=colours[i], markeredgecolor="0.3", label=name)
               for i, name in enumerate(PITCH_NAMES)]
    ax.legend(handles=handles, title="pitch class", fontsize=7, title_fontsize=8, loc="center left",
              bbox_to_anchor=(1.01, 0.5))
    ax.set_xlabel(f"first principal component ({ratio[0]:.0%} of variance)")
    ax.set_ylabel(f"second principal component ({ratio[1]:.0%} of variance)")
    ax.set_title(f"Pitch embeddings {pitch_name(low)}..{pitch_name(high)}, first two principal components")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_interval_lines(
    tables: dict[str, np.ndarray], path: str | os.PathLike, low: int = PIANO_LOW, high: int = PIANO_HIGH
) -> Path:
    """One line per pitch table: mean similarity of pitch pairs by interval (1..24 semitones),
    the table's octave score and octave bump in its legend; octaves marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=110)
    intervals = np.arange(1, 25)
    for name, weights in tables.items():
        values = interval_similarity(weights, low, high, max_interval=24)
        label = (f"{name} (octave score {octave_score(weights, low, high):+.3f}, "
                 f"bump {octave_bump(weights, low, high):+.3f})")
        ax.plot(intervals, values, marker="o", ms=3, label=label)
    for octave in (12, 24):
        ax.axvline(octave, color="tab:red", lw=0.8, ls=":")
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(intervals)
    ax.set_xlabel("interval (semitones); dotted red: octaves")
    ax.set_ylabel("mean cosine similarity")
    ax.set_title(f"Every table of pitch vectors, by interval ({pitch_name(low)}..{pitch_name(high)})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_interval_similarity(
    pitch_weights: np.ndarray, path: str | os.PathLike, low: int = PIANO_LOW, high: int = PIANO_HIGH
) -> Path:
    """Bar chart: mean similarity of pitch pairs by interval (1..24 semitones), octaves highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = interval_similarity(pitch_weights, low, high, max_interval=24)
    intervals = np.arange(1, len(values) + 1)
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=110)
    colours = ["tab:red" if i % 12 == 0 else ("tab:orange" if i % 12 in (5, 7) else "tab:blue") for i in intervals]
    ax.bar(intervals, values, color=colours)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(intervals)
    ax.set_xlabel("interval (semitones); red: octaves, orange: fourths and fifths")
    ax.set_ylabel("mean cosine similarity")
    ax.set_title(f"How alike are two pitches, by the interval between them ({pitch_name(low)}..{pitch_name(high)})")
    fig.tight_layout()
    return save_figure(fig, path)
