"""Fixtures for the exporter (the embedded SmolLM2, Gemma 3 and tiny models come from
tests/conftest.py): LoRA adapters made and perturbed here, and one shared SmolLM2 export and one
Gemma 3 export (slow)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_llama_dir(tiny_model_dir) -> str:
    return tiny_model_dir


@pytest.fixture(scope="session")
def tiny_qwen2_dir(make_tiny) -> str:
    return make_tiny("qwen2")


def make_adapter(base_dir: str, out, scale: float = 0.05, r: int = 8, seed: int = 1) -> str:
    """A LoRA adapter on all attention and MLP projections of ``base_dir``, its B matrices filled
    with noise (PEFT initialises them to zero, which would make the merge a no-op)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    cfg = LoraConfig(
        r=r,
        lora_alpha=2 * r,
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    peft_model = get_peft_model(model, cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
    peft_model.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def smollm2_export(smollm2_dir, tmp_path_factory):
    """SmolLM2 + a perturbed LoRA adapter, merged in fp16 and exported to f16 and q8_0 GGUF with
    a Modelfile: ``(ExportResult, adapter dir)``. Shared by the transformers and llama.cpp tests."""
    pytest.importorskip("peft")
    from reactlab.export import export_model

    root = tmp_path_factory.mktemp("smollm2-export")
    adapter = make_adapter(smollm2_dir, root / "adapter", scale=0.02)
    res = export_model(
        "smollm2", root / "out", adapter=adapter, gguf=["f16", "q8_0"], ollama="react-smol", dtype="fp16"
    )
    return res, adapter


@pytest.fixture(scope="session")
def gemma_export(gemma_dir, tmp_path_factory):
    """Gemma 3 270M + a perturbed LoRA adapter, merged in fp16 and exported to f16 and q8_0 GGUF
    with a Modelfile (``reactlab export`` as a user runs it): ``(ExportResult, adapter dir)``."""
    pytest.importorskip("peft")
    from reactlab.export import export_model

    root = tmp_path_factory.mktemp("gemma-export")
    adapter = make_adapter(gemma_dir, root / "adapter", scale=0.01)
    res = export_model(
        "gemma3-270m", root / "out", adapter=adapter, gguf=["f16", "q8_0"], ollama="react-gemma", dtype="fp16"
    )
    return res, adapter
