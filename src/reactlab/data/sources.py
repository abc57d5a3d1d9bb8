"""Where training trajectories come from, read into one record: a ``Sample`` holding a ``Trajectory``.

A source is a run directory or trajectories JSONL, a ``fireact:NAME`` file of the data pack,
``hotpotqa:SPLIT`` (questions and gold answers, no steps) or a file in FireAct's Alpaca or chat
layout; ``NAME=SOURCE`` names it for ``--mix``. Malformed input raises ``reactlab.io.DataError``
naming the file, the line (or record) and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reactlab.agents.parsing import parse_action, split_thought_action
from reactlab.io import DataError, read_records, require
from reactlab.types import Action, Step, Trajectory

FIREACT = {
    "hotpotqa": "fireact/finetune/alpaca_format/hotpotqa.json.gz",
    "hotpotqa-gpt": "fireact/finetune/gpt_format/hotpotqa.jsonl.gz",
    "hotpotqa-multimethod": "fireact/finetune/alpaca_format/hotpotqa_multimethod.json.gz",
    "multitask": "fireact/finetune/alpaca_format/multitask.json.gz",
    "multitask-multimethod": "fireact/finetune/alpaca_format/multitask_multimethod.json.gz",
    "multitask-multimethod-gpt": "fireact/finetune/gpt_format/multitask_multimethod.jsonl.gz",
}
SINGLE_METHOD = ("hotpotqa", "hotpotqa-gpt", "multitask")
"""FireAct files of ReAct trajectories only (their multiple-choice rows often answer without a tool call)."""
_REFLECTION = re.compile(r"do a reflection", re.IGNORECASE)  # how FireAct's Reflexion trials say so
_OPTION = re.compile(r"(?m)^\(?[A-D][.)] ")
TRAJ_FILE = "trajectories.jsonl"
FIREACT_PROMPT_ID = "fireact@1/react"

_LABEL = re.compile(r"^(Thought|Action|Observation)(?: \d+)?:[ ]?(.*)$")
_QUESTION = re.compile(r"^\s*Question:\s*")
_NAME = re.compile(r"^[\w.:-]+$")


@dataclass
class Sample:
    """One trajectory with where it came from: ``source`` (the row's source tag) and ``where``
    (``file:line`` or ``file: record N``, for error messages and provenance)."""

    traj: Trajectory
    source: str
    where: str


def load_source(spec: str) -> list[Sample]:
    """Read every trajectory of one source spec (see the module docstring), in file order."""
    name, target = split_name(spec)
    if target.startswith("fireact:"):
        key = target.split(":", 1)[1]
        if key not in FIREACT:
            raise ValueError(f"unknown FireAct source {target!r}; known: {', '.join('fireact:' + k for k in FIREACT)}")
        from reactlab.paths import data_dir

        samples = read_file(data_dir() / FIREACT[key], name, task="hotpotqa", skip_bad=True)
        if key.startswith(("multitask", "hotpotqa-multimethod")):
            tag_fireact(samples, single_method=key in SINGLE_METHOD)
        return samples
    if target.startswith("hotpotqa:"):
        return _hotpotqa_split(target.split(":", 1)[1], name)
    path = Path(target)
    if path.is_dir():
        path = path / TRAJ_FILE
        if not path.exists():
            raise DataError(f"{path}: no such file (is {target} a `reactlab run --out` directory?)")
    return read_file(path, name)


def tag_fireact(samples: list[Sample], single_method: bool = False) -> None:
    """Set each FireAct row's task and method. Task: ``hotpotqa`` when the question is one of
    FireAct's HotpotQA rows, else ``mmlu`` when it lists lettered options, else ``strategyqa``
    (the three tasks of FireAct's multi-task data). Method: ``react`` in a ``single_method`` file;
    else ``reflexion`` when a thought says it does a reflection (FireAct's Reflexion trials), ``cot``
    for a row without a tool call, ``react`` otherwise."""
    from reactlab.paths import data_dir
    from reactlab.tasks.metrics import normalize_answer as normalize_question

    hotpot = {normalize_question(x.traj.question) for key in ("hotpotqa", "hotpotqa-multimethod")
              for x in read_file(data_dir() / FIREACT[key], "h")}
    for sample in samples:
        t = sample.traj
        if normalize_question(t.question) in hotpot:
            t.task = "hotpotqa"
        else:
            t.task = "mmlu" if _OPTION.search(t.question) else "strategyqa"
        if t.status == "error":
            continue
        if single_method:
            t.method = "react"
        elif any(_REFLECTION.search(s.thought) for s in t.steps):
            t.method = "reflexion"
        else:
            t.method = "react" if any(s.action.name in ("search", "lookup") for s in t.steps) else "cot"
        t.prompt_id = f"fireact@1/{t.method}"


def split_name(spec: str) -> tuple[str, str]:
    """``"a=runs/x"`` -> ``("a", "runs/x")``; otherwise the name is the spec's stem.

    >>> split_name("runs/oracle-train")
    ('oracle-train', 'runs/oracle-train')
    >>> split_name("teacher=runs/x/trajectories.jsonl")
    ('teacher', 'runs/x/trajectories.jsonl')
    >>> split_name("fireact:hotpotqa")
    ('fireact:hotpotqa', 'fireact:hotpotqa')
    """
    if "=" in spec and not Path(spec).exists():
        name, target = spec.split("=", 1)
        if _NAME.match(name):
            return name, target
    if spec.startswith(("fireact:", "hotpotqa:")):
        return spec, spec
    p = Path(spec.rstrip("/"))
    if p.name == TRAJ_FILE:
        p = p.parent
    return p.name.split(".")[0] or spec, spec


def read_file(path: str | Path, source: str, task: str = "", skip_bad: bool = False) -> list[Sample]:
    """All records of a file in any supported layout; the layout is decided by the first record.
    ``skip_bad`` (the vendored FireAct files, which have a few malformed rows): a record that is not
    a trajectory becomes an ``error`` trajectory saying why, which data building drops and counts."""
    layout = None
    out: list[Sample] = []
    for i, (where, rec) in enumerate(read_records(path)):
        if layout is None:
            layout = detect_layout(rec, where)
        try:
            if layout == "trajectory":
                traj = trajectory_from_record(rec, where)
            elif layout == "alpaca":
                traj = from_alpaca(rec, where, f"{source}-{i}", task)
            else:
                traj = from_gpt(rec, where, f"{source}-{i}", task)
        except DataError as e:
            if not skip_bad:
                raise
            traj = Trajectory(id=f"{source}-{i}", task=task, question="", gold="", agent="fireact", prompt_id="",
                              model="", status="error", error=str(e))
        out.append(Sample(traj, source, where))
    return out


def detect_layout(rec: dict[str, Any], where: str) -> str:
    """``trajectory`` | ``alpaca`` | ``gpt`` from a record's keys, or a ``DataError``."""
    if "steps" in rec and "question" in rec:
        return "trajectory"
    if "instruction" in rec and "output" in rec:
        return "alpaca"
    if "messages" in rec:
        return "gpt"
    raise DataError(
        f"{where}: unknown layout (keys {sorted(rec)[:8]}); expected a trajectory (question, steps), "
        "FireAct Alpaca (instruction, input, output) or chat (messages)"
    )


def trajectory_from_record(rec: dict[str, Any], where: str) -> Trajectory:
    """A ``Trajectory.to_dict()`` record, checked field by field (errors name the field)."""
    for key in ("id", "question"):
        require(rec, key, str, where)
    steps = require(rec, "steps", list, where)
    for n, s in enumerate(steps):
        if not isinstance(s, dict):
            raise DataError(f"{where}: field 'steps[{n}]' must be an object")
        for key in ("thought", "observation"):
            require(s, key, str, f"{where}: steps[{n}]")
        act = require(s, "action", dict, f"{where}: steps[{n}]")
        require(act, "name", str, f"{where}: steps[{n}].action")
    known = set(Trajectory.__dataclass_fields__)
    try:
        return Trajectory.from_dict({k: v for k, v in rec.items() if k in known} | _defaults(rec))
    except TypeError as e:  # a field of the wrong shape deep inside (usage, ...)
        raise DataError(f"{where}: not a trajectory record ({e})") from None


def _defaults(rec: dict[str, Any]) -> dict[str, Any]:
    """Fields a hand-written trajectory may leave out."""
    return {k: rec.get(k, "") for k in ("task", "gold", "agent", "prompt_id", "model")}


def from_alpaca(rec: dict[str, Any], where: str, default_id: str, task: str = "") -> Trajectory:
    """A FireAct Alpaca row -> ``Trajectory`` (see the module docstring).

    >>> t = from_alpaca({"instruction": "Q?", "input": "", "output": "Thought: go\\nAction: search[X]\\n"
    ...     "Observation: X is y.\\nThought: done\\nAction: finish[y]\\nObservation: ok\\n"}, "f:1", "f-0")
    >>> [(s.thought, str(s.action), s.observation) for s in t.steps], t.answer, t.status
    ([('go', 'Search[X]', 'X is y.'), ('done', 'Finish[y]', 'ok')], 'y', 'finished')
    """
    instruction = require(rec, "instruction", str, where)
    extra = require(rec, "input", str, where) if "input" in rec else ""
    output = require(rec, "output", str, where)
    prelude: list[str] = []
    fields: list[list[str]] = []  # [label, text]
    for line in output.rstrip("\n").split("\n"):
        m = _LABEL.match(line)
        if m:
            fields.append([m.group(1), m.group(2)])
        elif fields:  # a multi-line observation or thought continues
            fields[-1][1] += "\n" + line
        else:
            prelude.append(line)
    steps: list[Step] = []
    thought = ""
    for label, text in fields:
        if label == "Thought":
            thought = text.strip()
        elif label == "Action":
            action = parse_action(text)
            if action.name == "invalid":
                raise DataError(f"{where}: field 'output': no parseable action in 'Action: {text[:80]}'")
            steps.append(Step(i=len(steps) + 1, thought=thought, action=action, observation=""))
            thought = ""
        elif steps:
            steps[-1].observation = text.strip()
    if not steps:
        raise DataError(f"{where}: field 'output': no 'Action: name[arg]' line (not a ReAct trajectory)")
    question = "\n".join(x for x in (_strip_question(instruction), extra.strip(), *prelude) if x)
    return _fireact_traj(question, steps, rec, default_id, task)


def from_gpt(rec: dict[str, Any], where: str, default_id: str, task: str = "") -> Trajectory:
    """A FireAct chat row (``messages``: [system], user question, assistant ``Thought/Action``,
    user ``Observation: ...``, ...) -> ``Trajectory``.

    >>> t = from_gpt({"messages": [{"role": "user", "content": "Q?"},
    ...     {"role": "assistant", "content": "Thought: hm\\nAction: finish[y]"},
    ...     {"role": "user", "content": "Observation: Episode finished."}]}, "f:1", "f-0")
    >>> t.question, t.answer, t.steps[0].observation
    ('Q?', 'y', 'Episode finished.')
    """
    messages = require(rec, "messages", list, where)
    for n, m in enumerate(messages):
        if not isinstance(m, dict):
            raise DataError(f"{where}: field 'messages[{n}]' must be an object")
        require(m, "role", str, f"{where}: messages[{n}]")
        require(m, "content", str, f"{where}: messages[{n}]")
    start = 1 if messages and messages[0]["role"] == "system" else 0
    if len(messages) <= start or messages[start]["role"] != "user":
        raise DataError(f"{where}: field 'messages[{start}].role': the question must be a 'user' message first")
    steps: list[Step] = []
    for n, m in enumerate(messages[start + 1:], start + 1):
        if steps and steps[-1].action.name == "finish" and steps[-1].observation:
            break  # the episode ended; FireAct's files sometimes repeat the final observation
        expected = "assistant" if (n - start) % 2 == 1 else "user"
        role = "user" if m["role"] == "assistant" and m["content"].lstrip().startswith("Observation") else m["role"]
        if role != expected:
            raise DataError(f"{where}: field 'messages[{n}].role': expected {expected!r}, got {m['role']!r}")
        if expected == "assistant":
            thought, act = split_thought_action(m["content"])
            action = parse_action(act if act is not None else m["content"])
            if action.name == "invalid":
                raise DataError(f"{where}: field 'messages[{n}].content': no parseable action in {m['content'][:80]!r}")
            steps.append(Step(i=len(steps) + 1, thought=thought if act is not None else "", action=action, observation=""))
        else:
            steps[-1].observation = re.sub(r"^Observation(?: \d+)?:\s?", "", m["content"]).strip()
    if not steps:
        raise DataError(f"{where}: field 'messages': no assistant turn (not a ReAct trajectory)")
    return _fireact_traj(_strip_question(messages[start]["content"]), steps, rec, default_id, task)


def _strip_question(text: str) -> str:
    return _QUESTION.sub("", text, count=1).strip()


def _fireact_traj(question: str, steps: list[Step], rec: dict[str, Any], default_id: str, task: str) -> Trajectory:
    last: Action = steps[-1].action
    finished = last.name == "finish"
    return Trajectory(
        id=str(rec.get("id", default_id)), task=task, question=question, gold=str(rec.get("answer", "")),
        agent="fireact", prompt_id=FIREACT_PROMPT_ID, model="gpt-4", steps=steps,
        answer=last.arg if finished else "", status="finished" if finished else "max_steps",
    )


def _hotpotqa_split(split: str, name: str) -> list[Sample]:
    """Questions of a HotpotQA split as step-less samples: prompts with gold answers, nothing to imitate."""
    from reactlab.tasks.hotpotqa import HotpotQA

    return [
        Sample(Trajectory(id=e.id, task="hotpotqa", question=e.question, gold=e.answer, agent="none",
                          prompt_id="", model="", status="unrun", type=e.type, split=split),
               name, f"hotpotqa:{split}: {e.id}")
        for e in HotpotQA().examples(split)
    ]
