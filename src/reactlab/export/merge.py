"""Merge a PEFT LoRA adapter into its base model and save a plain HF directory.

``merge_adapter(base, adapter, out, dtype)`` loads the base in fp32 with the adapter merged in
(``reactlab.weights.load_weights``, which checks that the adapter fits the base), casts to
``fp32``/``fp16``/``bf16`` and writes ``out`` with the tokenizer and its chat template, so that
``transformers``, ``export_gguf`` and ``HFLLM`` read it like any other model. Without an adapter it
just re-saves the base (a named model or a GGUF becomes an HF dir in the chosen dtype).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DTYPES = ("fp32", "fp16", "bf16")
PROVENANCE = "reactlab_export.json"  # written into every merged dir: where its weights came from


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


def check_local_base(base: str) -> None:
    """Refuse a model spec (``reactlab.models.parse_model``) that names no local weights: export
    needs a named model, a ``.gguf`` file or an HF dir (not a hub id or an API model)."""
    from reactlab.models import NAMED, parse_model

    spec = parse_model(base)
    path = spec.path()
    if spec.kind == "hf" and not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"base {base!r} is neither a named model ({', '.join(sorted(NAMED))}), "
                                "a .gguf file nor an HF directory with config.json")


def merge_adapter(base: str, adapter: str | None, out: str | Path, dtype: str = "fp16") -> MergeResult:
    """Write the merged model to ``out`` (replaced if it exists) and return what was done.

    The merge happens in fp32 and only the result is cast: a LoRA delta is small next to the weight
    it is added to, and adding it in fp16/bf16 would round much of it away. Raises
    ``AdapterMismatch`` when the adapter names another base and its tensors do not fit this one.
    """
    import torch

    from reactlab.weights import load_weights

    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    t0 = time.perf_counter()
    check_local_base(base)  # before the load, which would try a hub id
    weights = load_weights(base, torch.float32, adapter=adapter, merge=True)
    model, tok, gguf, warnings = weights.model, weights.tokenizer, weights.source_gguf, weights.warnings
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
