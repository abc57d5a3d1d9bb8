"""Patches of TRL's internals for training on a CPU, applied explicitly by each trainer through
``patch_trl_for_cpu`` (never as a side effect of loading a model). Each one leaves the results
as they were and returns False, changing nothing, where this TRL lacks the knob it sets.
"""

from __future__ import annotations

from typing import Any


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def patch_trl_for_cpu() -> None:
    """Every CPU patch below, in order; a trainer calls this before it builds its TRL trainer."""
    score_labelled_positions_only()  # a CPU has no graph to recompile: skip unlabelled positions
    cpu_lm_head_tiles()  # smaller LM-head tiles: the same log-probs in a fraction of the memory


def score_labelled_positions_only() -> bool:
    """Make TRL's fused LM head project only the positions that carry a label on a CPU too.

    TRL projects only labelled positions on Triton devices and every position elsewhere (a varying
    count would recompile XLA / Neuron graphs). A CPU has no graph to recompile, and the prompt
    positions carry no loss, so the scored positions are the same either way. Idempotent."""
    import trl.trainer.utils as trl_utils

    use_triton = getattr(trl_utils, "_use_triton", None)
    if use_triton is None:
        return False
    if getattr(use_triton, "reactlab_cpu_compact", False):
        return True

    def compact(device: Any) -> bool:
        return device.type == "cpu" or use_triton(device)

    compact.reactlab_cpu_compact = True  # type: ignore[attr-defined]
    trl_utils._use_triton = compact
    return True


CPU_HEAD_TILE = (256, 4096)
"""Tokens x vocabulary entries per projection of TRL's chunked LM head on a CPU (TRL's own sizes,
4,096 x 32,768, are for its Triton kernels and make the torch fallback build large temporaries)."""


def cpu_lm_head_tiles(tile: tuple[int, int] = CPU_HEAD_TILE) -> bool:
    """Size TRL's LM head tiles for a CPU (``CPU_HEAD_TILE``): the same log-probabilities (an online
    log-sum-exp over the vocabulary chunks; only the summation order moves), less memory.
    Process-wide, so only where no CUDA device is there (TRL's Triton kernels keep their sizes)."""
    import trl.trainer.utils as trl_utils

    try:
        import trl.kernels.chunked_logprob as kernel
    except ImportError:
        return False
    if cuda_available() or not hasattr(kernel, "TOKEN_CHUNK_SIZE") or not hasattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE"):
        return False
    kernel.TOKEN_CHUNK_SIZE, trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = tile
    return True
