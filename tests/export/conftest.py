"""Fixtures for the exporter: the embedded SmolLM2, tiny random Llama / Qwen2 models on its
tokenizer, LoRA adapters made and perturbed here, and one shared SmolLM2 export (slow)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """The converted embedded model (converted once into the reactlab cache, then reused)."""
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from reactlab.models import resolve

    try:
        return resolve("smollm2")
    except ModuleNotFoundError as e:
        pytest.skip(str(e))


def _tiny(arch: str, smollm2_dir: str, out) -> str:
    """A 2-layer model (hidden 64, head size 16, grouped KV heads) with SmolLM2's tokenizer and chat
    template, randomly initialised with a fixed seed and a large init std, so greedy choices are far
    from ties and a wrong Q/K permutation or tensor mapping changes the logits a lot."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    common = dict(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        initializer_range=0.2,
        rms_norm_eps=1e-5,
    )
    if arch == "llama":
        model_cls, cfg = LlamaForCausalLM, LlamaConfig(tie_word_embeddings=True, **common)
    else:  # qwen2: biases on q/k/v, untied output head, no Q/K permutation
        model_cls, cfg = Qwen2ForCausalLM, Qwen2Config(tie_word_embeddings=False, **common)
    torch.manual_seed(0)
    model = model_cls(cfg).eval()
    if arch == "qwen2":
        with torch.no_grad():  # random (not zero) biases, so that a dropped bias shows
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.2)
    model.config.name_or_path = f"tiny-{arch}"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def tiny_llama_dir(smollm2_dir, tmp_path_factory) -> str:
    return _tiny("llama", smollm2_dir, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_qwen2_dir(smollm2_dir, tmp_path_factory) -> str:
    return _tiny("qwen2", smollm2_dir, tmp_path_factory.mktemp("tiny-qwen2"))


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
