"""GPU tests (``pytest -m gpu tests/gpu``): each module is marked ``gpu`` and skipped where CUDA is
not available (its ``pytestmark``); CI never needs them. Tiny models come from tests/conftest.py's
``make_tiny``."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_qwen2(make_tiny) -> str:
    """A tiny random Qwen2 (q/k/v biases, untied head) with large init: greedy choices far from ties."""
    return make_tiny("qwen2")


@pytest.fixture(scope="session")
def tiny_train(make_tiny) -> str:
    """A tiny random Llama with the usual init std, for training."""
    return make_tiny("llama", init_std=0.02)
