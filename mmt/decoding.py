"""Cached decoding: a `MusicTransformer` run a few rows at a time with its own key/value cache.

The network (`mmt.model.MusicTransformer`) runs the x-transformers `Decoder` over whole
sequences for training and analysis. Generation needs the same function one row at a
time; `CachedDecoder` walks the same layers with the same weights and keeps the keys and
values of the rows seen so far (`KVCache`): one preallocated buffer per layer, keys
stored already rotated, new rows written in place. x-transformers' own cache concatenates
the cache with the new keys and re-applies the rotary rotation to every cached key at
every step, so its step time grows with the cache; here a step costs the new rows'
projections plus one attention read over the cache. (x-transformers likewise keeps its
network and its autoregressive wrapper apart.)

This reads the decoder's layers (`layers`, `layer_types`, each block's projections,
`rotary_pos_emb.inv_freq`, `final_norm`): more of x-transformers than its public
exports. Two guards keep that from breaking silently: `check_layout` says clearly when
the layout is not the plain pre-norm one implemented here (training and analysis do not
depend on it), and the tests compare the cached decoder with `forward` for every
position embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from x_transformers import Attention, FeedForward

from mmt.model import MusicTransformer


@dataclass
class KVCache:
    """Keys and values of the rows seen so far, for every attention layer.

    `keys` and `values` are preallocated (layers, batch, heads, capacity, dim_head)
    buffers; rows 0..length-1 hold data. Keys are stored after the rotary rotation
    (rotary models), at their row's position in the cache.
    """

    keys: Tensor
    values: Tensor
    length: int = 0

    @property
    def capacity(self) -> int:
        return self.keys.shape[-2]

    @property
    def batch(self) -> int:
        return self.keys.shape[1]


def check_layout(model: MusicTransformer) -> None:
    """Raise when the model's decoder is not the plain pre-norm layout `CachedDecoder` implements."""
    decoder = model.decoder
    expected = ("a", "f") * model.config.depth
    problems = []
    if tuple(decoder.layer_types) != expected:
        problems.append(f"layer types {tuple(decoder.layer_types)}")
    for (norms, block, residual), kind in zip(decoder.layers, decoder.layer_types):
        if norms[0] is None or any(n is not None for n in norms[1:]):
            problems.append("norms other than one pre-norm")
        if type(residual).__name__ != "Residual" or getattr(residual, "residual_scale", None) is not None:
            problems.append(f"residual {type(residual).__name__}")
        if not isinstance(block, Attention if kind == "a" else FeedForward):
            problems.append(f"block {type(block).__name__}")
    if decoder.rotary_pos_emb is not None and getattr(decoder.rotary_pos_emb, "scale", None) is not None:
        problems.append("xpos rotary scaling")
    if problems:
        raise RuntimeError(
            "this x-transformers Decoder is not the plain pre-norm layout that mmt.decoding implements "
            f"({'; '.join(sorted(set(problems)))}); check the x-transformers version"
        )


class CachedDecoder:
    """Logits of rows that follow the cached ones, at the cost of the new rows only.

    `decoder(codes)` is the same function as `model(all rows so far)[..., -n:, :]`
    without dropout (the model must be in eval mode).

    Args:
        model: the network.
        batch: sequences decoded together.
        capacity: the most rows the cache holds (at most the model's context, which
            `drop_rows` keeps it under past that).
        device: where the cache lives (default: the model's device).
    """

    def __init__(self, model: MusicTransformer, batch: int, capacity: int, device=None) -> None:
        if batch < 1 or capacity < 1:
            raise ValueError(f"batch and capacity must be >= 1, got {batch} and {capacity}")
        check_layout(model)
        self.model = model
        first = model.decoder.layers[0][1]
        dim_head = first.to_q.out_features // first.heads
        parameter = next(model.parameters())
        shape = (model.config.depth, batch, first.heads, capacity, dim_head)
        device = parameter.device if device is None else device
        self.cache = KVCache(torch.zeros(shape, device=device, dtype=parameter.dtype),
                             torch.zeros(shape, device=device, dtype=parameter.dtype))

    @property
    def length(self) -> int:
        """Rows in the cache."""
        return self.cache.length

    def __call__(self, codes: Tensor) -> list[Tensor]:
        """Logits (six tensors (B, n, n_tokens[field]), `FIELDS` order) of `codes` (B, n, 6); they join the cache.

        A row-conditioned model's logits need the rows they predict: use `hidden` and
        `mmt.model.RowLogits` (as the sampler does).
        """
        return self.model.logits(self.hidden(codes))

    def hidden(self, codes: Tensor) -> Tensor:
        """The decoder's final states (B, n, dim) of `codes` (B, n, 6), the heads' input; they join the cache."""
        model, cache = self.model, self.cache
        batch, n = codes.shape[:2]
        start = cache.length
        if batch != cache.batch:
            raise ValueError(f"the cache holds {cache.batch} sequences, got {batch}")
        if start + n > cache.capacity:
            raise ValueError(f"the cache holds {cache.capacity} rows; {start} cached plus {n} new do not fit")
        x = model.embed(codes, offset=start)
        positions = torch.arange(start, start + n, device=codes.device)
        angles = self._rotary_angles(positions)
        # new row i sees cached rows and new rows up to itself
        causal = None if n == 1 else positions[:, None] >= torch.arange(start + n, device=codes.device)
        attention_index = 0
        for (norms, block, _), kind in zip(model.decoder.layers, model.decoder.layer_types):
            h = norms[0](x)
            if kind == "a":
                h = self._attend(block, h, attention_index, angles, causal)
                attention_index += 1
            else:
                h = block(h)
            x = x + h
        cache.length = start + n
        return model.decoder.final_norm(x)

    def _rotary_angles(self, positions: Tensor) -> Tensor | None:
        """Rotary angles (n, rotary_dim) of `positions`, each pair's angle repeated; None without rotary."""
        rotary = self.model.decoder.rotary_pos_emb
        if rotary is None:
            return None
        return (positions[:, None].float() * rotary.inv_freq).repeat_interleave(2, dim=-1)

    def _attend(self, block: Attention, x: Tensor, layer: int, angles: Tensor | None,
                causal: Tensor | None) -> Tensor:
        """One attention block over the cache plus the new rows `x` (B, n, dim), writing their keys/values."""
        cache = self.cache
        batch, n, _ = x.shape
        start, end = cache.length, cache.length + n

        def split(t: Tensor) -> Tensor:  # (B, n, heads * dim_head) -> (B, heads, n, dim_head)
            return t.view(batch, n, block.heads, -1).transpose(1, 2)

        q, k, v = split(block.to_q(x)), split(block.to_k(x)), split(block.to_v(x))
        if angles is not None:
            q, k = rotate(q, angles), rotate(k, angles)
        cache.keys[layer, :, :, start:end] = k
        cache.values[layer, :, :, start:end] = v
        out = F.scaled_dot_product_attention(q, cache.keys[layer, :, :, :end], cache.values[layer, :, :, :end],
                                             attn_mask=causal, scale=block.attend.scale)
        return block.to_out(out.transpose(1, 2).reshape(batch, n, -1))

    def drop_rows(self, keep_first: int, drop: int) -> None:
        """Cut the `drop` rows after the first `keep_first` out of the cache (in place).

        The later rows move up by `drop` and, in a rotary model, are rotated back by
        `drop` positions, so every kept row sits at its new position in the cache, as
        StreamingLLM (Xiao et al., 2023) assigns positions within its cache.
        """
        cache = self.cache
        end = cache.length
        if keep_first < 0 or drop < 1 or keep_first + drop > end:
            raise ValueError(f"cannot drop rows {keep_first}..{keep_first + drop - 1} of {end} cached rows")
        moved = slice(keep_first + drop, end)
        keys = cache.keys[..., moved, :]
        angles = self._rotary_angles(torch.full((1,), -drop, device=keys.device))
        # a new tensor either way: the source and target ranges overlap
        keys = keys.clone() if angles is None else rotate(keys, angles)
        cache.keys[..., keep_first:end - drop, :] = keys
        cache.values[..., keep_first:end - drop, :] = cache.values[..., moved, :].clone()
        cache.length = end - drop


def rotate(t: Tensor, angles: Tensor) -> Tensor:
    """Rotary position embedding (Su et al., "RoFormer", 2021) of the first dims of `t`.

    For each pair (x[2i], x[2i+1]) of the first `angles.shape[-1]` dims, with angle a:
    (x[2i] cos a - x[2i+1] sin a, x[2i+1] cos a + x[2i] sin a); later dims are kept.
    Pairs are adjacent dims, as x-transformers lays them out. `angles` (n, d) broadcasts
    over the leading dims of `t` (..., n, dim_head).
    """
    d = angles.shape[-1]
    head, tail = t[..., :d], t[..., d:]
    pairs = head.unflatten(-1, (-1, 2))
    swapped = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    rotated = head * angles.cos().to(t.dtype) + swapped * angles.sin().to(t.dtype)
    return torch.cat((rotated, tail), dim=-1)
