"""The rows a trainer reads from a ``reactlab data build`` dir: ``data_files``, ``load_rows``,
``load_splits``, ``columns_dataset`` (a trainer's columns, checked), and ``tool_dataset`` (tool rows as
TRL's ``SFTTrainer`` takes them)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reactlab.io import DataError, iter_jsonl


def load_rows(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The rows of a JSONL file (the first ``limit``). A missing file is ``FileNotFoundError`` (the
    optional val file is checked for by the caller, ``data_files``); a line that is not a JSON
    object is a ``DataError`` naming the file and line."""
    rows = []
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    for where, row in iter_jsonl(path):
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object (a row), got {type(row).__name__}")
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    return rows


def data_files(cfg: Any) -> tuple[Path, Path | None]:
    """``(train file, val file or None)``; the val file is optional (a missing one is no eval)."""
    root = Path(cfg.data.path)
    train = root / cfg.data.train_file
    if not train.is_file():
        raise FileNotFoundError(f"{train}: no training file (build one with `reactlab data build --out {root}`)")
    val = root / cfg.data.val_file if cfg.data.val_file else None
    return train, (val if val is not None and val.is_file() else None)


def load_splits(cfg: Any) -> tuple[Path, list[dict[str, Any]], Path | None, list[dict[str, Any]]]:
    """``(train file, its rows, val file or None, its rows)`` of a recipe's ``data`` (``data_files``,
    ``load_rows`` with the recipe's limits); no training row is a ``DataError`` naming the file."""
    train_file, val_file = data_files(cfg)
    train_rows = load_rows(train_file, cfg.data.limit)
    if not train_rows:
        raise DataError(f"{train_file}: no rows to train on")
    val_rows = load_rows(val_file, cfg.data.val_limit) if val_file is not None else []
    return train_file, train_rows, val_file, val_rows


def _is_messages(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in v)


def columns_dataset(rows: Sequence[dict[str, Any]], texts: Sequence[str], where: str, extra: Sequence[str] = ()) -> Any:
    """A ``datasets.Dataset`` of the ``texts`` columns (+ ``extra``) of ``rows``, the other columns
    (``source``, ``prompt_id``...) left out. Every ``texts`` column of a row must be there and be
    the same kind as its ``prompt``: all strings, or all chat message lists (TRL reads a row as
    conversational from its first column); else a ``DataError`` naming the row and column."""
    from datasets import Dataset

    keep = [*texts, *extra]
    out: dict[str, list[Any]] = {k: [] for k in keep}
    for n, row in enumerate(rows, 1):
        missing = [k for k in keep if k not in row]
        if missing:
            raise DataError(f"{where}: row {n}: no {', '.join(map(repr, missing))} column (it has {sorted(row)}); "
                            f"build the data with `reactlab data build --format ...`")
        chat = _is_messages(row[texts[0]])
        for k in texts:
            ok = _is_messages(row[k]) if chat else isinstance(row[k], str)
            if not ok or not row[k]:
                kind = "chat message list" if chat else "string"
                raise DataError(f"{where}: row {n}: {k!r} must be a non-empty {kind}, like {texts[0]!r}")
        for k in keep:
            out[k].append(row[k])
    return Dataset.from_dict(out)


def tool_dataset(rows: Sequence[dict[str, Any]]) -> Any:
    """A ``datasets.Dataset`` of ``messages-tools`` rows for TRL's ``SFTTrainer``: ``messages`` as a list
    of ``datasets.Json`` (an Arrow struct would merge the tools' argument names into every call and
    render ``null`` for the missing ones) and ``tools`` as the JSON string TRL reads; other columns
    are left out."""
    import json

    from datasets import Dataset, Features, Json, List, Value

    features = Features({"messages": List(Json()), "tools": Value("string")})
    return Dataset.from_dict({"messages": [list(r["messages"]) for r in rows],
                              "tools": [r["tools"] if isinstance(r["tools"], str) else json.dumps(r["tools"])
                                        for r in rows]}, features=features)
