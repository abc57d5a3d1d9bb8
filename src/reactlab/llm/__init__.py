"""LLM backends behind one batch interface (``reactlab.types.LLM``).

A model spec (``reactlab.models.parse_model``, the one grammar of every command) picks the backend:
a named model (``smollm2``), ``hf:PATH_OR_ID``, an HF directory or a ``.gguf`` file -> ``hf`` (a
transformers model); ``openai:MODEL`` -> an OpenAI-compatible HTTP API (``OPENAI_BASE_URL`` /
``OPENAI_API_KEY``); ``scripted:FILE`` -> canned completions (JSON list or JSONL of strings).

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
    """Build an LLM from a model spec (see the module docstring); ``options`` go to the backend."""
    from reactlab.models import parse_model

    model = parse_model(spec)
    if model.kind == "named":
        return backend_class("hf")(model.path(), name=spec, **options)
    if model.local:
        return backend_class("hf")(model.target, **options)
    return backend_class(model.kind)(model.target, **options)
