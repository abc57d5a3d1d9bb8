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


def read_hf_state(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of an HF dir's safetensors as fp32 numpy arrays, by name."""
    from safetensors import safe_open

    out: dict[str, np.ndarray] = {}
    for f in safetensors_files(path):
        with safe_open(str(f), framework="pt") as st:  # "pt": numpy has no bfloat16
            for k in st.keys():  # noqa: SIM118  (safe_open is not a mapping)
                if k.endswith(SKIPPED):
                    continue
                out[k] = st.get_tensor(k).float().numpy()
    return out


def load_state(model: Any, state: dict[str, np.ndarray], where: str = "checkpoint") -> None:
    """Assign ``state`` (HF names -> arrays) to ``model``'s parameters; ``ValueError`` on a missing
    or unexpected tensor, or a shape that differs."""
    jt = import_jittor()
    params = dict(model.state_dict())
    state = dict(state)
    if model.args.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    unexpected = sorted(set(state) - set(params))
    missing = sorted(set(params) - set(state))
    if unexpected or missing:
        raise ValueError(f"{where}: tensors do not match the model: "
                         + (f"unexpected {unexpected[:5]}" if unexpected else "")
                         + ("; " if unexpected and missing else "") + (f"missing {missing[:5]}" if missing else ""))
    for k, arr in state.items():
        p = params[k]
        if tuple(p.shape) != tuple(arr.shape):
            raise ValueError(f"{where}: {k} has shape {tuple(arr.shape)}, the model expects {tuple(p.shape)}")
        p.assign(jt.array(np.ascontiguousarray(arr, dtype=np.float32)))


def load_hf(path: str | Path) -> Any:
    """The Jittor ``LlamaForCausalLM`` of an HF directory, weights loaded (see the module doc)."""
    model = build(LlamaArgs.from_hf(read_config(path)))
    load_state(model, read_hf_state(path), where=str(path))
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
