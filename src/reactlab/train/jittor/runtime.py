"""``import_jittor()``: the one place Jittor is imported, with the settings this project needs.

Jittor reads its build settings from environment variables at its first import:

- ``nvcc_path``: when it finds ``nvcc`` on the PATH it compiles for CUDA and then fails on a
  missing ``libcudart`` where the CUDA runtime is not installed beside it; so we set it empty (train
  on the CPU) unless CUDA is present (``cuda_present``: an NVIDIA driver and ``nvcc``), where Jittor
  finds ``nvcc`` itself and we turn ``use_cuda`` on; a ``nvcc_path`` the user set always wins;
- ``use_mkl``: with MKL on, its first import downloads oneDNN from the internet, which an
  offline machine cannot; its own CPU kernels need nothing.

The first import compiles Jittor's core (minutes; cached under ``~/.cache/jittor`` per install
path), so it happens only when a Jittor path is actually used, never at ``import reactlab``.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Any

PIP_HINT = 'pip install "reactlab[jittor]" (jittor==1.3.11 needs numpy<2)'


@functools.cache
def cuda_present() -> bool:
    """An NVIDIA driver is loaded and ``nvcc`` is on the PATH: what Jittor's CUDA build needs."""
    return Path("/proc/driver/nvidia/version").is_file() and shutil.which("nvcc") is not None


def defaults(cuda: bool) -> dict[str, str]:
    """The environment Jittor is imported with, where the user has not set it (see the module doc)."""
    out = {"use_mkl": "0", "log_silent": "1"}  # log_silent: no compile chatter on stdout (JSON output)
    return out if cuda else {"nvcc_path": "", **out}


def import_jittor() -> Any:
    """The ``jittor`` module, imported with CPU-only defaults (``nvcc_path=""``, ``use_mkl=0``)
    unless the environment already sets them or CUDA is present (then ``nvcc_path`` is left to
    Jittor and ``jt.flags.use_cuda`` is on), and its log level kept at warnings. Raises
    ``ModuleNotFoundError`` naming the pip command when Jittor is not installed."""
    for key, value in defaults(cuda_present()).items():
        os.environ.setdefault(key, value)
    try:
        import jittor
    except ModuleNotFoundError as e:
        if e.name != "jittor":
            raise
        raise ModuleNotFoundError(f"the Jittor training path needs Jittor: {PIP_HINT}") from None
    if getattr(jittor, "has_cuda", 0) and not jittor.flags.use_cuda:
        jittor.flags.use_cuda = 1
    return jittor
