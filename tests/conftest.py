"""Shared fixtures: small music written in code, never downloaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmt import Encoding

@pytest.fixture
def encoding() -> Encoding:
    return Encoding()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; two threads on a busy machine spin-wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
