"""The policy a trainer trains: model, tokenizer, PEFT config and (where the method needs one) a
frozen reference model, built once through ``reactlab.weights.load_weights`` and handed to the TRL
trainer. ``check_method`` runs before anything loads, so an impossible request fails in a second.

From ``model.adapter`` (an SFT run's adapter), ``lora`` continues that adapter: TRL's reference is
then a frozen copy of it (the SFT model, which DPO/KTO must stay close to, not the bare base);
``full`` merges it in first, and its reference is a frozen copy of the merged model, made here
because TRL would re-load the base from its path, without the adapter. From the base, ``lora``
adds a new adapter (``peft_config``), whose reference is the base (the adapter disabled).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reactlab.train.cpu import cuda_available
from reactlab.train.recipes import LoraConfig


@dataclass
class Policy:
    """What a TRL trainer's ``model``, ``processing_class``, ``peft_config`` and ``ref_model``
    arguments get (``peft_config`` None: the model is trained as it is; ``ref_model`` None: TRL's own
    reference, or none)."""

    model: Any
    tokenizer: Any
    peft_config: Any = None
    ref_model: Any = None


def check_method(method: str, model_name: str = "") -> None:
    """Fail early (``ValueError``) on a method this machine cannot run: QLoRA needs CUDA and
    bitsandbytes (4-bit kernels exist only there), and a GGUF file is dequantised, not re-quantised."""
    if method not in ("lora", "qlora", "full"):
        raise ValueError(f"method must be lora, qlora or full, not {method!r}")
    if method != "qlora":
        return
    if not cuda_available():
        raise ValueError(
            "method: qlora loads the base model in 4-bit with bitsandbytes, which needs an NVIDIA GPU (CUDA); "
            "this machine has none. Use LoRA on the full-precision model instead: -c method=lora"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ValueError("method: qlora needs bitsandbytes: pip install bitsandbytes (or use -c method=lora)") from None
    if model_name.endswith(".gguf"):
        raise ValueError("method: qlora needs an HF model dir or hub id, not a GGUF file; use method: lora")


def peft_config(cfg: LoraConfig, method: str) -> Any:
    """PEFT's ``LoraConfig`` for ``lora``/``qlora``; None for ``full`` (every weight trains)."""
    if method == "full":
        return None
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                          target_modules=cfg.target_modules, bias="none", task_type="CAUSAL_LM")


def load_policy(cfg: Any, reference: bool = False) -> Policy:
    """The ``Policy`` of a training recipe (``cfg.model``, ``cfg.method``, ``cfg.lora``; module
    docstring). ``reference``: make the frozen reference a ``full`` fine-tune needs (DPO, KTO); the
    RL trainers' TRL makes its own. The weights are fp32 on a CPU and bf16 on CUDA unless
    ``model.dtype`` says otherwise; 4-bit NF4 for QLoRA. The tokenizer gets a pad token (EOS when
    it has none) and pads on the right (collators do)."""
    ref = cfg.model
    check_method(cfg.method, ref.name)
    adapter = ref.adapter
    if adapter is not None:
        if cfg.method == "qlora":
            raise ValueError("model.adapter: method qlora trains a new adapter on a 4-bit base; use method: lora "
                             "to continue an adapter")
        if not (Path(adapter) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"model.adapter: {adapter} is not a PEFT adapter dir (no adapter_config.json)")
    from reactlab.weights import load_weights, torch_dtype

    kwargs: dict[str, Any] = {}
    if ref.attn_implementation:
        kwargs["attn_implementation"] = ref.attn_implementation
    if cfg.method == "qlora":
        import torch
        from transformers import BitsAndBytesConfig

        # NF4 + double quantisation + bf16 compute: the QLoRA paper's recipe.
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
        # each process of a torchrun / accelerate launch on its own GPU (DDP), else GPU 0
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    dtype = torch_dtype(ref.dtype, accelerated=cuda_available() or cfg.method == "qlora")
    weights = load_weights(ref.name, dtype, adapter=adapter, merge=cfg.method == "full",
                           trainable=cfg.method == "lora", **kwargs)
    model, tok = weights.model, weights.tokenizer
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    if cfg.method == "qlora":
        from peft import prepare_model_for_kbit_training

        # Casts norms to fp32 and enables input grads, which gradient checkpointing on a frozen
        # 4-bit base needs.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    if adapter is not None and cfg.method == "lora":
        return Policy(model, tok)  # the adapter, loaded trainable, is continued
    if cfg.method != "full":
        return Policy(model, tok, peft_config(cfg.lora, cfg.method))
    if not reference:
        return Policy(model, tok)
    frozen = copy.deepcopy(model).eval()
    frozen.requires_grad_(False)
    return Policy(model, tok, ref_model=frozen)
