"""The network: cached steps agree with the full forward pass."""

from __future__ import annotations

import pytest
import torch

from mmt import Encoding
from mmt.model import ModelConfig, MusicTransformer


@pytest.mark.parametrize("pos_emb", ["absolute", "rotary", "none"])
def test_cached_steps_equal_full_forward(pos_emb):
    torch.manual_seed(0)
    config = ModelConfig(dim=32, depth=2, heads=4, max_seq_len=64, pos_emb=pos_emb, dropout=0.0)
    model = MusicTransformer(config, Encoding()).eval()
    codes = torch.randint(1, 5, (2, 20, 6))
    with torch.no_grad():
        full = model(codes)
        logits, cache = model(codes[:, :10], return_cache=True)
        steps = [[lg[:, -1] for lg in logits]]
        for t in range(10, 19):
            logits, cache = model(codes[:, t:t + 1], cache=cache, return_cache=True)
            steps.append([lg[:, -1] for lg in logits])
    for field in range(6):
        stepped = torch.stack([s[field] for s in steps], dim=1)
        torch.testing.assert_close(stepped, full[field][:, 9:19], atol=1e-5, rtol=1e-4)


def test_absolute_model_refuses_rows_past_its_context():
    model = MusicTransformer(ModelConfig(dim=32, depth=1, heads=4, max_seq_len=8, pos_emb="absolute"), Encoding())
    with pytest.raises(ValueError, match="cannot see past 8 rows"):
        model(torch.ones(1, 9, 6, dtype=torch.long))
