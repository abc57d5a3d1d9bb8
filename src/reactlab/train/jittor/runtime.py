"""``import_jittor()``: the one place Jittor is imported, with the settings this project needs.

Jittor reads its build settings from environment variables at its first import:

- ``nvcc_path``: when it finds ``nvcc`` on the PATH it compiles for CUDA and then fails on a
  missing ``libcudart`` where the CUDA runtime is not installed beside it; we train on the CPU
  unless the user has set ``nvcc_path`` themselves (a CUDA machine set up for Jittor);
- ``use_mkl``: with MKL on, its first import downloads oneDNN from the internet, which an
  offline machine cannot; its own CPU kernels need nothing.

The first import compiles Jittor's core (minutes; cached under ``~/.cache/jittor`` per install
path), so it happens only when a Jittor path is actually used, never at ``import reactlab``.
"""

from __future__ import annotations

import os
from typing import Any

PIP_HINT = 'pip install "reactlab[jittor]" (jittor==1.3.11 needs numpy<2)'


def import_jittor() -> Any:
    """The ``jittor`` module, imported with CPU-only defaults (``nvcc_path=""``, ``use_mkl=0``)
    unless the environment already sets them, and its log level kept at warnings. Raises
    ``ModuleNotFoundError`` naming the pip command when Jittor is not installed."""
    os.environ.setdefault("nvcc_path", "")
    os.environ.setdefault("use_mkl", "0")
    os.environ.setdefault("log_silent", "1")  # no compile chatter on stdout: it would corrupt JSON output
    try:
        import jittor
    except ModuleNotFoundError as e:
        if e.name != "jittor":
            raise
        raise ModuleNotFoundError(f"the Jittor training path needs Jittor: {PIP_HINT}") from None
    return jittor
