"""Run many episodes: all live episodes share the model, so every model call is batched.

Each episode is a generator (``Agent.episode``) that yields the ``Query`` it needs completed and
returns its ``Trajectory``. The runner keeps up to ``batch_size`` episodes live. With a
``StreamingLLM`` (the local HF backend) each query is submitted as soon as it exists and an episode
moves on the moment its completion is ready (continuous batching); with any other LLM the live
episodes advance in rounds, one ``llm.generate`` per round (per distinct decoding parameters).
It scores each finished trajectory,
appends it to ``OUT/trajectories.jsonl`` (flush + fsync) and, at the end, writes ``OUT/summary.json``.
A rerun with the same ``OUT`` skips the ids already written: a killed run resumes where it stopped,
with no lost and no duplicated ids.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reactlab.io import DataError, append_jsonl, read_jsonl_tolerant, write_json_atomic
from reactlab.tasks.metrics import aggregate
from reactlab.types import LLM, Agent, Completion, Environment, Example, Query, StreamingLLM, Task, Trajectory

TRAJ_FILE, SUMMARY_FILE, RUN_FILE = "trajectories.jsonl", "summary.json", "run.json"


@dataclass
class RunSpec:
    """What identifies a run; a resume must match it (mixing two models in one file is a bug)."""

    task: str
    split: str
    agent: str
    model: str
    prompt_id: str
    extra: dict[str, Any] = field(default_factory=dict)


def _check_spec(out: Path, spec: RunSpec) -> None:
    path = out / RUN_FILE
    if path.exists():
        old = json.loads(path.read_text())
        mine = asdict(spec)
        diff = {k: (old.get(k), mine[k]) for k in ("task", "split", "agent", "model", "prompt_id") if old.get(k) != mine[k]}
        if diff:
            detail = ", ".join(f"{k}: {a!r} there vs {b!r} now" for k, (a, b) in diff.items())
            raise DataError(f"{out}: holds a different run ({detail}); use another --out or remove it")
    else:
        write_json_atomic(path, asdict(spec))


def run(
    examples: Sequence[Example],
    agent: Agent,
    task: Task,
    make_env: Callable[[], Environment],
    out: str | Path,
    spec: RunSpec,
    llm: LLM | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``agent`` on ``examples`` into ``out``; return the summary (also written to summary.json)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_spec(out, spec)
    traj_path = out / TRAJ_FILE
    done = {d["id"]: d for d in read_jsonl_tolerant(traj_path)}
    todo = [e for e in examples if e.id not in done]
    t0 = time.perf_counter()
    bar = _progress(len(examples), len(examples) - len(todo), progress)
    pending = iter(todo)
    live: list[tuple[Example, Any, Query]] = []  # (example, generator, its pending query)
    em_sum = sum(d.get("scores", {}).get("em", 0.0) for d in done.values())
    n_done = len(done)

    with open(traj_path, "a", encoding="utf-8") as f:

        def finish(example: Example, traj: Trajectory) -> None:
            nonlocal em_sum, n_done
            traj.split = traj.split or spec.split
            traj.task = traj.task or spec.task
            traj.scores = task.score(example, traj.answer)
            rec = traj.to_dict()
            append_jsonl(f, rec)
            done[traj.id] = rec
            em_sum += traj.scores.get("em", 0.0)
            n_done += 1
            bar.update(1)
            bar.set_postfix(em=f"{em_sum / n_done:.3f}")

        def start(example: Example) -> None:
            gen = agent.episode(example, make_env())
            try:
                live.append((example, gen, next(gen)))
            except StopIteration as stop:  # the episode needed no LLM call at all
                finish(example, stop.value)

        if llm is not None and isinstance(llm, StreamingLLM):
            _stream(llm, pending, batch_size, start, finish, live)
        while True:
            while len(live) < batch_size and (ex := next(pending, None)) is not None:
                start(ex)
            if not live:
                break
            if llm is None:
                raise ValueError(f"agent {agent.name!r} asks for an LLM but none was given (--model)")
            completions = _generate_grouped(llm, [q for _, _, q in live])
            still: list[tuple[Example, Any, Query]] = []
            for (ex, gen, _), comp in zip(live, completions, strict=True):
                try:
                    still.append((ex, gen, gen.send(comp)))
                except StopIteration as stop:
                    finish(ex, stop.value)
            live = still
    bar.close()
    wanted = [done[e.id] for e in examples if e.id in done]
    summary = summarize(wanted, wall_s=time.perf_counter() - t0)
    summary["run"] = asdict(spec)
    write_json_atomic(out / SUMMARY_FILE, summary)
    return summary


def _stream(llm: StreamingLLM, pending, batch_size: int, start, finish, live: list) -> None:
    """Continuous batching: each episode's next query is submitted the moment it exists."""
    waiting: dict[int, tuple[Example, Any]] = {}
    keys = itertools.count()

    def submit(ex: Example, gen: Any, q: Query) -> None:
        key = next(keys)
        waiting[key] = (ex, gen)
        llm.submit(key, q.prompt, q.params)

    def refill() -> None:
        while len(waiting) + len(live) < batch_size and (ex := next(pending, None)) is not None:
            start(ex)  # appends (ex, gen, first query) to live, or finishes a model-free episode
        while live:
            submit(*live.pop(0))

    refill()
    while waiting:
        done = llm.poll()
        if not done:
            raise RuntimeError(f"LLM {llm.name!r} went idle with {len(waiting)} queries unanswered")
        for key, comp in done:
            ex, gen = waiting.pop(key)
            try:
                submit(ex, gen, gen.send(comp))
            except StopIteration as stop:
                finish(ex, stop.value)
        refill()


def _generate_grouped(llm: LLM, queries: list[Query]) -> list[Completion]:
    """One ``generate`` per distinct decoding parameters (usually exactly one), results in order."""
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        groups.setdefault(repr(q.params), []).append(i)
    results: list[Completion | None] = [None] * len(queries)
    for idxs in groups.values():
        comps = llm.generate([queries[i].prompt for i in idxs], queries[idxs[0]].params)
        if len(comps) != len(idxs):
            raise RuntimeError(f"LLM {llm.name!r} returned {len(comps)} completions for {len(idxs)} prompts")
        for i, c in zip(idxs, comps, strict=True):
            results[i] = c
    return results  # type: ignore[return-value]


def summarize(trajs: Sequence[dict[str, Any]], wall_s: float = 0.0) -> dict[str, Any]:
    """Aggregate scores (mean + stderr), by question type, step and status counts, token usage."""
    scores = aggregate([t.get("scores", {}) for t in trajs])
    by_type: dict[str, Any] = {}
    for typ in sorted({t.get("type", "") for t in trajs}):
        sub = [t.get("scores", {}) for t in trajs if t.get("type", "") == typ]
        by_type[typ or "?"] = {k: v["mean"] for k, v in aggregate(sub).items()} | {"n": len(sub)}
    n_steps = [len(t.get("steps", [])) for t in trajs]
    actions = [s["action"]["name"] for t in trajs for s in t.get("steps", [])]
    tokens = [t.get("usage", {}).get("prompt_tokens", 0) + t.get("usage", {}).get("completion_tokens", 0) for t in trajs]
    n = len(trajs)
    return {
        "n": n,
        **{k: v["mean"] for k, v in scores.items()},
        "stderr": {k: v["stderr"] for k, v in scores.items()},
        "by_type": by_type,
        "avg_steps": sum(n_steps) / n if n else 0.0,
        "invalid_action_rate": (actions.count("invalid") / len(actions)) if actions else 0.0,
        "status": dict(Counter(t.get("status", "?") for t in trajs)),
        "tokens_per_question": sum(tokens) / n if n else 0.0,
        "episode_wall_s": sum(t.get("wall_s", 0.0) for t in trajs),
        "wall_s": wall_s,
    }


class _NoBar:
    def update(self, n: int) -> None: ...
    def set_postfix(self, **kw: Any) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="q", file=sys.stderr, dynamic_ncols=True)
