"""Weights between an HF model directory (``config.json`` + safetensors) and the Jittor model.

``load_hf(path)`` builds ``model.build(LlamaArgs.from_hf(config))`` and loads every tensor by its
transformers name (the Jittor module tree uses the same names); ``hf_state(model)`` and
``save_hf(model, out, config)`` go back. fp32 in, fp32 out is bit-exact both ways; bf16/fp16
checkpoints are widened to fp32 (exactly) on the way in. A tied output head is the embedding
matrix itself: ``lm_head.weight`` is neither loaded nor written for such a model, as transformers
does. A tensor the model does not have, or a parameter the checkpoint lacks, is a ``ValueError``
naming it (a checkpoint that only half loads would train silently wrong).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from reactlab.train.jittor.model import LlamaArgs, build
from reactlab.train.jittor.runtime import import_jittor

SKIPPED = ("rotary_emb.inv_freq",)
"""Buffers some checkpoints carry that are recomputed from the config, not loaded."""


def read_config(path: str | Path) -> dict[str, Any]:
    """``path/config.json`` as a dict (``FileNotFoundError`` naming it when absent)."""
    f = Path(path) / "config.json"
    if not f.is_file():
        raise FileNotFoundError(f"{f}: no config.json (the Jittor path reads an HF model directory)")
    return json.loads(f.read_text())


def safetensors_files(path: str | Path) -> list[Path]:
    """The weight files of an HF dir: ``model.safetensors`` or the shards its index names."""
    root = Path(path)
    index = root / "model.safetensors.index.json"
    if index.is_file():
        return [root / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    single = root / "model.safetensors"
    if not single.is_file():
        raise FileNotFoundError(f"{root}: no model.safetensors (the Jittor path reads safetensors weights)")
    return [single]


def check_state(model: Any, shapes: dict[str, tuple[int, ...]], where: str = "checkpoint") -> dict[str, Any]:
    """``{name: parameter}`` for the tensors ``shapes`` names (HF names -> shapes); ``ValueError``
    on a missing or unexpected tensor, or a shape that differs. A tied model's ``lm_head.weight``
    is left out."""
    params = dict(model.state_dict())
    shapes = {k: v for k, v in shapes.items() if not (model.args.tie_word_embeddings and k == "lm_head.weight")}
    unexpected = sorted(set(shapes) - set(params))
    missing = sorted(set(params) - set(shapes))
    if unexpected or missing:
        raise ValueError(f"{where}: tensors do not match the model: "
                         + (f"unexpected {unexpected[:5]}" if unexpected else "")
                         + ("; " if unexpected and missing else "") + (f"missing {missing[:5]}" if missing else ""))
    for k, shape in shapes.items():
        if tuple(params[k].shape) != tuple(shape):
            raise ValueError(f"{where}: {k} has shape {tuple(shape)}, the model expects {tuple(params[k].shape)}")
    return {k: params[k] for k in shapes}


def load_hf(path: str | Path) -> Any:
    """The Jittor ``LlamaForCausalLM`` of an HF directory, weights loaded (see the module doc).
    Tensor by tensor: one fp32 copy of a tensor at a time beside the model, never the whole
    checkpoint (for a 0.5B model that copy alone is 2 GB)."""
    from safetensors import safe_open

    jt = import_jittor()
    model = build(LlamaArgs.from_hf(read_config(path)))
    shapes: dict[str, tuple[int, ...]] = {}
    for f in safetensors_files(path):
        with safe_open(str(f), framework="pt") as st:
            shapes |= {k: tuple(st.get_slice(k).get_shape()) for k in st.keys() if not k.endswith(SKIPPED)}  # noqa: SIM118
    params = check_state(model, shapes, where=str(path))
    for f in safetensors_files(path):
        with safe_open(str(f), framework="pt") as st:  # "pt": numpy has no bfloat16
            for k in st.keys():  # noqa: SIM118  (safe_open is not a mapping)
                if k in params:
                    # no sync here: it would also run the build's random initialisation, still pending
                    params[k].assign(jt.array(np.ascontiguousarray(st.get_tensor(k).float().numpy())))
    jt.gc()
    return model


def hf_state(model: Any) -> dict[str, np.ndarray]:
    """The model's parameters under transformers' names (fp32 numpy), LoRA factors left out."""
    return {k: v.numpy() for k, v in model.state_dict().items() if ".lora_" not in k}


def save_hf(model: Any, out: str | Path, config: dict[str, Any]) -> Path:
    """Write ``out/model.safetensors`` (fp32) and ``out/config.json`` (``config`` with
    ``dtype: float32``): a directory ``AutoModelForCausalLM.from_pretrained`` loads."""
    from safetensors.numpy import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in hf_state(model).items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps({**config, "dtype": "float32"}, indent=2))
    return out
