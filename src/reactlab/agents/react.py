"""The ReAct loop (Yao et al. 2023), with Act, CoT and Standard as prompt variants, in three layouts:
``completion`` (the paper's one growing few-shot text, stopped at ``\nObservation``), ``chat``
(FireAct: one turn per step, zero-shot unless a prompt is named) and ``tools`` (native function
calling, ``agents.tools``: the actions offered as JSON-schema tools, each step one call answered by a
``tool`` turn; the trajectory record is the text layouts' own).

An episode is a generator (``types.EpisodeGen``) so the runner batches all live episodes; a
model's mistake becomes an observation, never an exception; after ``max_steps`` the episode is
closed with the paper's forced ``finish[]``, and a token budget (``meta["token_budget"]``) closes it
the same way.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import replace

from pydantic import BaseModel, ConfigDict, Field

from reactlab.agents.parsing import (
    chat_assistant,
    chat_observation,
    completion_step,
    extract_cot_answer,
    parse_action,
    split_thought_action,
)
from reactlab.agents.prompting import (
    EXEMPLARS_FOLLOW,
    METHODS,
    ZERO_SHOT,
    chat_exemplars,
    dev_shots,
    layout_prompt_id,
    load_prompt,
    render_chat_system,
    render_prefix,
    tool_exemplars,
)
from reactlab.agents.tools import (
    DEFAULT_ACTIONS,
    ToolAction,
    action_tools,
    hermes_text,
    reply_thought,
    reply_to_action,
    step_messages,
    tool_schemas,
)
from reactlab.types import (
    Action,
    Agent,
    AgentTraits,
    Completion,
    Environment,
    EpisodeGen,
    Example,
    GenParams,
    Message,
    Prompt,
    Query,
    Step,
    Task,
    Tool,
    ToolChat,
    ToolMessage,
    Trajectory,
    Usage,
)

STOP_OBS = "\nObservation"  # the paper stops at "\nObservation {i}:"; un-numbered keeps one batch
# A model that finishes often goes on to invent the next exemplar ("\n\nQuestion: ..."): nothing
# after that line is ever parsed (the action is the first line after "Action i:"), so stopping there
# changes no step and saves up to max_new_tokens of decoding per finish.
STOP_NEXT = "\nQuestion:"
TOKEN_BUDGET = "token_budget"
"""The ``Example.meta`` / ``Trajectory.meta`` key of an episode's completion-token budget."""
STYLES = ("completion", "chat", "tools")
STOP_CALL = "</tool_call>"  # a Hermes-style model's one call per step ends here (the parser reads it open)
TOOLS_SYSTEM = ("Solve a question answering task with the tools. In each turn, first reason about the current "
                "situation in a sentence, then call exactly one tool. Call finish with a short answer as soon "
                "as you know it.")


class ReActOptions(BaseModel):
    """The react agent's own knobs (``RunConfig.options.react``): tokens per step; ``tools_system``:
    the system text of the ``tools`` style (the tools' schemas follow it, rendered by the backend)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_new_tokens: int = Field(default=128, ge=1)
    tools_system: str = TOOLS_SYSTEM


class ReActAgent(Agent):
    """``method``: react | act | cot | standard; ``style``: completion | chat | tools (methods react
    and act); ``prompt``: a packaged prompt name, a YAML file, ``zeroshot``, or ``devK`` (method
    standard: K exemplars of the question's type from ``task``'s dev split); None: ``task``'s default
    prompt. ``tools``: the actions of the tools style (names of ``agents.tools.REACT_ACTIONS`` or
    ``ToolAction``s); None: ``task.tool_actions`` where a task declares them, else search, lookup,
    finish. See the module docstring."""

    name = "react"

    def __init__(
        self,
        task: Task | None = None,
        method: str = "react",
        style: str = "completion",
        prompt: str | None = None,
        max_steps: int = 7,
        max_new_tokens: int = 128,
        system: str | None = None,
        model: str = "",
        episode_temperature: float = 0.0,
        tools: Sequence[str | ToolAction] | None = None,
        tools_system: str = TOOLS_SYSTEM,
    ) -> None:
        """``episode_temperature``: sample every step at this temperature (0: greedy), seeded per
        episode id and step."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}, "
                             "cot_sc, react_then_cot_sc, cot_sc_then_react, reflexion")
        if style not in STYLES:
            raise ValueError(f"unknown prompt style {style!r}; known: {', '.join(STYLES)}")
        if style == "tools" and method not in ("react", "act"):
            raise ValueError(f"style 'tools' runs the methods react and act, not {method!r}")
        self.method, self.style, self.max_steps, self.system, self.model = method, style, max_steps, system, model
        self.label = "Question"
        self.exemplars: list[Message] | list[ToolMessage] = []
        self.tool_actions: list[ToolAction] = []
        self.tools: list[Tool] = []  # the tools style's schemas of tool_actions
        self.task, self.shots = task, dev_shots(prompt)
        explicit = prompt is not None  # chat: few-shot only when a prompt is named (zero-shot by default)
        if prompt is None:
            prompt = task.default_prompt if task is not None else "hotpotqa_react"
        if self.shots is not None:  # the task's own dev exemplars, per question type
            if method != "standard" or style != "completion":
                raise ValueError(f"prompt {prompt!r} (the task's dev exemplars: question and answer, no reasoning) "
                                 "needs --method standard in the completion style")
            if task is None or not hasattr(task, "dev_prefix"):
                raise ValueError(f"prompt {prompt!r}: task {getattr(task, 'name', None)!r} has no dev exemplars")
            self.prefix, self.prompt_id = "", f"{task.name}_dev{self.shots}@1/standard"
        elif style == "completion" and prompt == ZERO_SHOT:  # fine-tuned models: no exemplars
            self.prefix, self.prompt_id = "", layout_prompt_id(ZERO_SHOT, method)
        elif style == "completion":
            spec = load_prompt(prompt)
            self.prefix = render_prefix(spec, method)
            self.prompt_id = spec.prompt_id(method)
            self.label = spec.label
        elif style == "tools":  # zero-shot unless a prompt is named, as chat; exemplars as tool conversations
            self.prefix, self.system = "", self.system or tools_system
            self.tool_actions = action_tools(tools if tools is not None else getattr(task, "tool_actions",
                                                                                     DEFAULT_ACTIONS))
            self.tools = tool_schemas(self.tool_actions)
            self.prompt_id = layout_prompt_id("tools", method)
            if explicit and prompt != ZERO_SHOT:
                spec = load_prompt(prompt)
                self.exemplars = tool_exemplars(spec, method, self.tool_actions)
                self.system = f"{self.system.rstrip()} {EXEMPLARS_FOLLOW}"
                self.prompt_id = f"{spec.id}@{spec.version}:tools/{method}"
        elif prompt == ZERO_SHOT or not explicit:
            self.prefix = ""
            self.prompt_id = layout_prompt_id("chat", method)
        else:  # a few-shot prompt in chat turns, for chat-only models
            spec = load_prompt(prompt)
            self.prefix, self.exemplars = "", chat_exemplars(spec, method)
            self.system = self.system or render_chat_system(spec, method)
            self.prompt_id = f"{spec.id}@{spec.version}:chat/{method}"
        self.next_stop = STOP_NEXT if self.label == "Question" else f"\n{self.label}:"
        stops = {"completion": [STOP_OBS, self.next_stop], "chat": [STOP_OBS], "tools": [STOP_CALL]}[style]
        self.params = GenParams(max_new_tokens=max_new_tokens, temperature=episode_temperature, stop=stops)
        # a CoT is one call: nothing to budget across
        self.traits = AgentTraits(samples_episodes=True, token_budgets=method in ("react", "act"), params=self.params,
                                  model=model)

    def episode(self, example: Example, env: Environment, context: str = "") -> EpisodeGen:
        """One episode; ``context``: text shown before the question (Reflexion's reflections)."""
        t0 = time.perf_counter()
        traj = Trajectory(
            id=example.id, task="", question=example.question, gold=example.answer, agent=self.name,
            method=self.method, prompt_id=self.prompt_id, model=self.model, type=example.type,
        )
        if TOKEN_BUDGET in example.meta and self.traits.token_budgets:
            traj.meta[TOKEN_BUDGET] = int(example.meta[TOKEN_BUDGET])
        question = env.reset(example)
        loop = (self._cot if self.method == "cot" else self._standard if self.method == "standard"
                else self._tools if self.style == "tools" else self._chat if self.style == "chat"
                else self._completion)
        yield from loop(question, env, traj, context)
        if traj.status != "error" and not (traj.steps and traj.steps[-1].action.name == "finish"):
            env.step(Action("finish", ""))  # the paper's forced finish[] after the step limit
            traj.status, traj.answer = "max_steps", ""
        traj.usage = sum((s.usage for s in traj.steps), Usage())
        traj.wall_s = time.perf_counter() - t0
        return traj

    # -- the loops; each appends Steps to traj and returns on finish / error / step limit --

    def _completion(self, question: str, env: Environment, traj: Trajectory, context: str = "") -> EpisodeGen:
        prompt = f"{self.prefix}{context}{self.label}: {question}\n"
        for i in range(1, self.max_steps + 1):
            if self._spent(traj):
                break
            head = f"Thought {i}:" if self.method == "react" else f"Action {i}:"
            c = yield Query(prompt + head, self._params(traj, i))
            if failed(c, traj):
                return traj
            raw, usage = c.text, c.usage
            if self.method == "react":
                thought, act = split_thought_action(c.text, i)
                if act is None:  # the paper's fallback: ask for the action on its own line
                    c2 = yield Query(prompt + f"Thought {i}: {thought}\nAction {i}:", _one_line(self._params(traj, i)))
                    if failed(c2, traj):
                        return traj
                    act, raw, usage = c2.text.strip(), raw + "\n[action] " + c2.text, usage + c2.usage
            else:
                thought, act = "", c.text.strip().split("\n", 1)[0]
            if self._act(env, traj, i, thought, parse_action(act), raw, usage, c.latency_s):
                return traj
            step = traj.steps[-1]
            prompt += completion_step(i, thought if self.method == "react" else None, step.action, step.observation)
        return traj

    def _chat(self, question: str, env: Environment, traj: Trajectory, context: str = "") -> EpisodeGen:
        messages = self._chat_opening(question, context)
        for i in range(1, self.max_steps + 1):
            if self._spent(traj):
                break
            c = yield Query(list(messages), self._params(traj, i))
            if failed(c, traj):
                return traj
            thought, act = split_thought_action(c.text)
            action = parse_action(act if act is not None else thought)
            if act is None and action.name != "invalid":  # a bare "search[X]" is an action, not a thought
                thought = ""
            if self._act(env, traj, i, thought, action, c.text, c.usage, c.latency_s):
                return traj
            messages.append({"role": "assistant", "content": chat_assistant(thought, action)})
            messages.append({"role": "user", "content": chat_observation(traj.steps[-1].observation)})
        return traj

    def _tools(self, question: str, env: Environment, traj: Trajectory, context: str = "") -> EpisodeGen:
        """The chat loop with native calls: the reply (text with ``<tool_call>`` blocks, or an API's
        ``tool_calls``) is one action by ``reply_to_action``, anything else an invalid one; its text
        outside the call is the thought; the step goes back as a call and its ``tool`` answer."""
        messages = ToolChat(self._chat_opening(question, context), self.tools)
        for i in range(1, self.max_steps + 1):
            if self._spent(traj):
                break
            c = yield Query(messages.copy(), self._params(traj, i))
            if failed(c, traj):
                return traj
            reply = {"content": c.text, "tool_calls": c.tool_calls} if c.tool_calls else c.text
            action = reply_to_action(reply, self.tool_actions)
            thought = reply_thought(reply) if action.name != "invalid" else ""
            raw = hermes_text(reply) if isinstance(reply, dict) else c.text + (c.stop if c.stop == STOP_CALL else "")
            if self._act(env, traj, i, thought, action, raw, c.usage, c.latency_s):
                return traj
            messages.extend(step_messages(traj.steps[-1], self.tool_actions))
        return traj

    def _chat_opening(self, question: str, context: str = "") -> list[Message]:
        """A chat episode's first messages: the system turn (if any), the exemplars' turns, the question."""
        system: list[Message] = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, *self.exemplars, {"role": "user", "content": context + question}]

    def _params(self, traj: Trajectory, step: int) -> GenParams:
        """The decoding of ``step``: greedy as is; sampled with a seed of this episode and step; at
        most the tokens left of the episode's budget."""
        params = self.params
        if params.temperature > 0:
            params = replace(params, seed=example_seed(f"{traj.id}/{step}"))
        left = _tokens_left(traj)
        if left is not None and left < params.max_new_tokens:
            params = replace(params, max_new_tokens=max(1, left))
        return params

    @staticmethod
    def _spent(traj: Trajectory) -> bool:
        left = _tokens_left(traj)
        if left is not None and left <= 0:
            traj.meta["stopped_by"] = TOKEN_BUDGET
            return True
        return False

    def cot_params(self, traj: Trajectory | None = None) -> GenParams:
        """A chain of thought's decoding: one turn of twice a step's tokens, ending at the next
        question or a blank line; greedy, or sampled like step 1 of ``traj`` when the agent samples."""
        base = self.params if traj is None else self._params(traj, 1)
        return replace(base, max_new_tokens=self.params.max_new_tokens * 2, stop=[self.next_stop, "\n\n"])

    def cot_query(self, question: str, params: GenParams | None = None, context: str = "") -> Query:
        """The chain-of-thought prompt for ``question`` (``params``: the decoding, greedy by default)."""
        params = params or self.cot_params()
        if self.style == "chat":
            return Query(self._chat_opening(question, context), params)
        return Query(f"{self.prefix}{context}{self.label}: {question}\nThought: Let's think step by step.", params)

    @staticmethod
    def cot_answer(text: str) -> tuple[str, Action]:
        """A chain of thought's ``(thought, finish action)``: its ``Finish[...]``, else the answer
        its last sentence states."""
        thought, act = split_thought_action(text)
        action = parse_action(act) if act is not None else Action("invalid", "")
        if action.name != "finish":
            action = Action("finish", extract_cot_answer(text))
        return thought, action

    def _cot(self, question: str, env: Environment, traj: Trajectory, context: str = "") -> EpisodeGen:
        c = yield self.cot_query(question, context=context, params=self.cot_params(traj))
        if failed(c, traj):
            return traj
        thought, action = self.cot_answer(c.text)
        self._act(env, traj, 1, thought, action, c.text, c.usage, c.latency_s)
        return traj

    def _standard(self, question: str, env: Environment, traj: Trajectory, context: str = "") -> EpisodeGen:
        """One call: the question, then ``Answer:``; the reply's first line (less a leading
        ``Answer:`` in the chat layout) is the answer."""
        params = replace(self._params(traj, 1), max_new_tokens=min(32, self.params.max_new_tokens), stop=["\n"])
        prompt: Prompt
        if self.shots is not None:
            prompt = f"{self.task.dev_prefix(traj.type, self.shots)}{context}{question}\nAnswer:"  # type: ignore[union-attr]
        elif self.style == "chat":
            prompt = self._chat_opening(question, context)
        else:
            prompt = f"{self.prefix}{context}{self.label}: {question}\nAnswer:"
        c = yield Query(prompt, params)
        if failed(c, traj):
            return traj
        answer = c.text.strip().split("\n", 1)[0].strip()
        if answer.lower().startswith("answer:"):
            answer = answer[len("answer:"):].strip()
        self._act(env, traj, 1, "", Action("finish", answer), c.text, c.usage, c.latency_s)
        return traj

    def _act(self, env: Environment, traj: Trajectory, i: int, thought: str, action: Action,
             raw: str, usage: Usage, latency: float) -> bool:
        """Run one action, record the step; True when the episode is over."""
        obs, done = env.step(action)
        traj.steps.append(Step(i=i, thought=thought, action=action, observation=obs, raw=raw,
                               usage=usage, latency_s=latency))
        if done:
            traj.answer, traj.status = action.arg, "finished"
        return done


def _tokens_left(traj: Trajectory) -> int | None:
    """Completion tokens left of the episode's budget (None: no budget)."""
    budget = traj.meta.get(TOKEN_BUDGET)
    if budget is None:
        return None
    return int(budget) - sum(s.usage.completion_tokens for s in traj.steps)


def failed(c: Completion, traj: Trajectory) -> bool:
    """A backend failure (after its own retries) ends the episode as ``error``; it is still recorded."""
    if c.finish_reason == "error":
        traj.status, traj.error = "error", c.error or "LLM call failed"
        return True
    return False


def example_seed(example_id: str, seed: int = 0) -> int:
    """A stable per-example seed (the same in every process).

    >>> example_seed("q1") == example_seed("q1") != example_seed("q2")
    True
    """
    return (zlib.crc32(example_id.encode()) + seed) % 2**31


def _one_line(p: GenParams) -> GenParams:
    return GenParams(max_new_tokens=p.max_new_tokens, temperature=p.temperature, top_p=p.top_p,
                     stop=["\n"], seed=p.seed)
