"""Prompt-lookup drafts: while few rows decode, a step is bound by reading the weights, not by the
tokens fed, so a greedy row also feeds a guess of its next tokens and keeps those the model confirms.

The guess (``propose``) is the tokens that followed the latest earlier occurrence of the row's last
3 (else 2) tokens in its own prompt and output: agents copy names and phrases from observations,
so these are often what greedy decoding writes next. ``accept`` keeps the confirmed prefix of the
guess plus the model's own next token and drops the KV of the rest: outputs are unchanged.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

import torch

from reactlab.llm.engine.types import Row


def propose(ctx: array, k: int) -> list[int]:
    """Up to ``k`` tokens that followed the latest earlier occurrence of ``ctx``'s last 3 (else 2)
    tokens in ``ctx`` (an ``array`` of token ids; occurrences are matched on whole tokens).

    >>> propose(array("H", [5, 6, 7, 8, 9, 5, 6, 7]), 2)
    [8, 9]
    >>> propose(array("H", [1, 2, 3]), 4)
    []
    """
    w = ctx.itemsize
    raw = ctx.tobytes()
    for n in (3, 2):
        if len(ctx) <= n:
            continue
        pat = raw[-n * w :]
        end = len(raw) - w  # an occurrence must end before the last token
        while (pos := raw.rfind(pat, 0, end)) >= 0 and pos % w:
            end = pos + len(pat) - 1  # unaligned (inside a token): look further back
        if pos >= 0:
            start = pos // w + n
            return ctx[start : start + k].tolist()
    return []


def accept(r: Row, c0: int, logits: torch.Tensor, done: Callable[[list[int], Any], bool]) -> tuple[bool, int]:
    """Greedy verification of ``r.draft`` fed at slot column ``c0``: keep the draft tokens the model
    itself would have chosen, plus its own next token (each with its log-probability), and drop
    the KV of the rest. Returns ``(finished, draft tokens kept)``."""
    picks = logits.argmax(-1).tolist()  # position j predicts what follows the segment's token j
    logp = torch.log_softmax(logits, -1)
    for j, tok in enumerate(picks):
        r.out.append(tok)
        r.logprobs.append(float(logp[j, tok]))
        r.ctx.append(tok)
        finished = done(r.out, r.params)
        if finished or j == len(r.draft) or tok != r.draft[j]:
            del r.slot.tokens[c0 + j + 1 :]  # tokens fed after the last kept one
            return finished, j
    raise AssertionError("unreachable: the last position always ends the loop")
