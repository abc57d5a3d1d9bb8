"""CoT self-consistency (Wang et al. 2023) and the ReAct paper's two back-offs between it and ReAct.

- ``cot_sc``: ``k`` chains of thought sampled at temperature 0.7 from the task's CoT prompt, as one
  query with ``GenParams.n = k`` (the engine encodes the prompt once and shares its KV across the
  samples), then a majority vote over the normalised answers (SQuAD normalisation: ``"B."`` and
  ``"b"`` vote together; the first answer seen wins a tie; empty answers do not vote). The paper
  used k = 21.
- ``react_then_cot_sc``: ReAct; when it returns no answer within its steps, CoT-SC.
- ``cot_sc_then_react``: CoT-SC; when the majority answer holds fewer than k/2 votes, ReAct.

A composed episode's trajectory keeps its parts as ``children`` (the k chains; the two arms of a
back-off) and its ``steps`` are the steps its parts took, in order. Each example's samples are
seeded from its id, so a rerun (or a resume) draws the same samples.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

from pydantic import BaseModel, ConfigDict, Field

from reactlab.agents.react import ReActAgent, example_seed, failed
from reactlab.tasks.metrics import normalize_answer
from reactlab.types import (
    Action,
    Agent,
    AgentTraits,
    Environment,
    EpisodeGen,
    Example,
    Step,
    Task,
    Trajectory,
    Usage,
)

SC_K = 21
SC_TEMPERATURE = 0.7


def majority(answers: list[str]) -> tuple[str, int]:
    """The most voted answer (its first spelling) and its votes, after normalisation; ``("", 0)``
    when no answer is non-empty.

    >>> majority(["Paris", "paris.", "Rome", "", "Rome", "PARIS"])
    ('Paris', 3)
    >>> majority(["B", "C"]), majority(["", " "]), majority(["A", "(a)", "B"])
    (('B', 1), ('', 0), ('A', 2))
    """
    norm = [_vote_key(a) for a in answers]
    counts = Counter(n for n in norm if n)
    if not counts:
        return "", 0
    best = max(counts.values())
    winner = next(n for n in norm if n and counts[n] == best)
    return answers[norm.index(winner)].strip(), best


def _vote_key(answer: str) -> str:
    """SQuAD normalisation, except that an answer that is only an article stays itself (MMLU's
    option ``A``).

    >>> _vote_key("The Exies."), _vote_key("A"), _vote_key("(a)")
    ('exies', 'a', 'a')
    """
    return normalize_answer(answer) or " ".join("".join(c for c in answer.lower() if c.isalnum() or c.isspace()).split())


class CoTSCOptions(BaseModel):
    """CoT-SC's knobs, also the back-offs' (``RunConfig.options.cot_sc``): ``k`` samples at ``temperature``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    k: int = Field(default=SC_K, ge=1)
    temperature: float = Field(default=SC_TEMPERATURE, ge=0)


class CoTSCAgent(Agent):
    """``cot_sc``: ``k`` sampled chains of thought, majority vote (module doc)."""

    name = "react"
    method = "cot_sc"

    def __init__(self, task: Task | None = None, sc_k: int = SC_K, sc_temperature: float = SC_TEMPERATURE,
                 style: str = "completion", prompt: str | None = None, model: str = "",
                 max_new_tokens: int = 128) -> None:
        if sc_k < 1:
            raise ValueError(f"sc_k must be at least 1, not {sc_k}")
        self.k, self.model = sc_k, model
        self.cot = ReActAgent(task, method="cot", style=style, prompt=prompt, model=model, max_new_tokens=max_new_tokens)
        self.prompt_id = self.cot.prompt_id
        greedy = self.cot.cot_params()
        self.params = replace(greedy, temperature=sc_temperature, n=sc_k)
        self.traits = AgentTraits(params=self.params, model=model)

    def episode(self, example: Example, env: Environment) -> EpisodeGen:
        t0 = time.perf_counter()
        env.reset(example)
        traj = yield from self.sample(example, env)
        traj.wall_s = time.perf_counter() - t0
        return traj

    def sample(self, example: Example, env: Environment) -> EpisodeGen:
        """The k chains and their vote, as a trajectory (``meta``: ``votes`` of the winner, ``k``)."""
        traj = _trajectory(self, example)
        q = self.cot.cot_query(example.question, replace(self.params, seed=example_seed(example.id)))
        c = yield q
        if failed(c, traj):
            return traj
        for j, s in enumerate(c.samples or [c]):
            thought, action = self.cot.cot_answer(s.text)
            child = _trajectory(self.cot, example)
            child.steps = [Step(i=1, thought=thought, action=action, observation="", raw=s.text, usage=s.usage)]
            child.answer, child.usage, child.meta = action.arg, s.usage, {"sample": j}
            traj.children.append(child)
        answer, votes = majority([ch.answer for ch in traj.children])
        obs, _ = env.step(Action("finish", answer))
        thought = f"{votes} of {self.k} samples answer {answer}." if votes else f"None of {self.k} samples answered."
        traj.usage = Usage(c.usage.prompt_tokens, sum(ch.usage.completion_tokens for ch in traj.children),
                           c.usage.cached_tokens)  # the prompt is encoded once for all samples
        traj.steps = [Step(i=1, thought=thought, action=Action("finish", answer), observation=obs, usage=traj.usage)]
        traj.answer, traj.status, traj.meta = answer, "finished", {"votes": votes, "k": self.k}
        return traj


class BackoffAgent(Agent):
    """``react_then_cot_sc`` or ``cot_sc_then_react`` (module doc)."""

    name = "react"

    def __init__(self, task: Task | None = None, method: str = "react_then_cot_sc", max_steps: int = 7,
                 style: str = "completion", prompt: str | None = None, model: str = "", sc_k: int = SC_K,
                 sc_temperature: float = SC_TEMPERATURE) -> None:
        if method not in ("react_then_cot_sc", "cot_sc_then_react"):
            raise ValueError(f"unknown back-off {method!r}")
        self.method, self.model = method, model
        self.react = ReActAgent(task, method="react", style=style, prompt=prompt, max_steps=max_steps, model=model)
        self.sc = CoTSCAgent(task, sc_k=sc_k, sc_temperature=sc_temperature, style=style, prompt=prompt, model=model)
        self.prompt_id = f"{self.react.prompt_id}+{self.sc.prompt_id}"
        self.params = self.sc.params
        self.traits = AgentTraits(params=self.params, model=model)

    def episode(self, example: Example, env: Environment) -> EpisodeGen:
        t0 = time.perf_counter()
        if self.method == "react_then_cot_sc":
            first = yield from self.react.episode(example, env)
            back_off = first.status == "max_steps" or (first.status == "finished" and not first.answer.strip())
            second = (yield from self.sc.sample(example, env)) if back_off and first.status != "error" else None
        else:
            env.reset(example)
            first = yield from self.sc.sample(example, env)
            back_off = first.status == "finished" and first.meta.get("votes", 0) < self.sc.k / 2
            second = (yield from self.react.episode(example, env)) if back_off else None
        last = second or first
        traj = _trajectory(self, example)
        traj.children = [first] + ([second] if second else [])
        traj.steps = [replace(s, i=i) for i, s in enumerate((s for ch in traj.children for s in ch.steps), 1)]
        traj.answer, traj.status, traj.error = last.answer, last.status, last.error
        traj.usage = sum((ch.usage for ch in traj.children), Usage())
        traj.meta = {"backed_off": second is not None}
        traj.wall_s = time.perf_counter() - t0
        return traj


def _trajectory(agent: CoTSCAgent | BackoffAgent | ReActAgent, example: Example) -> Trajectory:
    return Trajectory(id=example.id, task="", question=example.question, gold=example.answer, agent="react",
                      method=agent.method, prompt_id=agent.prompt_id, model=agent.model, type=example.type)
