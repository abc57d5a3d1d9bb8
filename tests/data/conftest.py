"""Fixtures for the data tests: hand-made trajectories, run directories, the SmolLM2 tokenizer."""

import json

import pytest

from reactlab.types import Action, Step, Trajectory


def make_traj(question, answer="y", gold="y", n_steps=2, status="finished", tid=None, prompt_id="hotpotqa_react@1/react",
              actions=None):
    """A trajectory of ``n_steps`` (searches, then a finish with ``answer``), scored against ``gold``."""
    steps = [Step(i, f"Step {i}.", Action("search", f"T{i}"), f"T{i} is a page.") for i in range(1, n_steps)]
    for i, a in enumerate(actions or [], len(steps) + 1):
        steps.append(Step(i, f"Try {i}.", a, f"Observed {i}."))
    if status == "finished":
        steps.append(Step(len(steps) + 1, f"So {answer}.", Action("finish", answer), "Episode finished."))
    from reactlab.tasks.metrics import qa_scores

    answer = answer if status == "finished" else ""  # as ReActAgent records a step-limited episode
    return Trajectory(id=tid or question[:20], task="hotpotqa", question=question, gold=gold, agent="react",
                      prompt_id=prompt_id, model="scripted", steps=steps, answer=answer,
                      status=status, scores=qa_scores(answer, gold) if gold else {})


@pytest.fixture
def write_run(tmp_path):
    """``write_run(name, trajs)`` -> a run directory holding ``trajectories.jsonl``."""

    def write(name, trajs):
        d = tmp_path / "runs" / name
        d.mkdir(parents=True)
        with open(d / "trajectories.jsonl", "w", encoding="utf-8") as f:
            for t in trajs:
                f.write(json.dumps(t.to_dict(), ensure_ascii=False) + "\n")
        return d

    return write


@pytest.fixture(scope="session")
def hotpot_questions():
    """First 6 questions of each split: {split: [Example]} (eval, paper500, and train-pool questions
    in neither: the pool holds a few dev questions that paper500 also drew)."""
    from reactlab.data.select import excluded_questions, normalize_question
    from reactlab.tasks.hotpotqa import HotpotQA

    task = HotpotQA()
    out = {s: task.examples(s, limit=6) for s in ("eval", "paper500")}
    ex = excluded_questions()
    out["train"] = [e for e in task.examples("train") if normalize_question(e.question) not in ex][:6]
    return out


@pytest.fixture(scope="session")
def smol_tok():
    """SmolLM2's tokenizer (ChatML template, no generation markers)."""
    from reactlab.data.masking import load_tokenizer

    try:
        return load_tokenizer("smollm2")
    except ModuleNotFoundError as e:  # the weights package is not installed
        pytest.skip(str(e))


@pytest.fixture
def mk():
    """``make_traj`` as a fixture (test modules cannot import conftest under importlib mode)."""
    return make_traj
