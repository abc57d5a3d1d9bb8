"""The runner: batching across live episodes, JSONL append + resume, summaries, spec checks."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from reactlab.io import DataError
from reactlab.runner import RunSpec, run, summarize
from reactlab.tasks.metrics import qa_scores
from reactlab.types import Action, Completion, GenParams, Query, Step, Trajectory, Usage


class EchoLLM:
    """Answers each prompt with its last word; records batch sizes."""

    name = "echo"

    def __init__(self, delay=0.0):
        self.batches = []
        self.delay = delay

    def generate(self, prompts, params):
        self.batches.append(len(prompts))
        time.sleep(self.delay)
        return [Completion(text=p.split()[-1], usage=Usage(3, 1)) for p in prompts]


class CountdownAgent:
    """Asks the LLM `k` times (k = int(example.type)), then finishes with the last completion."""

    name = "countdown"
    prompt_id = "countdown@1"

    def episode(self, example, env):
        steps = []
        text = ""
        for i in range(int(example.type)):
            c = yield Query(f"{example.question} {example.answer}", GenParams(stop=["\n"]))
            text = c.text
            steps.append(Step(i + 1, "t", Action("think", text), "ok"))
        return Trajectory(
            id=example.id, task="toy", question=example.question, gold=example.answer, agent=self.name,
            prompt_id=self.prompt_id, model="echo", steps=steps, answer=text, type=example.type,
        )


class ToyTask:
    name = "toy"

    def score(self, example, answer):
        return qa_scores(answer, example.answer)


def examples(n):
    from reactlab.types import Example

    return [Example(id=f"q{i}", question=f"question {i}", answer=f"ans{i}", type=str(1 + i % 3)) for i in range(n)]


SPEC = RunSpec(task="toy", split="s", agent="countdown", model="echo", prompt_id="countdown@1")


def test_batches_all_live_episodes(tmp_path):
    llm = EchoLLM()
    s = run(examples(10), CountdownAgent(), ToyTask(), lambda: None, tmp_path, SPEC, llm=llm, batch_size=4, progress=False)
    # 10 episodes needing 1-3 calls each; never more than 4 live; rounds refill as episodes finish
    assert max(llm.batches) == 4 and sum(llm.batches) == sum(1 + i % 3 for i in range(10))
    assert s["n"] == 10 and s["em"] == 1.0 and s["avg_steps"] == pytest.approx(2.0 - 0.1)
    lines = (tmp_path / "trajectories.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["id"] for x in lines) == sorted(f"q{i}" for i in range(10))
    assert json.loads((tmp_path / "summary.json").read_text())["n"] == 10
    t = Trajectory.from_dict(json.loads(lines[0]))
    assert t.scores["em"] == 1.0 and t.split == "s" and isinstance(t.steps[0].action, Action)


def test_resume_skips_done_and_drops_torn_line(tmp_path):
    run(examples(4), CountdownAgent(), ToyTask(), lambda: None, tmp_path, SPEC, llm=EchoLLM(), progress=False)
    with open(tmp_path / "trajectories.jsonl", "a") as f:
        f.write('{"id": "q9", "trunc')  # a write killed half-way
    llm = EchoLLM()
    s = run(examples(6), CountdownAgent(), ToyTask(), lambda: None, tmp_path, SPEC, llm=llm, progress=False)
    ids = [json.loads(x)["id"] for x in (tmp_path / "trajectories.jsonl").read_text().splitlines()]
    assert sorted(ids) == [f"q{i}" for i in range(6)]  # none lost, none duplicated, torn line gone
    assert sum(llm.batches) == (1 + 4 % 3) + (1 + 5 % 3)  # only the two new episodes ran
    assert s["n"] == 6


def test_refuses_to_mix_runs(tmp_path):
    run(examples(1), CountdownAgent(), ToyTask(), lambda: None, tmp_path, SPEC, llm=EchoLLM(), progress=False)
    other = RunSpec(task="toy", split="s", agent="countdown", model="other-model", prompt_id="countdown@1")
    with pytest.raises(DataError, match="model: 'echo' there vs 'other-model' now"):
        run(examples(1), CountdownAgent(), ToyTask(), lambda: None, tmp_path, other, llm=EchoLLM(), progress=False)


def test_no_llm_for_an_llm_agent_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="asks for an LLM"):
        run(examples(1), CountdownAgent(), ToyTask(), lambda: None, tmp_path, SPEC, llm=None, progress=False)


def test_summary_fields():
    trajs = [
        {"scores": {"em": 1.0, "f1": 1.0}, "type": "bridge", "status": "finished", "wall_s": 1.0,
         "usage": {"prompt_tokens": 10, "completion_tokens": 5}, "steps": [{"action": {"name": "search"}}, {"action": {"name": "invalid"}}]},
        {"scores": {"em": 0.0, "f1": 0.5}, "type": "comparison", "status": "max_steps", "wall_s": 2.0,
         "usage": {"prompt_tokens": 1, "completion_tokens": 0}, "steps": [{"action": {"name": "finish"}}]},
    ]
    s = summarize(trajs, wall_s=3.0)
    assert s["n"] == 2 and s["em"] == 0.5 and s["f1"] == 0.75
    assert s["by_type"] == {"bridge": {"em": 1.0, "f1": 1.0, "n": 1}, "comparison": {"em": 0.0, "f1": 0.5, "n": 1}}
    assert s["avg_steps"] == 1.5 and s["invalid_action_rate"] == pytest.approx(1 / 3)
    assert s["status"] == {"finished": 1, "max_steps": 1} and s["tokens_per_question"] == 8.0


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {testdir!r})
    from test_runner import CountdownAgent, EchoLLM, SPEC, ToyTask, examples
    from reactlab.runner import run
    run(examples(40), CountdownAgent(), ToyTask(), lambda: None, sys.argv[1], SPEC,
        llm=EchoLLM(delay=0.05), batch_size=2, progress=False)
    """
)


def test_resume_after_a_killed_process(tmp_path):
    """SIGKILL a real run mid-way, rerun: every id exactly once."""
    script = tmp_path / "go.py"
    script.write_text(KILL_SCRIPT.format(testdir=os.path.dirname(__file__)))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(script), str(out)])
    traj = out / "trajectories.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not traj.exists() or len(traj.read_text().splitlines()) < 5):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(traj.read_text().splitlines())
    assert 5 <= n_before < 40
    subprocess.run([sys.executable, str(script), str(out)], check=True, timeout=120)
    ids = [json.loads(x)["id"] for x in traj.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 40
