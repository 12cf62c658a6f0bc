"""Cached decoding: the cached steps agree with the network's full forward pass."""

from __future__ import annotations

import math

import pytest
import torch

from mmt.decoding import CachedDecoder, rotate
from tests.factories import tiny_model


@pytest.mark.parametrize("pos_emb", ["absolute", "rotary", "none"])
def test_cached_steps_equal_full_forward(pos_emb):
    model = tiny_model(pos_emb)
    codes = torch.randint(1, 5, (2, 20, 6))
    with torch.no_grad():
        full = model(codes)
        decoder = CachedDecoder(model, 2, 20)
        chunks = [decoder(codes[:, :10])]  # a prompt of 10 rows
        chunks += [decoder(codes[:, t:t + 1]) for t in range(10, 16)]  # single steps
        chunks.append(decoder(codes[:, 16:20]))  # and a chunk of 4 after them
    assert decoder.length == 20
    for field in range(6):
        stepped = torch.cat([chunk[field] for chunk in chunks], dim=1)
        torch.testing.assert_close(stepped, full[field], atol=1e-5, rtol=1e-4)


def test_the_cache_refuses_rows_it_cannot_hold():
    decoder = CachedDecoder(tiny_model(depth=1), 2, 8)
    decoder(torch.ones(2, 6, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="the cache holds 8 rows; 6 cached plus 3 new do not fit"):
        decoder(torch.ones(2, 3, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="the cache holds 2 sequences, got 1"):
        decoder(torch.ones(1, 1, 6, dtype=torch.long))


@pytest.mark.parametrize("pos_emb", ["rotary", "none"])
def test_dropping_cached_rows_equals_a_cache_of_the_kept_rows(pos_emb):
    # Dropped rows 2..5 of 12: the cache then equals one filled from rows 0, 1, 6..11
    # alone (one layer, so each row's key and value depend on that row only).
    model = tiny_model(pos_emb, depth=1, seed=1)
    codes = torch.randint(1, 5, (2, 13, 6))
    kept = torch.cat([codes[:, :2], codes[:, 6:12]], dim=1)
    with torch.no_grad():
        decoder = CachedDecoder(model, 2, 16)
        decoder(codes[:, :12])
        decoder.drop_rows(2, 4)
        assert decoder.length == 8
        reference = CachedDecoder(model, 2, 16)
        reference(kept)
        cache, expected = decoder.cache, reference.cache
        torch.testing.assert_close(cache.keys[..., :8, :], expected.keys[..., :8, :], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(cache.values[..., :8, :], expected.values[..., :8, :])
        stepped = decoder(codes[:, 12:13])
        full = model(torch.cat([kept, codes[:, 12:13]], dim=1))
    for field in range(6):
        torch.testing.assert_close(stepped[field][:, 0], full[field][:, -1], atol=1e-5, rtol=1e-4)


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
def test_the_cached_decoder_refuses_a_decoder_layout_it_does_not_implement(options, problem):
    from x_transformers import Decoder

    model = tiny_model("none", depth=1, max_seq_len=16)
    model.decoder = Decoder(dim=32, depth=1, heads=4, **options)
    model(torch.ones(1, 3, 6, dtype=torch.long))  # the full forward pass does not need the layout
    with pytest.raises(RuntimeError, match="not the plain pre-norm layout") as error:
        CachedDecoder(model, 1, 4)
    assert problem in str(error.value)
