"""Where things live: the vendored data pack and the cache (its entries, their LRU eviction).
Nothing is created at import."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
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


CACHE_CAP_ENV = "REACTLAB_CACHE_MAX_MB"
DEFAULT_CACHE_CAP_MB = 4096
"""The wiki indexes kept in the cache (one per distinct corpus / ``--data`` file, tens of MB each)
are capped: past ``$REACTLAB_CACHE_MAX_MB`` (default 4096) the least recently used are removed.
They are rebuilt on demand; converted models are never evicted (``reactlab cache clear`` removes them)."""


@dataclass
class CacheEntry:
    kind: str  # "wiki" (a search index) or "models" (a converted model)
    path: Path
    size: int
    used: float  # when it was last opened (its access time, seconds since the epoch)


def _size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())


def cache_entries(root: Path | None = None) -> list[CacheEntry]:
    """What the cache holds, least recently used first: each wiki index (with its SQLite side files)
    and each converted model."""
    root = root or home()
    out = []
    for db in (root / "wiki").glob("*.sqlite") if (root / "wiki").is_dir() else ():
        side = [db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal")]
        out.append(CacheEntry("wiki", db, sum(_size(p) for p in [db, *side] if p.exists()), db.stat().st_atime))
    for d in (root / "models").iterdir() if (root / "models").is_dir() else ():
        out.append(CacheEntry("models", d, _size(d), d.stat().st_atime))
    return sorted(out, key=lambda e: e.used)


def mark_used(path: Path) -> None:
    """Record that a cache entry was just used: its access time, what eviction orders by (the
    modification time stays: it says when the entry was built)."""
    with contextlib.suppress(OSError):
        os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns))


def remove_entry(entry: CacheEntry) -> None:
    if entry.path.is_dir():
        shutil.rmtree(entry.path, ignore_errors=True)
        return
    for p in [entry.path, *(entry.path.with_name(entry.path.name + s) for s in ("-wal", "-shm", "-journal"))]:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def cache_cap_bytes() -> int:
    """The wiki indexes' cap in bytes (``$REACTLAB_CACHE_MAX_MB``, a number of MB >= 0)."""
    raw = os.environ.get(CACHE_CAP_ENV, "")
    try:
        mb = float(raw) if raw else DEFAULT_CACHE_CAP_MB
    except ValueError:
        raise ValueError(f"${CACHE_CAP_ENV}={raw!r}: expected a number of MB") from None
    if not 0 <= mb < 1e9:
        raise ValueError(f"${CACHE_CAP_ENV}={raw!r}: expected a number of MB in [0, 1e9)")
    return int(mb * 1e6)


def evict(keep: Path, root: Path | None = None, cap: int | None = None) -> list[Path]:
    """Remove the least recently used wiki indexes until they fit the cap (never ``keep``, the one
    just built); return what was removed."""
    cap = cache_cap_bytes() if cap is None else cap
    wiki = [e for e in cache_entries(root) if e.kind == "wiki"]
    total = sum(e.size for e in wiki)
    removed = []
    for e in wiki:
        if total <= cap:
            break
        if e.path.resolve() == keep.resolve():
            continue
        remove_entry(e)
        total -= e.size
        removed.append(e.path)
    return removed
