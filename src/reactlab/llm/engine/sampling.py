"""Choosing the next token, and its log-probability (what RL trainers need from a rollout)."""

from __future__ import annotations

from typing import Any

import torch


def pick(logits: torch.Tensor, params: Any, gen: torch.Generator | None) -> tuple[int, float]:
    """``(token, logprob)``: argmax when greedy, else temperature + top-p sampling with ``gen``.

    ``logprob`` is the token's log-probability under the distribution it was drawn from: softmax of
    ``logits / temperature`` (temperature 1 when greedy), before top-p truncation.
    """
    if params.temperature <= 0:
        tok = int(logits.argmax(-1))
        return tok, float(torch.log_softmax(logits, -1)[tok])
    scaled = logits / params.temperature
    probs = torch.softmax(scaled, dim=-1)
    if params.top_p < 1.0:
        sorted_p, sorted_i = probs.sort(dim=-1, descending=True)
        # Keep the smallest set whose mass reaches top_p (always at least the top token).
        drop = sorted_p.cumsum(-1) - sorted_p >= params.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, sorted_i, sorted_p)
    tok = draw(probs, gen)
    return tok, float(torch.log_softmax(scaled, dim=-1)[tok])


def draw(probs: torch.Tensor, gen: torch.Generator | None) -> int:
    """One token drawn from ``probs`` (``[vocab]``, non-negative, any positive total) by inverting its
    cumulative distribution at one uniform number of ``gen``: one random number per token drawn,
    where ``torch.multinomial`` draws one per vocabulary entry. A token of probability 0 is never drawn.

    >>> g = torch.Generator().manual_seed(0)
    >>> sorted({draw(torch.tensor([0.0, 3.0, 0.0, 1.0]), g) for _ in range(200)})
    [1, 3]
    """
    cdf = probs.double().cumsum(-1)
    u = (1.0 - torch.rand((), generator=gen, dtype=torch.float64)) * cdf[-1]  # in (0, total]
    return int(torch.searchsorted(cdf, u))  # the first token whose cdf reaches u: never one of p = 0
