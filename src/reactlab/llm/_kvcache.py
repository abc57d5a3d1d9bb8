"""KV-cache helpers for ``hf.py``: preallocated cache slots and an LRU of shared-prefix caches.

Why not ``transformers.DynamicCache``: it grows by ``torch.cat`` on every decoding step, which
copies the whole batch cache each token (gigabytes per step for 32 rows x 2k tokens on CPU). A
``SlotLayer`` writes new keys/values in place into a buffer sized up front and hands attention a
view, so a step costs only the attention read. The same buffer can be viewed one row at a time
(to prefill a row's own suffix without padding) or whole (to decode the batch).

Layout of a batch buffer (per layer, ``[rows, kv_heads, capacity, head_dim]``): row ``i`` is
left-padded to the longest prompt ``L``: columns ``[0, L - len_i)`` are zero padding (masked),
``[L - len_i, L)`` the prompt (shared prefix, then the row's suffix), ``[L, ...)`` generated tokens.
Padding is zero-filled because a masked key still gets weight 0 in attention, and ``0 * NaN`` from
uninitialised memory would poison the row.

torch and transformers are imported when this module is, so only ``hf.py`` imports it, lazily.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from transformers.cache_utils import Cache, DynamicLayer

KV = list[tuple[torch.Tensor, torch.Tensor]]
"""Per-layer ``(keys, values)`` of one sequence, each ``[1, kv_heads, length, head_dim]``."""


class SlotLayer(DynamicLayer):
    """One layer's cache living in ``buf[..., start : start + capacity, :]`` of a preallocated buffer.

    ``length`` tokens are already there; ``update`` writes the new ones after them in place and
    returns views of everything so far. Raises ``RuntimeError`` when the buffer is full.
    """

    def __init__(self, kbuf: torch.Tensor, vbuf: torch.Tensor, start: int = 0, length: int = 0):
        super().__init__()
        self.kbuf, self.vbuf, self.start, self.length = kbuf, vbuf, start, length
        self.dtype, self.device = kbuf.dtype, kbuf.device
        self.is_initialized = True
        self._views()

    def _views(self) -> None:
        end = self.start + self.length
        self.keys = self.kbuf[:, :, self.start : end]
        self.values = self.vbuf[:, :, self.start : end]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        a = self.start + self.length
        b = a + key_states.shape[-2]
        if b > self.kbuf.shape[-2]:
            raise RuntimeError(f"KV slot full: need {b} columns, buffer has {self.kbuf.shape[-2]}")
        self.kbuf[:, :, a:b] = key_states
        self.vbuf[:, :, a:b] = value_states
        self.length = b - self.start
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        # Copies only the rows kept: dropping finished rows shrinks every later attention read.
        self.kbuf, self.vbuf = self.kbuf[indices], self.vbuf[indices]
        self._views()

    def reset(self) -> None:
        self.length = 0
        self._views()

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("SlotLayer is not croppable")


def slot_cache(
    kbufs: Sequence[torch.Tensor], vbufs: Sequence[torch.Tensor], start: int, length: int
) -> Cache:
    """A cache over per-layer buffers (or views of them), ``length`` tokens already at ``start``."""
    return Cache(layers=[SlotLayer(k, v, start, length) for k, v in zip(kbufs, vbufs, strict=True)])


def kv_shape(model) -> tuple[int, int, int]:
    """``(layers, kv_heads, head_dim)`` of a decoder's attention cache."""
    cfg = model.config.get_text_config(decoder=True)
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return cfg.num_hidden_layers, getattr(cfg, "num_key_value_heads", None) or heads, head_dim


def alloc(model, rows: int, capacity: int, dtype: torch.dtype, device: torch.device):
    """Uninitialised per-layer key and value buffers ``[rows, kv_heads, capacity, head_dim]``."""
    layers, heads, dim = kv_shape(model)
    shape = (rows, heads, capacity, dim)
    kb = [torch.empty(shape, dtype=dtype, device=device) for _ in range(layers)]
    vb = [torch.empty(shape, dtype=dtype, device=device) for _ in range(layers)]
    return kb, vb


def prefill(
    model, tokens: Sequence[int], past: KV | None, past_len: int, chunk: int = 2048
) -> tuple[KV, torch.Tensor | None]:
    """Encode ``tokens`` after ``past`` (``past_len`` cached tokens, or none) at batch 1.

    Returns the KV of the whole sequence (``past_len + len(tokens)``) and the last position's
    logits (None if ``tokens`` is empty). Long inputs go in ``chunk``-token pieces so the attention
    scores stay bounded in memory.
    """
    device = model.device
    dtype = next(model.parameters()).dtype
    total = past_len + len(tokens)
    kb, vb = alloc(model, 1, total, dtype, device)
    if past is not None:
        for layer, (k, v) in enumerate(past):
            kb[layer][:, :, :past_len] = k[:, :, :past_len]
            vb[layer][:, :, :past_len] = v[:, :, :past_len]
    cache = slot_cache(kb, vb, 0, past_len)
    logits = forward_row(model, cache, tokens, past_len, chunk)
    return list(zip(kb, vb, strict=True)), logits


def forward_row(
    model, cache: Cache, tokens: Sequence[int], pos: int, chunk: int = 2048
) -> torch.Tensor | None:
    """Run one row's ``tokens`` (positions from ``pos``) through ``model`` into ``cache``.

    Returns the logits at the last token, ``[vocab]`` in fp32, or None for no tokens."""
    logits = None
    for a in range(0, len(tokens), chunk):
        piece = torch.tensor([list(tokens[a : a + chunk])], device=model.device)
        positions = torch.arange(pos + a, pos + a + piece.shape[1], device=model.device)[None]
        out = model(
            input_ids=piece, position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=1
        )
        logits = out.logits[0, -1].float()
    return logits


class PrefixLRU:
    """A few prefix KV caches, keyed by their token tuple, least recently used evicted first.

    ``longest(tokens)`` finds the cached entry sharing the longest token prefix with ``tokens``;
    the KV of that shared part is valid whatever follows it (attention is causal). So a prompt that
    grew since the last call reuses what was computed for its shorter self, and a shorter shared
    prefix is served by an entry that extends it. ``put`` drops entries that the new key extends:
    they hold nothing the new one does not.
    """

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self._items: OrderedDict[tuple[int, ...], KV] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def longest(self, tokens: Sequence[int]) -> tuple[int, KV | None]:
        """``(n, kv)``: ``n`` leading tokens of ``tokens`` are cached, ``kv`` holds at least them."""
        best, best_key = 0, None
        for key in self._items:
            n = common_prefix_len([key, tokens])
            if n > best:
                best, best_key = n, key
        if best_key is None:
            return 0, None
        self._items.move_to_end(best_key)
        return best, self._items[best_key]

    def put(self, tokens: Sequence[int], kv: KV) -> None:
        key = tuple(tokens)
        for old in [k for k in self._items if len(k) <= len(key) and key[: len(k)] == k]:
            del self._items[old]
        self._items[key] = kv
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


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
