"""Progress bars for the commands that take more than a few seconds (index build, data build,
export): tqdm on stderr, shown when stderr is a terminal, so logs and pipes stay clean.
``REACTLAB_PROGRESS=1`` shows them anyway, ``REACTLAB_PROGRESS=0`` never."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
PROGRESS_ENV = "REACTLAB_PROGRESS"


def enabled() -> bool:
    """Whether bars are shown: the environment variable when set, else whether stderr is a terminal.

    >>> os.environ[PROGRESS_ENV] = "0"; enabled()
    False
    >>> del os.environ[PROGRESS_ENV]
    """
    flag = os.environ.get(PROGRESS_ENV)
    if flag is not None:
        return flag.strip().lower() not in ("0", "false", "no", "off", "")
    return sys.stderr.isatty()


def progress(items: Iterable[T], *, desc: str, unit: str = "it", total: int | None = None) -> Iterator[T]:
    """``items``, with a bar when ``enabled()``; ``total`` defaults to ``len(items)`` where it has one."""
    if not enabled():
        yield from items
        return
    from tqdm import tqdm

    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with tqdm(items, desc=desc, unit=unit, total=total, file=sys.stderr, dynamic_ncols=True, leave=False) as bar:
        yield from bar
