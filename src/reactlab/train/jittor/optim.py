"""The optimizer side of the Jittor SFT loop, written to compute what the torch path's does:
``torch.optim.AdamW`` (decoupled weight decay) with transformers' learning-rate schedules and
``clip_grad_norm_``, as the Trainer drives them.

The state lives in numpy (the LoRA factors are a few million floats: an update is milliseconds),
so a checkpoint is one ``.npz`` and a resumed run continues bit for bit. Why not
``jt.optim.AdamW``: its bias correction counts ``backward`` calls, so with gradient accumulation
it would count micro-batches, not updates; and its weight decay defaults to 0 where torch's is 0.01
(the Trainer passes ``weight_decay`` explicitly, 0.0 unless the recipe says otherwise; so do we).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

SCHEDULES = ("linear", "cosine", "constant", "constant_with_warmup")


def lr_factor(kind: str, step: int, warmup: int, total: int) -> float:
    """The multiplier of the peak learning rate for the update after ``step`` finished updates,
    as ``transformers.get_scheduler(kind, ...)``'s ``LambdaLR`` gives it.

    >>> [round(lr_factor("linear", s, 2, 10), 3) for s in (0, 1, 2, 6, 10)]
    [0.0, 0.5, 1.0, 0.5, 0.0]
    >>> [round(lr_factor("cosine", s, 0, 4), 3) for s in range(5)]
    [1.0, 0.854, 0.5, 0.146, 0.0]
    """
    if kind not in SCHEDULES:
        raise ValueError(f"trl.lr_scheduler_type: {kind!r} is not supported by the Jittor path ({', '.join(SCHEDULES)})")
    if kind == "constant":
        return 1.0
    if step < warmup:
        return step / max(1, warmup)
    if kind == "constant_with_warmup":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if kind == "linear":
        return max(0.0, (total - step) / max(1, total - warmup))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def warmup_steps(warmup: float, ratio: float, total: int) -> int:
    """transformers' rule: ``warmup_steps`` >= 1 is a count, a fraction below 1 is a ratio of the
    total (as is ``warmup_ratio`` when no count is set).

    >>> warmup_steps(3, 0.0, 48), warmup_steps(0.1, 0.0, 48), warmup_steps(0, 0.1, 48)
    (3, 5, 5)
    """
    if warmup >= 1:
        return int(warmup)
    frac = warmup if warmup > 0 else ratio
    return math.ceil(total * frac)


def clip_grads(grads: list[np.ndarray], max_norm: float) -> float:
    """Scale ``grads`` in place so that their global L2 norm is at most ``max_norm`` (torch's
    ``clip_grad_norm_``: coefficient ``max_norm / (norm + 1e-6)`` capped at 1); returns the norm
    before clipping. ``max_norm <= 0`` leaves them as they are."""
    norm = float(np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads)))
    if max_norm and max_norm > 0:
        coef = np.float32(min(1.0, max_norm / (norm + 1e-6)))
        for g in grads:
            g *= coef
    return norm


class AdamW:
    """AdamW over a list of fp32 numpy parameters, torch's update rule:
    ``p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
    p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)``."""

    def __init__(self, shapes: list[tuple[int, ...]], weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.wd, self.b1, self.b2, self.eps = weight_decay, betas[0], betas[1], eps
        self.m = [np.zeros(s, np.float32) for s in shapes]
        self.v = [np.zeros(s, np.float32) for s in shapes]
        self.t = 0

    def step(self, params: list[np.ndarray], grads: list[np.ndarray], lr: float) -> list[np.ndarray]:
        """One update; returns the new parameters (new arrays)."""
        self.t += 1
        b1, b2 = np.float32(self.b1), np.float32(self.b2)
        bc1, bc2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        out = []
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            p = p * np.float32(1 - lr * self.wd)
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            denom = np.sqrt(self.v[i]) / np.float32(math.sqrt(bc2)) + np.float32(self.eps)
            out.append((p - np.float32(lr / bc1) * self.m[i] / denom).astype(np.float32))
        return out

    def save(self, path: str | Path) -> None:
        arrays: dict[str, Any] = {f"m{i}": a for i, a in enumerate(self.m)} | {f"v{i}": a for i, a in enumerate(self.v)}
        np.savez(path, t=np.array(self.t), **arrays)

    def load(self, path: str | Path) -> None:
        with np.load(path) as z:
            n = len(self.m)
            if sum(1 for k in z.files if k.startswith("m")) != n:
                raise ValueError(f"{path}: optimizer state for another set of parameters")
            self.t = int(z["t"])
            self.m = [z[f"m{i}"] for i in range(n)]
            self.v = [z[f"v{i}"] for i in range(n)]


class LossScale:
    """Dynamic loss scaling for float16, as ``torch.amp.GradScaler`` does it with its defaults: the
    loss is multiplied by ``scale`` before the backward pass and the gradients divided by it after;
    an update whose gradients hold an inf or a NaN is skipped and the scale halved; after
    ``interval`` updates in a row without one, the scale doubles. ``state()`` / ``from_state`` carry
    it across a checkpoint, so a resumed run scales as the uninterrupted one.

    >>> s = LossScale(); s.update(finite=False); s.scale
    32768.0
    >>> s = LossScale(interval=2); s.update(True); s.update(True); s.scale
    131072.0
    """

    def __init__(self, scale: float = 2.0**16, interval: int = 2000, good: int = 0) -> None:
        self.scale, self.interval, self.good = float(scale), interval, good

    def update(self, finite: bool) -> None:
        """After an update: ``finite`` is whether its unscaled gradients were all finite."""
        if not finite:
            self.scale, self.good = self.scale * 0.5, 0
            return
        self.good += 1
        if self.good >= self.interval:
            self.scale, self.good = self.scale * 2.0, 0

    def state(self) -> dict[str, Any]:
        return {"scale": self.scale, "interval": self.interval, "good": self.good}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> LossScale:
        return cls(**state) if state else cls()


def all_finite(grads: list[np.ndarray]) -> bool:
    """No inf or NaN in any gradient."""
    return all(bool(np.isfinite(g).all()) for g in grads)
