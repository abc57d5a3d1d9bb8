"""Run an exported GGUF in llama.cpp (llama-cpp-python) with settings that work on every x86 CPU,
and a probe that always runs in a child process.

llama.cpp's extra CPU buffer types (weight repacking) are off where AMX is detected: there
llama-cpp-python crashes on repacked q8_0 / Q4_1 weights (docs/platforms.md).
``REACTLAB_LLAMA_EXTRA_BUFTS=0|1`` forces the setting. ``probe`` returns teacher-forced logits
and a greedy continuation; ``probe_isolated`` runs it through ``reactlab.isolate.run_isolated``, so
a crash is a ``ChildCrashed`` error naming the signal.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reactlab.hardware import has_amx

ENV_EXTRA_BUFTS = "REACTLAB_LLAMA_EXTRA_BUFTS"


def use_extra_bufts(flags: set[str] | None = None, env: dict[str, str] | None = None) -> bool:
    """Whether llama.cpp may repack weights into its extra CPU buffer types here: not on AMX CPUs
    (see the module doc), unless ``REACTLAB_LLAMA_EXTRA_BUFTS`` says otherwise.

    >>> use_extra_bufts({"avx2"}, {}), use_extra_bufts({"amx_int8"}, {}), use_extra_bufts({"amx_int8"}, {"REACTLAB_LLAMA_EXTRA_BUFTS": "1"})
    (True, False, True)
    """
    value = (os.environ if env is None else env).get(ENV_EXTRA_BUFTS, "").strip()
    if value in ("0", "1"):
        return value == "1"
    return not has_amx(flags)


def model_defaults() -> dict[str, Any]:
    """The llama.cpp model parameters we change from llama.cpp's defaults on this CPU."""
    return {"use_extra_bufts": use_extra_bufts()}


@contextlib.contextmanager
def _patched_model_params(**fields: Any) -> Iterator[None]:
    """``llama_cpp.Llama`` does not take every model parameter (``use_extra_bufts`` is not among its
    arguments), so set them on the defaults it starts from while a model loads."""
    import llama_cpp.llama_cpp as lib

    original = lib.llama_model_default_params

    def defaults():
        params = original()
        for k, v in fields.items():
            setattr(params, k, v)
        return params

    lib.llama_model_default_params = defaults
    try:
        yield
    finally:
        lib.llama_model_default_params = original


def load(gguf: str | Path, **kwargs: Any):
    """``llama_cpp.Llama(gguf, **kwargs)`` with ``model_defaults()`` applied. A crash of llama.cpp
    kills the calling process: call it in a child (``probe_isolated``) unless that is acceptable."""
    from llama_cpp import Llama

    kwargs.setdefault("verbose", False)
    with _patched_model_params(**model_defaults()):
        return Llama(str(gguf), **kwargs)


@dataclass
class Probe:
    """What ``probe`` saw: the token ids llama.cpp made of ``text`` (if given); the logits at every
    position from ``len(prompt) - 1`` on under teacher forcing (a ``[len(forced) + 1, vocab]`` numpy
    array; None without ``forced``); its own greedy continuation of ``prompt``."""

    tokens: list[int] | None
    logits: Any
    greedy: list[int] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


def probe(
    gguf: str | Path,
    prompt: Sequence[int],
    forced: Sequence[int] = (),
    n_greedy: int = 0,
    text: str | None = None,
    n_ctx: int = 512,
    n_threads: int = 2,
) -> Probe:
    """Run ``gguf`` in *this* process (use ``probe_isolated``): tokenize ``text`` (special tokens
    parsed, no BOS added), evaluate ``prompt + forced`` keeping the logits from the last prompt
    position on, and greedily continue ``prompt`` for ``n_greedy`` tokens (top-1, no repeat
    penalty)."""
    import numpy as np

    llm = load(gguf, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, logits_all=bool(forced))
    try:
        tokens = llm.tokenize(text.encode(), add_bos=False, special=True) if text is not None else None
        logits = None
        if forced:
            full = [*prompt, *forced]
            llm.eval(full)
            logits = np.array(llm.scores[len(prompt) - 1 : len(full)], dtype=np.float32)
        greedy: list[int] = []
        if n_greedy:
            for t in llm.generate(list(prompt), top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
                greedy.append(int(t))
                if len(greedy) == n_greedy:
                    break
        return Probe(tokens, logits, greedy, model_defaults())
    finally:
        llm.close()


def probe_isolated(gguf: str | Path, prompt: Sequence[int], *, timeout: float = 600, **kwargs: Any) -> Probe:
    """``probe`` in a child process: a crash in llama.cpp raises ``reactlab.isolate.ChildCrashed``."""
    from reactlab.isolate import run_isolated

    return run_isolated(probe, str(gguf), list(prompt), timeout=timeout, **kwargs)
