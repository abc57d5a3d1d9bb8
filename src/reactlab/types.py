"""The shared vocabulary: records that flow between components, and the Protocols they implement.

Typed records inside, plain dicts only at the edges: every record has ``to_dict``/``from_dict`` and
the JSONL files hold exactly those dicts. Nothing here imports torch or touches the disk.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Hashable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, Union, runtime_checkable

SCHEMA_VERSION = 2
"""Version of the trajectory record; bump when a field changes meaning or is removed.
2: ``agent`` names the agent and ``method`` the prompt variant (1 wrote the method into ``agent``);
``children`` holds sub-trajectories."""

Status = Literal["finished", "max_steps", "error", "unrun"]
"""How an episode ended: a finish action, the forced finish after the step limit, a failed LLM call;
``unrun`` marks a question with no episode (a prompt row's source)."""

FinishReason = Literal["stop", "length", "error"]
"""Why a completion ended: EOS or a stop string, ``max_new_tokens``, or the backend failed."""

DEFAULT_ROLE = "default"
"""The role of a query when an agent has one model (most do): the run's model answers it."""

Message = dict[str, str]
"""A chat message at the edge: ``{"role": "user"|"assistant"|"system", "content": "..."}``."""

ToolMessage = dict[str, Any]
"""A chat message of a tool conversation: an assistant turn may carry ``tool_calls`` (OpenAI shape),
a ``tool`` turn answers one (``tool_call_id``, ``content``: the observation)."""

Tool = dict[str, Any]
"""An OpenAI-style tool: ``{"type": "function", "function": {"name", "description", "parameters"}}``."""


class ToolChat(list[ToolMessage]):
    """A chat prompt that offers ``tools``: its messages (``ToolMessage``s) and the tools' JSON
    schemas. A list of messages, so code that reads chat prompts reads it unchanged; the backends
    send or render the tools (``llm.openai_compat``: the API's ``tools``; ``llm.hf``: the chat
    template's tool support or a fallback). ``list(chat)`` drops the tools; ``copy()`` keeps them."""

    def __init__(self, messages: Iterable[ToolMessage] = (), tools: Iterable[Tool] = ()):
        super().__init__(messages)
        self.tools: list[Tool] = list(tools)

    def copy(self) -> ToolChat:
        return ToolChat(self, self.tools)

    def __repr__(self) -> str:
        return f"ToolChat({list(self)!r}, tools={[t.get('function', t).get('name') for t in self.tools]})"


Prompt = Union[str, list[Message], ToolChat]
"""A completion-style text (the paper's single growing prompt), a list of chat messages, or a chat
that offers tools (``ToolChat``)."""


def prompt_text(prompt: Prompt) -> str:
    """The text of a prompt: itself, or the chat messages' contents joined by newlines.

    >>> prompt_text([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    'a\\nb'
    """
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(m.get("content", "")) for m in prompt)


@dataclass
class Example:
    """One question of a task. ``meta`` holds task-specific extras (supporting facts, context, ...).

    >>> Example(id="q1", question="Who?", answer="Me").type
    ''
    """

    id: str
    question: str
    answer: str
    type: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    """Other gold answers that count as correct (a task's scorer takes the best match)."""

    @property
    def answers(self) -> list[str]:
        """Every gold answer: ``answer`` first, then the ``aliases``.

        >>> Example(id="q", question="?", answer="NYC", aliases=["New York City"]).answers
        ['NYC', 'New York City']
        """
        return [self.answer, *self.aliases]


@dataclass
class Action:
    """A parsed tool call: ``name`` is lower-case (``search``, ``lookup``, ``finish``, ``think``),
    ``arg`` the text between the brackets. ``name == "invalid"`` keeps the raw text in ``arg``.

    >>> str(Action("search", "Scott Derrickson"))
    'Search[Scott Derrickson]'
    """

    name: str
    arg: str = ""

    def __str__(self) -> str:
        return f"{self.name.capitalize()}[{self.arg}]" if self.name != "invalid" else self.arg


@dataclass
class Usage:
    """Token counts of one LLM call (or a sum of calls)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
        )


@dataclass
class Completion:
    """One generated continuation. ``text`` excludes the stop string that ended it (``stop``).

    Token-level fields, filled by backends that have them (the local HF engine), None elsewhere:
    ``prompt_ids`` (the prompt as fed), ``completion_ids`` (the generated tokens, EOS included;
    tokens past a stop string are not cut), ``logprobs`` (one per completion token: its log
    probability under the distribution it was drawn from, i.e. softmax of logits / temperature,
    temperature 1 when greedy, before top-p truncation). RL trainers need all three.

    ``samples``: with ``GenParams.n > 1``, the n completions of the one prompt (each with empty
    ``samples``); this completion's own fields then repeat ``samples[0]``'s.

    ``tool_calls``: the reply's calls in the OpenAI shape when the backend returns them apart from
    the text (an API answering a ``ToolChat``); None where calls, if any, are in ``text``
    (``<tool_call>`` blocks of a local model).
    """

    text: str
    stop: str | None = None
    finish_reason: FinishReason = "stop"
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    error: str | None = None
    prompt_ids: list[int] | None = None
    completion_ids: list[int] | None = None
    logprobs: list[float] | None = None
    samples: list[Completion] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] | None = None


@dataclass
class GenParams:
    """Decoding parameters shared by every backend. ``temperature == 0`` means greedy. ``n``: samples
    per prompt (CoT self-consistency, GRPO groups): the prompt's ``Completion.samples`` holds them."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    n: int = 1


@dataclass
class Step:
    """One Thought/Action/Observation round. ``raw`` is the model's text as generated."""

    i: int
    thought: str
    action: Action
    observation: str
    raw: str = ""
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0


@dataclass
class Trajectory:
    """One episode, the unit written to ``trajectories.jsonl`` (one JSON object per line).

    ``agent``: the agent (``react``, ``oracle``, ...); ``method``: its prompt variant (``react``,
    ``act``, ``cot``; empty where an agent has none). ``status``: ``finished`` (a finish action),
    ``max_steps`` (forced finish after the step limit), ``error`` (the LLM backend failed; ``error``
    says why). ``children``: the sub-episodes of a composed agent (a pipeline's agents, the samples
    of self-consistency), each a whole trajectory.
    """

    id: str
    task: str
    question: str
    gold: str
    agent: str
    prompt_id: str
    model: str
    steps: list[Step] = field(default_factory=list)
    answer: str = ""
    status: Status = "finished"
    scores: dict[str, float] = field(default_factory=dict)
    type: str = ""
    split: str = ""
    usage: Usage = field(default_factory=Usage)
    wall_s: float = 0.0
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    method: str = ""
    children: list[Trajectory] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        """A record of ``trajectories.jsonl`` (this schema or version 1) as a ``Trajectory``."""
        d = dict(d)
        d["steps"] = [
            Step(**{**s, "action": Action(**s["action"]), "usage": Usage(**s.get("usage", {}))})
            for s in d.get("steps", [])
        ]
        d["usage"] = Usage(**d.get("usage", {}))
        d["children"] = [cls.from_dict(c) for c in d.get("children", [])]
        if d.get("schema_version", 1) < 2 and d.get("agent") in ("react", "act", "cot"):
            d["method"], d["agent"] = d["agent"], "react"
        d["schema_version"] = SCHEMA_VERSION
        return cls(**d)


# --- Protocols ------------------------------------------------------------------------------------


@runtime_checkable
class LLM(Protocol):
    """A language model. Always a batch: one completion per prompt, in order."""

    name: str

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Completion]: ...


@runtime_checkable
class StreamingLLM(LLM, Protocol):
    """An LLM that also takes prompts one at a time and hands completions back as they finish.

    The runner uses it (when a backend has it) to submit an episode's next query the moment its
    previous one is answered: continuous batching, no round waits for its slowest row.
    """

    def submit(self, key: Hashable, prompt: Prompt, params: GenParams) -> None: ...

    def poll(self) -> list[tuple[Hashable, Completion]]:
        """Work until at least one submitted prompt is complete; return those (``[]`` when idle)."""
        ...


class Environment(Protocol):
    """A tool environment for one episode at a time (make one per live episode)."""

    def reset(self, example: Example) -> str: ...

    def step(self, action: Action) -> tuple[str, bool]:
        """Return ``(observation, done)``."""
        ...


@dataclass
class Query:
    """What an episode asks of a model: one prompt, its decoding parameters, and the ``role`` whose
    model answers it (a run maps roles to models; one model serves every role by default)."""

    prompt: Prompt
    params: GenParams
    role: str = DEFAULT_ROLE


EpisodeGen = Generator[Query, Completion, Trajectory]
"""An episode as a generator: it yields the ``Query`` it needs the LLM to complete, is sent the
``Completion``, and returns the finished trajectory. An agent that needs no LLM (the oracle) never
yields. The runner drives many of these at once so each round is one batched LLM call."""


@dataclass(frozen=True)
class AgentTraits:
    """What a runner may ask of an agent besides its episodes (the agent declares it; nothing else
    is looked up). ``roles``: the roles its queries name (a run gives each a model);
    ``needs_model``: False for an agent that never asks a model (the oracle), whose trajectories
    then name ``model``; ``samples_episodes``: a run's ``temperature`` / ``samples`` apply to it;
    ``token_budgets``: it honours ``Example.meta["token_budget"]``; ``metrics``: scores of its own
    beside the task's (``Agent.scores``); ``params``: its decoding, part of a run's identity."""

    roles: tuple[str, ...] = (DEFAULT_ROLE,)
    needs_model: bool = True
    samples_episodes: bool = False
    token_budgets: bool = False
    metrics: tuple[str, ...] = ()
    params: GenParams | None = None
    model: str = "none"


class Agent(Protocol):
    """Runs one example in one environment as an episode generator. ``name`` is the agent,
    ``method`` its prompt variant ("" if none), ``prompt_id`` the versioned prompt it uses,
    ``traits`` what else a runner needs to know of it. An agent class subclasses ``Agent`` to
    inherit the defaults of the optional members (``traits``, ``scores``)."""

    name: str
    method: str
    prompt_id: str
    traits: AgentTraits = AgentTraits()

    def episode(self, example: Example, env: Environment) -> EpisodeGen: ...

    def scores(self, example: Example, traj: Trajectory, task: Task) -> dict[str, float]:
        """Optional hook: the agent's own scores of a finished ``traj`` (``traits.metrics``),
        beside the task's. Default: none."""
        return {}


EnvFactory = Callable[[], Environment]
"""Makes one fresh environment per episode."""


class Task(Protocol):
    """A benchmark that owns its world: which splits exist and which are for evaluation (the
    contamination guard asks ``eval_splits``), its examples, its scorer (``score`` returns the
    task's metrics; ``main_metric`` is the one a progress bar and a report lead with), the
    environment an agent acts in, and the prompt an agent uses by default."""

    name: str
    splits: tuple[str, ...]
    eval_splits: tuple[str, ...]
    metrics: tuple[str, ...]
    main_metric: str
    default_prompt: str

    def examples(
        self, split: str, limit: int | None = None, seed: int | None = None, data: str | Path | None = None
    ) -> list[Example]: ...

    def score(self, example: Example, answer: str) -> dict[str, float]: ...

    def environments(
        self, examples: Sequence[Example], *, data: str | Path | None = None,
        corpus: Sequence[str | Path] | None = None, index: Any = None,
    ) -> AbstractContextManager[EnvFactory]:
        """A context holding what the environments share (an open wiki index, ...) for a run over
        ``examples`` (read from the file ``data``, or from a split when None); it yields the factory
        of one environment per episode. ``corpus``: page corpora to search instead of the default;
        ``index``: an already open index to use."""
        ...

