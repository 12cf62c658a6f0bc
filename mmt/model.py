"""`MusicTransformer`: one embedding per field, an x-transformers Decoder, one head per field.

After Dong et al., "Multitrack Music Transformer", ICASSP 2023. The six field embeddings
of a row are summed (plus an absolute position embedding for the APE variant); the
decoder is causal; each head predicts one field of the next row.

Training and analysis run the x-transformers `Decoder` over whole sequences (`forward`,
`attention_maps`). Generation runs `decode`, which walks the same layers with the same
weights but keeps its own key/value cache (`KVCache`): one preallocated buffer per
layer, keys stored already rotated, new rows written in place. x-transformers' own
cache concatenates the cache with the new keys and re-applies the rotary rotation to
every cached key at every step, so its step time grows with the cache; here a step
costs the new row's projections plus one attention read over the cache.

`decode` reads the decoder's layers (`layers`, `layer_types`, each block's projections,
`rotary_pos_emb.inv_freq`, `final_norm`): more of x-transformers than its public
exports. Two guards keep that from breaking silently: `new_cache` checks the layer
layout and says clearly when it is not the plain pre-norm one `decode` implements
(training and analysis do not depend on it), and the tests compare `decode` with
`forward` for every position embedding.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from x_transformers import Attention, Decoder, FeedForward

from mmt.constants import FIELDS
from mmt.encoding import Encoding

POS_EMBS = ("absolute", "rotary", "none")


@dataclass(frozen=True)
class ModelConfig:
    """Network shape. `pos_emb`: "absolute" (APE), "rotary" (RPE) or "none" (NPE)."""

    dim: int = 512
    depth: int = 6
    heads: int = 8
    dropout: float = 0.1
    max_seq_len: int = 1024
    pos_emb: str = "absolute"

    def __post_init__(self) -> None:
        if self.pos_emb not in POS_EMBS:
            raise ValueError(f"pos_emb must be one of {', '.join(POS_EMBS)}, got {self.pos_emb!r}")
        # Upper bounds far above any real model, so that a damaged config fails here, not in a huge allocation.
        for name, most in (("dim", 2**16), ("depth", 1024), ("heads", 1024), ("max_seq_len", 2**20)):
            if not 1 <= getattr(self, name) <= most:
                raise ValueError(f"{name} must be in 1..{most}, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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


class MusicTransformer(nn.Module):
    """The Multitrack Music Transformer.

    Args:
        config: network shape.
        encoding: the encoding whose vocabulary sizes size the embeddings and heads;
            kept as `.encoding`.
    """

    def __init__(self, config: ModelConfig, encoding: Encoding) -> None:
        super().__init__()
        self.config = config
        self.encoding = encoding
        n_tokens = encoding.n_tokens
        # ModuleLists in `FIELDS` order ("type" cannot be a ModuleDict key).
        self.embeddings = nn.ModuleList(nn.Embedding(n_tokens[name], config.dim) for name in FIELDS)
        self.pos_embedding = nn.Embedding(config.max_seq_len, config.dim) if config.pos_emb == "absolute" else None
        self.emb_dropout = nn.Dropout(config.dropout)
        self.decoder = Decoder(
            dim=config.dim,
            depth=config.depth,
            heads=config.heads,
            attn_dropout=config.dropout,
            ff_dropout=config.dropout,
            rotary_pos_emb=config.pos_emb == "rotary",
        )
        self.heads = nn.ModuleList(nn.Linear(config.dim, n_tokens[name]) for name in FIELDS)

    def _check_decoder_layout(self) -> None:
        """`decode` re-implements the decoder's step for its plain pre-norm layout; make sure it is that."""
        decoder = self.decoder
        expected = ("a", "f") * self.config.depth
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
                "this x-transformers Decoder is not the plain pre-norm layout that MusicTransformer.decode "
                f"implements ({'; '.join(sorted(set(problems)))}); check the x-transformers version"
            )

    @property
    def supports_long_context(self) -> bool:
        """Whether positions past `max_seq_len` are meaningful (rotary or no position embedding)."""
        return self.pos_embedding is None

    def embed(self, codes: Tensor, offset: int = 0) -> Tensor:
        """Sum of the field embeddings (and position embedding) of rows (B, L, 6) -> (B, L, dim)."""
        x = sum(embedding(codes[..., i]) for i, embedding in enumerate(self.embeddings))
        if self.pos_embedding is not None:
            length = codes.shape[1]
            if offset + length > self.config.max_seq_len:
                raise ValueError(
                    f"this model uses absolute position embeddings and cannot see past "
                    f"{self.config.max_seq_len} rows (asked for {offset + length})"
                )
            positions = torch.arange(offset, offset + length, device=codes.device)
            x = x + self.pos_embedding(positions)
        return self.emb_dropout(x)

    def forward(self, codes: Tensor, mask: Tensor | None = None) -> list[Tensor]:
        """Logits of the next row's fields, for every row.

        Args:
            codes: long tensor (B, L, 6).
            mask: bool tensor (B, L), True for real rows (padding False).

        Returns:
            list of six tensors (B, L, n_tokens[field]) in `FIELDS` order.
        """
        hidden = self.decoder(self.embed(codes), mask=mask)
        return [head(hidden) for head in self.heads]

    # ------------------------------------------------------------------ cached decoding
    def new_cache(self, batch: int, capacity: int, device=None) -> KVCache:
        """An empty `KVCache` for `batch` sequences of up to `capacity` rows."""
        if batch < 1 or capacity < 1:
            raise ValueError(f"batch and capacity must be >= 1, got {batch} and {capacity}")
        self._check_decoder_layout()
        first = self.decoder.layers[0][1]
        dim_head = first.to_q.out_features // first.heads
        parameter = next(self.parameters())
        shape = (self.config.depth, batch, first.heads, capacity, dim_head)
        device = parameter.device if device is None else device
        return KVCache(torch.zeros(shape, device=device, dtype=parameter.dtype),
                       torch.zeros(shape, device=device, dtype=parameter.dtype))

    def decode(self, codes: Tensor, cache: KVCache) -> list[Tensor]:
        """Logits for rows that follow the cached ones; their keys and values join the cache.

        The same function as `forward` on the cached rows plus `codes` (without dropout:
        call it in eval mode), at the cost of the new rows only.

        Args:
            codes: long tensor (B, n, 6), the rows after the `cache.length` cached ones.
            cache: from `new_cache` (and earlier `decode` calls); updated in place.

        Returns:
            list of six tensors (B, n, n_tokens[field]) in `FIELDS` order.
        """
        batch, n = codes.shape[:2]
        start = cache.length
        if batch != cache.batch:
            raise ValueError(f"the cache holds {cache.batch} sequences, got {batch}")
        if start + n > cache.capacity:
            raise ValueError(f"the cache holds {cache.capacity} rows; {start} cached plus {n} new do not fit")
        x = self.embed(codes, offset=start)
        positions = torch.arange(start, start + n, device=codes.device)
        angles = self._rotary_angles(positions)
        # new row i sees cached rows and new rows up to itself
        causal = None if n == 1 else positions[:, None] >= torch.arange(start + n, device=codes.device)
        attention_index = 0
        for (norms, block, _), kind in zip(self.decoder.layers, self.decoder.layer_types):
            h = norms[0](x)
            if kind == "a":
                h = self._attend_cached(block, h, cache, attention_index, angles, causal)
                attention_index += 1
            else:
                h = block(h)
            x = x + h
        cache.length = start + n
        x = self.decoder.final_norm(x)
        return [head(x) for head in self.heads]

    def _rotary_angles(self, positions: Tensor) -> Tensor | None:
        """Rotary angles (n, rotary_dim) of `positions`, each pair's angle repeated; None without rotary."""
        rotary = self.decoder.rotary_pos_emb
        if rotary is None:
            return None
        return (positions[:, None].float() * rotary.inv_freq).repeat_interleave(2, dim=-1)

    @staticmethod
    def _attend_cached(block: Attention, x: Tensor, cache: KVCache, layer: int, angles: Tensor | None,
                       causal: Tensor | None) -> Tensor:
        """One attention block over the cache plus the new rows `x` (B, n, dim), writing their keys/values."""
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

    def drop_cached_rows(self, cache: KVCache, keep_first: int, drop: int) -> None:
        """Cut the `drop` rows after the first `keep_first` out of the cache (in place).

        The later rows move up by `drop` and, in a rotary model, are rotated back by
        `drop` positions, so every kept row sits at its new position in the cache, as
        StreamingLLM (Xiao et al., 2023) assigns positions within its cache.
        """
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

    def attention_maps(self, codes: Tensor, mask: Tensor | None = None) -> Tensor:
        """Post-softmax self-attention of every layer: (layers, B, heads, L, L)."""
        x = self.embed(codes)
        _, intermediates = self.decoder(x, mask=mask, return_hiddens=True)
        return torch.stack([inter.post_softmax_attn for inter in intermediates.attn_intermediates])

    def field_embedding(self, field: str) -> nn.Embedding:
        """The learned embedding table of a field (e.g. "pitch")."""
        return self.embeddings[FIELDS.index(field)]

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


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


def compute_loss(model: MusicTransformer, codes: Tensor, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Sum over fields of the cross-entropy of the next row, ignoring padding.

    Inputs are rows 0..L-2, targets rows 1..L-1; a target counts where its mask is True.

    Returns:
        (total loss, {field: loss}) with each field's loss the mean over real target rows.
    """
    logits = model(codes[:, :-1], mask=mask[:, :-1])
    targets = codes[:, 1:]
    valid = mask[:, 1:]
    losses = {}
    for i, name in enumerate(FIELDS):
        losses[name] = F.cross_entropy(logits[i][valid], targets[..., i][valid])
    total = torch.stack(list(losses.values())).sum()
    return total, losses
