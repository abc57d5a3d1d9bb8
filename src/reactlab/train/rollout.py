"""ReAct episodes as RL rollouts: what GRPO / RLOO train on (``train/grpo.py``, ``train/rloo.py``).

A rollout is one episode of our own agent (``ReActAgent(style="chat")``, the layout fine-tuned
models run in) against our own environment (``WikiEnv`` over the local index, ``NoToolEnv``, or any
factory), sampled from the policy being trained through our batching engine
(``HFLLM.from_model``: the engine reads the live weights, LoRA adapter unmerged, at every forward
pass). It is flattened into the one token sequence the trainer scores:

    prompt_ids      = the chat template of the row's ``prompt`` messages + the generation prompt
    completion_ids  = [turn 1][template: end of turn, user "Observation: ...", generation prompt][turn 2]...

**The invariant kept** (``flatten`` and ``check_rollout``, tested):

- each model turn's tokens are the engine's sampled ids, and the engine was fed *exactly*
  ``prompt_ids + completion_ids[:start of that turn]`` to sample them (``HFLLM.submit_ids``): so
  ``logprobs`` are the sampling distribution's log-probabilities of exactly the trained tokens, in
  exactly the trained context (``log_softmax(logits / temperature)``, as TRL recomputes them);
- ``env_mask`` is 1 on those sampled tokens and 0 on every template / observation token, which the
  model did not generate; ``logprobs`` is 0 where ``env_mask`` is 0;
- as text, ``decode(prompt_ids + completion_ids)`` is a prefix of the chat template rendered over
  ``prompt + messages`` (``messages``: each turn's text as the model wrote it, and the observations),
  continued from the last turn: what an inference-time run of the same conversation would show.
  Token by token the two may differ where the model sampled a non-canonical split of a string
  (the template would re-tokenize it); the rollout keeps the sampled tokens, since those are the
  ones whose probabilities are trained.

A turn is kept up to the agent's stop string (``\\nObservation``): the tokens sampled past it (which
the agent never reads) are dropped, as far as token boundaries allow; a turn ended by EOS keeps its
EOS (mask 1: ending a turn is the model's act). The agent parses the turn's text, as in any run.

The single-turn form (``multi_turn=False``): the prompt, one sampled completion, mask all 1.

Nothing here imports torch at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reactlab.types import Completion, Environment, Example, GenParams, Message

SENTINEL = "\x00REACTLAB_TURN\x00"
"""A string no template rewrites, put in place of an assistant turn to find what the template
writes after it."""


@dataclass
class Rollout:
    """One episode as the trainer sees it (see the module docstring for the invariant).
    ``messages``: the conversation after the prompt (assistant turns as the model wrote them, user
    observations); ``status``: the trajectory's (``finished``, ``max_steps``, ``error``)."""

    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    status: str = "finished"

    def add(self, ids: Sequence[int], logprobs: Sequence[float] | None = None) -> None:
        """Append tokens: the model's (with their ``logprobs``: mask 1) or the template's (mask 0)."""
        self.completion_ids += ids
        self.logprobs += list(logprobs) if logprobs is not None else [0.0] * len(ids)
        self.env_mask += [1 if logprobs is not None else 0] * len(ids)


@dataclass
class RolloutSpec:
    """How episodes are sampled: ``multi_turn`` (ReAct episodes) or one completion; ``max_steps``
    and ``max_new_tokens`` (per model turn); ``temperature`` (sampling, also what the trainer divides
    logits by); ``seed``: rollouts are reproducible given the seed and the weights."""

    multi_turn: bool = True
    max_steps: int = 4
    max_new_tokens: int = 128
    temperature: float = 1.0
    seed: int = 0


def template_ids(tokenizer: Any, messages: Sequence[Message]) -> list[int]:
    """The ids a conversation is fed as, with the generation prompt (as ``HFLLM.encode``)."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def between_turns(tokenizer: Any, before: Sequence[Message], observation: Message, eos_ended: bool) -> str:
    """What the chat template writes after an assistant turn's content, up to the next generation
    prompt: the end of that turn, the ``observation`` user turn, the assistant header. When the model
    ended its turn with EOS and the template's end-of-turn is that token, it is not written twice."""
    msgs = [*before, {"role": "assistant", "content": SENTINEL}, observation]
    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    after = text[text.index(SENTINEL) + len(SENTINEL):]
    eos = tokenizer.eos_token
    if eos_ended and eos and after.startswith(eos):
        after = after[len(eos):]
    return after


def kept_tokens(tokenizer: Any, ids: Sequence[int], text: str, eos_ids: set[int]) -> int:
    """How many leading ``ids`` of a turn to keep: all when it ended with EOS; else the longest run
    whose decoded text is a prefix of ``text`` (the turn cut at its stop string)."""
    if ids and ids[-1] in eos_ids:
        return len(ids)
    k = len(ids)
    while k > 0 and not text.startswith(tokenizer.decode(list(ids[:k]), skip_special_tokens=False)):
        k -= 1
    return k


def example_of(prompt: Sequence[Message], i: int = 0) -> Example:
    """The ``Example`` an environment is reset with: the question is the prompt's last user turn."""
    users = [m for m in prompt if m.get("role") == "user"]
    if not users:
        raise ValueError("a GRPO/RLOO prompt needs a user turn (the question); build rows with "
                         "`reactlab data build --format prompts`")
    return Example(id=str(i), question=str(users[-1]["content"]), answer="")


def run_rollouts(llm: Any, prompts: Sequence[Sequence[Message]], spec: RolloutSpec,
                 env_factory: Callable[[], Environment] | None = None, round_seed: int = 0) -> list[Rollout]:
    """One rollout per prompt (TRL's batches repeat each prompt ``num_generations`` times), all
    episodes decoding together in ``llm``'s engine (an ``HFLLM``, usually ``from_model`` around the
    policy). Sample ``i`` of a round is seeded ``spec.seed + round_seed + i``. The engine's kept KV
    is dropped first: it was computed with older weights."""
    from reactlab.agents.react import ReActAgent
    from reactlab.envs.none import NoToolEnv

    llm.reset_cache()
    tok = llm.tokenizer
    outs = [Rollout(prompt_ids=template_ids(tok, p)) for p in prompts]
    seeds = [spec.seed + round_seed + i for i in range(len(prompts))]
    if not spec.multi_turn:
        params = GenParams(max_new_tokens=spec.max_new_tokens, temperature=spec.temperature)
        for i, r in enumerate(outs):
            llm.submit_ids(i, r.prompt_ids, replace(params, seed=seeds[i]))
        done: dict[Any, Completion] = {}
        while len(done) < len(outs):
            done.update(llm.poll())
        for i, r in enumerate(outs):
            c = done[i]
            r.add(c.completion_ids or [], c.logprobs or [])
            r.messages = [{"role": "assistant", "content": c.text}]
        return outs

    factory = env_factory or NoToolEnv
    live: dict[int, Any] = {}
    for i, p in enumerate(prompts):
        system = next((str(m["content"]) for m in p if m.get("role") == "system"), None)
        agent = ReActAgent(method="react", style="chat", max_steps=spec.max_steps,
                           max_new_tokens=spec.max_new_tokens, system=system)
        gen = agent.episode(example_of(p, i), factory())
        live[i] = gen
        _ask(llm, i, outs[i], next(gen), spec, seeds[i], turn=0)
    turns = dict.fromkeys(live, 0)
    while live:
        for i, c in llm.poll():
            r = outs[i]
            ids = (c.completion_ids or [])[: kept_tokens(tok, c.completion_ids or [], c.text, llm.eos_ids)]
            r.add(ids, (c.logprobs or [])[: len(ids)])
            # The turn as the model's context holds it (c.text, which the agent parses, may run a few
            # characters on when the stop string began inside a token).
            text = tok.decode(ids[:-1] if ids and ids[-1] in llm.eos_ids else ids, skip_special_tokens=False)
            r.messages.append({"role": "assistant", "content": text})
            turns[i] += 1
            try:
                query = live[i].send(c)
            except StopIteration as stop:
                r.status = stop.value.status
                del live[i]
                continue
            obs = query.prompt[-1]  # the agent's next prompt ends with the observation turn
            eos_ended = bool(c.completion_ids) and c.completion_ids[-1] in llm.eos_ids
            glue = between_turns(tok, [*prompts[i], *r.messages[:-1]], obs, eos_ended)
            r.add(list(tok(glue, add_special_tokens=False).input_ids))
            r.messages.append(dict(obs))
            _ask(llm, i, r, query, spec, seeds[i], turn=turns[i])
    return outs


def _ask(llm: Any, i: int, r: Rollout, query: Any, spec: RolloutSpec, seed: int, turn: int) -> None:
    """Submit the episode's next turn: fed exactly the rollout's tokens so far."""
    params = replace(query.params, temperature=spec.temperature, seed=seed * 1000 + turn)
    llm.submit_ids(i, r.prompt_ids + r.completion_ids, params)


def check_rollout(tokenizer: Any, prompt: Sequence[Message], r: Rollout) -> None:
    """Assert the invariant of the module docstring (an ``AssertionError`` says which part fails)."""
    n = len(r.completion_ids)
    assert len(r.logprobs) == n and len(r.env_mask) == n, "ids, logprobs and env_mask differ in length"
    assert all(lp == 0.0 for lp, m in zip(r.logprobs, r.env_mask, strict=True) if not m), "logprob where masked"
    assert r.prompt_ids == template_ids(tokenizer, prompt), "prompt_ids are not the template's"
    text = tokenizer.decode(r.prompt_ids + r.completion_ids, skip_special_tokens=False)
    msgs = [*prompt, *r.messages]
    # Between the conversation left open after the last turn and the same with that turn closed (the
    # model may or may not have written its end-of-turn token).
    opened = tokenizer.apply_chat_template(msgs, tokenize=False, continue_final_message=True)
    closed = tokenizer.apply_chat_template(msgs, tokenize=False)
    assert text.startswith(opened) and closed.startswith(text), "rollout text is not the template's"
