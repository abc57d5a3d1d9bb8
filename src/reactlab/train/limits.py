"""A run's wall-time budget and the processes of a distributed run: ``with_time_limit`` /
``time_limit`` (``max_minutes``), ``main_process`` and ``any_process``."""

from __future__ import annotations

import os
from typing import Any


def main_process() -> bool:
    """False only in a process of global rank > 0 under ``torchrun`` / ``accelerate launch`` (both set
    ``RANK``), i.e. the one process that reports a run is the one that writes its record."""
    return int(os.environ.get("RANK", "0")) == 0


def any_process(flag: bool, device: Any) -> bool:
    """``flag`` or-ed over the processes of a ``torch.distributed`` group (``flag`` itself without
    one): every process gets the same answer, so they stop at the same step. One that stopped alone
    would leave the others waiting in their next gradient all-reduce until the group times out."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def with_time_limit(cfg: Any, callbacks: list | None) -> list:
    """``callbacks`` plus a ``TimeLimit`` when the recipe sets ``max_minutes``."""
    out = list(callbacks or [])
    if getattr(cfg, "max_minutes", None):
        out.append(time_limit(cfg.max_minutes))
    return out


def time_limit(minutes: float) -> Any:
    """A ``transformers.TrainerCallback`` that ends training after the update during which
    ``minutes`` of wall time (from this invocation's start: a resumed run gets its own budget)
    have passed; ``hit`` and ``stopped_at_step`` say whether and where. The run then ends as if
    its last step were that one: final eval, save, record. Under several processes all stop after
    the update during which the first of them ran out (``any_process``)."""
    import time

    from transformers import TrainerCallback

    class TimeLimit(TrainerCallback):
        def __init__(self) -> None:
            self.seconds, self.t0, self.hit, self.stopped_at_step = minutes * 60, time.perf_counter(), False, None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            self.t0 = time.perf_counter()
            return control

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if any_process(time.perf_counter() - self.t0 >= self.seconds, args.device):
                self.hit, self.stopped_at_step = True, state.global_step
                control.should_training_stop = True
            return control

    return TimeLimit()
