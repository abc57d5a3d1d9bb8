"""Reflexion: trials until the gold check passes, reflections carried into the next trial's prompt."""

from __future__ import annotations

import json

from reactlab.agents.reflexion import REFLECTIONS_HEADER, ReflexionAgent, per_trial
from reactlab.config import RunConfig
from reactlab.envs.wikienv import WikiEnv
from reactlab.llm.scripted import ScriptedLLM
from reactlab.runner import run_from_config
from reactlab.tasks.hotpotqa import HotpotQA
from reactlab.types import Example

EX = Example("q1", "Which magazine was started first, Arthur's Magazine or First for Women?", "Arthur's Magazine")


def test_a_failed_trial_is_reflected_on_and_the_next_trial_sees_it(vendored_index, drive):
    answers = iter(["First for Women", "Arthur's Magazine"])

    def reply(q):
        if q.prompt.endswith("Reflection:"):
            return " I answered without searching. I should search both magazines first."
        return f" I know.\nAction 1: Finish[{next(answers)}]"

    t, qs = drive(ReflexionAgent(HotpotQA(), trials=3), EX, WikiEnv(vendored_index), reply)
    assert t.meta["trial_success"] == [False, True] and t.answer == "Arthur's Magazine" and len(t.children) == 2
    assert "evaluator" in t.meta and t.meta["reflections"] == [
        "I answered without searching. I should search both magazines first."]
    assert "Previous trial:\nQuestion: " in qs[1].prompt and "Finish[First for Women]" in qs[1].prompt
    assert REFLECTIONS_HEADER + "- I answered without searching." in qs[2].prompt  # trial 2's prompt
    assert REFLECTIONS_HEADER not in qs[0].prompt


def test_a_solved_question_is_not_tried_again_and_trials_are_bounded(vendored_index, drive):
    t, qs = drive(ReflexionAgent(HotpotQA(), trials=3), EX, WikiEnv(vendored_index),
                  lambda q: " Sure.\nAction 1: Finish[Arthur's Magazine]")
    assert t.meta["trial_success"] == [True] and len(qs) == 1
    t, qs = drive(ReflexionAgent(HotpotQA(), trials=2), EX, WikiEnv(vendored_index),
                  lambda q: " reflect" if q.prompt.endswith("Reflection:") else " No.\nAction 1: Finish[nope]")
    assert t.meta["trial_success"] == [False, False] and len(qs) == 3  # trial, reflection, trial


def test_per_trial_success_never_decreases_in_a_run(vendored_index, tmp_path):
    def reply(prompt):  # right on the second trial for every question
        if prompt.endswith("Reflection:"):
            return " Try harder."
        return " Done.\nAction 1: Finish[" + ("GOLD" if REFLECTIONS_HEADER in prompt else "wrong") + "]"

    golds = {e.question: e.answer for e in HotpotQA().examples("eval", limit=4)}
    llm = ScriptedLLM(lambda p: reply(p).replace("GOLD", next(a for q, a in golds.items() if q in p)))
    s = run_from_config(RunConfig(out=str(tmp_path / "r"), method="reflexion", limit=4), index=vendored_index,
                        llms={"default": llm}, progress=False)
    trajs = [json.loads(x) for x in (tmp_path / "r" / "trajectories.jsonl").read_text().splitlines()]
    assert per_trial(trajs, 3) == [0.0, 1.0, 1.0] and s.metrics["em"] == 1.0
