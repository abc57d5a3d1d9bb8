"""Reading and writing the files at the edges: JSON / JSONL (optionally .gz / .bz2) with errors that
name the file, the line (or record) and the field, and limits (nesting depth, line length, file
size, valid Unicode) checked at load; appends that survive a kill or a full disk; atomic writes.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import errno
import gzip
import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

MAX_DEPTH = 64
"""The deepest JSON nesting an input may have (records are a few levels deep; thousands of ``[``
would otherwise overflow the parser's or a later stage's recursion)."""
MAX_LINE_BYTES = 64 << 20
"""The longest line of a JSONL input (a line is read whole into memory)."""
MAX_JSON_BYTES = 1 << 30
"""The largest JSON (not JSONL) input, parsed whole in memory."""
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


class OutputError(OSError):
    """An output could not be written (read-only place, full disk); the message names the file.
    What was already written stays whole: a torn last line is cut off first."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno N]"
        return str(self.strerror)


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
    except csv.Error as e:  # a CSV reader's: a field over its size limit, a NUL byte
        raise DataError(f"{path}: not CSV that can be read ({e})") from None


def iter_jsonl(path: str | Path, error: type[DataError] = DataError) -> Iterator[tuple[str, Any]]:
    """Yield ``(where, value)`` for each non-blank line of a JSONL file (``.gz`` / ``.bz2`` ok),
    ``where`` being ``"file:LINE"``. Invalid JSON or undecodable bytes, a line over
    ``MAX_LINE_BYTES`` or nested over ``MAX_DEPTH``, text that is not valid Unicode (a lone
    surrogate), and a truncated or corrupt compressed file raise ``error`` naming the file and line.
    Lines are parsed as bytes (faster)."""
    lineno = 0
    with open_file(path, binary=True) as f:
        try:
            while raw := f.readline(MAX_LINE_BYTES + 1):
                lineno += 1
                where = f"{path}:{lineno}"
                if len(raw) > MAX_LINE_BYTES:
                    raise error(f"{where}: line longer than {MAX_LINE_BYTES:,} bytes")
                if not raw.strip():
                    continue
                yield where, parse_json(raw, where, error)
        except (OSError, EOFError) as e:  # truncated or corrupt .gz / .bz2
            raise error(f"{path}:{lineno + 1}: cannot read ({e})") from e


def parse_json(raw: str | bytes, where: str, error: type[DataError] = DataError, whole_file: bool = False) -> Any:
    """``json.loads(raw)`` for an input: invalid JSON, nesting over ``MAX_DEPTH`` and text that is
    not valid Unicode raise ``error`` starting with ``where`` (``where:LINE`` for a ``whole_file``)."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        at = f"{where}:{e.lineno}" if whole_file else where
        raise error(f"{at}: invalid JSON ({e.msg} at column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise error(f"{where}: invalid JSON ({e})") from None
    except RecursionError:
        raise error(f"{where}: JSON nested deeper than {MAX_DEPTH} levels") from None
    check_json(value, raw, where, error)
    return value


def check_json(value: Any, raw: str | bytes, where: str, error: type[DataError] = DataError) -> None:
    """Refuse ``value`` (parsed from ``raw``) when it nests deeper than ``MAX_DEPTH`` or holds a
    lone surrogate (``\\ud800``: no UTF-8 for it, so it would fail at the first write). Cheap for the
    usual record: the walk happens only when ``raw`` has enough brackets or a surrogate escape."""
    b = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    deep = b.count(b"[") + b.count(b"{") > MAX_DEPTH
    surrogate = _SURROGATE.search(b) is not None
    if not (deep or surrogate):
        return
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        v, field, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise error(f"{where}: JSON nested deeper than {MAX_DEPTH} levels")
        if isinstance(v, dict):
            for k, x in v.items():
                name = f"{field}.{k}" if field else str(k)
                stack.append((x, name, depth + 1))
                if surrogate:
                    _encodable(k, where, name, error)
        elif isinstance(v, list):
            stack.extend((x, f"{field}[{i}]", depth + 1) for i, x in enumerate(v))
        elif surrogate and isinstance(v, str):
            _encodable(v, where, field, error)


def _encodable(text: str, where: str, field: str, error: type[DataError]) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = text[e.start].encode("unicode_escape").decode()
        raise error(f"{where}: field {field!r} holds {bad}, a lone surrogate that is not valid Unicode") from None


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
    if path.stat().st_size > MAX_JSON_BYTES:
        raise DataError(f"{path}: over {MAX_JSON_BYTES >> 30} GiB of JSON; write it as JSONL (one record a line)")
    with reading(path), open_file(path) as f:
        text = f.read(MAX_JSON_BYTES + 1)
    if len(text) > MAX_JSON_BYTES:
        raise DataError(f"{path}: over {MAX_JSON_BYTES >> 30} GiB of JSON; write it as JSONL (one record a line)")
    data = parse_json(text, str(path), whole_file=True)
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


def json_line(record: Any) -> bytes:
    """One record as a UTF-8 JSON line. Text that cannot be UTF-8 (a lone surrogate) is written
    ``\\u``-escaped instead of failing half-way through a run."""
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record) + "\n").encode("ascii")


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written; unbuffered, so nothing is left to be flushed
    (after a repair) when the file is closed."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _output_error(e: OSError, path: str | Path, kept: str) -> OutputError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(e.errno, f"disk full writing {path}; {kept}; free space and rerun to resume")
    return OutputError(e.errno, f"cannot write {path}: {e.strerror or e}")


class JsonlAppender:
    """Appends records to a JSONL file, each durable before ``append`` returns (unbuffered write,
    then fsync). A failed write (full disk) cuts its partial line off again, so the file always ends
    on a whole record, and raises ``OutputError``: ``disk full writing FILE; N NOUN kept; ...``.
    ``kept``: the records already in the file (``read_jsonl_tolerant`` repaired it on resume)."""

    def __init__(self, path: str | Path, kept: int = 0, noun: str = "records"):
        self.path, self.kept, self.noun = Path(path), kept, noun
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise _output_error(e, self.path, f"{kept} {noun} kept") from None

    def append(self, record: dict[str, Any]) -> None:
        _append_line(self.fd, json_line(record), self.path, f"{self.kept} {self.noun} kept")
        self.kept += 1

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _append_line(fd: int, line: bytes, path: str | Path, kept: str) -> None:
    size = os.fstat(fd).st_size
    try:
        _write_all(fd, line)
        os.fsync(fd)
    except OSError as e:
        with contextlib.suppress(OSError):  # cut the torn line off: the file ends on a whole record
            os.ftruncate(fd, size)
            os.fsync(fd)
        raise _output_error(e, path, kept) from None


def read_jsonl_tolerant(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL file we append to; an unterminated last line (a killed write) is cut off the
    file so the next append starts on a clean line, and so is a last line that is not JSON (the
    torn tail an older writer could leave after a full disk). Any other bad line is an error."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    good_end = raw.rfind(b"\n") + 1
    last = raw.rfind(b"\n", 0, max(good_end - 1, 0)) + 1  # the start of the last whole line
    if good_end and not _is_json(raw[last:good_end]):
        good_end = last
    if good_end < len(raw):
        with open(path, "r+b") as f:  # drop the torn tail
            f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
        raw = raw[:good_end]
    out = []
    with reading(path):
        text = raw.decode("utf-8")
    for lineno, line in enumerate(io.StringIO(text), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except (json.JSONDecodeError, RecursionError) as e:
                raise DataError(f"{path}:{lineno}: invalid JSON ({getattr(e, 'msg', 'nested too deeply')})") from None
    return out


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except (ValueError, RecursionError):
        return not line.strip()  # a blank line is fine
    return True


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file via a temp file in the same directory and ``os.replace``: readers see the old
    or the new file, never half of one. The result is 0644 like any other output (mkstemp's 0600
    would make a dataset unreadable to a colleague)."""
    write_bytes_atomic(path, text.encode("utf-8", errors="backslashreplace"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """``write_text_atomic`` for bytes. A full disk leaves the old file (or none) and says so."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise _output_error(e, path, "nothing written") from None
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise _output_error(e, path, "the file left as it was") from None
        raise
    with contextlib.suppress(OSError):  # the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Pretty JSON, written atomically (``write_text_atomic``)."""
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line, written atomically (``write_text_atomic``)."""
    write_bytes_atomic(path, b"".join(json_line(r) for r in rows))


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


def check_safetensors(path: str | Path) -> None:
    """Refuse a ``.safetensors`` file whose header does not parse or whose tensors lie past its end
    (junk, a truncated download) with a ``DataError`` naming it, before a loader meets it."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("shorter than the 8-byte header length")
            n = int.from_bytes(head, "little")
            if n > min(size - 8, 100 << 20):
                raise ValueError(f"header length {n} past the end of the {size}-byte file")
            header = json.loads(f.read(n))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        for name, t in header.items():
            if name == "__metadata__":
                continue
            offsets = t.get("data_offsets") if isinstance(t, dict) else None
            if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(x, int) for x in offsets)
                    or not 0 <= offsets[0] <= offsets[1] <= size - 8 - n):
                raise ValueError(f"tensor {name!r} lies outside the file (truncated?)")
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise DataError(f"{path}: not a safetensors file ({e})") from None


ADAPTER_FIELDS: dict[str, tuple[type, ...]] = {
    "peft_type": (str,), "r": (int,), "lora_alpha": (int, float), "lora_dropout": (int, float),
    "target_modules": (str, list, type(None)), "modules_to_save": (list, type(None)),
    "base_model_name_or_path": (str, type(None)), "task_type": (str, type(None)), "bias": (str,),
    "fan_in_fan_out": (bool,), "use_rslora": (bool,), "use_dora": (bool,), "inference_mode": (bool,),
    "layers_to_transform": (int, list, type(None)), "rank_pattern": (dict,), "alpha_pattern": (dict,),
}
"""The PEFT ``adapter_config.json`` fields a loader uses, with the types they must have."""


def check_adapter_config(path: str | Path) -> dict[str, Any]:
    """An adapter's ``adapter_config.json``, its fields of the types PEFT needs; else a one-line
    ``DataError`` naming the file and the field."""
    with reading(path):
        text = Path(path).read_text(encoding="utf-8")
    try:
        cfg = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise DataError(f"{path}: not a JSON adapter config ({e})") from None
    if not isinstance(cfg, dict):
        raise DataError(f"{path}: not a JSON adapter config (expected an object, got {type(cfg).__name__})")
    for key, types in ADAPTER_FIELDS.items():
        if key in cfg:
            require(cfg, key, types, str(path))
            if isinstance(cfg[key], bool) and bool not in types:
                raise DataError(f"{path}: field {key!r} must be {'/'.join(t.__name__ for t in types)}, got bool")
    for key in ("target_modules", "modules_to_save"):
        if isinstance(cfg.get(key), list) and not all(isinstance(x, str) for x in cfg[key]):
            raise DataError(f"{path}: field {key!r} must be a list of module names (strings)")
    if isinstance(cfg.get("r"), int) and not 1 <= cfg["r"] <= 4096:
        raise DataError(f"{path}: field 'r' must be in [1, 4096], got {cfg['r']}")
    return cfg
