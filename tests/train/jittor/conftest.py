"""Fixtures for the Jittor path: the tiny random HF models of ``tests/conftest.py`` loaded in both
frameworks, and token batches to compare them on. Jittor's first import compiles its core (minutes,
once per install); every test after that takes seconds."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_qwen_dir(make_tiny) -> str:
    """A tiny random Qwen2 (q/k/v biases, untied output head)."""
    return make_tiny("qwen2")


@pytest.fixture
def torch_model():
    """``load(path)``: an HF dir in transformers, fp32, eval mode."""

    def load(path: str):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(path, dtype="float32").eval()

    return load


@pytest.fixture
def token_batch():
    """``make(vocab, rows=3, length=24, seed=0)``: see ``_token_batch``."""
    return _token_batch


def _token_batch(vocab: int, rows: int = 3, length: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random ids and labels (the first third of each row masked with -100, as a prompt is)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=(rows, length))
    labels = ids.copy()
    labels[:, : length // 3] = -100
    return ids, labels
