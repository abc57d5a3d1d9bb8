"""Merge a PEFT LoRA adapter into its base model and save a plain HF directory.

``merge_adapter(base, adapter, out, dtype)`` loads the base in fp32, checks that the adapter fits
it (``check_adapter``), folds the low-rank update into the weights (``merge_and_unload``), casts to
``fp32``/``fp16``/``bf16`` and writes ``out`` with the tokenizer and its chat template, so that
``transformers``, ``export_gguf`` and ``HFLLM`` read it like any other model. Without an adapter it
just re-saves the base (a named model or a GGUF becomes an HF dir in the chosen dtype).

``base`` is a named model (``reactlab.models.NAMED``: ``smollm2``), a local HF directory or a
``.gguf`` file. torch, transformers and peft are imported inside the functions.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DTYPES = ("fp32", "fp16", "bf16")
PROVENANCE = "reactlab_export.json"  # written into every merged dir: where its weights came from


class AdapterMismatch(ValueError):
    """The adapter was trained for another base and its tensors do not fit this one."""


@dataclass
class MergeResult:
    """What ``merge_adapter`` wrote. ``source_gguf``: the GGUF the base came from, if any (its
    tokenizer metadata is the reference for a GGUF export); ``warnings``: e.g. a base-name mismatch
    that was let through because every shape fits."""

    path: Path
    base: str
    adapter: str | None
    dtype: str
    seconds: float
    source_gguf: Path | None = None
    warnings: list[str] = field(default_factory=list)


def resolve_base(base: str) -> tuple[str, Path | None]:
    """``(what to load, source GGUF or None)`` for a model spec (``reactlab.models.parse_model``)
    naming local weights: a named model, a ``.gguf`` file or an HF dir."""
    from reactlab.models import NAMED, parse_model

    spec = parse_model(base)
    path = spec.path()
    if spec.kind == "hf" and not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"base {base!r} is neither a named model ({', '.join(sorted(NAMED))}), "
                                "a .gguf file nor an HF directory with config.json")
    return path, spec.source_gguf()


def load_base(base: str):
    """``(model fp32, tokenizer, source GGUF or None)`` for ``resolve_base(base)``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, gguf = resolve_base(base)
    if path.endswith(".gguf"):
        from reactlab.models import load_gguf

        model, tok = load_gguf(path, torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(path)
    return model, tok, gguf


def merge_adapter(base: str, adapter: str | None, out: str | Path, dtype: str = "fp16") -> MergeResult:
    """Write the merged model to ``out`` (replaced if it exists) and return what was done.

    The merge happens in fp32 and only the result is cast: a LoRA delta is small next to the weight
    it is added to, and adding it in fp16/bf16 would round much of it away. Raises
    ``AdapterMismatch`` when the adapter names another base and its tensors do not fit this one.
    """
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    t0 = time.perf_counter()
    model, tok, gguf = load_base(base)
    warnings: list[str] = []
    if adapter:
        from peft import PeftModel

        warnings += check_adapter(model, adapter, base)
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model = model.to(getattr(torch, {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[dtype]))
    if not tok.chat_template:
        raise ValueError(f"base {base!r} has no chat template: the export needs one for Ollama/GGUF")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        prov = {"base": base, "adapter": adapter, "dtype": dtype, "source_gguf": str(gguf) if gguf else None}
        (tmp / PROVENANCE).write_text(json.dumps(prov, indent=2) + "\n")
        tmp.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return MergeResult(out, base, adapter, dtype, time.perf_counter() - t0, gguf, warnings)


def check_adapter(model, adapter: str | Path, base: str = "") -> list[str]:
    """Check a LoRA adapter against a loaded base model by its tensor shapes, not only its name.

    Every ``lora_A`` / ``lora_B`` (and ``lora_embedding_*``, saved full modules) must land on a
    module of the base with matching in/out features, and every listed target module must exist.
    Returns warnings (the adapter names another base, yet fits); raises ``AdapterMismatch`` with
    the first problems when it does not fit.
    """
    adapter = Path(adapter)
    cfg_path = adapter / "adapter_config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{adapter} is not a PEFT adapter (no adapter_config.json)")
    cfg = json.loads(cfg_path.read_text())
    problems = _shape_problems(model, _adapter_shapes(adapter))
    modules = dict(model.named_modules())
    targets = cfg.get("target_modules")
    if isinstance(targets, list):
        for t in targets:
            if not any(n == t or n.endswith("." + t) for n in modules):
                problems.append(f"target module {t!r} not found in the base")
    trained_on = cfg.get("base_model_name_or_path") or "?"
    ours = getattr(model.config, "name_or_path", "") or base
    same_name = _same_model(trained_on, ours) or _same_model(trained_on, base)
    if problems:
        head = "" if same_name else f" was trained on {trained_on!r}, not on {base or ours!r}, and"
        raise AdapterMismatch(
            f"adapter {adapter}{head} does not fit the base model ({len(problems)} problems): "
            + "; ".join(problems[:5])
        )
    if not same_name:
        return [
            f"adapter {adapter} names base {trained_on!r}, merging into {base or ours!r} (all shapes fit)"
        ]
    return []


def _adapter_shapes(adapter: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of the adapter's weights, read without loading the data."""
    st_file = adapter / "adapter_model.safetensors"
    if st_file.is_file():
        from safetensors import safe_open

        with safe_open(str(st_file), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    bin_file = adapter / "adapter_model.bin"
    if bin_file.is_file():
        import torch

        return {
            k: tuple(v.shape) for k, v in torch.load(bin_file, map_location="cpu", weights_only=True).items()
        }
    raise FileNotFoundError(f"{adapter} has no adapter_model.safetensors / adapter_model.bin")


def _shape_problems(model, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    problems = []
    for key, shape in shapes.items():
        name = key.removeprefix("base_model.model.")
        for marker, dim in (
            (".lora_A.", 1),
            (".lora_B.", 0),
            (".lora_embedding_A", 1),
            (".lora_embedding_B", 0),
        ):
            if marker in name:
                mod_name = name.split(marker)[0]
                mod = modules.get(mod_name)
                if mod is None or not hasattr(mod, "weight"):
                    problems.append(f"{mod_name}: no such module in the base")
                    break
                w = tuple(mod.weight.shape)
                # Linear weight is (out, in): A is (r, in), B is (out, r). Embedding weight is
                # (num, dim): lora_embedding_A is (r, num), lora_embedding_B is (dim, r).
                if "embedding" in marker:
                    want = w[0] if dim == 1 else w[1]
                else:
                    want = w[1] if dim == 1 else w[0]
                if shape[dim] != want:
                    problems.append(f"{key}: shape {shape} vs base {mod_name} weight {w}")
                break
        else:  # a fully saved module (modules_to_save): must match the base parameter exactly
            name = name.replace(".modules_to_save.default", "")
            if name in params and tuple(params[name].shape) != shape:
                problems.append(f"{key}: shape {shape} vs base {tuple(params[name].shape)}")
    return problems


def _same_model(a: Any, b: Any) -> bool:
    """Names refer to the same model: equal, or equal last path component (hub id vs local dir)."""
    a, b = str(a or "").rstrip("/"), str(b or "").rstrip("/")
    return bool(a) and bool(b) and (a == b or a.split("/")[-1] == b.split("/")[-1])
