"""Reflexion (Shinn et al. 2023) over the ReAct agent: trials, each after a failed one guided by a
self-reflection the model wrote about that failure.

Trial 1 is a plain ReAct episode. When a trial fails, the model is shown that trial (question,
thought/action/observation steps, its answer) and writes a short reflection: what went wrong and
a plan; the next trial's prompt carries the kept reflections (at most ``max_reflections``, the
latest) before the question. Trials stop at the first success or after ``trials``.

The evaluator, as in the Reflexion paper's HotpotQA runs, is the task's gold check: a trial
succeeds when the task's main metric of its answer is 1 (exact match, accuracy). That uses the
gold answer, so Reflexion's numbers are an upper bound on what self-reflection buys, not a
deployable score; ``meta["evaluator"]`` says so in every trajectory. Success can only grow from
one trial to the next (a solved question is not tried again): ``meta["trial_success"]`` holds the
outcome after each trial (``per_trial`` aggregates them).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from reactlab.agents.parsing import completion_step
from reactlab.agents.react import ReActAgent, failed
from reactlab.types import (
    Agent,
    AgentTraits,
    Environment,
    EpisodeGen,
    Example,
    GenParams,
    Query,
    Task,
    Trajectory,
    Usage,
)

EVALUATOR = "gold: the task's main metric of the answer equals 1 (uses the gold answer)"
REFLECT_INSTRUCTION = (
    "You are an advanced reasoning agent that can improve based on self reflection. You were given a "
    "question and access to a Wikipedia API, and you tried to answer it, but you failed: either you "
    "guessed the wrong answer with Finish[<answer>], or you ran out of steps. In a few sentences, "
    "diagnose a possible reason for failure and devise a new, concise, high level plan that aims to "
    "mitigate the same failure. Use complete sentences.\n\n"
)
REFLECTIONS_HEADER = ("You have attempted to answer the following question before and failed. The following "
                      "reflection(s) give a plan to avoid failing to answer the question in the same way you did "
                      "previously. Use them to improve your strategy of correctly answering the given question.\n")


class ReflexionOptions(BaseModel):
    """Reflexion's knob (``RunConfig.options.reflexion``): trials per question."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    trials: int = Field(default=3, ge=1)


class ReflexionAgent(Agent):
    """``reflexion``: up to ``trials`` ReAct trials with self-reflections between them (module doc)."""

    name = "react"
    method = "reflexion"

    def __init__(self, task: Task | None = None, trials: int = 3, max_reflections: int = 3, style: str = "completion",
                 prompt: str | None = None, max_steps: int = 7, model: str = "") -> None:
        if task is None:
            raise ValueError("reflexion needs the task: its scorer is the evaluator of each trial")
        if trials < 1:
            raise ValueError(f"reflexion_trials must be at least 1, not {trials}")
        self.task, self.trials, self.max_reflections, self.model = task, trials, max_reflections, model
        self.react = ReActAgent(task, method="react", style=style, prompt=prompt, max_steps=max_steps, model=model)
        self.prompt_id = f"{self.react.prompt_id}+reflexion@1"
        self.params = self.react.params
        self.traits = AgentTraits(params=self.params, model=model)
        self.reflect_params = GenParams(max_new_tokens=128, stop=["\n\n", "\nQuestion:"])

    def succeeded(self, example: Example, answer: str) -> bool:
        return self.task.score(example, answer).get(self.task.main_metric, 0.0) >= 1.0

    def episode(self, example: Example, env: Environment) -> EpisodeGen:
        t0 = time.perf_counter()
        traj = Trajectory(id=example.id, task="", question=example.question, gold=example.answer, agent=self.name,
                          method=self.method, prompt_id=self.prompt_id, model=self.model, type=example.type)
        reflections: list[str] = []
        outcome: list[bool] = []
        for _ in range(self.trials):
            kept = reflections[-self.max_reflections:]
            context = (REFLECTIONS_HEADER + "".join(f"- {r}\n" for r in kept) + "\n") if kept else ""
            trial = yield from self.react.episode(example, env, context=context)
            trial.meta = {"reflections": list(kept)}
            traj.children.append(trial)
            if trial.status == "error":
                traj.status, traj.error = "error", trial.error
                break
            outcome.append(self.succeeded(example, trial.answer))
            if outcome[-1] or len(outcome) == self.trials:
                break
            c = yield Query(self.reflection_prompt(example, trial), self.reflect_params)
            if failed(c, traj):
                break
            reflections.append(" ".join(c.text.split()) or "(empty reflection)")
            trial.meta["reflection"] = reflections[-1]
            trial.usage = trial.usage + c.usage
        last = traj.children[-1] if traj.children else None
        if last is not None and traj.status != "error":
            traj.answer, traj.status, traj.steps = last.answer, last.status, list(last.steps)
        traj.usage = sum((ch.usage for ch in traj.children), Usage())
        traj.meta = {"trial_success": [any(outcome[: i + 1]) for i in range(len(outcome))], "trials": len(outcome),
                     "evaluator": EVALUATOR, "reflections": reflections}
        traj.wall_s = time.perf_counter() - t0
        return traj

    def reflection_prompt(self, example: Example, trial: Trajectory) -> str:
        """What the model reflects on: the instruction, then the failed trial in the paper's layout."""
        steps = "".join(completion_step(s.i, s.thought, s.action, s.observation) for s in trial.steps)
        return (f"{REFLECT_INSTRUCTION}Previous trial:\n{self.react.label}: {example.question}\n{steps}"
                f"(the answer {trial.answer!r} was wrong)\n\nReflection:")


def per_trial(trajectories: Sequence[Mapping[str, Any]], trials: int) -> list[float]:
    """The share of questions solved by trial 1, 2, ..., ``trials`` (a question that stopped early
    counts as it ended). Never decreases.

    >>> per_trial([{"meta": {"trial_success": [False, True]}}, {"meta": {"trial_success": [True]}}], 3)
    [0.5, 1.0, 1.0]
    """
    outcomes = [list(tr.get("meta", {}).get("trial_success", [])) or [False] for tr in trajectories]
    return [sum(bool(o[min(t, len(o) - 1)]) for o in outcomes) / len(outcomes) if outcomes else 0.0
            for t in range(trials)]
