"""Local weights plus an optional LoRA adapter: the one loader behind inference (``llm.hf``),
training (``train.policy``) and export (``export.merge``).

``load_weights(spec, dtype, adapter=...)`` resolves a model spec (``models.parse_model``: a named
model, an HF dir, a ``.gguf`` file dequantised, a hub id), loads model + tokenizer, checks an
adapter against the base by its files and tensor shapes (one error: ``AdapterMismatch``) and merges
it in or attaches it. torch, transformers and peft are imported inside the functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reactlab.io import check_adapter_config, check_safetensors


class AdapterMismatch(ValueError):
    """The adapter was trained for another base and its tensors do not fit this one."""


@dataclass
class Weights:
    """What ``load_weights`` returns. ``source_gguf``: the GGUF file the weights come from, if any;
    ``warnings``: e.g. an adapter naming another base that still fits it shape for shape."""

    model: Any
    tokenizer: Any
    source_gguf: Path | None = None
    warnings: list[str] = field(default_factory=list)


def torch_dtype(name: str, accelerated: bool) -> Any:
    """The torch dtype ``name``; ``auto`` is bf16 when ``accelerated`` (CUDA, or a 4-bit base), else
    fp32 (bf16 matmuls are slow and lossy on most CPUs)."""
    import torch

    if name != "auto":
        return getattr(torch, name)
    return torch.bfloat16 if accelerated else torch.float32


def load_weights(spec: str, dtype: Any = None, *, adapter: str | None = None, merge: bool = True,
                 trainable: bool = False, **from_pretrained: Any) -> Weights:
    """Model + tokenizer of the local model ``spec`` in ``dtype`` (fp32 when None), with ``adapter``
    merged into the weights (``merge``) or attached as a PEFT model (``trainable`` or frozen).
    ``from_pretrained``: further arguments for transformers (``attn_implementation``,
    ``quantization_config``, ``device_map``). The adapter's files are checked before the base loads.
    A model or adapter that is not there is a ``FileNotFoundError``, one that does not fit the base
    an ``AdapterMismatch``, each naming it."""
    from reactlab.models import parse_model

    if adapter:
        check_adapter_files(adapter)  # before the (slow) base model load
    parsed = parse_model(spec)
    model, tok = _load(parsed.path(), dtype, from_pretrained)
    weights = Weights(model, tok, parsed.source_gguf())
    if adapter:
        weights.model, weights.warnings = attach_adapter(model, adapter, spec, merge=merge, trainable=trainable)
    return weights


def _load(path: str, dtype: Any, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from an HF dir / hub id, or a ``.gguf`` file (dequantised). A path that
    is not there (absolute or ``./``-relative, which no hub id is) or a model that cannot be loaded
    is a ``FileNotFoundError`` naming it."""
    import torch

    dtype = dtype or torch.float32
    if path.endswith(".gguf"):
        from reactlab.models import load_gguf

        if not Path(path).is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        return load_gguf(path, dtype)
    if (Path(path).is_absolute() or path.startswith(".")) and not Path(path).is_dir():
        raise FileNotFoundError(f"model directory not found: {path}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for weights in sorted(Path(path).glob("*.safetensors")) if Path(path).is_dir() else ():
        check_safetensors(weights)
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs), AutoTokenizer.from_pretrained(path)
    except OSError as e:  # not a model dir, or a hub id with no hub to ask
        raise FileNotFoundError(f"model {path!r} cannot be loaded: {str(e).splitlines()[0]}") from None


def check_adapter_files(adapter: str) -> None:
    """Fail fast (before the base model loads) on an adapter dir that cannot be one: no
    ``adapter_config.json``, a config that is not JSON or whose fields have the wrong types, weights
    whose header does not parse."""
    path = Path(adapter)
    if not path.exists():
        if path.is_absolute() or adapter.startswith("."):
            raise FileNotFoundError(f"adapter directory not found: {adapter}")
        return  # a hub id: PEFT resolves it
    config = path / "adapter_config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{adapter} is not a PEFT adapter directory (no adapter_config.json)")
    check_adapter_config(config)
    weights = path / "adapter_model.safetensors"
    if weights.is_file():
        check_safetensors(weights)


def attach_adapter(model: Any, adapter: str, base: str = "", *, merge: bool = True,
                   trainable: bool = False) -> tuple[Any, list[str]]:
    """``(model with the adapter, warnings)``: merged into the weights (inference then costs what
    the base costs), or a PEFT model whose adapter trains (``trainable``) or stays frozen. A local
    adapter is checked shape for shape first (``check_adapter``)."""
    from peft import PeftModel

    warnings = check_adapter(model, adapter, base) if Path(adapter).is_dir() else []
    try:
        peft = PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
    except RuntimeError as e:  # size mismatches PEFT finds itself (a hub adapter is not checked above)
        name = getattr(model.config, "name_or_path", "") or type(model).__name__
        raise AdapterMismatch(
            f"adapter {adapter} does not fit the base model {name} (hidden size "
            f"{model.config.hidden_size}, {model.config.num_hidden_layers} layers): {str(e).splitlines()[0]}"
        ) from e
    return (peft.merge_and_unload() if merge else peft), warnings


def check_adapter(model: Any, adapter: str | Path, base: str = "") -> list[str]:
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


def _shape_problems(model: Any, shapes: dict[str, tuple[int, ...]]) -> list[str]:
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
