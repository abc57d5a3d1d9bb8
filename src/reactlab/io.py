"""Reading and writing the files at the edges: JSON / JSONL (optionally .gz / .bz2) with errors that
name the file, the line (or record) and the field; appends that survive a kill; atomic writes.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any


class OutputError(OSError):
    """An output could not be written (read-only place, full disk); the message names the file.
    What was already written stays whole: a torn last line is cut off first."""


class DataError(ValueError):
    """Bad input data. The message always starts with ``file:line`` (or ``file: record N``)."""


def open_file(path: str | Path, binary: bool = False) -> IO[Any]:
    """Open a file for reading, transparently decompressing ``.gz`` and ``.bz2``; UTF-8 text by
    default, bytes with ``binary=True`` (the corpus reader parses bytes lines: faster)."""
    p = str(path)
    mode, encoding = ("rb", None) if binary else ("rt", "utf-8")
    if p.lower().endswith(".gz"):
        return gzip.open(p, mode, encoding=encoding)  # type: ignore[return-value]
    if p.lower().endswith(".bz2"):
        return bz2.open(p, mode, encoding=encoding)
    return open(p, mode, encoding=encoding)


def is_jsonl(path: str | Path) -> bool:
    """JSONL by extension, or by content: a JSON list starts with ``[`` (after whitespace).

    A file named ``.json`` holding one object per line is JSONL too (HF exports often are).
    """
    name = str(path).removesuffix(".gz").removesuffix(".bz2")
    if name.endswith(".jsonl"):
        return True
    with reading(path), open_file(path) as f:
        head = f.read(4096).lstrip()
    return not head.startswith("[")


@contextlib.contextmanager
def reading(path: str | Path) -> Iterator[None]:
    """Turn what a file that is not what its name says raises (not gzip, not UTF-8, truncated) into
    a ``DataError`` naming the file."""
    try:
        yield
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); is it a binary file?") from None
    except FileNotFoundError:
        raise
    except (OSError, EOFError) as e:  # a corrupt or truncated .gz / .bz2, or one that is not compressed
        raise DataError(f"{path}: cannot read ({e})") from None


def iter_jsonl(path: str | Path, error: type[DataError] = DataError) -> Iterator[tuple[str, Any]]:
    """Yield ``(where, value)`` for each non-blank line of a JSONL file (``.gz`` / ``.bz2`` ok),
    ``where`` being ``"file:LINE"``. Invalid JSON or undecodable bytes, and a truncated or corrupt
    compressed file, raise ``error`` naming the file and line. Lines are parsed as bytes (faster)."""
    lineno = 0
    with open_file(path, binary=True) as f:
        try:
            for lineno, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    value = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise error(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
                except UnicodeDecodeError as e:
                    raise error(f"{where}: invalid JSON ({e})") from None
                yield where, value
        except (OSError, EOFError) as e:  # truncated or corrupt .gz / .bz2
            raise error(f"{path}:{lineno + 1}: cannot read ({e})") from e


def read_records(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(where, record)`` for each object of a JSON list or JSONL file.

    ``where`` is ``"file:LINE"`` for JSONL and ``"file: record N"`` (0-based) for a JSON list, ready
    to be put in front of an error message. Raises ``DataError`` on invalid JSON or a non-object.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if is_jsonl(path):
        for where, rec in iter_jsonl(path):
            if not isinstance(rec, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
            yield where, rec
        return
    with reading(path), open_file(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    if isinstance(data, dict) and "data" in data and isinstance(data["data"], list):
        data = data["data"]  # {"data": [...]} wrappers (HF / SQuAD-like exports)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records or JSONL, got {type(data).__name__}")
    for i, rec in enumerate(data):
        where = f"{path}: record {i}"
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        yield where, rec


def require(rec: dict[str, Any], field: str, types: type | tuple[type, ...], where: str) -> Any:
    """``rec[field]`` checked for presence and type, or a ``DataError`` naming where and which field."""
    if field not in rec:
        raise DataError(f"{where}: field {field!r} missing")
    value = rec[field]
    if not isinstance(value, types):
        names = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise DataError(f"{where}: field {field!r} must be {names}, got {type(value).__name__}")
    return value


def append_jsonl(f: IO[str], record: dict[str, Any]) -> None:
    """Append one record as a line and make it durable (flush + fsync): a kill loses at most the
    line being written, which the reader then drops (see ``read_jsonl_tolerant``). A failed write
    (full disk) cuts the partial line off again and raises ``OutputError`` naming the file."""
    line = json.dumps(record, ensure_ascii=False) + "\n"
    size = os.fstat(f.fileno()).st_size
    try:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
        with contextlib.suppress(OSError):
            os.ftruncate(f.fileno(), size)
        raise OutputError(e.errno, f"cannot write {f.name}: {e.strerror or e}") from None


def read_jsonl_tolerant(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL file we append to; an unterminated last line (a killed write) is cut off the
    file so the next append starts on a clean line. Any other bad line is an error."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    good_end = raw.rfind(b"\n") + 1
    if good_end < len(raw):
        with open(path, "r+b") as f:  # drop the torn tail
            f.truncate(good_end)
        raw = raw[:good_end]
    out = []
    for lineno, line in enumerate(io.StringIO(raw.decode("utf-8")), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
    return out


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file via a temp file in the same directory and ``os.replace``: readers see the old
    or the new file, never half of one. The result is 0644 like any other output (mkstemp's 0600
    would make a dataset unreadable to a colleague)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(e.errno, f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise OutputError(e.errno, f"cannot write {path}: {e.strerror or e}") from None
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Pretty JSON, written atomically (``write_text_atomic``)."""
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line, written atomically (``write_text_atomic``)."""
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def files_sha256(paths: Iterable[str | Path]) -> str:
    """One sha256 over the given files' names and bytes (missing files are skipped), in order."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        if p.is_file():
            h.update(p.name.encode() + b"\0")
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()
