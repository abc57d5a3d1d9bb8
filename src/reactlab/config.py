"""Typed configs and YAML recipes: ``-c recipe.yaml -c key=value -c lora.r=16``.

A recipe is a YAML mapping validated by one pydantic model per component (``extra="forbid"``, so a
misspelt key is an error, not a silent default). ``load_config(cls, files, overrides)`` deep-merges
the files in order, applies ``dotted.key=value`` overrides (values parsed as YAML: ``lora.r=16`` is
an int, ``trl.learning_rate=2e-4`` a float, ``model.name=smollm2`` a string), and validates. An error
names the key and where its value came from (the file, or ``-c key=value``).

The ``trl:`` block of a training recipe is a plain mapping handed to TRL's config class untouched:
we never re-declare TRL's arguments, so its documentation is ours.

>>> cfg = load_config(SFTRecipe, [], ["data.path=/d", "out=/o", "lora.r=4", "trl.learning_rate=2e-4"])
>>> cfg.lora.r, cfg.trl["learning_rate"], cfg.model.name
(4, 0.0002, 'smollm2')
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A recipe that cannot be loaded; the message names the file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelConfig(_Strict):
    """The base model. ``name``: a named model (``smollm2``, ``gemma3-270m``: ``reactlab.models``),
    a local HF directory, a ``.gguf`` file (dequantised), or a hub id. ``dtype``: ``auto`` = fp32 on
    CPU, bf16 on CUDA. ``attn_implementation``: passed to ``from_pretrained`` (None: transformers'
    default, SDPA). A plain string in YAML (``model: smollm2``) means ``{name: smollm2}``."""

    name: str = "smollm2"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    attn_implementation: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v


class DataConfig(_Strict):
    """A dataset directory from ``reactlab data build``: ``train.jsonl`` (+ ``val.jsonl``, optional,
    empty allowed) with TRL columns ``messages`` or ``prompt``/``completion``. ``limit`` /
    ``val_limit``: use only the first N rows (quick runs, benchmarks)."""

    path: str
    train_file: str = "train.jsonl"
    val_file: str | None = "val.jsonl"
    limit: int | None = Field(default=None, ge=1)
    val_limit: int | None = Field(default=None, ge=0)


class LoraConfig(_Strict):
    """LoRA adapter shape (PEFT ``LoraConfig``): rank ``r``, scale ``alpha``/``r``, ``dropout``, and
    ``target_modules`` (``all-linear`` = every linear layer except the output head, as in QLoRA)."""

    r: int = Field(default=16, ge=1)
    alpha: float = 32
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class SFTRecipe(_Strict):
    """``reactlab train sft``. ``method``: ``lora`` (adapter on a frozen base), ``qlora`` (the same on
    a 4-bit base: CUDA + bitsandbytes only), ``full`` (every weight; ``lora`` ignored).
    ``train_on``: ``assistant`` (thought + action turns and their end-of-turn token; the default) or
    ``all`` (observations too, FireAct's behaviour) — see ``reactlab.data.masking``. ``out``: the
    adapter / model dir (also checkpoints, TensorBoard logs, ``run.json``, ``loss.png``). ``trl``:
    ``trl.SFTConfig`` arguments, passed through untouched."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    method: Literal["lora", "qlora", "full"] = "lora"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    train_on: Literal["assistant", "all"] = "assistant"
    out: str
    trl: dict[str, Any] = Field(default_factory=dict)


# --- YAML ----------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML 1.2's scalars, not 1.1's: ``2e-4`` is a float (1.1 wants ``2.0e-4``) and only
    ``true``/``false`` are booleans (1.1 also reads ``no``, ``off``, ``yes``... so TRL's
    ``save_strategy: no`` would arrive as ``False``)."""


# A private copy of the resolver table, without YAML 1.1's booleans; then 1.2's booleans and floats.
_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in rs if tag != "tag:yaml.org,2002:bool"]
    for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))

_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def parse_value(text: str) -> Any:
    """An override's value, read as YAML (so ``16`` is an int and ``[q_proj, v_proj]`` a list).

    >>> parse_value("16"), parse_value("2e-4"), parse_value("true"), parse_value("no"), parse_value("null")
    (16, 0.0002, True, 'no', None)
    """
    return yaml.load(text, Loader=_Loader) if text.strip() else ""


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A recipe file as a mapping (an empty file is ``{}``); a parse error names the file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_Loader)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of keys, not {type(data).__name__}")
    return data


# --- merge + overrides ---------------------------------------------------------------------------


def _merge(dst: dict[str, Any], src: dict[str, Any], origin: str, where: dict[str, str], prefix: str = "") -> None:
    """Deep-merge ``src`` into ``dst`` (mappings merge, anything else replaces) and record, for every
    key path written, the ``origin`` it came from (for error messages)."""
    for k, v in src.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v, origin, where, key + ".")
        else:
            dst[k] = v
        where[key] = origin


def apply_override(data: dict[str, Any], spec: str) -> tuple[str, Any]:
    """Set ``a.b.c=value`` in the nested mapping ``data``; return ``(key, value)``.

    >>> d = {"lora": {"r": 8}}
    >>> apply_override(d, "lora.r=16"), d
    (('lora.r', 16), {'lora': {'r': 16}})
    """
    key, sep, text = spec.partition("=")
    key = key.strip()
    if not sep or not key or any(not p for p in key.split(".")):
        raise ConfigError(f"-c {spec!r}: an override is KEY=VALUE with a dotted key (e.g. lora.r=16)")
    *parents, leaf = key.split(".")
    node = data
    for i, p in enumerate(parents):
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"-c {spec!r}: {'.'.join(parents[: i + 1])} is {nxt!r}, not a mapping "
                              f"(write it as a mapping in the recipe, e.g. {p}: {{name: {nxt}}})")
        node = nxt
    value = parse_value(text)
    node[leaf] = value
    return key, value


def split_specs(specs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``-c`` arguments into recipe files and ``key=value`` overrides (order kept within each).
    A spec with ``=`` is an override unless it names an existing file.

    >>> split_specs(["configs/x.yaml", "lora.r=16"])
    (['configs/x.yaml'], ['lora.r=16'])
    """
    files, overrides = [], []
    for s in specs:
        (overrides if "=" in s and not Path(s).is_file() else files).append(s)
    return files, overrides


T = TypeVar("T", bound=BaseModel)


def load_config(cls: type[T], files: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> T:
    """Merge the YAML ``files`` in order, apply ``overrides`` (``dotted.key=value``), validate as ``cls``.

    Raises ``ConfigError`` naming each bad key with the file (or override) that set it, or the
    missing key when a required one was never set.
    """
    data: dict[str, Any] = {}
    where: dict[str, str] = {}
    for f in files:
        _merge(data, read_yaml(f), str(f), where)
    for spec in overrides:
        key, value = apply_override(data, spec)
        where[key] = f"-c {spec}"
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_explain(cls, e, where, files)) from None


def _explain(cls: type[BaseModel], err: ValidationError, where: dict[str, str], files: Sequence[str | Path]) -> str:
    lines = [f"invalid {cls.__name__} recipe ({', '.join(map(str, files)) or 'no files'}):"]
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        key = ".".join(loc)
        # The deepest key we know the origin of (pydantic may add a type tag to the location).
        origin = next((where[".".join(loc[:n])] for n in range(len(loc), 0, -1) if ".".join(loc[:n]) in where), None)
        if e["type"] == "extra_forbidden":
            parent = cls
            for p in loc[:-1]:
                fld = getattr(parent, "model_fields", {}).get(p)
                parent = fld.annotation if fld is not None else None
            known = sorted(getattr(parent, "model_fields", {}))
            msg = "unknown key" + (f" (known here: {', '.join(known)})" if known else "")
        elif e["type"] == "missing":
            msg = "required, but no file or override sets it"
        else:
            msg = f"{e['msg']} (got {e.get('input')!r})"
        lines.append(f"  {key}: {msg}" + (f"  [from {origin}]" if origin else ""))
    return "\n".join(lines)
