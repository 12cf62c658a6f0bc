"""The network: cached steps agree with the full forward pass."""

from __future__ import annotations

import math

import pytest
import torch

from mmt import Encoding
from mmt.model import ModelConfig, MusicTransformer, compute_loss, rotate


@pytest.mark.parametrize("pos_emb", ["absolute", "rotary", "none"])
def test_cached_steps_equal_full_forward(pos_emb):
    torch.manual_seed(0)
    config = ModelConfig(dim=32, depth=2, heads=4, max_seq_len=64, pos_emb=pos_emb, dropout=0.0)
    model = MusicTransformer(config, Encoding()).eval()
    codes = torch.randint(1, 5, (2, 20, 6))
    with torch.no_grad():
        full = model(codes)
        cache = model.new_cache(2, 20)
        chunks = [model.decode(codes[:, :10], cache)]  # a prompt of 10 rows
        chunks += [model.decode(codes[:, t:t + 1], cache) for t in range(10, 16)]  # single steps
        chunks.append(model.decode(codes[:, 16:20], cache))  # and a chunk of 4 after them
    assert cache.length == 20
    for field in range(6):
        stepped = torch.cat([chunk[field] for chunk in chunks], dim=1)
        torch.testing.assert_close(stepped, full[field], atol=1e-5, rtol=1e-4)


def test_the_cache_refuses_rows_it_cannot_hold():
    model = MusicTransformer(ModelConfig(dim=32, depth=1, heads=4, max_seq_len=64, pos_emb="rotary"), Encoding()).eval()
    cache = model.new_cache(2, 8)
    model.decode(torch.ones(2, 6, 6, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="the cache holds 8 rows; 6 cached plus 3 new do not fit"):
        model.decode(torch.ones(2, 3, 6, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="the cache holds 2 sequences, got 1"):
        model.decode(torch.ones(1, 1, 6, dtype=torch.long), cache)


@pytest.mark.parametrize("pos_emb", ["rotary", "none"])
def test_dropping_cached_rows_equals_a_cache_of_the_kept_rows(pos_emb):
    # Dropped rows 2..5 of 12: the cache then equals one filled from rows 0, 1, 6..11
    # alone (one layer, so each row's key and value depend on that row only).
    torch.manual_seed(1)
    model = MusicTransformer(ModelConfig(dim=32, depth=1, heads=4, max_seq_len=64, pos_emb=pos_emb), Encoding()).eval()
    codes = torch.randint(1, 5, (2, 13, 6))
    kept = torch.cat([codes[:, :2], codes[:, 6:12]], dim=1)
    with torch.no_grad():
        cache = model.new_cache(2, 16)
        model.decode(codes[:, :12], cache)
        model.drop_cached_rows(cache, 2, 4)
        assert cache.length == 8
        reference = model.new_cache(2, 16)
        model.decode(kept, reference)
        torch.testing.assert_close(cache.keys[..., :8, :], reference.keys[..., :8, :], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(cache.values[..., :8, :], reference.values[..., :8, :])
        stepped = model.decode(codes[:, 12:13], cache)
        full = model(torch.cat([kept, codes[:, 12:13]], dim=1))
    for field in range(6):
        torch.testing.assert_close(stepped[field][:, 0], full[field][:, -1], atol=1e-5, rtol=1e-4)


def test_absolute_model_refuses_rows_past_its_context():
    model = MusicTransformer(ModelConfig(dim=32, depth=1, heads=4, max_seq_len=8, pos_emb="absolute"), Encoding())
    with pytest.raises(ValueError, match="cannot see past 8 rows"):
        model(torch.ones(1, 9, 6, dtype=torch.long))


def tiny(pos_emb: str = "rotary", dropout: float = 0.0, seed: int = 0) -> MusicTransformer:
    torch.manual_seed(seed)
    config = ModelConfig(dim=32, depth=2, heads=4, max_seq_len=64, pos_emb=pos_emb, dropout=dropout)
    return MusicTransformer(config, Encoding(max_beat=64))


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



def test_rotate_turns_each_pair_of_the_first_dims_by_its_angle():
    t = torch.tensor([[1.0, 0.0, 3.0, 4.0, 5.0]])
    angles = torch.tensor([[math.pi / 2, math.pi / 2, math.pi, math.pi]])
    torch.testing.assert_close(rotate(t, angles), torch.tensor([[0.0, 1.0, -3.0, -4.0, 5.0]]))
    back = rotate(rotate(t, angles), -angles)
    torch.testing.assert_close(back, t)


@pytest.mark.parametrize("options, problem", [
    ({"scale_residual": True}, "residual Residual"),
    ({"sandwich_norm": True}, "norms other than one pre-norm"),
    ({"macaron": True}, "layer types ('f', 'a', 'f')"),
])
def test_decode_refuses_a_decoder_layout_it_does_not_implement(options, problem):
    from x_transformers import Decoder

    model = MusicTransformer(ModelConfig(dim=32, depth=1, heads=4, max_seq_len=16, pos_emb="none"), Encoding()).eval()
    model.decoder = Decoder(dim=32, depth=1, heads=4, **options)
    model(torch.ones(1, 3, 6, dtype=torch.long))  # the full forward pass does not need the layout
    with pytest.raises(RuntimeError, match="not the plain pre-norm layout") as error:
        model.new_cache(1, 4)
    assert problem in str(error.value)
