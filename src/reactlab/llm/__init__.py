"""LLM backends behind one batch interface (``reactlab.types.LLM``).

A model spec names a backend and what it loads:

- ``smollm2`` (or any name in ``reactlab.models.NAMED``): the embedded model, via ``hf``
- ``hf:PATH_OR_ID_OR_GGUF``: a transformers model (local dir, hub id, or ``.gguf`` file)
- ``openai:MODEL``: an OpenAI-compatible HTTP API (``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``)
- ``scripted:FILE``: replays canned completions (JSON list or JSONL of strings)

Backends are imported only when asked for, so ``import reactlab.llm`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from reactlab.types import LLM

BACKENDS: dict[str, str] = {
    "hf": "reactlab.llm.hf:HFLLM",
    "openai": "reactlab.llm.openai_compat:OpenAILLM",
    "scripted": "reactlab.llm.scripted:ScriptedLLM",
}


def backend_class(name: str) -> type:
    if name not in BACKENDS:
        raise ValueError(f"unknown LLM backend {name!r}; known: {', '.join(sorted(BACKENDS))}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_llm(spec: str, **options: Any) -> LLM:
    """Build an LLM from a spec string (see the module docstring); ``options`` go to the backend."""
    from reactlab.models import NAMED, resolve

    if spec in NAMED:
        return backend_class("hf")(resolve(spec), name=spec, **options)
    backend, sep, target = spec.partition(":")
    if not sep or not target:
        raise ValueError(
            f"model spec {spec!r} is not understood: use one of {sorted(NAMED)}, hf:PATH_OR_ID, "
            "openai:MODEL or scripted:FILE"
        )
    return backend_class(backend)(target, **options)
