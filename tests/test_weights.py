"""The one loader of local weights + adapter (``reactlab.weights``): merged and attached adapters give
the same model, an adapter of another base is refused before PEFT loads it, a missing model names it."""

from __future__ import annotations

import pytest

pytest.importorskip("peft")


def _adapter(base_dir: str, out, hidden: int | None = None) -> str:
    """A LoRA adapter with random non-zero weights on ``base_dir`` (or on a copy ``hidden`` wide)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    if hidden is None:
        model = AutoModelForCausalLM.from_pretrained(base_dir)
    else:
        cfg = AutoConfig.from_pretrained(base_dir)
        cfg.hidden_size = hidden
        model = AutoModelForCausalLM.from_config(cfg)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    peft.save_pretrained(out)
    return str(out)


def test_merged_and_attached_adapters_compute_the_same(tiny_model_dir, tmp_path):
    import torch

    from reactlab.weights import load_weights

    adapter = _adapter(tiny_model_dir, tmp_path / "lora")
    base = load_weights(tiny_model_dir).model
    merged = load_weights(tiny_model_dir, adapter=adapter, merge=True).model
    attached = load_weights(tiny_model_dir, adapter=adapter, merge=False, trainable=True).model
    assert type(merged) is type(base) and hasattr(attached, "peft_config")
    assert any(p.requires_grad for n, p in attached.named_parameters() if "lora_" in n)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        a, m, b = attached(ids).logits, merged(ids).logits, base(ids).logits
    torch.testing.assert_close(m, a, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(m, b, atol=1e-3)


def test_an_adapter_of_another_base_is_one_clear_error(tiny_model_dir, tmp_path):
    from reactlab.weights import AdapterMismatch, load_weights

    adapter = _adapter(tiny_model_dir, tmp_path / "wide", hidden=96)
    with pytest.raises(AdapterMismatch, match=r"does not fit the base model .*shape"):
        load_weights(tiny_model_dir, adapter=adapter)


def test_missing_model_and_adapter_are_named(tiny_model_dir, tmp_path):
    from reactlab.weights import load_weights

    with pytest.raises(FileNotFoundError, match="model directory not found"):
        load_weights(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        load_weights(str(tmp_path / "nope.gguf"))
    with pytest.raises(FileNotFoundError, match="adapter directory not found"):
        load_weights(tiny_model_dir, adapter=str(tmp_path / "no-adapter"))


def test_dtype_auto_is_fp32_unless_accelerated():
    import torch

    from reactlab.weights import torch_dtype

    assert torch_dtype("auto", accelerated=False) is torch.float32
    assert torch_dtype("auto", accelerated=True) is torch.bfloat16
    assert torch_dtype("float16", accelerated=False) is torch.float16
