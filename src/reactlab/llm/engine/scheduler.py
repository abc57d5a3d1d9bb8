"""The scheduler: rows come and go between steps; each step is one forward pass over a flat ragged
sequence, and every row's KV lives in its own slot (see the package docstring for why).

A ``Slot`` holds one row's keys and values after its prefix; a frozen slot is a shared prefix that
many rows attend to in place; a finished row's slot is retained so the episode's next prompt, which
extends it, encodes only its new tokens. Admission picks the best source of a new row's KV
(a retained slot, a shared prefix, or nothing), and a step lays out the decoding rows' next
tokens (with drafts while few rows decode) and chunks of new prompts.
"""

from __future__ import annotations

import math
import time
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch

from reactlab.llm.engine.attention import ATTN, Plan, planned, register
from reactlab.llm.engine.drafts import accept, propose
from reactlab.llm.engine.sampling import pick
from reactlab.llm.engine.types import Row, Seg, Slot, common_prefix_len


def supported(model) -> str | None:
    """Why the engine cannot run ``model`` (None when it can)."""
    cfg = model.config.get_text_config(decoder=True)
    if getattr(cfg, "is_encoder_decoder", False):
        return "encoder-decoder models are not supported"
    return None


class Engine:
    """Decode many rows at once; rows come and go between steps.

    ``submit`` queues a row (token ids, decoding params, an optional sampling generator); ``step``
    runs one forward pass and returns the rows that finished in it, each with its wall time.
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
        segs: list[Seg] = []
        budget = self.prefill_chunk
        decoding = [r for r in self.active if not r.pending]
        # Prompt-lookup drafts cost little while few rows decode (a step is then bound by reading
        # the weights, not by the tokens fed); a wrong guess costs its compute, never a token.
        k = min(self.draft_tokens, max(0, self.draft_budget - len(decoding)) // max(1, len(decoding)))
        for r in decoding:
            r.draft = propose(r.ctx, k) if k and r.params.temperature <= 0 else []
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
            row = seg.row
            assert row is not None  # only rows' segments are wanted
            if row.draft:  # a decode segment carrying a draft: verify it
                done, kept = accept(row, seg.c0, lg, self.done)
                self.accepted += kept
            else:
                tok, logprob = pick(lg[-1], row.params, row.gen)
                row.out.append(tok)
                row.logprobs.append(logprob)
                row.ctx.append(tok)
                done = self.done(row.out, row.params)
            if done:
                finished.append((row, time.perf_counter() - row.t0))
        for r, _ in finished:
            self.active.remove(r)
            self._retain(r.slot)
        self.steps += 1
        return finished

    def cancel(self, key: Hashable) -> bool:
        """Drop the row submitted under ``key`` (waiting or decoding; its KV is not retained), between
        steps. False when there is no such row (finished already, or never submitted)."""
        for r in self.waiting:
            if r.key == key:
                self.waiting.remove(r)
                return True
        for r in self.active:
            if r.key == key:
                self.active.remove(r)
                return True
        return False

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

    def _seg(self, row: Row | None, tokens: list[int], slot: Slot | None = None) -> Seg:
        if slot is None:
            assert row is not None
            slot = row.slot
        c0 = len(slot.tokens)
        if c0 + len(tokens) > slot.kv.shape[3]:
            grown = torch.empty(*slot.kv.shape[:3], _round_up(2 * (c0 + len(tokens))), slot.kv.shape[4],
                                dtype=slot.kv.dtype, device=slot.kv.device)
            grown[:, :, :, :c0] = slot.kv[:, :, :, :c0]
            slot.set_kv(grown)
        slot.tokens.extend(tokens)
        if row is not None and row.pending:
            del row.pending[: len(tokens)]
        return Seg(row=row, slot=slot, c0=c0, n=len(tokens))

    def _forward(self, segs: list[Seg], want: list[Seg]) -> list[tuple[Seg, torch.Tensor]]:
        """Run ``segs`` (their tokens already appended to their slots) through the model; for each
        segment in ``want``, its logits ``[positions, vocab]``: every position of a drafted decode
        segment, else the last one only."""
        # Rows sharing a prefix sit next to each other: the prefix part is one matmul per group.
        segs = sorted(segs, key=lambda s: (id(s.slot.prefix), s.slot.plen))
        flat: list[int] = []
        pos: list[int] = []
        groups: list[tuple[Slot | None, int, int, int, list[Seg]]] = []
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
        spans = [(s.t0, s.t0 + s.n) if s.row is not None and s.row.draft and not s.row.pending
                 else (s.t0 + s.n - 1, s.t0 + s.n) for s in wanted]
        keep = [i for a, b in spans for i in range(a, b)]
        with planned(Plan(segs=segs, groups=groups, positions=positions)), torch.inference_mode():
            out = self.model(
                input_ids=torch.tensor([flat], device=self.device),
                position_ids=positions[None],
                use_cache=False,
                logits_to_keep=torch.tensor(keep, device=self.device) if keep else 1,
            )
        if not keep:
            return []
        logits = out.logits[0].float()
        res, i = [], 0
        for s, (a, b) in zip(wanted, spans, strict=True):
            res.append((s, logits[i : i + b - a]))
            i += b - a
        return res


def _copy_context(src: Slot, dst: Slot, n: int) -> None:
    """Copy the KV of ``src``'s first ``n`` context tokens into the empty slot ``dst``."""
    a = min(n, src.plen)
    if a:
        assert src.prefix is not None  # plen > 0 only with a prefix
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
