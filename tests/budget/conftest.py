"""Fixtures for the budget tests: synthetic runs written as ``trajectories.jsonl`` files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reactlab.types import Action, Step, Trajectory, Usage


def traj(id: str, question: str, steps: int, tokens: int | None, *, model: str = "m", status: str = "finished",
         type: str = "bridge", method: str = "react") -> Trajectory:
    """A trajectory of ``steps`` steps whose steps generated ``tokens`` tokens in all (None: no counts)."""
    per = [0] * steps
    if tokens is not None:
        per = [tokens // steps] * steps
        per[-1] += tokens - sum(per)
    return Trajectory(
        id=id, task="hotpotqa", question=question, gold="a", agent="react", prompt_id="chat@1/react", model=model,
        steps=[Step(i + 1, "t", Action("search" if i < steps - 1 else "finish", "x"), "o",
                    usage=Usage(10, per[i])) for i in range(steps)],
        answer="a", status=status, type=type, method=method)


def write_run(path: Path, trajs: list[Trajectory]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "trajectories.jsonl").write_text("".join(json.dumps(t.to_dict()) + "\n" for t in trajs))
    return path


def questions(n: int) -> list[tuple[str, int, int]]:
    """``n`` questions whose step count grows with the number of capitalised names in them (so a
    feature regressor has a signal a constant has not), with token counts ~30 per step."""
    out = []
    for i in range(n):
        k = 1 + i % 4
        names = " and ".join(f"Name{chr(65 + j)} Person{i}" for j in range(k))
        out.append((f"question {i}: how are {names} related?", k + 1, 30 * (k + 1) + i % 7))
    return out


@pytest.fixture(scope="module")
def sampled_run(tmp_path_factory) -> Path:
    """40 questions x 3 sampled episodes (ids ``<id>#k``), steps label +-1 around the signal."""
    trajs = []
    for i, (q, steps, tokens) in enumerate(questions(40)):
        for k, d in enumerate((0, -1, 1), 1):
            trajs.append(traj(f"q{i}#{k}", q, max(1, steps + d), tokens + 5 * d))
    return write_run(tmp_path_factory.mktemp("runs") / "sampled", trajs)


@pytest.fixture(scope="module")
def budget_dir(sampled_run, tmp_path_factory) -> Path:
    from reactlab.budget.labels import build_budget

    out = tmp_path_factory.mktemp("budget")
    build_budget([str(sampled_run)], out, val_frac=0.25)
    return out
