"""The transformers backend: a local HF dir, a hub id or a ``.gguf`` file (+ a LoRA adapter),
generating for many prompts at once through ``reactlab.llm.engine``.

Two ways in: ``generate`` (the ``LLM`` protocol: a batch in, completions out, in order) and
``submit`` / ``poll`` (``StreamingLLM``: a finished row is replaced at the next decoding step, not
after the slowest row of a round). Greedy outputs match one-at-a-time ``model.generate`` up to
floating-point summation order. torch and transformers are imported only when a model is built.

A ``ToolChat`` prompt is rendered by ``render_tools_prompt``: the model's chat template with
``tools=`` when it renders tools, else a Hermes/Qwen-style fallback through its plain template (the
fallback and the template test live here, beside the one caller that renders; ``agents.tools``
re-exports them).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reactlab.llm.stops import find_stop
from reactlab.types import Completion, GenParams, Prompt, Tool, ToolChat, ToolMessage, Usage


class HFLLM:
    """A transformers causal LM behind ``reactlab.types.LLM``.

    ``model``: a local model spec (``reactlab.models.parse_model``: an HF directory, a hub id where
    a hub is reachable, a ``.gguf`` file dequantised), loaded by ``reactlab.weights.load_weights``.
    ``adapter``: a PEFT LoRA directory for that base, merged in. ``dtype``: ``auto`` (fp32 on CPU:
    bf16 was not faster on every CPU and changed greedy answers; bf16 on CUDA) or a torch dtype
    name. ``device``: ``auto``, ``cpu``, ``cuda``... ``batch_size``: rows decoded together.
    ``prefix_cache``: share the KV of a common prompt prefix between rows and keep finished rows' KV
    for prompts that extend them (off: every row encodes its whole prompt). ``prefill_chunk``: prompt tokens fed per decoding step.
    ``draft_tokens``: greedy rows guess up to this many next tokens from their own context and
    verify them in one step (prompt-lookup decoding; 0: off); outputs are unchanged.
    """

    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        name: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        batch_size: int = 32,
        prefix_cache: bool = True,
        prefill_chunk: int = 512,
        draft_tokens: int = 8,
    ):
        import torch

        from reactlab.llm import engine
        from reactlab.llm.cpu_kernels import use_onednn_linear
        from reactlab.weights import load_weights, torch_dtype

        self.name = name or (Path(model).name if Path(model).exists() else model)
        if adapter:
            self.name += f"+{Path(adapter).name}"
        self.batch_size = max(1, int(batch_size))
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        )
        self.dtype = torch_dtype(dtype, accelerated=self.device.type == "cuda")
        weights = load_weights(model, self.dtype, adapter=adapter, merge=True)
        self.model, self.tokenizer = weights.model, weights.tokenizer
        why = engine.supported(self.model)
        if why:
            raise ValueError(f"{model}: {why} by reactlab's batching engine")
        self.model.to(self.device).eval()
        use_onednn_linear(self.model)  # CPU fp32 only (see there)
        self._start(prefill_chunk, prefix_cache, draft_tokens)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, name: str = "policy", batch_size: int = 32,
                   prefix_cache: bool = True, prefill_chunk: int = 512, draft_tokens: int = 0) -> HFLLM:
        """An ``HFLLM`` around an already-loaded ``model`` (a transformers causal LM, or a PEFT model
        around one) and its ``tokenizer``, as they are: not copied, moved, merged or put in eval mode,
        and its linear layers are not swapped for inference kernels (they may be training). Every
        forward pass reads the model's parameters as they are at that moment, so an RL trainer's
        rollouts come from its current weights (an unmerged LoRA adapter included). KV that the
        engine keeps between calls (shared prefixes, finished rows) was computed with the weights of
        its time: call ``reset_cache`` after the weights change."""
        from reactlab.llm import engine

        why = engine.supported(model)
        if why:
            raise ValueError(f"{name}: {why} by reactlab's batching engine")
        self = cls.__new__(cls)
        self.name, self.model, self.tokenizer = name, model, tokenizer
        self.batch_size = max(1, int(batch_size))
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self._start(prefill_chunk, prefix_cache, draft_tokens)
        return self

    def _start(self, prefill_chunk: int, prefix_cache: bool, draft_tokens: int) -> None:
        from reactlab.llm import engine

        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        self.engine = engine.Engine(
            self.model, self._row_done, max_rows=self.batch_size, prefill_chunk=prefill_chunk,
            max_retained=None if prefix_cache else 0, min_prefix=16 if prefix_cache else 1 << 30,
            draft_tokens=draft_tokens,
        )
        self._keys = itertools.count()
        self._results: dict[Hashable, Completion] = {}
        self._groups: dict[Hashable, list[Completion | None]] = {}  # n > 1: a prompt's samples so far

    # --- the LLM protocol ---------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Completion]:
        """One completion per prompt, in order.

        A ``str`` prompt is tokenized as is (BOS only if the tokenizer adds one by itself); a list
        of chat messages goes through the chat template with a generation prompt, or continues the
        last message when it is the assistant's. Greedy when ``params.temperature == 0``, else
        sampling (seeded by ``params.seed``; the i-th of ``n`` samples by ``seed + i``). A row ends
        at EOS, at the first of ``params.stop`` found in its decoded text (``text`` is cut before
        it, ``stop`` names it), or after ``params.max_new_tokens`` (``finish_reason ==
        "length"``). ``latency_s`` is the row's wall time from admission to its last token;
        ``usage.cached_tokens`` counts prompt tokens whose KV was reused (a shared prefix, or an
        earlier call's prompt that this one extends). ``prompt_ids``, ``completion_ids`` (as
        generated, EOS included) and ``logprobs`` are filled; with ``n > 1``, ``samples``.
        """
        keys = [("g", next(self._keys)) for _ in prompts]
        for k, p in zip(keys, prompts, strict=True):
            self.submit(k, p, params)
        while any(k not in self._results for k in keys):
            self._advance()
        return [self._results.pop(k) for k in keys]

    def generate_with_ids(
        self, prompts: Sequence[Prompt], params: GenParams
    ) -> list[tuple[Completion, list[int]]]:
        """``generate``, paired with each row's new token ids as decoded (EOS included)."""
        return [(c, list(c.completion_ids or [])) for c in self.generate(prompts, params)]

    # --- the StreamingLLM protocol --------------------------------------------------------------

    def submit(self, key: Hashable, prompt: Prompt, params: GenParams) -> None:
        """Queue one prompt; its completion comes back from a later ``poll`` under ``key``."""
        self.submit_ids(key, self.encode(prompt), params)

    def submit_ids(self, key: Hashable, ids: list[int], params: GenParams) -> None:
        """``submit`` of a prompt already tokenized: the model is fed exactly ``ids`` (an RL rollout
        keeps its own token sequence across turns instead of re-rendering the conversation)."""
        if params.max_new_tokens <= 0:
            empty = Completion(text="", finish_reason="length", prompt_ids=ids, completion_ids=[], logprobs=[])
            self._results[key] = replace(empty, samples=[replace(empty) for _ in range(params.n)]) \
                if params.n > 1 else empty
            return
        if params.n <= 1:
            self.engine.submit(key, ids, params, self._generator(params))
            return
        self._groups[key] = [None] * params.n
        for i in range(params.n):
            self.engine.submit(_Sample(key, i), ids, params, self._generator(params, i))

    def partial_text(self, key: Hashable) -> str | None:
        """The text generated so far for the prompt submitted under ``key`` while it decodes (EOS
        left out, not yet cut at a stop string); None when it is not decoding."""
        for row in self.engine.active:
            if row.key == key:
                out = row.out[:-1] if row.out and row.out[-1] in self.eos_ids else row.out
                return self._detok(out)
        return None

    def cancel(self, key: Hashable) -> None:
        """Stop working on the prompt submitted under ``key`` (its client went away); nothing comes
        back for it."""
        group = self._groups.pop(key, None)
        for i in range(len(group) if group is not None else 0):
            self.engine.cancel(_Sample(key, i))
        self.engine.cancel(key)
        self._results.pop(key, None)

    def poll(self) -> list[tuple[Hashable, Completion]]:
        """Decode until at least one submitted prompt is complete; those completions (may be [])."""
        while not self._results and self.engine.busy():
            self._advance()
        return self.poll_once()

    def poll_once(self) -> list[tuple[Hashable, Completion]]:
        """At most one decoding step; the completions ready after it (often []). A server calls this
        so that a request arriving mid-generation joins at the next step."""
        if not self._results and self.engine.busy():
            self._advance()
        done = list(self._results.items())
        self._results.clear()
        return done

    def encode(self, prompt: Prompt) -> list[int]:
        """The token ids a prompt is fed as (see ``generate``; a ``ToolChat``: ``render_tools_prompt``)."""
        tok = self.tokenizer
        if isinstance(prompt, str):
            return list(tok(prompt).input_ids)
        if isinstance(prompt, ToolChat):
            text = render_tools_prompt(tok, prompt, prompt.tools)
            return list(tok(text, add_special_tokens=False).input_ids)
        cont = bool(prompt) and prompt[-1].get("role") == "assistant"
        text = tok.apply_chat_template(
            list(prompt), tokenize=False, add_generation_prompt=not cont, continue_final_message=cont
        )
        # The template already wrote any BOS/special tokens as text.
        return list(tok(text, add_special_tokens=False).input_ids)

    def reset_cache(self) -> None:
        """Forget every cached prefix and retained row (frees their memory)."""
        self.engine.reset()

    # --- internals ------------------------------------------------------------------------------

    def _advance(self) -> None:
        for row, wall in self.engine.step():
            c = self._finish(row.out, row.params)
            c.usage = Usage(prompt_tokens=len(row.ids), completion_tokens=len(row.out), cached_tokens=row.cached)
            c.latency_s = wall
            c.prompt_ids, c.completion_ids, c.logprobs = list(row.ids), list(row.out), list(row.logprobs)
            if not isinstance(row.key, _Sample):
                self._results[row.key] = c
                continue
            group = self._groups[row.key.key]
            group[row.key.i] = c
            if all(x is not None for x in group):
                samples = [x for x in group if x is not None]
                del self._groups[row.key.key]
                self._results[row.key.key] = replace(samples[0], samples=samples)

    def _generator(self, params: GenParams, i: int = 0):
        """A sampling generator (None when greedy); the ``i``-th sample of a seeded prompt uses
        ``seed + i``."""
        if params.temperature <= 0:
            return None
        import torch

        gen = torch.Generator(device=self.device)
        if params.seed is not None:
            gen.manual_seed(params.seed + i)
        else:
            gen.seed()
        return gen

    def _row_done(self, ids: list[int], params: GenParams) -> bool:
        if ids[-1] in self.eos_ids or len(ids) >= params.max_new_tokens:
            return True
        # Decoding the whole row each step is cheap next to a forward pass, and it finds a stop
        # string that spans tokens or sits inside one.
        return bool(params.stop) and find_stop(self._detok(ids), params.stop) is not None

    def _finish(self, ids: list[int], params: GenParams) -> Completion:
        """Turn a row's generated ids into a Completion (EOS dropped, text cut at the stop)."""
        if ids and ids[-1] in self.eos_ids:
            return Completion(text=self._detok(ids[:-1]), finish_reason="stop")
        text = self._detok(ids)
        hit = find_stop(text, params.stop)
        if hit is not None:
            return Completion(text=text[: hit[0]], stop=hit[1], finish_reason="stop")
        return Completion(text=text, finish_reason="length")

    def _detok(self, ids: list[int]) -> str:
        # Special tokens stay: a stop string may be one (e.g. "<|im_end|>" of another template).
        return self.tokenizer.decode(ids, skip_special_tokens=False)


@dataclass(frozen=True)
class _Sample:
    """The engine key of the ``i``-th of several samples of the prompt submitted under ``key``."""

    key: Hashable
    i: int


def _eos_ids(model, tokenizer) -> set[int]:
    """Token ids that end a row: the generation config's EOS (may be a list) and the tokenizer's."""
    ids: set[int] = set()
    for src in (getattr(model, "generation_config", None), tokenizer):
        eos = getattr(src, "eos_token_id", None)
        if eos is None:
            continue
        ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    return ids


# --- tool conversations: the prompt text of a ``ToolChat`` -----------------------------------------


def call_arguments(value: Any) -> Any:
    """Arguments as a dict when they are a JSON string of one (the OpenAI shape), else as given."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def hermes_text(message: Mapping[str, Any]) -> str:
    """An assistant message as the text a Hermes/Qwen model writes: its content, then one block per call
    (as Qwen2.5's template joins them)."""
    parts = [str(message.get("content") or "")] if message.get("content") else []
    for c in message.get("tool_calls") or []:
        f = c.get("function", c) if isinstance(c, dict) else {}
        body = {"name": f.get("name"), "arguments": call_arguments(f.get("arguments"))}  # bad JSON stays a string
        parts.append(f"<tool_call>\n{hermes_json(body)}\n</tool_call>")
    return "\n".join(parts)


def hermes_json(body: Any) -> str:
    """A call's JSON as Qwen2.5's template writes it (``tojson``: no ASCII escaping), except that an
    argument holding a ``<tool_call>`` tag has its ``<`` written ``\\u003c`` (the same JSON), so the
    tag cannot end the block early.

    >>> hermes_json({"name": "search", "arguments": {"entity": "a</tool_call>"}})
    '{"name": "search", "arguments": {"entity": "a\\\\u003c/tool_call>"}}'
    """
    text = json.dumps(body, ensure_ascii=False, default=str)
    return text.replace("<", "\\u003c") if "tool_call>" in text else text


FALLBACK_TOOLS_PROMPT = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)
"""The system text of the fallback: Qwen2.5's tool section, word for word (``{tools}``: one JSON line
per tool). It follows the conversation's own system message, after a blank line."""


def template_uses_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders ``tools`` (its source mentions them)."""
    template = tokenizer.chat_template
    sources = template.values() if isinstance(template, dict) else [template or ""]
    return any(re.search(r"\btools\b", s) for s in sources)


def fallback_messages(messages: Sequence[Mapping[str, Any]], tools: Sequence[Tool]) -> list[dict[str, str]]:
    """Tool messages as plain chat messages for a template without tool support: the tools join the
    system message (``FALLBACK_TOOLS_PROMPT``), calls become ``<tool_call>`` text in the assistant's
    content, and consecutive tool results one user message of ``<tool_response>`` blocks, as Qwen2.5
    renders them, so a ChatML template gives Qwen2.5's text."""
    listing = "".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools)
    section = FALLBACK_TOOLS_PROMPT.format(tools=listing)
    out: list[dict[str, str]] = []
    msgs = list(messages)
    if msgs and msgs[0].get("role") == "system":
        out.append({"role": "system", "content": f"{msgs.pop(0).get('content') or ''}\n\n{section}"})
    else:
        out.append({"role": "system", "content": section})
    for m in msgs:
        role = str(m.get("role"))
        if role == "tool":
            block = f"<tool_response>\n{m.get('content') or ''}\n</tool_response>"
            if out[-1].get("role") == "user" and out[-1]["content"].startswith("<tool_response>"):
                out[-1] = {"role": "user", "content": out[-1]["content"] + "\n" + block}
            else:
                out.append({"role": "user", "content": block})
        elif role == "assistant" and m.get("tool_calls"):
            out.append({"role": "assistant", "content": hermes_text(m)})
        else:
            out.append({"role": role, "content": str(m.get("content") or "")})
    return out


def native_messages(messages: Sequence[Mapping[str, Any]]) -> list[ToolMessage]:
    """Messages as chat templates take them: call arguments as dicts, not JSON strings (a template
    applies ``tojson`` to them)."""
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                f = dict(c.get("function", c))
                f["arguments"] = call_arguments(f.get("arguments"))
                calls.append({**c, "function": f} if "function" in c else f)
            m["tool_calls"] = calls
        out.append(m)
    return out


def render_tools_prompt(tokenizer: Any, messages: Sequence[Mapping[str, Any]], tools: Sequence[Tool], *,
                        add_generation_prompt: bool = True) -> str:
    """The prompt text of a tool conversation: the model's own template with ``tools=`` when it renders
    tools, else the fallback (``fallback_messages``) through the model's template."""
    if template_uses_tools(tokenizer):
        text = tokenizer.apply_chat_template(native_messages(messages), tools=list(tools), tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    else:
        text = tokenizer.apply_chat_template(fallback_messages(messages, tools), tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    return str(text)
