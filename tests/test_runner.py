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
from reactlab.report import Summary
from reactlab.runner import RunSpec, run
from reactlab.tasks.metrics import qa_scores
from reactlab.types import Action, Agent, Completion, GenParams, Query, Step, Trajectory, Usage


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


class CountdownAgent(Agent):
    """Asks the LLM `k` times (k = int(example.type)), then finishes with the last completion."""

    name = "countdown"
    prompt_id = "countdown@1"

    def episode(self, example, env):
        steps = []
        text = ""
        for i in range(int(example.type)):
            c = yield Query(f"{example.question} {example.answer}", GenParams(stop=["\n"]))
            if c.finish_reason == "error":
                return Trajectory(id=example.id, task="toy", question=example.question, gold=example.answer,
                                  agent=self.name, prompt_id=self.prompt_id, model="echo", status="error",
                                  error=c.error, type=example.type)
            text = c.text
            steps.append(Step(i + 1, "t", Action("think", text), "ok"))
        return Trajectory(
            id=example.id, task="toy", question=example.question, gold=example.answer, agent=self.name,
            prompt_id=self.prompt_id, model="echo", steps=steps, answer=text, type=example.type,
        )


class ToyTask:
    name = "toy"
    metrics = ("em", "f1")
    main_metric = "em"

    def score(self, example, answer):
        return qa_scores(answer, example.answer)


def examples(n):
    from reactlab.types import Example

    return [Example(id=f"q{i}", question=f"question {i}", answer=f"ans{i}", type=str(1 + i % 3)) for i in range(n)]


SPEC = RunSpec(task="toy", split="s", agent="countdown", model="echo", prompt_id="countdown@1")


def test_batches_all_live_episodes(tmp_path):
    llm = EchoLLM()
    s = run(examples(10), CountdownAgent(), ToyTask(), lambda: None, tmp_path, SPEC, llms=llm, batch_size=4, progress=False)
    # 10 episodes needing 1-3 calls each; never more than 4 live; rounds refill as episodes finish
    assert max(llm.batches) == 4 and sum(llm.batches) == sum(1 + i % 3 for i in range(10))
    assert s.n == 10 and s.metrics["em"] == 1.0 and s.avg_steps == pytest.approx(2.0 - 0.1)
    lines = (tmp_path / "trajectories.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["id"] for x in lines) == sorted(f"q{i}" for i in range(10))
    assert json.loads((tmp_path / "summary.json").read_text())["n"] == 10
    t = Trajectory.from_dict(json.loads(lines[0]))
    assert t.scores["em"] == 1.0 and t.split == "s" and isinstance(t.steps[0].action, Action)


class StreamEcho(EchoLLM):
    """A ``StreamingLLM``: queued prompts are answered ``per_poll`` at a time, oldest first."""

    def __init__(self, per_poll=2):
        super().__init__()
        self.queue, self.per_poll, self.most_in_flight = [], per_poll, 0

    def submit(self, key, prompt, params):
        self.queue.append((key, prompt))
        self.most_in_flight = max(self.most_in_flight, len(self.queue))

    def poll(self):
        done, self.queue = self.queue[: self.per_poll], self.queue[self.per_poll :]
        return [(k, Completion(text=p.split()[-1], usage=Usage(3, 1))) for k, p in done]


def test_a_streaming_llm_gets_each_query_as_soon_as_it_exists(tmp_path):
    llm = StreamEcho(per_poll=1)
    s = run(examples(10), CountdownAgent(), ToyTask(), lambda: None, tmp_path, SPEC, llms=llm, batch_size=4, progress=False)
    assert llm.batches == []  # never a round-based generate
    assert llm.most_in_flight == 4  # at most batch_size episodes live
    assert s.n == 10 and s.metrics["em"] == 1.0 and s.avg_steps == pytest.approx(1.9)
    ids = [json.loads(x)["id"] for x in (tmp_path / "trajectories.jsonl").read_text().splitlines()]
    assert sorted(ids) == sorted(f"q{i}" for i in range(10))
    # resume: the finished ids are skipped, the rest run
    llm2 = StreamEcho()
    run(examples(12), CountdownAgent(), ToyTask(), lambda: None, tmp_path, SPEC, llms=llm2, progress=False)
    assert len((tmp_path / "trajectories.jsonl").read_text().splitlines()) == 12


def test_a_streaming_llm_that_goes_idle_is_an_error(tmp_path):
    class Idle(StreamEcho):
        def poll(self):
            return []

    with pytest.raises(RuntimeError, match="went idle with 2 queries unanswered"):
        run(examples(2), CountdownAgent(), ToyTask(), lambda: None, tmp_path, SPEC, llms=Idle(), progress=False)


def test_continuous_and_round_batching_give_the_same_react_episodes(tiny_model_dir, vendored_index, tmp_path):
    """The real thing on a tiny model: the HF backend streamed by the runner vs the same backend
    driven in rounds through ``generate`` only; greedy, so every step must be identical."""
    from reactlab.agents.react import ReActAgent
    from reactlab.envs.wikienv import WikiEnv
    from reactlab.llm.hf import HFLLM
    from reactlab.tasks.hotpotqa import HotpotQA

    class RoundsOnly:
        def __init__(self, llm):
            self.name, self.llm = llm.name, llm

        def generate(self, prompts, params):
            return self.llm.generate(prompts, params)

    llm = HFLLM(tiny_model_dir, batch_size=3)
    agent = ReActAgent(max_steps=3, max_new_tokens=24, model=llm.name)
    exs = HotpotQA().examples("eval", limit=5)
    spec = RunSpec("hotpotqa", "eval", agent.name, llm.name, agent.prompt_id)
    trajs = {}
    for name, backend in (("stream", llm), ("rounds", RoundsOnly(llm))):
        llm.reset_cache()
        run(exs, agent, HotpotQA(), lambda: WikiEnv(vendored_index), tmp_path / name, spec, llms=backend,
            batch_size=3, progress=False)
        lines = (tmp_path / name / "trajectories.jsonl").read_text().splitlines()
        trajs[name] = {d["id"]: [(st["raw"], st["observation"]) for st in d["steps"]] for d in map(json.loads, lines)}
    assert trajs["stream"] == trajs["rounds"] and len(trajs["stream"]) == 5
    assert sum(len(v) for v in trajs["stream"].values()) > 5  # episodes took several steps


def test_resume_skips_done_and_drops_torn_line(tmp_path):
    run(examples(4), CountdownAgent(), ToyTask(), lambda: None, tmp_path, SPEC, llms=EchoLLM(), progress=False)
    with open(tmp_path / "trajectories.jsonl", "a") as f:
        f.write('{"id": "q9", "trunc')  # a write killed half-way
    llm = EchoLLM()
    s = run(examples(6), CountdownAgent(), ToyTask(), lambda: None, tmp_path, SPEC, llms=llm, progress=False)
    ids = [json.loads(x)["id"] for x in (tmp_path / "trajectories.jsonl").read_text().splitlines()]
    assert sorted(ids) == [f"q{i}" for i in range(6)]  # none lost, none duplicated, torn line gone
    assert sum(llm.batches) == (1 + 4 % 3) + (1 + 5 % 3)  # only the two new episodes ran
    assert s.n == 6


def test_refuses_to_mix_runs(tmp_path):
    run(examples(1), CountdownAgent(), ToyTask(), lambda: None, tmp_path, SPEC, llms=EchoLLM(), progress=False)
    other = RunSpec(task="toy", split="s", agent="countdown", model="other-model", prompt_id="countdown@1")
    with pytest.raises(DataError, match="model: 'echo' there vs 'other-model' now"):
        run(examples(1), CountdownAgent(), ToyTask(), lambda: None, tmp_path, other, llms=EchoLLM(), progress=False)


def test_no_llm_for_an_llm_agent_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="asks for an LLM"):
        run(examples(1), CountdownAgent(), ToyTask(), lambda: None, tmp_path, SPEC, llms=None, progress=False)


def test_summary_fields():
    trajs = [
        {"scores": {"em": 1.0, "f1": 1.0}, "type": "bridge", "status": "finished", "wall_s": 1.0,
         "usage": {"prompt_tokens": 10, "completion_tokens": 5}, "steps": [{"action": {"name": "search"}}, {"action": {"name": "invalid"}}]},
        {"scores": {"em": 0.0, "f1": 0.5}, "type": "comparison", "status": "max_steps", "wall_s": 2.0,
         "usage": {"prompt_tokens": 1, "completion_tokens": 0}, "steps": [{"action": {"name": "finish"}}]},
    ]
    s = Summary.of(trajs, wall_s=3.0)
    assert s.n == 2 and s.metrics == {"em": 0.5, "f1": 0.75} and s.main == 0.5
    assert s.by_type == {"bridge": {"em": 1.0, "f1": 1.0, "n": 1}, "comparison": {"em": 0.0, "f1": 0.5, "n": 1}}
    assert s.avg_steps == 1.5 and s.invalid_action_rate == pytest.approx(1 / 3)
    assert s.status == {"finished": 1, "max_steps": 1} and s.tokens_per_question == 8.0
    # summary.json keeps its flat layout and reads back as the same record
    d = s.to_dict()
    assert (d["n"], d["em"], d["f1"], d["stderr"]["em"]) == (2, 0.5, 0.75, s.stderr["em"])
    assert Summary.from_dict(d) == s


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {testdir!r})
    from test_runner import CountdownAgent, EchoLLM, SPEC, ToyTask, examples
    from reactlab.runner import run
    run(examples(40), CountdownAgent(), ToyTask(), lambda: None, sys.argv[1], SPEC,
        llms=EchoLLM(delay=0.05), batch_size=2, progress=False)
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


class FlakyLLM(EchoLLM):
    """Fails every call (as a wrong API key would) until ``fixed``."""

    fixed = False

    def generate(self, prompts, params):
        if not self.fixed:
            return [Completion(text="", finish_reason="error", error="HTTP 401: bad key") for _ in prompts]
        return super().generate(prompts, params)


def test_failed_episodes_are_run_again_on_resume(tmp_path):
    llm = FlakyLLM()
    s = run(examples(5), CountdownAgent(), ToyTask(), lambda: None, tmp_path, SPEC, llms=llm, progress=False)
    assert s.status == {"error": 5} and s.all_failed and s.first_error == "HTTP 401: bad key"
    llm.fixed = True
    s = run(examples(5), CountdownAgent(), ToyTask(), lambda: None, tmp_path, SPEC, llms=llm, progress=False)
    assert s.status == {"finished": 5} and not s.all_failed and s.metrics["em"] == 1.0
    ids = [json.loads(x)["id"] for x in (tmp_path / "trajectories.jsonl").read_text().splitlines()]
    assert sorted(ids) == [f"q{i}" for i in range(5)]  # the failed records were replaced, not duplicated


def test_what_changes_an_episode_is_part_of_the_run_identity(tmp_path):
    """A resume that would mix adapters (by path or by content) or step limits is refused before
    any model loads, naming what differs."""
    from reactlab.config import ModelRef, RunConfig
    from reactlab.runner import run_from_config
    from reactlab.tasks import TASKS

    TASKS["toy-runner"] = lambda: type("T", (ToyTask,), {
        "splits": ("s",), "eval_splits": (), "default_prompt": "zeroshot",
        "examples": lambda self, split, limit=None, seed=None, data=None: examples(2),
        "environments": lambda self, exs, **kw: __import__("contextlib").nullcontext(lambda: NoEnv()),
    })()
    try:
        for name, weights in (("a", b"one"), ("b", b"two")):
            (tmp_path / name).mkdir()
            (tmp_path / name / "adapter_model.safetensors").write_bytes(weights)
        out = tmp_path / "run"

        def go(adapter="a", max_steps=3):
            cfg = RunConfig(out=str(out), task="toy-runner", split="s", max_steps=max_steps,
                            model=ModelRef(name="smollm2", adapter=str(tmp_path / adapter)))
            return run_from_config(cfg, llms={"default": FinishLLM()}, progress=False)

        assert go().n == 2
        with pytest.raises(DataError, match=r"model: 'smollm2\+.*/a' there vs 'smollm2\+.*/b' now"):
            go(adapter="b")
        with pytest.raises(DataError, match=r"settings.max_steps: 3 there vs 5 now"):
            go(max_steps=5)
        (tmp_path / "a" / "adapter_model.safetensors").write_bytes(b"retrained")
        with pytest.raises(DataError, match=r"settings.adapter_sha256.default: '[0-9a-f]+' there vs"):
            go()
    finally:
        del TASKS["toy-runner"]


class NoEnv:
    def reset(self, example):
        return example.question

    def step(self, action):
        return "Episode finished.", action.name == "finish"


class FinishLLM:
    name = "finish"

    def generate(self, prompts, params):
        return [Completion(text=" Done.\nAction 1: Finish[x]") for _ in prompts]


def test_a_run_dir_from_before_the_run_schema_still_resumes(tmp_path):
    """A finished run whose run.json predates the schema (the method in ``agent``, no settings)
    resumes when its names match, and is refused when they do not."""
    legacy = {"task": "toy", "split": "s", "agent": "act", "model": "echo", "prompt_id": "countdown@1", "extra": {}}
    (tmp_path / "run.json").write_text(json.dumps(legacy))
    spec = RunSpec(task="toy", split="s", agent="react", method="act", model="echo", prompt_id="countdown@1",
                   settings={"max_steps": 7})
    s = run(examples(2), CountdownAgent(), ToyTask(), lambda: None, tmp_path, spec, llms=EchoLLM(), progress=False)
    assert s.n == 2 and json.loads((tmp_path / "run.json").read_text()) == legacy  # kept as it was
    other = RunSpec(task="toy", split="s", agent="react", method="cot", model="echo", prompt_id="countdown@1")
    with pytest.raises(DataError, match="method: 'act' there vs 'cot' now"):
        run(examples(2), CountdownAgent(), ToyTask(), lambda: None, tmp_path, other, llms=EchoLLM(), progress=False)


class SeedLLM:
    """Finishes with the decoding seed and temperature it was asked with, so a test can see them."""

    name = "seed"

    def generate(self, prompts, params):
        return [Completion(text=f"Thought: t\nAction: finish[{params.seed} {params.temperature}]") for _ in prompts]


def test_sampled_runs_give_each_example_k_seeded_episodes(tmp_path):
    """``samples=K`` runs every example K times (ids ``<id>#k``), each step sampled at
    ``temperature`` with a seed of its episode and step: different across samples, the same in a
    second run (a resumed run samples what an uninterrupted one would)."""
    from reactlab.config import RunConfig
    from reactlab.runner import run_from_config
    from reactlab.tasks import TASKS

    TASKS["toy-sampled"] = lambda: type("T", (ToyTask,), {
        "splits": ("s",), "eval_splits": (), "default_prompt": "zeroshot",
        "examples": lambda self, split, limit=None, seed=None, data=None: examples(2),
        "environments": lambda self, exs, **kw: __import__("contextlib").nullcontext(lambda: NoEnv()),
    })()
    try:
        answers = []
        for name in ("a", "b"):
            cfg = RunConfig(out=str(tmp_path / name), task="toy-sampled", split="s", style="chat",
                            temperature=0.8, samples=3)
            assert run_from_config(cfg, llms={"default": SeedLLM()}, progress=False).n == 6
            trajs = [json.loads(line) for line in (tmp_path / name / "trajectories.jsonl").read_text().splitlines()]
            answers.append({t["id"]: t["answer"] for t in trajs})
        assert sorted(answers[0]) == ["q0#1", "q0#2", "q0#3", "q1#1", "q1#2", "q1#3"]
        assert answers[0] == answers[1]
        assert len(set(answers[0].values())) == 6 and all(a.endswith(" 0.8") for a in answers[0].values())
        settings = json.loads((tmp_path / "a" / "run.json").read_text())["settings"]
        assert settings["samples"] == 3 and settings["decoding"]["temperature"] == 0.8

        with pytest.raises(ValueError, match="give temperature > 0"):
            run_from_config(RunConfig(out=str(tmp_path / "c"), task="toy-sampled", split="s", samples=2),
                            llms={"default": SeedLLM()}, progress=False)
        with pytest.raises(ValueError, match="not to --agent react --method cot_sc"):
            run_from_config(RunConfig(out=str(tmp_path / "d"), task="toy-sampled", split="s", method="cot_sc",
                                      temperature=0.5), llms={"default": SeedLLM()}, progress=False)
    finally:
        del TASKS["toy-sampled"]


def test_the_runner_asks_agents_only_what_the_protocol_declares():
    """``runner.py`` reads an agent's ``name``, ``method``, ``prompt_id``, ``traits``, ``episode`` and
    ``scores`` (``types.Agent``), never an undeclared attribute, and never through ``getattr``."""
    import ast
    from pathlib import Path

    import reactlab.runner
    from reactlab.types import Agent

    tree = ast.parse(Path(reactlab.runner.__file__).read_text(encoding="utf-8"))
    declared = set(Agent.__annotations__) | {"episode", "scores"}
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
            and n.value.id in ("agent", "plan.agent")}
    assert used and used <= declared, used - declared
    getattrs = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                and n.func.id in ("getattr", "hasattr")]
    assert all("agent" not in g for g in getattrs), getattrs


def test_a_spec_without_hashes_is_checked_on_the_rest(tmp_path):
    """``plan_run(hashes=False)`` (the demo's early check, before an adapter exists) compares every
    part of the identity but the content hashes ``run.json`` holds."""
    from reactlab.runner import check_spec, spec_differences

    full = RunSpec(task="toy", split="s", agent="a", model="m", prompt_id="p",
                   settings={"max_steps": 7, "adapter_sha256.default": "abc"})
    check_spec(tmp_path, full)
    bare = RunSpec(task="toy", split="s", agent="a", model="m", prompt_id="p", settings={"max_steps": 7})
    assert spec_differences(tmp_path, bare, hashes=False) == ""
    assert "settings.adapter_sha256.default: 'abc' there vs None now" in spec_differences(tmp_path, bare)
    other = RunSpec(task="toy", split="s", agent="a", model="m2", prompt_id="p", settings={"max_steps": 5})
    assert spec_differences(tmp_path, other, hashes=False) == \
        "model: 'm' there vs 'm2' now, settings.max_steps: 7 there vs 5 now"
    with pytest.raises(DataError, match="holds a different run"):
        check_spec(tmp_path, other, hashes=False)
