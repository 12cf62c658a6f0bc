"""The network: cached steps agree with the full forward pass."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from mmt import Encoding
from mmt.config import ModelConfig
from mmt.constants import Field
from mmt.model import MusicTransformer, RowLogits, compute_loss
from tests.factories import tiny_model


def test_absolute_model_refuses_rows_past_its_context():
    model = tiny_model("absolute", depth=1, max_seq_len=8)
    with pytest.raises(ValueError, match="cannot see past 8 rows"):
        model(torch.ones(1, 9, 6, dtype=torch.long))


def tiny(pos_emb: str = "rotary", dropout: float = 0.0, seed: int = 0) -> MusicTransformer:
    return tiny_model(pos_emb, dropout=dropout, encoding=Encoding(max_beat=64), seed=seed)


def random_codes(encoding: Encoding, batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """Codes drawn uniformly from each field's real codes (1..n_tokens-1)."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(1, n, (batch, length), generator=g) for n in encoding.n_tokens.values()], -1)


@pytest.mark.parametrize("pos_emb", ["absolute", "rotary", "none"])
def test_logit_shapes_follow_the_encoding(pos_emb):
    model = tiny(pos_emb).eval()
    logits = model(random_codes(model.encoding, 3, 17))
    assert [tuple(lg.shape) for lg in logits] == [
        (3, 17, 6), (3, 17, 65), (3, 17, 13), (3, 17, 129), (3, 17, len(model.encoding.known_durations) + 1),
        (3, 17, 66),
    ]


@pytest.mark.parametrize("pos_emb", ["absolute", "rotary", "none"])
def test_changing_a_later_row_never_changes_earlier_logits(pos_emb):
    model = tiny(pos_emb).eval()
    codes = random_codes(model.encoding, 2, 20)
    changed = codes.clone()
    changed[:, 12:] = random_codes(model.encoding, 2, 8, seed=1)
    with torch.no_grad():
        before, after = model(codes), model(changed)
    for a, b in zip(before, after):
        assert torch.equal(a[:, :12], b[:, :12])
        assert not torch.allclose(a[:, 12:], b[:, 12:])  # the change is visible where it may be


def test_loss_ignores_padding_rows():
    model = tiny().eval()
    codes = random_codes(model.encoding, 1, 10)
    padded = torch.cat([codes, random_codes(model.encoding, 1, 6, seed=2)], dim=1)  # garbage after row 10
    mask = torch.zeros(1, 16, dtype=torch.bool)
    mask[:, :10] = True
    with torch.no_grad():
        total, fields = compute_loss(model, codes, torch.ones(1, 10, dtype=torch.bool))
        total_padded, fields_padded = compute_loss(model, padded, mask)
    torch.testing.assert_close(total_padded, total)
    for name in fields:
        torch.testing.assert_close(fields_padded[name], fields[name])
    torch.testing.assert_close(total, sum(fields.values()))


def test_loss_reads_altered_inputs_and_scores_the_true_rows():
    model = tiny_model(encoding=Encoding(max_beat=64), row_conditioning=True)
    codes = random_codes(model.encoding, 1, 12)
    mask = torch.ones(1, 12, dtype=torch.bool)
    altered = codes.clone()
    altered[0, 3:8, Field.INSTRUMENT] = 5
    with torch.no_grad():
        same, _ = compute_loss(model, codes, mask, inputs=codes.clone())
        plain, _ = compute_loss(model, codes, mask)
        total, fields = compute_loss(model, codes, mask, inputs=altered)
        logits = model(altered[:, :-1], mask=mask[:, :-1], next_rows=codes[:, 1:])
    torch.testing.assert_close(same, plain)
    assert not torch.isclose(total, plain)  # the altered rows are read ...
    for i, name in enumerate(fields):  # ... and the targets are the true rows
        torch.testing.assert_close(fields[name], F.cross_entropy(logits[i][0], codes[0, 1:, i]))


def test_a_tiny_model_overfits_a_tiny_batch():
    model = tiny()
    codes = random_codes(model.encoding, 2, 16)
    mask = torch.ones(2, 16, dtype=torch.bool)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    first = None
    for _ in range(200):
        loss, _ = compute_loss(model, codes, mask)
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # ~22 at the start (sum of six log-vocabulary sizes, roughly); memorised after 200 steps
    assert first > 15.0
    assert loss.item() < 0.25


def test_paper_size_has_about_20m_parameters():
    model = MusicTransformer(ModelConfig(dim=512, depth=6, heads=8, max_seq_len=1024, pos_emb="absolute"), Encoding())
    assert model.n_parameters() == 20_724_472


@pytest.mark.parametrize("name, expected", [
    ("paper", 20_724_472), ("sod-ape", 20_724_472), ("lmd-rpe", 20_200_184), ("pop1k7-npe", 20_200_184),
])
def test_shipped_configs_parameter_counts(name, expected):
    """The paper's size from configs/: the APE variant has 1024 x 512 position embeddings more."""
    from pathlib import Path

    from mmt.config import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")
    assert MusicTransformer(config.model, Encoding()).n_parameters() == expected
    assert expected == 20_724_472 - (0 if config.model.pos_emb == "absolute" else 1024 * 512)


# ---------------------------------------------------------------------- weight tying
def test_a_tied_model_predicts_pitches_with_the_table_it_reads_them_with():
    tied, plain = tiny_model(tie_pitch=True), tiny_model()
    assert tied.heads[Field.PITCH].weight is tied.embeddings[Field.PITCH].weight
    assert tied.tied_weights == {"heads.3.weight": "embeddings.3.weight"} and plain.tied_weights == {}
    assert plain.n_parameters() - tied.n_parameters() == 129 * 32  # one (n_pitch, dim) table fewer
    assert tied.pitch_scale == pytest.approx(5.656854)  # sqrt(32)
    # the pitch is read in scaled by sqrt(dim); the other fields as they are
    codes = torch.tensor([[[1, 2, 3, 60, 4, 5]]])
    expected = sum(tied.embeddings[i](codes[..., i]) for i in range(6) if i != Field.PITCH)
    expected = expected + 5.656854 * tied.embeddings[Field.PITCH](codes[..., Field.PITCH])
    torch.testing.assert_close(tied.embed(codes), expected)
    # a loss on the pitch head alone reaches the input table, which is the same tensor
    tied.train()
    logits = tied(codes)
    logits[Field.PITCH][0, 0, 61].backward()
    assert tied.embeddings[Field.PITCH].weight.grad[61].abs().sum() > 0


# ---------------------------------------------------------------------- row conditioning
def conditioned(seed: int = 0) -> MusicTransformer:
    return tiny_model("rotary", encoding=Encoding(max_beat=64), seed=seed, row_conditioning=True)


def rows_and_next(model: MusicTransformer, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rows (2, length, 6) and random rows for them to predict."""
    return random_codes(model.encoding, 2, length), random_codes(model.encoding, 2, length, seed=seed)


def test_a_conditioned_head_reads_the_fields_before_its_own_and_no_others():
    model = conditioned()
    codes, targets = rows_and_next(model, 9, seed=1)
    with torch.no_grad():
        base = model(codes, next_rows=targets)
        for field in Field:
            changed = targets.clone()
            changed[..., field] = random_codes(model.encoding, 2, 9, seed=2)[..., field]
            after = model(codes, next_rows=changed)
            moved = [name.name.lower() for name in Field if not torch.equal(base[name], after[name])]
            # order: type, beat, position, instrument, pitch, duration; each head reads those before it
            assert moved == {
                Field.TYPE: ["beat", "position", "pitch", "duration", "instrument"],
                Field.BEAT: ["position", "pitch", "duration", "instrument"],
                Field.POSITION: ["pitch", "duration", "instrument"],
                Field.INSTRUMENT: ["pitch", "duration"],
                Field.PITCH: ["duration"],
                Field.DURATION: [],
            }[field]


def test_a_new_conditioned_model_computes_what_the_same_weights_do_without_conditioning():
    plain = tiny()
    model = MusicTransformer(ModelConfig(**{**plain.config.to_dict(), "row_conditioning": True}), plain.encoding)
    model.load_state_dict(plain.state_dict(), strict=False)
    model.eval()
    codes = random_codes(plain.encoding, 2, 12)
    with torch.no_grad():
        for a, b in zip(plain(codes), model(codes, next_rows=random_codes(plain.encoding, 2, 12, seed=3))):
            assert torch.equal(a, b)


def test_a_conditioned_model_needs_the_rows_it_predicts():
    with pytest.raises(ValueError, match="needs the rows it predicts"):
        conditioned()(random_codes(Encoding(max_beat=64), 1, 4))


def test_row_logits_follow_the_draw_order_and_match_the_forward_pass():
    model = conditioned()
    codes, nxt = rows_and_next(model, 7, seed=4)
    with torch.no_grad():
        full = model(codes, next_rows=nxt)
        logits = RowLogits(model, model.decoder(model.embed(codes))[:, -1])
        with pytest.raises(RuntimeError, match="gives the pitch logits after the type is drawn"):
            logits[Field.PITCH]
        for field in (Field.TYPE, Field.BEAT, Field.POSITION, Field.INSTRUMENT, Field.PITCH, Field.DURATION):
            torch.testing.assert_close(logits[field], full[field][:, -1])
            logits.fix(field, nxt[:, -1, field])
    with pytest.raises(RuntimeError, match="fields are drawn in the order"):
        RowLogits(model, torch.zeros(2, model.config.dim)).fix(Field.BEAT, nxt[:, -1, Field.BEAT])


def test_row_logits_of_a_plain_model_are_all_there_at_once():
    model = tiny()
    codes = random_codes(model.encoding, 2, 5)
    with torch.no_grad():
        full = model(codes)
        logits = RowLogits(model, model.decoder(model.embed(codes))[:, -1])
        assert len(list(logits)) == 6
        torch.testing.assert_close(logits[Field.DURATION], full[Field.DURATION][:, -1])
