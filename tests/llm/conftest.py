"""Fixtures for the transformers backend: the embedded SmolLM2 and a tiny random Llama on its tokenizer."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """The converted embedded model (converted once into the reactlab cache, then reused)."""
    pytest.importorskip("transformers")
    from reactlab.models import resolve

    try:
        return resolve("smollm2")
    except ModuleNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def tiny_model_dir(smollm2_dir, tmp_path_factory) -> str:
    """A 2-layer Llama (hidden 64, grouped KV heads) with SmolLM2's tokenizer and chat template,
    randomly initialised with a fixed seed, saved to a temp dir. Its init std is larger than
    usual so that its greedy choices are far from ties (fp32 noise must not flip a token)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=0.2,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)
