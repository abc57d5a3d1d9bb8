"""Training data from trajectories (``reactlab data``).

``sources`` (run dirs, FireAct files -> ``Sample``), ``select`` (filters with drop reasons, mix,
train/val split), ``formats`` (SFT layouts: TRL messages and prompt/completion, Alpaca, ShareGPT +
``dataset_info.json``, OpenAI), ``preference`` (DPO, KTO), ``prompts`` (GRPO/RLOO prompt rows),
``masking`` (assistant-only loss masks), ``build`` (``build_dataset``), ``cli`` (``data_app``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_dataset"]


def build_dataset(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See ``reactlab.data.build.build_dataset`` (imported on first call: nothing happens at import)."""
    from reactlab.data.build import build_dataset as _build

    return _build(*args, **kwargs)
