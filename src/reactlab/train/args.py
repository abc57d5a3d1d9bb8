"""TRL arguments from a recipe: ``check_trl_keys`` (a ``trl:`` block's keys against TRL's config
class), ``trl_defaults`` (ours for what the block leaves unset) and ``check_resume``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reactlab.train.cpu import cuda_available


def check_trl_keys(trl: dict[str, Any], config_cls: type) -> None:
    """Raise ``ValueError`` naming each key of a ``trl:`` block that ``config_cls`` (a TRL config
    dataclass) does not take, with the closest argument names, without building the config (which
    checks the hardware)."""
    import dataclasses
    import difflib

    known = {f.name for f in dataclasses.fields(config_cls) if f.init}
    bad = [k for k in trl if k not in known]
    if bad:
        hints = {k: difflib.get_close_matches(k, known, n=3) for k in bad}
        raise ValueError(f"trl: block: not trl.{config_cls.__name__} arguments: "
                         + "; ".join(f"trl.{k}" + (f" (did you mean {', '.join(h)}?)" if h else "") for k, h in hints.items()))
    for f in dataclasses.fields(config_cls):
        if f.name in trl and not _fits(trl[f.name], f.type):
            raise ValueError(f"trl.{f.name}: expected {getattr(f.type, '__name__', f.type)}, got {trl[f.name]!r}")


def _fits(value: Any, kind: Any) -> bool:
    """Whether ``value`` fits a TRL config field of type ``kind`` (checked for plain scalar types
    and their unions with None; other types pass through, as before)."""
    import types
    import typing

    args = typing.get_args(kind) if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union else (kind,)
    if not all(a in (int, float, bool, str, type(None)) for a in args):
        return True
    if isinstance(value, bool):
        return bool in args
    if isinstance(value, int):
        return int in args or float in args
    return isinstance(value, tuple(args))


def trl_defaults(trl: dict[str, Any], out: str, cpu_bf16: bool = False, checkpointing: bool = False) -> dict[str, Any]:
    """Our defaults for a TRL config, for the keys the recipe's ``trl:`` block leaves unset (its keys
    always win): ``output_dir`` = ``out``; TensorBoard logs; ``use_cpu`` without CUDA (KTO's and
    GRPO's configs refuse bf16 otherwise); bf16 (autocast, fp32 master weights) on CUDA, and on a
    CPU only with ``cpu_bf16`` where bf16 matmuls are fast (``hardware.bf16_matmuls_fast``: AMX or
    AVX-512 BF16; TRL's default, True, runs slowly on a CPU without them), never beside the recipe's
    ``fp16``; activation checkpointing
    only with ``checkpointing`` (TRL turns it on everywhere) unless either of its names is set. SFT
    asks for both, GRPO/RLOO for bf16 (measured: docs/training.md); DPO and KTO keep fp32 without
    checkpointing until measured."""
    from reactlab.hardware import bf16_matmuls_fast

    cuda = cuda_available()
    ours: dict[str, Any] = {"output_dir": out, "report_to": ["tensorboard"],
                            "bf16": not trl.get("fp16") and (cuda or (cpu_bf16 and bf16_matmuls_fast()))}
    if not cuda:
        ours["use_cpu"] = True
    if "gradient_checkpointing" not in trl and "activation_checkpointing" not in trl:
        ours["activation_checkpointing"] = checkpointing
    return ours | trl


def check_resume(out: str | Path) -> None:
    """``--resume`` needs a ``checkpoint-N`` dir in ``out``: a ``ValueError`` saying how to get one."""
    from transformers.trainer_utils import get_last_checkpoint

    if not Path(out).is_dir() or get_last_checkpoint(str(out)) is None:
        raise ValueError(f"--resume: no checkpoint-N directory in {out} (set trl.save_steps to save them)")
