"""The transformers backend: a local HF dir, a hub id or a ``.gguf`` file, optionally with a LoRA
adapter, generating for a batch of prompts at once and reusing the KV cache of a shared prefix.

Why a hand-written decoding loop instead of ``model.generate``: the agent's completion-style
prompts all start with the same 1.5-2k-token few-shot prefix, and on a CPU re-encoding it on every
call dominates the cost. Here a call

1. tokenizes every prompt and sorts them by length (less padding; results come back in order);
2. per chunk of ``batch_size`` rows, finds the longest token prefix they share, takes its KV from
   an LRU of earlier prefixes (a cached prefix of it counts too) and encodes only the rest, once;
3. copies that prefix into each row's slot of a preallocated batch cache (``_kvcache``) and
   encodes each row's own suffix there at batch 1 (no padding, exact positions);
4. decodes all rows together, left-padded: the attention mask hides each row's padding and
   ``position_ids`` count only real tokens, so every row sees exactly what it would alone; rows that
   finish (EOS, a stop string, the token limit) are dropped from the batch.

Greedy outputs match ``model.generate`` one prompt at a time token for token (tests check it).
torch and transformers are imported only when a model is built.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reactlab.types import Completion, GenParams, Prompt, Usage


class HFLLM:
    """A transformers causal LM behind ``reactlab.types.LLM``.

    ``model``: a local HF directory, a hub id (where a hub is reachable), or a ``.gguf`` file
    (dequantised to dense weights). ``adapter``: a PEFT LoRA directory for that base. ``dtype``:
    ``auto`` (fp32 on CPU, bf16 on CUDA) or a torch dtype name. ``device``: ``auto``, ``cpu``,
    ``cuda``... ``batch_size``: rows decoded together. ``prefix_cache``: keep the KV of shared
    prompt prefixes across calls (an LRU of ``prefix_cache_entries`` prefixes).
    """

    prefix_cache_entries = 4

    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        name: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        batch_size: int = 32,
        prefix_cache: bool = True,
    ):
        import torch

        from reactlab.llm._kvcache import PrefixLRU

        self.name = name or (Path(model).name if Path(model).exists() else model)
        if adapter:
            self.name += f"+{Path(adapter).name}"
        self.batch_size = max(1, int(batch_size))
        self.prefix_cache = prefix_cache
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        )
        if dtype == "auto":
            self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        else:
            self.dtype = getattr(torch, dtype)
        self.model, self.tokenizer = _load(model, self.dtype)
        if adapter:
            self.model = _with_adapter(self.model, adapter)
        self.model.to(self.device).eval()
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        self._prefixes = PrefixLRU(self.prefix_cache_entries)

    # --- the LLM protocol ---------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Completion]:
        """One completion per prompt, in order.

        A ``str`` prompt is tokenized as is (BOS only if the tokenizer adds one by itself); a list
        of chat messages goes through the chat template with a generation prompt, or continues the
        last message when it is the assistant's. Greedy when ``params.temperature == 0``, else
        sampling (seeded by ``params.seed``). A row ends at EOS, at the first of ``params.stop``
        found in its decoded text (``text`` is cut before it, ``stop`` names it), or after
        ``params.max_new_tokens`` (``finish_reason == "length"``). ``latency_s`` is the wall time
        of the row's batch; ``usage.cached_tokens`` counts prompt tokens whose KV came from the
        prefix cache of an earlier call.
        """
        return [c for c, _ in self.generate_with_ids(prompts, params)]

    def generate_with_ids(
        self, prompts: Sequence[Prompt], params: GenParams
    ) -> list[tuple[Completion, list[int]]]:
        """``generate``, plus each row's new token ids as decoded (EOS included; for tests, benchmarks)."""
        import torch

        if params.max_new_tokens <= 0:
            return [(Completion(text="", finish_reason="length"), []) for _ in prompts]
        rows = [self.encode(p) for p in prompts]
        gen = None
        if params.temperature > 0:
            gen = torch.Generator(device=self.device)
            if params.seed is not None:
                gen.manual_seed(params.seed)
            else:
                gen.seed()
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        out: list[Any] = [None] * len(rows)
        for a in range(0, len(order), self.batch_size):
            idx = order[a : a + self.batch_size]
            for i, pair in zip(idx, self._generate_chunk([rows[i] for i in idx], params, gen), strict=True):
                out[i] = pair
        return out

    def encode(self, prompt: Prompt) -> list[int]:
        """The token ids a prompt is fed as (see ``generate``)."""
        tok = self.tokenizer
        if isinstance(prompt, str):
            return list(tok(prompt).input_ids)
        cont = bool(prompt) and prompt[-1].get("role") == "assistant"
        text = tok.apply_chat_template(
            list(prompt), tokenize=False, add_generation_prompt=not cont, continue_final_message=cont
        )
        # The template already wrote any BOS/special tokens as text.
        return list(tok(text, add_special_tokens=False).input_ids)

    # --- one chunk of rows ----------------------------------------------------------------------

    def _generate_chunk(
        self, rows: list[list[int]], params: GenParams, gen
    ) -> list[tuple[Completion, list[int]]]:
        import torch

        from reactlab.llm import _kvcache as kvc

        t0 = time.perf_counter()
        with torch.inference_mode():
            shared, cached, prefix_kv = self._shared_prefix(rows)
            n, lens = len(rows), [len(r) for r in rows]
            width = max(lens)
            kb, vb = kvc.alloc(self.model, n, width + params.max_new_tokens, self.dtype, self.device)
            mask = torch.zeros(n, width + params.max_new_tokens, dtype=torch.long, device=self.device)
            logits = []
            for i, row in enumerate(rows):
                off = width - lens[i]
                mask[i, off:width] = 1
                for layer in range(len(kb)):
                    kb[layer][i, :, :off] = 0  # padding: masked, but must not be NaN (see _kvcache)
                    vb[layer][i, :, :off] = 0
                    if shared:
                        kb[layer][i, :, off : off + shared] = prefix_kv[layer][0][0]
                        vb[layer][i, :, off : off + shared] = prefix_kv[layer][1][0]
                row_kv = [k[i : i + 1] for k in kb], [v[i : i + 1] for v in vb]
                cache = kvc.slot_cache(*row_kv, start=off, length=shared)
                logits.append(kvc.forward_row(self.model, cache, row[shared:], shared))
            tokens = _decode_loop(
                self, kvc.slot_cache(kb, vb, 0, width), mask, width, lens, logits, params, gen
            )
        latency = time.perf_counter() - t0
        out = []
        for i, ids in enumerate(tokens):
            c = self._finish(ids, params)
            c.usage = Usage(prompt_tokens=lens[i], completion_tokens=len(ids), cached_tokens=cached)
            c.latency_s = latency
            out.append((c, ids))
        return out

    def _shared_prefix(self, rows: list[list[int]]):
        """``(length, cached, kv)``: the prefix all rows share, how much of it an earlier call had
        cached, and its KV (None when nothing is shared or the prefix cache is off)."""
        from reactlab.llm import _kvcache as kvc

        if not self.prefix_cache:
            return 0, 0, None
        # Every row keeps at least its last prompt token: its logits start the generation.
        shared = min(kvc.common_prefix_len(rows), min(len(r) for r in rows) - 1)
        if shared <= 0:
            return 0, 0, None
        key = rows[0][:shared]
        cached, kv = self._prefixes.longest(key)
        if cached < shared:
            kv, _ = kvc.prefill(self.model, key[cached:], kv, cached)
            self._prefixes.put(key, kv)
        else:  # an entry extends the shared prefix: use its first `shared` columns
            cached = shared
            kv = [(k[:, :, :shared], v[:, :, :shared]) for k, v in kv]
        return shared, cached, kv

    def _finish(self, ids: list[int], params: GenParams) -> Completion:
        """Turn a row's generated ids into a Completion (EOS dropped, text cut at the stop)."""
        if ids and ids[-1] in self.eos_ids:
            return Completion(text=self._detok(ids[:-1]), finish_reason="stop")
        text = self._detok(ids)
        hit = _find_stop(text, params.stop)
        if hit is not None:
            return Completion(text=text[: hit[0]], stop=hit[1], finish_reason="stop")
        return Completion(text=text, finish_reason="length")

    def _detok(self, ids: list[int]) -> str:
        # Special tokens stay: a stop string may be one (e.g. "<|im_end|>" of another template).
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def reset_cache(self) -> None:
        """Forget every cached prefix (frees its memory)."""
        self._prefixes.clear()


def _decode_loop(llm: HFLLM, cache, mask, width, lens, logits, params: GenParams, gen) -> list[list[int]]:
    """Decode all rows together from their first-token ``logits``; return each row's new ids.

    ``cache`` holds ``width`` columns (left-padded prompts); step ``t`` writes column ``width + t``
    for every live row, so one ``cache_position`` serves the batch, while ``position_ids`` (real
    tokens so far) differ per row.
    """
    import torch

    n = len(lens)
    out: list[list[int]] = [[] for _ in range(n)]
    batch = list(range(n))  # caller's row index of each batch row
    done: set[int] = set()
    pos = torch.tensor(lens, device=mask.device)
    next_logits = torch.stack(logits)
    col = width
    while True:
        picked = _pick(next_logits, params, gen).tolist()
        for b, tok in enumerate(picked):
            r = batch[b]
            if r not in done:
                out[r].append(tok)
                if _row_done(llm, out[r], params):
                    done.add(r)
        alive = [b for b, r in enumerate(batch) if r not in done]
        if not alive:
            return out
        # Dropping finished rows copies the whole cache, so wait until a quarter of the batch is
        # dead; until then they ride along and their tokens are ignored.
        if len(batch) - len(alive) >= max(1, len(batch) // 4):
            sel = torch.tensor(alive, device=mask.device)
            cache.batch_select_indices(sel)
            mask, pos = mask[sel], pos[sel]
            picked = [picked[b] for b in alive]
            batch = [batch[b] for b in alive]
        mask[:, col] = 1
        step = llm.model(
            input_ids=torch.tensor(picked, device=mask.device)[:, None],
            attention_mask=mask[:, : col + 1],
            position_ids=pos[:, None],
            past_key_values=cache,
            use_cache=True,
        )
        next_logits = step.logits[:, -1].float()
        pos = pos + 1
        col += 1


def _row_done(llm: HFLLM, ids: list[int], params: GenParams) -> bool:
    if ids[-1] in llm.eos_ids or len(ids) >= params.max_new_tokens:
        return True
    # Decoding the whole row each step is cheap next to a forward pass, and it finds a stop string
    # that spans tokens or sits inside one.
    return bool(params.stop) and _find_stop(llm._detok(ids), params.stop) is not None


def _find_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """``(index, stop)`` of the earliest stop string in ``text`` (the longest one at a tie).

    >>> _find_stop("a\\nObservation 1", ["\\nObs", "\\n"])
    (1, '\\nObs')
    """
    best = None
    for s in stops:
        if not s:
            continue
        i = text.find(s)
        if i >= 0 and (best is None or i < best[0] or (i == best[0] and len(s) > len(best[1]))):
            best = (i, s)
    return best


def _pick(logits, params: GenParams, gen):
    """Next token per row: argmax when greedy, else temperature + top-p sampling with ``gen``."""
    import torch

    if params.temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, sorted_i = probs.sort(dim=-1, descending=True)
        # Keep the smallest set whose mass reaches top_p (always at least the top token).
        drop = sorted_p.cumsum(-1) - sorted_p >= params.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, sorted_i, sorted_p)
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1)


def _load(model: str, dtype) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a HF dir / hub id, or a ``.gguf`` file."""
    if model.endswith(".gguf"):
        from reactlab.models import load_gguf

        if not Path(model).is_file():
            raise FileNotFoundError(f"GGUF file not found: {model}")
        return load_gguf(model, dtype)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(model, dtype=dtype), AutoTokenizer.from_pretrained(model)


def _with_adapter(model, adapter: str):
    """Wrap ``model`` with a PEFT LoRA adapter; a mismatched adapter fails with a clear message."""
    from peft import PeftModel

    if Path(adapter).exists() and not (Path(adapter) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter} is not a PEFT adapter directory (no adapter_config.json)")
    if not Path(adapter).exists() and Path(adapter).is_absolute():
        raise FileNotFoundError(f"adapter directory not found: {adapter}")
    try:
        return PeftModel.from_pretrained(model, adapter)
    except RuntimeError as e:  # size mismatches while loading the LoRA weights
        base = getattr(model.config, "name_or_path", "") or type(model).__name__
        raise ValueError(
            f"adapter {adapter} does not fit the base model {base} (hidden size "
            f"{model.config.hidden_size}, {model.config.num_hidden_layers} layers): {str(e).splitlines()[0]}"
        ) from e


def _eos_ids(model, tokenizer) -> set[int]:
    """Token ids that end a row: the generation config's EOS (may be a list) and the tokenizer's."""
    ids: set[int] = set()
    for src in (getattr(model, "generation_config", None), tokenizer):
        eos = getattr(src, "eos_token_id", None)
        if eos is None:
            continue
        ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    return ids
