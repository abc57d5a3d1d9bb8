"""Where things live: the vendored data pack and the cache. Nothing is created at import."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The vendored offline data pack: ``$REACTLAB_DATA``, else the package's ``datapack/`` (shipped
    in the wheel; a source checkout also has it as ``data/``)."""
    env = os.environ.get("REACTLAB_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "datapack"


def recipes_dir() -> Path:
    """The packaged training recipes (a source checkout also has them as ``configs/``)."""
    return Path(__file__).resolve().parent / "recipes"


def home() -> Path:
    """The cache (wiki indexes, converted models): ``$REACTLAB_HOME``, else ``~/.cache/reactlab``."""
    env = os.environ.get("REACTLAB_HOME")
    return Path(env) if env else Path.home() / ".cache" / "reactlab"
