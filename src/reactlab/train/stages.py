"""Training stages joined by files, as ``reactlab demo`` and ``reactlab train rft`` chain them: a
stage is skipped when its output is complete, a cut training continues from its last checkpoint,
and an output made from other inputs is refused, never silently reused."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reactlab.io import DataError
from reactlab.train.recipes import GRPORecipe, SFTRecipe
from reactlab.train.record import TRAINING_FILE

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", TRAINING_FILE)  # the training record is written last


def adapter_done(adapter: Path) -> bool:
    return all((adapter / f).is_file() for f in ADAPTER_FILES)


def refuse(where: Path, detail: str) -> None:
    """``DataError`` when ``detail`` (``runner.differences``) names a difference."""
    if detail:
        raise DataError(f"{where}: was made from other inputs ({detail}); use another --out or remove {where}")


def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``.

    >>> flat({"a": {"b": 1}, "c": 2})
    {'a.b': 1, 'c': 2}
    """
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def train_stage(cfg: SFTRecipe | GRPORecipe, say: Callable[[str], None], title: str,
                train: Callable[..., Any] | None = None) -> str:
    """``reactlab train sft`` (or ``train``): skipped when the adapter and its training record are
    there, resumed from the last ``checkpoint-N`` when one is."""
    adapter = Path(cfg.out)
    if adapter_done(adapter):
        say(f"{title} -> {adapter}: done, skipped")
        return "skipped"
    from transformers.trainer_utils import get_last_checkpoint

    if train is None:  # the recipe's framework picks the trainer, as `reactlab train sft` does
        from reactlab.train.jittor.train import train_sft_jittor
        from reactlab.train.sft import train_sft

        train = train_sft_jittor if getattr(cfg, "framework", "torch") == "jittor" else train_sft
    resume = adapter.is_dir() and get_last_checkpoint(str(adapter)) is not None
    say(f"{title} -> {adapter}" + (" (resuming from the last checkpoint)" if resume else ""))
    train(cfg, resume=resume)  # type: ignore[arg-type]  # a GRPO recipe always comes with its `train`
    gc.collect()
    return "resumed" if resume else "ran"
