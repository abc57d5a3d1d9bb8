"""Cascade attention: one layer's attention inside an engine step (plain SDPA outside one).

The step's layout (which flat tokens belong to which row, which rows share a frozen prefix) comes
from a thread-local ``Plan`` that the scheduler sets around its forward pass (``planned``). For a
group of rows sharing a prefix, the prefix part of attention is one call for all their queries (the
prefix is read once per step), each row's own part is separate, and the two are merged exactly with
their log-sum-exp. New keys and values are written into each row's slot as the layer runs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from reactlab.llm.engine.types import Seg, Slot

ATTN = "reactlab_cascade"
_local = threading.local()
_NEG = -1e30  # a finite "minus infinity": exp(_NEG - m) is 0, never NaN


@dataclass
class Plan:
    """One step's layout: its segments, grouped by shared prefix ``(prefix, plen, t_a, t_b, segs)``
    over flat positions ``[t_a, t_b)``, and every flat token's position."""

    segs: list[Seg]
    groups: list[tuple[Slot | None, int, int, int, list[Seg]]]
    positions: torch.Tensor


@contextlib.contextmanager
def planned(plan: Plan) -> Iterator[None]:
    """Attention in this thread follows ``plan`` while the block runs (one engine step)."""
    _local.plan = plan
    try:
        yield
    finally:
        _local.plan = None


def register() -> None:
    """Make ``reactlab_cascade`` a known attention (and mask) implementation; idempotent."""
    AttentionInterface.register(ATTN, cascade_attention)
    AttentionMaskInterface.register(ATTN, _mask)


def _mask(*args: Any, **kwargs: Any) -> Any:
    """SDPA's mask outside an engine step; none inside one (rows are laid out by the plan)."""
    return None if getattr(_local, "plan", None) is not None else sdpa_mask(*args, **kwargs)


def cascade_attention(module, query, key, value, attention_mask, **kwargs):
    """Attention for one layer of an engine step (see the module docstring); SDPA otherwise.

    ``query``: ``[1, heads, T, dim]``; ``key``/``value``: ``[1, kv_heads, T, dim]`` for the step's
    flat tokens only (no cache is passed to the model). Returns ``([1, T, heads, dim], None)``.
    Grouped-query heads are folded into the query length (``[kv_heads, group * tokens, dim]``), so
    keys and values are never repeated per query head.
    """
    plan: Plan | None = getattr(_local, "plan", None)
    if plan is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    layer = module.layer_idx
    scale = kwargs.get("scaling") or query.shape[-1] ** -0.5
    softcap = kwargs.get("softcap")
    window = kwargs.get("sliding_window")
    q, k, v = query[0], key[0], value[0]
    heads, T, d = q.shape
    kvh = k.shape[0]
    g = heads // kvh
    for s in plan.segs:  # this layer's new keys/values go into each row's slot
        s.slot.keys[layer][:, s.c0 : s.c0 + s.n] = k[:, s.t0 : s.t0 + s.n]
        s.slot.values[layer][:, s.c0 : s.c0 + s.n] = v[:, s.t0 : s.t0 + s.n]
    # Token-major queries: a row's tokens are then a view [kv_heads, n * group, dim], no copy.
    qt = q.view(kvh, g, T, d).transpose(1, 2).contiguous()
    out = q.new_empty(kvh, T, g, d)
    for prefix, plen, a, b, segs in plan.groups:
        pre = None
        if prefix is not None and plen > 0:
            n = b - a
            hide = None
            if window:
                qpos = plan.positions[a:b]
                hide = (qpos[:, None] - torch.arange(plen, device=q.device)[None, :]) >= window
            pre = _part(qt[:, a:b].reshape(kvh, n * g, d), prefix.keys[layer][:, :plen],
                        prefix.values[layer][:, :plen], scale, hide, g, softcap)
        lse = torch.empty(kvh, b - a, g, 1, dtype=torch.float32, device=q.device)  # merged in fp32 for any q dtype
        o = q.new_empty(kvh, b - a, g, d)
        rest = _batch_decoding(qt, layer, segs, a, lse, o, scale) if not window and not softcap else segs
        for s in rest:
            L = s.c0 + s.n
            hide = None
            if s.n > 1 or window:
                cols = torch.arange(L, device=q.device)
                rows = torch.arange(s.c0, s.c0 + s.n, device=q.device)
                hide = cols[None, :] > rows[:, None]
                if window:
                    hide |= (rows[:, None] - cols[None, :]) >= window
            lse_s, o_s = _part(qt[:, s.t0 : s.t0 + s.n].reshape(kvh, s.n * g, d), s.slot.keys[layer][:, :L],
                               s.slot.values[layer][:, :L], scale, hide, g, softcap)
            lse[:, s.t0 - a : s.t0 - a + s.n] = lse_s.reshape(kvh, s.n, g, 1)
            o[:, s.t0 - a : s.t0 - a + s.n] = o_s.reshape(kvh, s.n, g, d)
        if pre is not None:  # merge with the prefix part, exactly, for the whole group at once
            lse1, o1 = pre[0].reshape(kvh, b - a, g, 1), pre[1].reshape(kvh, b - a, g, d)
            both = torch.logaddexp(lse1, lse)
            o = o1 * torch.exp(lse1 - both) + o * torch.exp(lse - both)
        out[:, a:b] = o
    return out.transpose(0, 1).reshape(1, T, heads, d), None


def _batch_decoding(qt, layer: int, segs: list[Seg], a: int, lse, o, scale: float) -> list[Seg]:
    """The own part of the rows that decode one token over the same number of their own keys (the
    ``n`` samples of one prompt do, step after step) as one batched CPU kernel call instead of one
    per row; results go into ``lse`` / ``o`` at the rows' places in the group (flat position minus
    ``a``). Returns the segments left for one call each."""
    if qt.device.type != "cpu":
        return segs
    by_len: dict[int, list[Seg]] = {}
    rest: list[Seg] = []
    for s in segs:
        (by_len.setdefault(s.c0 + 1, []) if s.n == 1 else rest).append(s)
    for L, same in by_len.items():
        if len(same) == 1:
            rest.extend(same)
            continue
        q = torch.stack([qt[:, s.t0] for s in same])  # [rows, kv_heads, group, dim]
        k = torch.stack([s.slot.keys[layer][:, :L] for s in same])
        v = torch.stack([s.slot.values[layer][:, :L] for s in same])
        out, lse_b = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, scale=scale)[:2]
        idx = torch.tensor([s.t0 - a for s in same], device=qt.device)
        o.index_copy_(1, idx, out.transpose(0, 1))
        lse.index_copy_(1, idx, lse_b.transpose(0, 1)[..., None])
    return rest


def _part(q, k, v, scale: float, hide, g: int, softcap):
    """Softmax attention of ``q`` (``[kv_heads, n * group, dim]``, token-major) over ``k``/``v``
    (``[kv_heads, L, dim]``); ``hide`` (``[n, L]``, True = masked) applies to every group.

    Returns ``(lse, out)``: each query's log-sum-exp of scores ``[kv_heads, group * n, 1]`` and its
    normalised output. A query with every key hidden gets ``lse`` ~ -1e30 and output 0, so it
    weighs nothing in a merge. On a CPU without soft-capping this is torch's fused flash kernel
    (faster than the matmul path, and it returns the log-sum-exp).
    """
    if q.device.type == "cpu" and not softcap:
        mask = None
        if hide is not None:
            mask = torch.zeros(hide.shape, dtype=q.dtype, device=q.device).masked_fill_(hide, float("-inf"))
            mask = mask.repeat_interleave(g, 0)
            if hide.all(-1).any():  # the kernel gives NaN for a fully hidden query: use the matmul path
                return _part_matmul(q, k, v, scale, hide, g, softcap)
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q[None], k[None], v[None], 0.0, False, attn_mask=mask, scale=scale)[:2]
        return lse[0, ..., None], out[0]
    return _part_matmul(q, k, v, scale, hide, g, softcap)


def _part_matmul(q, k, v, scale: float, hide, g: int, softcap):
    s = torch.matmul(q, k.transpose(1, 2)).mul_(scale)
    if softcap:
        s = torch.tanh(s / softcap) * softcap
    if hide is not None:
        s.view(s.shape[0], -1, g, s.shape[-1]).masked_fill_(hide[:, None, :], float("-inf"))
    m = s.amax(-1, keepdim=True).clamp_min_(_NEG)
    e = torch.exp(s.sub_(m))
    total = e.sum(-1, keepdim=True).clamp_min_(1e-30)
    return m + torch.log(total), torch.matmul(e, v) / total
