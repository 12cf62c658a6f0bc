"""`MusicTransformer`: one embedding per field, an x-transformers Decoder, one head per field.

After Dong et al., "Multitrack Music Transformer", ICASSP 2023. The six field embeddings
of a row are summed (plus an absolute position embedding for the APE variant); the
decoder is causal; each head predicts one field of the next row.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from x_transformers import Decoder

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
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        for name in ("dim", "depth", "heads", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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

    def forward(
        self,
        codes: Tensor,
        mask: Tensor | None = None,
        cache=None,
        return_cache: bool = False,
    ):
        """Logits of the next row's fields.

        Args:
            codes: long tensor (B, L, 6). With `cache`, only the rows after the cached ones.
            mask: bool tensor (B, L), True for real rows (padding False). Not used with a cache.
            cache: the cache returned by an earlier call (x-transformers `LayerIntermediates`).
            return_cache: also return the cache for the next step.

        Returns:
            list of six tensors (B, L, n_tokens[field]) in `FIELDS` order; with
            `return_cache`, a tuple (logits, cache).
        """
        offset = cache.cache_length if cache is not None else 0
        x = self.embed(codes, offset)
        hidden, intermediates = self.decoder(x, mask=mask, cache=cache, return_hiddens=True)
        logits = [head(hidden) for head in self.heads]
        return (logits, intermediates) if return_cache else logits

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
