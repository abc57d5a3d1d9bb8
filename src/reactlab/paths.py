"""Where things live: the vendored data pack and the cache. Nothing is created at import."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The vendored offline data pack: ``$REACTLAB_DATA``, else ``data/`` of the source checkout."""
    env = os.environ.get("REACTLAB_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[2] / "data"
    if here.is_dir():
        return here
    raise FileNotFoundError(
        "reactlab's data pack was not found: set REACTLAB_DATA to the repository's data/ folder "
        "(reactlab is meant to be installed editable from its checkout: `make setup`)."
    )


def home() -> Path:
    """The cache (wiki indexes, converted models): ``$REACTLAB_HOME``, else ``~/.cache/reactlab``."""
    env = os.environ.get("REACTLAB_HOME")
    return Path(env) if env else Path.home() / ".cache" / "reactlab"
