"""Loss curves from a transformers ``Trainer``'s ``state.log_history`` (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def loss_series(log_history: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """``{"train": [(step, loss), ...], "eval": [...]}`` from a trainer's log history.

    >>> loss_series([{"step": 1, "loss": 2.0}, {"step": 2, "eval_loss": 1.5}, {"step": 2, "train_loss": 1.9}])
    {'train': [(1, 2.0)], 'eval': [(2, 1.5)]}
    """
    out: dict[str, list[tuple[int, float]]] = {"train": [], "eval": []}
    for rec in log_history:
        if "loss" in rec:
            out["train"].append((int(rec["step"]), float(rec["loss"])))
        if "eval_loss" in rec:
            out["eval"].append((int(rec["step"]), float(rec["eval_loss"])))
    return out


def plot_losses(log_history: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Write the train and eval loss curves to ``path`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    series = loss_series(log_history)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, style in (("train", "-"), ("eval", "o-")):
        if series[name]:
            xs, ys = zip(*series[name], strict=True)
            ax.plot(xs, ys, style, label=f"{name} loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (masked tokens)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if any(series.values()):
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def reward_series(log_history: list[dict[str, Any]]) -> list[tuple[int, float, float]]:
    """``[(step, mean reward, its std), ...]`` from a GRPO/RLOO trainer's log history.

    >>> reward_series([{"step": 1, "reward": 0.2, "reward_std": 0.1}, {"step": 1, "loss": 0.0}, {"step": 2, "reward": 0.5}])
    [(1, 0.2, 0.1), (2, 0.5, 0.0)]
    """
    return [(int(r["step"]), float(r["reward"]), float(r.get("reward_std", 0.0))) for r in log_history if "reward" in r]


def plot_rewards(log_history: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Write the mean episode reward per logged step, with a band of +-1 std (the spread of the
    episodes' rewards in that step), to ``path`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = reward_series(log_history)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if series:
        xs, ys, sd = zip(*series, strict=True)
        ax.plot(xs, ys, "-", label="mean reward")
        ax.fill_between(xs, [y - s for y, s in zip(ys, sd, strict=True)], [y + s for y, s in zip(ys, sd, strict=True)],
                        alpha=0.25, label="± 1 std (episodes)")
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel("episode reward (weighted sum)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
