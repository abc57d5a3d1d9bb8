"""The engine's shared records: a row being completed (``Row``), its KV slot (``Slot``) and its
tokens of one step (``Seg``); the scheduler makes them, attention and drafts read them."""

from __future__ import annotations

from array import array
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(eq=False)
class Slot:
    """The KV of one row's tokens after its prefix: ``kv[layer, 0|1, kv_head, column, dim]``.

    ``prefix`` (a frozen Slot, or None) holds the row's first ``plen`` tokens; this slot's column
    ``c`` is the token at position ``plen + c``. ``tokens`` are the ids whose KV is written.
    ``keys[layer]`` / ``values[layer]`` are views of ``kv`` (made once: indexing ``kv`` afresh for
    every row of every layer of every step is measurable Python overhead).
    """

    kv: torch.Tensor
    prefix: Slot | None = None
    plen: int = 0
    tokens: list[int] = field(default_factory=list)
    keys: list[torch.Tensor] = field(default_factory=list, repr=False)
    values: list[torch.Tensor] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.set_kv(self.kv)

    def set_kv(self, kv: torch.Tensor) -> None:
        self.kv = kv
        self.keys = list(kv[:, 0].unbind(0))
        self.values = list(kv[:, 1].unbind(0))

    def context(self) -> list[int]:
        """Every token this slot's KV covers, prefix included."""
        return (self.prefix.tokens[: self.plen] if self.prefix else []) + self.tokens

    def coverage(self, ids: Sequence[int]) -> int:
        """How many leading tokens of ``ids`` this slot's KV (prefix included) already holds."""
        if self.prefix is not None and list(ids[: self.plen]) != self.prefix.tokens[: self.plen]:
            return common_prefix_len([self.prefix.tokens[: self.plen], ids])
        return self.plen + common_prefix_len([self.tokens, ids[self.plen :]])


@dataclass(eq=False)
class Row:
    """One prompt being completed: its ids, decoding params, sampling generator, slot, the prompt
    tokens not fed yet (``pending``) and the generated tokens (``out``, with ``logprobs``)."""

    key: Hashable
    ids: list[int]
    params: Any
    gen: torch.Generator | None
    slot: Slot = field(init=False)  # set at admission
    pending: list[int] = field(default_factory=list)  # prompt tokens not fed yet
    out: list[int] = field(default_factory=list)  # generated tokens (the last one not fed yet)
    cached: int = 0
    t0: float = 0.0
    ctx: array = field(init=False)  # ids + out, for prompt-lookup drafts (``drafts.propose``); set at admission
    draft: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # one per token of ``out``


@dataclass(eq=False)
class Seg:
    """``n`` tokens of one row in this step: flat positions ``[t0, t0 + n)``, slot columns from ``c0``."""

    row: Row | None
    slot: Slot
    c0: int
    n: int
    t0: int = 0


def common_prefix_len(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by all rows.

    >>> common_prefix_len([[1, 2, 3], [1, 2, 4], [1, 2]])
    2
    """
    if not rows:
        return 0
    n = min(len(r) for r in rows)
    first = rows[0]
    for i in range(n):
        t = first[i]
        if any(r[i] != t for r in rows):
            return i
    return n
