"""Continuous batching over ragged rows with a shared-prefix ("cascade") attention, for ``hf.py``.

Why not ``model.generate`` or a padded batch: an agent's prompts are a 1.5-2k-token few-shot prefix
shared by every row, then each episode's own question and steps, which grow by one observation per
call. On a CPU three costs dominate, and this engine removes each:

1. re-encoding the shared prefix: it is encoded once and kept (a frozen ``Slot``); every row that
   starts with it attends to it in place;
2. reading that prefix once per row at every decoding step (20 rows x 2k tokens x 30 layers of
   keys and values): the prefix part of attention is one matmul for all rows' queries together, so
   the prefix is read once per step; each row's own part is attended separately and the two are
   merged exactly with their log-sum-exp (the "cascade" / Hydragen trick);
3. re-encoding an episode's earlier steps at its next call: a finished row's slot (its KV after
   the prefix) is retained, and a new prompt that extends it only encodes the new tokens;

and two more come from how steps are built:

4. batching without rounds: a step runs one forward over a flat sequence that holds the newest
   token of every decoding row plus a chunk of every new row's prompt (chunked prefill), so a row
   that finishes is replaced at once (continuous batching) and a long row never holds others back;
5. few rows left (the end of a run): a step is then bound by reading the weights, not by the tokens
   fed, so a greedy row also feeds a guess of its next tokens (the tokens that followed the last
   earlier occurrence of its last 2-3 tokens in its own context: agents copy names and phrases
   from observations) and keeps those the model confirms (prompt-lookup decoding; outputs are
   unchanged, rejected guesses are dropped from the row's KV).

How attention gets there: the model runs with ``_attn_implementation = "reactlab_cascade"``
(registered with transformers' ``AttentionInterface``); inside an engine step it reads the step's
layout from a thread-local, writes the new keys/values into each row's slot and computes the
cascade; outside a step it is plain SDPA, so the model still works as usual (``generate``, loss).

Rows never see padding and keep their exact positions, so greedy outputs match one-at-a-time
``model.generate`` up to floating-point summation order (tests check token equality on tiny
models). torch and transformers are imported when this module is, so only ``hf.py`` imports it.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTN = "reactlab_cascade"
_local = threading.local()
_NEG = -1e30  # a finite "minus infinity": exp(_NEG - m) is 0, never NaN


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
    key: Hashable
    ids: list[int]
    params: Any
    gen: torch.Generator | None
    slot: Slot | None = None
    pending: list[int] = field(default_factory=list)  # prompt tokens not fed yet
    out: list[int] = field(default_factory=list)  # generated tokens (the last one not fed yet)
    cached: int = 0
    t0: float = 0.0
    ctx: array | None = None  # ids + out, for prompt-lookup drafts (see Engine._draft)
    draft: list[int] = field(default_factory=list)


@dataclass(eq=False)
class _Seg:
    """``n`` tokens of one row in this step: flat positions ``[t0, t0 + n)``, slot columns from ``c0``."""

    row: Row | None
    slot: Slot
    c0: int
    n: int
    t0: int = 0


@dataclass
class _Plan:
    segs: list[_Seg]
    groups: list[tuple[Slot | None, int, int, int, list[_Seg]]]  # (prefix, plen, t_a, t_b, segs)
    positions: torch.Tensor


def register() -> None:
    """Make ``reactlab_cascade`` a known attention (and mask) implementation; idempotent."""
    AttentionInterface.register(ATTN, cascade_attention)
    AttentionMaskInterface.register(ATTN, _mask)


def _mask(*args, **kwargs):
    """SDPA's mask outside an engine step; none inside one (rows are laid out by the plan)."""
    return None if getattr(_local, "plan", None) is not None else sdpa_mask(*args, **kwargs)


class OneDNNLinear(torch.nn.Module):
    """``nn.Linear`` through oneDNN's kernel (the weight is the same tensor, not a copy).

    Why: on this kind of CPU (AVX2, no AVX-512) MKL's sgemm is 1.5-2x slower than oneDNN for the
    few-row products of decoding (measured here: 1 row 98 vs 54 us, 4 rows 238 vs 160 us for a
    576x1536 weight) and a few percent slower for long prefills.
    """

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")


def use_onednn_linear(model) -> int:
    """Swap every fp32 CPU ``nn.Linear`` of ``model`` (inference only) for ``OneDNNLinear``; returns
    how many were swapped (0 where oneDNN is not there, on a GPU, or for other dtypes)."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return 0
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (type(child) is torch.nn.Linear and child.weight.device.type == "cpu"
                    and child.weight.dtype == torch.float32):
                setattr(parent, name, OneDNNLinear(child))
                swapped += 1
    return swapped


def supported(model) -> str | None:
    """Why the engine cannot run ``model`` (None when it can)."""
    cfg = model.config.get_text_config(decoder=True)
    if getattr(cfg, "is_encoder_decoder", False):
        return "encoder-decoder models are not supported"
    return None


class Engine:
    """Decode many rows at once; rows come and go between steps.

    ``submit`` queues a row (token ids, decoding params, an optional sampling generator); ``step``
    runs one forward pass and returns the rows that finished in it as ``(key, ids)``.
    ``done(ids, params)`` says whether a row is finished (EOS, stop string, length), decided by the
    owner. At most ``max_rows`` rows decode together; ``prefill_chunk`` caps the prompt tokens fed
    per step (ahead of them, every decoding row gets its next token). ``max_retained`` finished
    rows keep their slots for prompts that extend them. ``draft_tokens``: prompt-lookup guesses per
    greedy row and step (0: off), while fewer than ``draft_budget`` tokens would be fed in all.
    """

    def __init__(self, model, done: Callable[[list[int], Any], bool], max_rows: int = 32,
                 prefill_chunk: int = 512, max_retained: int | None = None, min_prefix: int = 16,
                 max_prefixes: int = 4, draft_tokens: int = 8, draft_budget: int = 32):
        register()
        model.set_attn_implementation(ATTN)  # SDPA outside engine steps (cascade_attention)
        self.draft_tokens, self.draft_budget = max(0, draft_tokens), draft_budget
        self.drafted = self.accepted = 0  # draft tokens proposed / accepted (for benchmarks)
        self.model = model
        self.done = done
        self.max_rows = max(1, max_rows)
        self.prefill_chunk = max(1, prefill_chunk)
        self.max_retained = max_retained if max_retained is not None else self.max_rows
        self.min_prefix = min_prefix
        self.max_prefixes = max_prefixes
        self.dtype = next(model.parameters()).dtype
        self.device = next(model.parameters()).device
        self.layers, self.kv_heads, self.head_dim = kv_shape(model)
        vocab = model.config.get_text_config(decoder=True).vocab_size
        self.ctx_type = "H" if vocab <= 1 << 16 else "I"  # token ids as 2 or 4 bytes
        self.waiting: deque[Row] = deque()
        self.active: list[Row] = []
        self.retained: OrderedDict[int, Slot] = OrderedDict()  # id(slot) -> slot, LRU first
        self.prefixes: OrderedDict[int, Slot] = OrderedDict()  # frozen shared prefixes, LRU first
        self.steps = 0

    # --- the public surface --------------------------------------------------------------------

    def submit(self, key: Hashable, ids: Sequence[int], params, gen: torch.Generator | None = None) -> None:
        if not ids:
            raise ValueError("an empty prompt has nothing to condition on")
        self.waiting.append(Row(key=key, ids=list(ids), params=params, gen=gen))

    def busy(self) -> bool:
        return bool(self.waiting or self.active)

    def step(self) -> list[tuple[Row, float]]:
        """One forward pass; the rows finished in it, each with its wall time since admission."""
        self._admit()
        if not self.active:
            return []
        segs: list[_Seg] = []
        budget = self.prefill_chunk
        decoding = [r for r in self.active if not r.pending]
        # Prompt-lookup drafts cost little while few rows decode (a step is then bound by reading
        # the weights, not by the tokens fed); a wrong guess costs its compute, never a token.
        k = min(self.draft_tokens, max(0, self.draft_budget - len(decoding)) // max(1, len(decoding)))
        for r in decoding:
            r.draft = self._draft(r, k) if k and r.params.temperature <= 0 else []
            self.drafted += len(r.draft)
            segs.append(self._seg(r, [r.out[-1], *r.draft]))
        for r in self.active:
            if r.pending and budget > 0:
                take = r.pending[:budget]
                budget -= len(take)
                segs.append(self._seg(r, take))
        want = [s for s in segs if s.row is not None and not s.row.pending]
        finished = []
        for seg, lg in self._forward(segs, want):
            r = seg.row
            if r.draft:  # a decode segment carrying a draft: verify it
                done = self._accept(r, seg, lg)
            else:
                r.out.append(_pick(lg[-1], r.params, r.gen))
                r.ctx.append(r.out[-1])
                done = self.done(r.out, r.params)
            if done:
                finished.append((r, time.perf_counter() - r.t0))
        for r, _ in finished:
            self.active.remove(r)
            self._retain(r.slot)
        self.steps += 1
        return finished

    def _draft(self, r: Row, k: int) -> list[int]:
        """Up to ``k`` tokens that followed the latest earlier occurrence of the row's last 3 (else
        2) tokens in its own prompt and output: agents copy names and phrases from observations,
        so these are often what greedy decoding would write next (prompt-lookup decoding)."""
        ctx, w = r.ctx, r.ctx.itemsize
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

    def _accept(self, r: Row, seg: _Seg, logits: torch.Tensor) -> bool:
        """Greedy verification: keep the draft tokens the model itself would have chosen, plus its
        own next token; drop the KV of the rest. True when the row finished."""
        picks = logits.argmax(-1).tolist()  # position j predicts what follows the segment's token j
        for j, tok in enumerate(picks):
            r.out.append(tok)
            r.ctx.append(tok)
            done = self.done(r.out, r.params)
            if done or j == len(r.draft) or tok != r.draft[j]:
                self.accepted += j
                del r.slot.tokens[seg.c0 + j + 1 :]  # tokens fed after the last kept one
                return done
        raise AssertionError("unreachable: the last position always ends the loop")

    def reset(self) -> None:
        """Forget every retained slot and prefix (frees their memory)."""
        self.retained.clear()
        self.prefixes.clear()

    # --- admission: where a row's KV comes from -----------------------------------------------

    def _admit(self) -> None:
        batch = [self.waiting.popleft() for _ in range(min(len(self.waiting), self.max_rows - len(self.active)))]
        if len(batch) >= 2:  # a long prefix the newcomers share is encoded once, up front
            rows = [r.ids for r in batch]
            shared = min(common_prefix_len(rows), min(len(r) for r in rows) - 1)
            have = max((p.coverage(rows[0][:shared]) for p in self.prefixes.values()), default=0)
            if shared >= self.min_prefix and shared - have >= self.min_prefix:
                self._make_prefix(rows[0][:shared])
        for r in batch:
            r.t0 = time.perf_counter()
            limit = len(r.ids) - 1  # the last prompt token is always fed: its logits start the row
            best_slot, n_slot = None, 0
            for s in self.retained.values():
                n = min(s.coverage(r.ids), limit)
                if n > s.plen and n > n_slot:
                    best_slot, n_slot = s, n
            best_pre, n_pre = None, 0
            for p in self.prefixes.values():
                n = min(p.coverage(r.ids), limit)
                if n > n_pre:
                    best_pre, n_pre = p, n
            if best_slot is not None and n_slot >= n_pre:
                slot = best_slot
                del self.retained[id(slot)]
                del slot.tokens[n_slot - slot.plen :]
                r.cached = n_slot
            elif best_pre is not None and n_pre >= self.min_prefix:
                self.prefixes.move_to_end(id(best_pre))
                slot = self._new_slot(len(r.ids) - n_pre, best_pre, n_pre)
                r.cached = n_pre
            else:
                slot = self._new_slot(len(r.ids))
                r.cached = 0
            r.slot = slot
            r.pending = r.ids[r.cached :]
            r.ctx = array(self.ctx_type, r.ids)
            self.active.append(r)

    def _new_slot(self, need: int, prefix: Slot | None = None, plen: int = 0) -> Slot:
        cap = _round_up(need + 64)
        kv = torch.empty(self.layers, 2, self.kv_heads, cap, self.head_dim, dtype=self.dtype, device=self.device)
        return Slot(kv=kv, prefix=prefix, plen=plen)

    def _make_prefix(self, ids: list[int]) -> Slot:
        """Encode ``ids`` into a frozen slot shared by later rows (copying what a cached slot has)."""
        slot = self._new_slot(len(ids))
        src, n = None, 0
        for s in list(self.prefixes.values()) + list(self.retained.values()):
            c = s.coverage(ids)
            if c > n:
                src, n = s, c
        if src is not None and n >= self.min_prefix:
            _copy_context(src, slot, n)
        rest = ids[len(slot.tokens) :]
        for a in range(0, len(rest), self.prefill_chunk):
            self._forward([self._seg(None, rest[a : a + self.prefill_chunk], slot)], want=[])
        self.prefixes[id(slot)] = slot
        while len(self.prefixes) > self.max_prefixes:
            self.prefixes.popitem(last=False)
        return slot

    def _retain(self, slot: Slot) -> None:
        self.retained[id(slot)] = slot
        while len(self.retained) > self.max_retained:
            self.retained.popitem(last=False)

    # --- one forward pass ---------------------------------------------------------------------

    def _seg(self, row: Row | None, tokens: list[int], slot: Slot | None = None) -> _Seg:
        slot = slot if slot is not None else row.slot
        c0 = len(slot.tokens)
        if c0 + len(tokens) > slot.kv.shape[3]:
            grown = torch.empty(*slot.kv.shape[:3], _round_up(2 * (c0 + len(tokens))), slot.kv.shape[4],
                                dtype=slot.kv.dtype, device=slot.kv.device)
            grown[:, :, :, :c0] = slot.kv[:, :, :, :c0]
            slot.set_kv(grown)
        slot.tokens.extend(tokens)
        if row is not None and row.pending:
            del row.pending[: len(tokens)]
        return _Seg(row=row, slot=slot, c0=c0, n=len(tokens))

    def _forward(self, segs: list[_Seg], want: list[_Seg]) -> list[tuple[_Seg, torch.Tensor]]:
        """Run ``segs`` (their tokens already appended to their slots) through the model; for each
        segment in ``want``, its logits ``[positions, vocab]``: every position of a drafted decode
        segment, else the last one only."""
        # Rows sharing a prefix sit next to each other: the prefix part is one matmul per group.
        segs = sorted(segs, key=lambda s: (id(s.slot.prefix), s.slot.plen))
        flat: list[int] = []
        pos: list[int] = []
        groups: list[tuple[Slot | None, int, int, int, list[_Seg]]] = []
        for s in segs:
            s.t0 = len(flat)
            flat.extend(s.slot.tokens[s.c0 : s.c0 + s.n])
            start = s.slot.plen + s.c0
            pos.extend(range(start, start + s.n))
            g = groups[-1] if groups else None
            if g is not None and g[0] is s.slot.prefix and g[1] == s.slot.plen:
                groups[-1] = (g[0], g[1], g[2], s.t0 + s.n, g[4] + [s])
            else:
                groups.append((s.slot.prefix, s.slot.plen, s.t0, s.t0 + s.n, [s]))
        positions = torch.tensor(pos, device=self.device)
        wanted = [s for s in segs if s in want]
        # A segment carrying a draft needs every position's logits, others only the last.
        spans = [(s.t0, s.t0 + s.n) if s.row.draft and not s.row.pending else (s.t0 + s.n - 1, s.t0 + s.n)
                 for s in wanted]
        keep = [i for a, b in spans for i in range(a, b)]
        _local.plan = _Plan(segs=segs, groups=groups, positions=positions)
        try:
            with torch.inference_mode():
                out = self.model(
                    input_ids=torch.tensor([flat], device=self.device),
                    position_ids=positions[None],
                    use_cache=False,
                    logits_to_keep=torch.tensor(keep, device=self.device) if keep else 1,
                )
        finally:
            _local.plan = None
        if not keep:
            return []
        logits = out.logits[0].float()
        res, i = [], 0
        for s, (a, b) in zip(wanted, spans, strict=True):
            res.append((s, logits[i : i + b - a]))
            i += b - a
        return res


def cascade_attention(module, query, key, value, attention_mask, **kwargs):
    """Attention for one layer of an engine step (see the module docstring); SDPA otherwise.

    ``query``: ``[1, heads, T, dim]``; ``key``/``value``: ``[1, kv_heads, T, dim]`` for the step's
    flat tokens only (no cache is passed to the model). Returns ``([1, T, heads, dim], None)``.
    Grouped-query heads are folded into the query length (``[kv_heads, group * tokens, dim]``), so
    keys and values are never repeated per query head.
    """
    plan: _Plan | None = getattr(_local, "plan", None)
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
        lses, outs = [], []
        for s in segs:
            L = s.c0 + s.n
            hide = None
            if s.n > 1 or window:
                cols = torch.arange(L, device=q.device)
                rows = torch.arange(s.c0, s.c0 + s.n, device=q.device)
                hide = cols[None, :] > rows[:, None]
                if window:
                    hide |= (rows[:, None] - cols[None, :]) >= window
            lse, o = _part(qt[:, s.t0 : s.t0 + s.n].reshape(kvh, s.n * g, d), s.slot.keys[layer][:, :L],
                           s.slot.values[layer][:, :L], scale, hide, g, softcap)
            lses.append(lse.reshape(kvh, s.n, g, 1))
            outs.append(o.reshape(kvh, s.n, g, d))
        lse = torch.cat(lses, 1) if len(lses) > 1 else lses[0]
        o = torch.cat(outs, 1) if len(outs) > 1 else outs[0]
        if pre is not None:  # merge with the prefix part, exactly, for the whole group at once
            lse1, o1 = pre[0].reshape(kvh, b - a, g, 1), pre[1].reshape(kvh, b - a, g, d)
            both = torch.logaddexp(lse1, lse)
            o = o1 * torch.exp(lse1 - both) + o * torch.exp(lse - both)
        out[:, a:b] = o
    return out.transpose(0, 1).reshape(1, T, heads, d), None


def _part(q, k, v, scale: float, hide, g: int, softcap):
    """Softmax attention of ``q`` (``[kv_heads, n * group, dim]``, token-major) over ``k``/``v``
    (``[kv_heads, L, dim]``); ``hide`` (``[n, L]``, True = masked) applies to every group.

    Returns ``(lse, out)``: each query's log-sum-exp of scores ``[kv_heads, group * n, 1]`` and its
    normalised output. A query with every key hidden gets ``lse`` ~ -1e30 and output 0, so it
    weighs nothing in a merge. On a CPU without soft-capping this is torch's fused flash kernel
    (2-3x faster than the matmul path here, and it returns the log-sum-exp).
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


def _pick(logits: torch.Tensor, params, gen) -> int:
    """The next token: argmax when greedy, else temperature + top-p sampling with ``gen``."""
    if params.temperature <= 0:
        return int(logits.argmax(-1))
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, sorted_i = probs.sort(dim=-1, descending=True)
        # Keep the smallest set whose mass reaches top_p (always at least the top token).
        drop = sorted_p.cumsum(-1) - sorted_p >= params.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, sorted_i, sorted_p)
    return int(torch.multinomial(probs, 1, generator=gen))


def _copy_context(src: Slot, dst: Slot, n: int) -> None:
    """Copy the KV of ``src``'s first ``n`` context tokens into the empty slot ``dst``."""
    a = min(n, src.plen)
    if a:
        dst.kv[:, :, :, :a] = src.prefix.kv[:, :, :, :a]  # (kv is viewed by keys/values: in place)
    if n > a:
        dst.kv[:, :, :, a:n] = src.kv[:, :, :, : n - a]
    dst.tokens = src.context()[:n]


def _round_up(n: int, to: int = 128) -> int:
    return max(to, math.ceil(n / to) * to)


def kv_shape(model) -> tuple[int, int, int]:
    """``(layers, kv_heads, head_dim)`` of a decoder's attention cache."""
    cfg = model.config.get_text_config(decoder=True)
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return cfg.num_hidden_layers, getattr(cfg, "num_key_value_heads", None) or heads, head_dim


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
