"""`MusicTransformer`: one embedding per field, an x-transformers Decoder, one head per field.

After Dong et al., "Multitrack Music Transformer", ICASSP 2023. The six field embeddings
of a row are summed (plus an absolute position embedding for the APE variant); the
decoder is causal; each head predicts one field of the next row. With `row_conditioning`
(`ModelConfig`) the heads predict the row's fields one after another, each head reading the
fields drawn before its own (`ROW_ORDER`): p(row | past) = prod_f p(x_f | past, x_g for g
before f), as the compound-word transformer's second stage reads the type (Hsiao et al., AAAI
2021); without it the six fields are independent given the past, as in the original MMT.
With `tie_pitch` the pitch embedding and the pitch head share one table (`tied_weights`).

This is the network only: training and analysis run it over whole sequences (`forward`,
`attention_maps`). Generation runs it row by row through `mmt.decoding.CachedDecoder`,
which keeps its own key/value cache beside the network.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from x_transformers import Decoder

from mmt.config import ModelConfig, SamplingParams
from mmt.constants import FIELDS, ROW_ORDER, Field
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
    instrument plays in the training data (empty: no range is known). `weights_sha256` is the
    SHA-256 of the weights file `load_model` read it from (None for a model built in code).
    """

    def __init__(self, config: ModelConfig, encoding: Encoding) -> None:
        super().__init__()
        self.config = config
        self.encoding = encoding
        # what generation starts from unless a request says otherwise (saved with checkpoints)
        self.sampling = SamplingParams()
        self.pitch_ranges: dict[str, tuple[int, int]] = {}
        self.weights_sha256: str | None = None  # of the weights file it was loaded from (`load_model`)
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
        # Weight tying: one (n_pitch, dim) table, rows of norm about 1 as the head's are; read in
        # times sqrt(dim), so that a pitch weighs in the input sum as the other fields do.
        self.pitch_scale = 1.0
        if config.tie_pitch:
            table = self.embeddings[Field.PITCH]
            nn.init.normal_(table.weight, std=config.dim ** -0.5)
            self.heads[Field.PITCH].weight = table.weight
            self.pitch_scale = math.sqrt(config.dim)
        # Row conditioning: conditions[k] embeds field ROW_ORDER[k] of the predicted row for the heads
        # after it. Zero at first, so that a model without it loads into one with it unchanged
        # (`training.init_from`) and learns to use what it is given.
        self.conditions = None
        if config.row_conditioning:
            self.conditions = nn.ModuleList(nn.Embedding(n_tokens[FIELDS[f]], config.dim) for f in ROW_ORDER[:-1])
            for table in self.conditions:
                nn.init.zeros_(table.weight)

    @property
    def tied_weights(self) -> dict[str, str]:
        """State-dict names that are another's tensor (alias -> owner): saved once, as the owner."""
        if not self.config.tie_pitch:
            return {}
        return {f"heads.{int(Field.PITCH)}.weight": f"embeddings.{int(Field.PITCH)}.weight"}

    @property
    def supports_long_context(self) -> bool:
        """Whether positions past `max_seq_len` are meaningful (rotary or no position embedding)."""
        return self.pos_embedding is None

    def embed(self, codes: Tensor, offset: int = 0) -> Tensor:
        """Sum of the field embeddings (and position embedding) of rows (B, L, 6) -> (B, L, dim)."""
        fields = [embedding(codes[..., i]) for i, embedding in enumerate(self.embeddings)]
        if self.pitch_scale != 1.0:
            fields[Field.PITCH] = fields[Field.PITCH] * self.pitch_scale
        x = sum(fields)
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

    def forward(self, codes: Tensor, mask: Tensor | None = None, next_rows: Tensor | None = None) -> list[Tensor]:
        """Logits of the next row's fields, for every row.

        Args:
            codes: long tensor (B, L, 6).
            mask: bool tensor (B, L), True for real rows (padding False).
            next_rows: long tensor (B, L, 6), the rows being predicted (in training, the
                targets `codes[:, 1:]`): a row-conditioned model needs them; others ignore them.

        Returns:
            list of six tensors (B, L, n_tokens[field]) in `FIELDS` order.
        """
        return self.logits(self.decoder(self.embed(codes), mask=mask), next_rows)

    def logits(self, hidden: Tensor, next_rows: Tensor | None = None) -> list[Tensor]:
        """The six heads' logits (`FIELDS` order) from decoder states (..., dim); see `forward`."""
        if self.conditions is None:
            return [head(hidden) for head in self.heads]
        if next_rows is None:
            raise ValueError("a row-conditioned model needs the rows it predicts (next_rows) for its logits")
        logits: list[Tensor | None] = [None] * len(FIELDS)
        for k, field in enumerate(ROW_ORDER):
            logits[field] = self.heads[field](hidden)
            if k < len(self.conditions):
                hidden = hidden + self.conditions[k](next_rows[..., field])
        return logits

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


class RowLogits:
    """The next row's logits while the sampler draws it: `logits[field]` (B, n_tokens[field]).

    From decoder states `hidden` (B, dim). For a row-conditioned model, a field's logits are
    known once the fields before it in `ROW_ORDER` are drawn and given with `fix(field, codes)`;
    for others all six are computed at once.
    """

    def __init__(self, model: MusicTransformer, hidden: Tensor) -> None:
        self.model = model
        self._hidden = hidden
        self._drawn = 0  # fields of ROW_ORDER fixed so far
        self._logits: dict[int, Tensor] = {}
        if model.conditions is None:
            self._logits = dict(enumerate(model.logits(hidden)))

    def __len__(self) -> int:
        return len(FIELDS)

    def __iter__(self):
        return (self[field] for field in range(len(FIELDS)))

    def __getitem__(self, field: int) -> Tensor:
        if field not in self._logits:
            due = ROW_ORDER[self._drawn]
            if field != due:
                raise RuntimeError(f"a row-conditioned model gives the {FIELDS[field]} logits after the "
                                   f"{FIELDS[due]} is drawn")
            self._logits[field] = self.model.heads[field](self._hidden)
        return self._logits[field]

    def fix(self, field: int, codes: Tensor) -> None:
        """The row's `field` is drawn: `codes` (B,). Fields must be fixed in `ROW_ORDER`."""
        if self.model.conditions is None:
            return
        if ROW_ORDER[self._drawn] != field:
            raise RuntimeError(f"fields are drawn in the order {', '.join(FIELDS[f] for f in ROW_ORDER)}; "
                               f"got {FIELDS[field]} after {self._drawn} of them")
        if self._drawn < len(self.model.conditions):
            self._hidden = self._hidden + self.model.conditions[self._drawn](codes)
        self._drawn += 1


def next_row_logits(model: MusicTransformer, codes: Tensor, mask: Tensor | None = None,
                    inputs: Tensor | None = None) -> list[Tensor]:
    """Teacher-forced logits of rows 1..L-1 of `codes` (B, L, 6), each from the rows before it.

    Inputs are rows 0..L-2 (of `inputs` when given: codes with some fields altered, the same
    shape); rows 1..L-1 of `codes` are also given as `next_rows`, which a row-conditioned
    model's heads read (each the fields before its own). `mask` (B, L): True for real rows.
    Returns six tensors (B, L-1, n_tokens[field]) in `FIELDS` order.
    """
    context = codes if inputs is None else inputs
    return model(context[:, :-1], mask=None if mask is None else mask[:, :-1], next_rows=codes[:, 1:])


def compute_loss(model: MusicTransformer, codes: Tensor, mask: Tensor,
                 inputs: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Sum over fields of the cross-entropy of the next row, ignoring padding.

    Inputs are rows 0..L-2 (of `inputs` when given, e.g. `mmt.augment.takeover_inputs`), targets
    rows 1..L-1 of `codes` (which a row-conditioned model's heads also read, each the fields
    before its own); a target counts where its mask is True.

    Returns:
        (total loss, {field: loss}) with each field's loss the mean over real target rows.
    """
    targets = codes[:, 1:]
    logits = next_row_logits(model, codes, mask, inputs)
    valid = mask[:, 1:]
    losses = {}
    for i, name in enumerate(FIELDS):
        losses[name] = F.cross_entropy(logits[i][valid], targets[..., i][valid])
    total = torch.stack(list(losses.values())).sum()
    return total, losses
