"""LoRA for the Jittor model: ``y = x W^T + b + (alpha / r) * B(A(dropout(x)))`` on the chosen
linear layers, with ``W`` and ``b`` frozen; its merge; and PEFT's on-disk format.

- ``inject(model, r, alpha, dropout, target_modules, seed)`` replaces each targeted ``Linear`` by a
  ``LoRALinear`` holding the same weight and bias (the HF names stay: ``...q_proj.weight``) plus
  ``lora_A.weight`` ``(r, in)`` and ``lora_B.weight`` ``(out, r)``. Initialised as PEFT does: ``A``
  Kaiming-uniform (bound ``1/sqrt(in)``), ``B`` zero, so the adapted model starts as the base.
  ``target_modules``: ``"all-linear"`` (every linear layer but the output head, as PEFT resolves
  it) or module names matched as PEFT matches them (the name, or the last part of a dotted path);
  a name that matches nothing is a ``ValueError``.
- ``merge(model)`` folds ``scaling * B @ A`` into ``W`` in place (the layer then computes the base
  path only); the merged weights are what ``peft``'s ``merge_and_unload`` gives.
- ``save_adapter`` / ``load_adapter`` read and write ``adapter_model.safetensors`` with PEFT's key
  names (``base_model.model.<module>.lora_A.weight``) and an ``adapter_config.json`` written by
  PEFT's own ``LoraConfig``, so ``peft.PeftModel.from_pretrained`` loads the directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from reactlab.train.jittor.kernels import linear
from reactlab.train.jittor.runtime import import_jittor

PEFT_PREFIX = "base_model.model."
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def _layer_class() -> Any:
    jt = import_jittor()
    Module: Any = jt.nn.Module  # a base class from a module imported here

    class Factor(Module):
        """One LoRA matrix, as a module so that its key is ``lora_A.weight`` like PEFT's."""

        def __init__(self, weight: np.ndarray) -> None:
            self.weight = jt.array(weight.astype(np.float32))

    class LoRALinear(Module):
        """A frozen linear layer plus a trainable low-rank update (see the module doc)."""

        def __init__(self, base: Any, r: int, alpha: float, dropout: float, rng: np.random.Generator) -> None:
            out_f, in_f = base.weight.shape
            self.weight = base.weight.stop_grad()
            self.bias = base.bias.stop_grad() if base.bias is not None else None
            bound = 1.0 / np.sqrt(in_f)
            self.lora_A = Factor(rng.uniform(-bound, bound, size=(r, in_f)))
            self.lora_B = Factor(np.zeros((out_f, r)))
            self.r, self.scaling, self.p = r, alpha / r, dropout
            self.merged = False
            self.dropout_seed: int | None = None  # set by a checkpointed step: the mask from this seed

        def execute(self, x: Any) -> Any:
            y = linear(x, self.weight)
            if self.bias is not None:
                y = y + self.bias
            if self.merged:
                return y
            h = x
            if self.p > 0 and self.is_train:
                if self.dropout_seed is not None:
                    jt.set_seed(self.dropout_seed)
                keep = (jt.random(x.shape) > self.p).cast(x.dtype)
                if self.dropout_seed is not None:
                    keep.sync()  # drawn now: Jittor's stream is read when the op runs, not when it is made
                h = x * keep / (1.0 - self.p)
            a, b = self.lora_A.weight, self.lora_B.weight
            if x.dtype != a.dtype:  # mixed precision: float32 master weights, used in the compute dtype
                a, b = a.cast(x.dtype), b.cast(x.dtype)
            h = linear(linear(h, a), b)
            return y + h * self.scaling

    return LoRALinear


def target_names(model: Any, target_modules: str | list[str]) -> list[str]:
    """The dotted names of the linear layers ``target_modules`` selects (see the module doc)."""
    jt = import_jittor()
    linears = [name for name, m in model.named_modules() if isinstance(m, jt.nn.Linear) and name != "lm_head"]
    if target_modules == "all-linear":
        return linears
    wanted = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    picked = [n for n in linears if any(n == t or n.endswith("." + t) for t in wanted)]
    unmatched = [t for t in wanted if not any(n == t or n.endswith("." + t) for n in linears)]
    if unmatched:
        raise ValueError(f"lora.target_modules: {unmatched} match no linear layer of the model "
                         f"(its layers: {', '.join(LINEAR_NAMES)}, or all-linear)")
    return picked


def inject(model: Any, r: int, alpha: float, dropout: float, target_modules: str | list[str], seed: int = 0) -> list[str]:
    """Wrap the targeted layers of ``model`` in ``LoRALinear`` (in place) and freeze every other
    parameter; returns the wrapped layers' names. ``seed`` draws the ``A`` matrices."""
    cls = _layer_class()
    rng = np.random.default_rng(seed)
    names = target_names(model, target_modules)
    for p in model.parameters():
        p.stop_grad()
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = model
        for part in parent_name.split("."):
            parent = parent[int(part)] if part.isdigit() else getattr(parent, part)
        setattr(parent, attr, cls(getattr(parent, attr), r, alpha, dropout, rng))
    return names


def lora_layers(model: Any) -> dict[str, Any]:
    """``{dotted name: LoRALinear}`` of an injected model."""
    return {n: m for n, m in model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "scaling")}


def lora_params(model: Any) -> list[Any]:
    """The trainable parameters: every ``lora_A`` / ``lora_B`` weight, in a fixed order."""
    return [f for m in lora_layers(model).values() for f in (m.lora_A.weight, m.lora_B.weight)]


def lora_state(model: Any) -> dict[str, np.ndarray]:
    """The LoRA factors under PEFT's saved key names."""
    out = {}
    for n, m in lora_layers(model).items():
        out[f"{PEFT_PREFIX}{n}.lora_A.weight"] = m.lora_A.weight.numpy()
        out[f"{PEFT_PREFIX}{n}.lora_B.weight"] = m.lora_B.weight.numpy()
    return out


def set_lora_state(model: Any, state: dict[str, np.ndarray], where: str = "adapter") -> None:
    """Load LoRA factors (PEFT key names) into an injected model; ``ValueError`` on any mismatch."""
    jt = import_jittor()
    layers = lora_layers(model)
    expected = {f"{PEFT_PREFIX}{n}.lora_{ab}.weight" for n in layers for ab in "AB"}
    if set(state) != expected:
        extra, missing = sorted(set(state) - expected), sorted(expected - set(state))
        raise ValueError(f"{where}: LoRA tensors do not match the model (unexpected {extra[:3]}, missing {missing[:3]})")
    for n, m in layers.items():
        for ab, factor in (("A", m.lora_A), ("B", m.lora_B)):
            arr = state[f"{PEFT_PREFIX}{n}.lora_{ab}.weight"]
            if tuple(arr.shape) != tuple(factor.weight.shape):
                raise ValueError(f"{where}: {n}.lora_{ab} has shape {arr.shape}, expected {tuple(factor.weight.shape)}")
            factor.weight.assign(jt.array(arr.astype(np.float32)))


def merge(model: Any) -> Any:
    """Fold every LoRA update into its base weight (``W += scaling * B @ A``, in fp32, computed in
    numpy) and mark the layers merged; returns ``model``."""
    jt = import_jittor()
    for m in lora_layers(model).values():
        if m.merged:
            continue
        delta = (m.lora_B.weight.numpy() @ m.lora_A.weight.numpy()) * np.float32(m.scaling)
        m.weight.assign(jt.array((m.weight.numpy() + delta).astype(np.float32)).stop_grad())
        m.merged = True
    return model


def save_adapter(model: Any, out: str | Path, *, base_model: str, r: int, alpha: int, dropout: float) -> Path:
    """Write ``out/adapter_model.safetensors`` and ``out/adapter_config.json`` (PEFT's format;
    ``base_model``: the base's path or hub id, as PEFT records it)."""
    from peft import LoraConfig
    from safetensors.numpy import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    modules = sorted({n.rsplit(".", 1)[-1] for n in lora_layers(model)})
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=modules, bias="none",
                     task_type="CAUSAL_LM", base_model_name_or_path=base_model, inference_mode=True)
    cfg.save_pretrained(str(out))
    save_file({k: np.ascontiguousarray(v) for k, v in lora_state(model).items()}, str(out / ADAPTER_WEIGHTS),
              metadata={"format": "pt"})
    return out


def read_adapter(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(adapter_config.json as a dict, tensors)`` of a PEFT LoRA directory (keys normalised to
    the saved form: PEFT writes no adapter name for the default adapter)."""
    from safetensors.numpy import load_file

    root = Path(path)
    if not (root / ADAPTER_CONFIG).is_file():
        raise FileNotFoundError(f"{root}: not a PEFT adapter dir (no {ADAPTER_CONFIG})")
    cfg = json.loads((root / ADAPTER_CONFIG).read_text())
    return cfg, {k.replace(".default.", "."): v for k, v in load_file(str(root / ADAPTER_WEIGHTS)).items()}
