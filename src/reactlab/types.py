"""The shared vocabulary: records that flow between components, and the Protocols they implement.

Typed records inside, plain dicts only at the edges: every record has ``to_dict``/``from_dict`` and
the JSONL files hold exactly those dicts. Nothing here imports torch or touches the disk.
"""

from __future__ import annotations

from collections.abc import Generator, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, Union, runtime_checkable

SCHEMA_VERSION = 1
"""Version of the trajectory record; bump when a field changes meaning or is removed."""

Message = dict[str, str]
"""A chat message at the edge: ``{"role": "user"|"assistant"|"system", "content": "..."}``."""

Prompt = Union[str, list[Message]]
"""A completion-style text (the paper's single growing prompt) or a list of chat messages."""


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
    """One generated continuation. ``text`` excludes the stop string that ended it (``stop``)."""

    text: str
    stop: str | None = None
    finish_reason: str = "stop"  # "stop" | "length" | "error"
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    error: str | None = None


@dataclass
class GenParams:
    """Decoding parameters shared by every backend. ``temperature == 0`` means greedy."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


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

    ``status``: ``finished`` (a finish action), ``max_steps`` (forced finish after the step limit),
    ``error`` (the LLM backend failed; ``error`` says why).
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
    status: str = "finished"
    scores: dict[str, float] = field(default_factory=dict)
    type: str = ""
    split: str = ""
    usage: Usage = field(default_factory=Usage)
    wall_s: float = 0.0
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        d = dict(d)
        d["steps"] = [
            Step(**{**s, "action": Action(**s["action"]), "usage": Usage(**s.get("usage", {}))})
            for s in d.get("steps", [])
        ]
        d["usage"] = Usage(**d.get("usage", {}))
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
    """What an episode asks of the LLM: one prompt and its decoding parameters."""

    prompt: Prompt
    params: GenParams


EpisodeGen = Generator[Query, Completion, Trajectory]
"""An episode as a generator: it yields the ``Query`` it needs the LLM to complete, is sent the
``Completion``, and returns the finished trajectory. An agent that needs no LLM (the oracle) never
yields. The runner drives many of these at once so each round is one batched LLM call."""


class Agent(Protocol):
    name: str
    prompt_id: str

    def episode(self, example: Example, env: Environment) -> EpisodeGen: ...


class Task(Protocol):
    name: str

    def examples(self, split: str, limit: int | None = None, seed: int = 0) -> list[Example]: ...

    def score(self, example: Example, answer: str) -> dict[str, float]: ...

