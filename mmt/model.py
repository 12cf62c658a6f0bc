"""`MusicTransformer`: one embedding per field, an x-transformers Decoder, one head per field.

After Dong et al., "Multitrack Music Transformer", ICASSP 2023. The six field embeddings
of a row are summed (plus an absolute position embedding for the APE variant); the
decoder is causal; each head predicts one field of the next row.

This is the network only: training and analysis run it over whole sequences (`forward`,
`attention_maps`). Generation runs it row by row through `mmt.decoding.CachedDecoder`,
which keeps its own key/value cache beside the network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from x_transformers import Decoder

from mmt.config import ModelConfig, SamplingParams
from mmt.constants import FIELDS
from mmt.encoding import Encoding


class MusicTransformer(nn.Module):
    """The Multitrack Music Transformer.

    Args:
        config: network shape.
        encoding: the encoding whose vocabulary sizes size the embeddings and heads;
            kept as `.encoding`.

    Beside the weights a model carries what generation starts from (saved with its
    checkpoint): `sampling`, the sampling defaults (its training config's `sampling:`
    section), and `pitch_ranges`, instrument name -> (lowest, highest) MIDI pitch that
    instrument plays in the training data (empty: no range is known).
    """

    def __init__(self, config: ModelConfig, encoding: Encoding) -> None:
        super().__init__()
        self.config = config
        self.encoding = encoding
        # what generation starts from unless a request says otherwise (saved with checkpoints)
        self.sampling = SamplingParams()
        self.pitch_ranges: dict[str, tuple[int, int]] = {}
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
