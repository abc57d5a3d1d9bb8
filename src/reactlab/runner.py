"""Run many episodes: all live episodes share the model(s), so every model call is batched.

``run_from_config(RunConfig)`` is the library call behind ``reactlab run`` and every ``reactlab demo``
stage: it asks the task for its examples and environments, builds the agent and its model(s), and
calls ``run``.

Each episode is a generator (``Agent.episode``) that yields the ``Query`` it needs completed and
returns its ``Trajectory``. ``run`` keeps up to ``batch_size`` episodes live. A query goes to the
model of its ``role`` (one model serves every role unless the run maps roles to models). With one
``StreamingLLM`` (the local HF backend) each query is submitted as soon as it exists and an episode
moves on the moment its completion is ready (continuous batching); otherwise the live episodes
advance in rounds, one ``generate`` per model and decoding parameters per round. The runner scores
each finished trajectory with the task's scorer, appends it to ``OUT/trajectories.jsonl`` (flush +
fsync) and, at the end, writes ``OUT/summary.json``. A rerun with the same ``OUT`` skips the ids
already written: a killed run resumes where it stopped, with no lost and no duplicated ids. Episodes
that ended in ``error`` (the model call failed after its retries: a wrong key, a server down) are
not results: a rerun removes them and runs them again. A rerun must be the same run: everything
that changes what an episode is (task, split or data file and its hash, agent, method, prompt,
model and adapter with its hash, step limit, decoding parameters) is in ``run.json`` and compared.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reactlab.io import DataError, append_jsonl, read_jsonl_tolerant, write_json_atomic, write_jsonl_atomic
from reactlab.report import Summary
from reactlab.types import (
    DEFAULT_ROLE,
    LLM,
    Agent,
    Completion,
    EnvFactory,
    EpisodeGen,
    Example,
    Query,
    StreamingLLM,
    Task,
    Trajectory,
)

if TYPE_CHECKING:
    from reactlab.config import ModelRef, RunConfig

TRAJ_FILE, SUMMARY_FILE, RUN_FILE = "trajectories.jsonl", "summary.json", "run.json"
ERRORS_FILE = "errors.jsonl"
"""The error log: every record of the episodes' ``meta["errors"]`` (an agent's parse failures, fallbacks,
disagreements, API failures), one a line with the episode's ``id``; rewritten at the end of each run."""


RUN_SCHEMA = "reactlab.run/1"


@dataclass
class RunSpec:
    """What identifies a run (``OUT/run.json``, schema ``reactlab.run/1``); a resume must match it
    (mixing two models in one file is a bug). ``model``: the default role's model with its adapter
    (``ModelRef.label``); ``roles``: the other roles' models; ``settings``: the rest of what makes
    an episode what it is (step limit, decoding parameters, content hashes of the data file and of
    the adapters' weights)."""

    task: str
    split: str
    agent: str
    model: str
    prompt_id: str
    method: str = ""
    roles: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    schema: str = RUN_SCHEMA


IDENTITY = ("task", "split", "agent", "method", "model", "roles", "prompt_id", "settings")


def _check_spec(out: Path, spec: RunSpec, write: bool = True) -> None:
    """Refuse ``out`` when its ``run.json`` is another run's; write ``spec`` there when it has none
    (and ``write``)."""
    path = out / RUN_FILE
    if path.exists():
        old = _upgrade(json.loads(path.read_text()))
        mine = asdict(spec)
        diff: dict[str, tuple[Any, Any]] = {k: (old[k], mine[k]) for k in IDENTITY if k in old and old[k] != mine[k]}
        if "settings" in diff:  # name the settings that differ, not the whole mapping
            a, b = diff.pop("settings")
            diff |= {f"settings.{k}": (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
        if diff:
            detail = ", ".join(f"{k}: {a!r} there vs {b!r} now" for k, (a, b) in diff.items())
            raise DataError(f"{out}: holds a different run ({detail}); use another --out or remove it")
    elif write:
        write_json_atomic(path, asdict(spec))


def _upgrade(old: dict[str, Any]) -> dict[str, Any]:
    """A ``run.json`` written before the ``reactlab.run/1`` schema: its ``agent`` held the method
    (``react``, ``act``, ``cot``), and it recorded neither roles nor settings, which are then not
    compared (they cannot be: a run from then resumes as long as its names match)."""
    if "schema" in old:
        return old
    old = dict(old)
    if old.get("agent") in ("react", "act", "cot"):
        old["method"], old["agent"] = old["agent"], "react"
    return old


def run_from_config(
    cfg: RunConfig, *, index: Any = None, llms: Mapping[str, LLM] | None = None, progress: bool = True
) -> Summary:
    """Run ``cfg`` (see ``RunConfig``) into ``cfg.out``; return the summary (also in summary.json).

    ``index``: an open wiki index for the task's environments (else the task opens its own).
    ``llms``: models by role, already built (else built from ``cfg.model`` / ``cfg.roles``).
    Raises ``ValueError`` / ``DataError`` / ``FileNotFoundError`` for bad options or inputs.
    """
    from reactlab.agents import make_agent
    from reactlab.tasks import make_task

    task = make_task(cfg.task)
    examples = task.examples(cfg.split, limit=cfg.limit, seed=cfg.seed, data=cfg.data)
    if not examples:
        raise DataError(f"{cfg.data or f'{task.name} split {cfg.split!r}'}: no examples to run")
    refs = _role_models(cfg)
    if cfg.hint and not cfg.data and cfg.split in task.eval_splits:
        raise ValueError(f"hint shows the gold answer to the model (rationalisation, for training data): not on "
                         f"{task.name}'s evaluation split {cfg.split!r}")
    model_label = (refs[DEFAULT_ROLE].label() if DEFAULT_ROLE in refs
                   else ", ".join(f"{r}={m.label()}" for r, m in sorted(refs.items())))
    agent = make_agent(
        cfg.agent, task=task, style=cfg.style, prompt=cfg.prompt, max_steps=cfg.max_steps,
        model=model_label, sc_k=cfg.sc_k,
        sc_temperature=cfg.sc_temperature, trials=cfg.reflexion_trials, samples=cfg.answer_samples,
        temperature=cfg.answer_temperature, hint=cfg.hint, episode_temperature=cfg.temperature,
        **({"method": cfg.method} if cfg.method else {}),
    )
    if (cfg.temperature > 0 or cfg.samples > 1) and not getattr(agent, "samples_episodes", False):
        raise ValueError(f"temperature / samples (sampled runs) apply to --agent react with methods react, act, "
                         f"cot; not to --agent {cfg.agent} --method {agent.method}")
    if cfg.samples > 1:
        if cfg.temperature <= 0:
            raise ValueError(f"samples={cfg.samples} of a greedy run would be {cfg.samples} copies: "
                             "give temperature > 0 (e.g. -c temperature=0.7)")
        examples = [replace(e, id=f"{e.id}#{k}") for e in examples for k in range(1, cfg.samples + 1)]
    if cfg.order_by or cfg.token_budget:
        from reactlab.budget import schedule

        who = dict(task=task.name, agent=agent.name, method=agent.method, model=model_label)
        if cfg.order_by:
            examples = schedule.order_examples(examples, cfg.order_by, **who)
        if cfg.token_budget:
            if not getattr(agent, "token_budgets", False):
                raise ValueError(f"token_budget applies to --agent react with methods react, act; not to --agent "
                                 f"{cfg.agent} --method {agent.method}")
            examples = schedule.with_token_budgets(examples, cfg.token_budget, cfg.token_budget_slack, **who)
    needs_model = getattr(agent, "needs_model", True)
    if needs_model and llms is None and DEFAULT_ROLE not in refs:
        missing = [r for r in getattr(agent, "roles", (DEFAULT_ROLE,)) if r not in refs]
        if missing:
            raise ValueError(f"--agent {cfg.agent} needs --model ({_model_forms()})"
                             + (f", or --model ROLE=SPEC for each of its roles ({', '.join(missing)} has none)"
                                if refs else ""))
    spec = RunSpec(
        task=task.name, split=cfg.data or cfg.split, agent=agent.name, method=agent.method,
        model=model_label if needs_model and refs else getattr(agent, "model", "none"),
        prompt_id=agent.prompt_id,
        roles={r: m.label() for r, m in refs.items() if r != DEFAULT_ROLE} if needs_model else {},
        settings=_settings(cfg, agent, refs if needs_model else {}),
    )
    _check_spec(Path(cfg.out), spec, write=False)  # a mismatch is refused before any model loads
    with contextlib.ExitStack() as stack:
        if llms is None and needs_model:
            llms = {role: stack.enter_context(_closing(open_llm(ref, workers=cfg.workers))) for role, ref in refs.items()}
        make_env = stack.enter_context(task.environments(examples, data=cfg.data, corpus=cfg.corpus or None,
                                                         index=index))
        return run(examples, agent, task, make_env, cfg.out, spec, llms=llms if needs_model else None,
                   batch_size=cfg.batch_size, progress=progress)


def _settings(cfg: RunConfig, agent: Agent, refs: Mapping[str, ModelRef]) -> dict[str, Any]:
    """The part of a run's identity beyond names: what else changes the episodes."""
    from reactlab.io import files_sha256

    out: dict[str, Any] = {"max_steps": cfg.max_steps}
    params = getattr(agent, "params", None)
    if params is not None:
        out["decoding"] = asdict(params)
    if cfg.method == "reflexion":
        out["reflexion_trials"] = cfg.reflexion_trials
    if cfg.samples > 1:
        out["samples"] = cfg.samples
    if cfg.agent == "pipeline" and cfg.answer_samples > 1:
        out["answer_samples"] = cfg.answer_samples
        out["answer_temperature"] = cfg.answer_temperature
    if cfg.data:
        out["data_sha256"] = files_sha256([cfg.data])
    if cfg.token_budget:
        predictor = Path(cfg.token_budget.partition(":")[2])
        out["token_budget"] = {"predictor_sha256": files_sha256([predictor / "predictor.json" if predictor.is_dir()
                                                                  else predictor]),
                               "slack": cfg.token_budget_slack}
    for role, ref in sorted(refs.items()):
        if ref.adapter:
            weights = sorted(Path(ref.adapter).glob("adapter_model*")) + [Path(ref.adapter) / "adapter_config.json"]
            out[f"adapter_sha256.{role}"] = files_sha256(weights)
    return out


def _role_models(cfg: RunConfig) -> dict[str, ModelRef]:
    refs = dict(cfg.roles)
    if cfg.model is not None:
        if DEFAULT_ROLE in refs:
            raise ValueError(f"the {DEFAULT_ROLE!r} role's model is --model; roles.{DEFAULT_ROLE} sets it twice")
        refs[DEFAULT_ROLE] = cfg.model
    return refs


def _model_forms() -> str:
    from reactlab.models import NAMED, SPEC_FORMS

    return SPEC_FORMS.format(named=", ".join(sorted(NAMED)))


def open_llm(ref: ModelRef, workers: int = 8) -> LLM:
    """The model of ``ref`` (with its adapter), loaded; ``workers``: concurrent requests of an API model.
    A caller that runs several configs on one model loads it once with this and passes it as ``llms``."""
    from reactlab.llm import make_llm
    from reactlab.models import parse_model

    spec = parse_model(ref.name)
    options: dict[str, Any] = {}
    if ref.adapter:
        if not spec.local:
            raise ValueError(f"an adapter needs a local model, not {ref.name!r}")
        options["adapter"] = ref.adapter
    if ref.attn_implementation:
        raise ValueError("model.attn_implementation: for training only (the run engine has its own attention)")
    if ref.dtype != "auto":
        if not spec.local:
            raise ValueError(f"model.dtype needs a local model, not {ref.name!r}")
        options["dtype"] = ref.dtype
    if spec.kind == "openai":
        options["concurrency"] = workers
    return make_llm(ref.name, **options)


@contextlib.contextmanager
def _closing(llm: LLM) -> Iterator[LLM]:
    """Close a model that holds resources (an HTTP client) when the run ends."""
    try:
        yield llm
    finally:
        close = getattr(llm, "close", None)
        if callable(close):
            close()


def run(
    examples: Sequence[Example],
    agent: Agent,
    task: Task,
    make_env: EnvFactory,
    out: str | Path,
    spec: RunSpec,
    llms: LLM | Mapping[str, LLM] | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> Summary:
    """Run ``agent`` on ``examples`` into ``out``; return the summary (also written to summary.json).

    ``llms``: one model for every role, or models by role (``Query.role``); None for an agent that
    never asks a model (the oracle)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_spec(out, spec)
    route = _router(llms)
    traj_path = out / TRAJ_FILE
    records = read_jsonl_tolerant(traj_path)
    if any(d.get("status") == "error" for d in records):  # failed calls are not results: run them again
        records = [d for d in records if d.get("status") != "error"]
        write_jsonl_atomic(traj_path, records)
    done = {d["id"]: d for d in records}
    todo = [e for e in examples if e.id not in done]
    t0 = time.perf_counter()
    bar = _progress(len(examples), len(examples) - len(todo), progress)
    pending = iter(todo)
    live: list[tuple[Example, EpisodeGen, Query]] = []  # (example, episode, its pending query)
    metric = task.main_metric
    own_scores = getattr(agent, "scores", None)
    metric_sum = sum(d.get("scores", {}).get(metric, 0.0) for d in done.values())
    n_done = len(done)

    with open(traj_path, "a", encoding="utf-8") as f:

        def finish(example: Example, traj: Trajectory) -> None:
            nonlocal metric_sum, n_done
            traj.split = traj.split or spec.split
            traj.task = traj.task or spec.task
            traj.scores = task.score(example, traj.answer)
            if own_scores is not None:  # an agent's scores beside the task's (the pipeline's flips)
                traj.scores.update(own_scores(example, traj, task))
            rec = traj.to_dict()
            append_jsonl(f, rec)
            done[traj.id] = rec
            metric_sum += traj.scores.get(metric, 0.0)
            n_done += 1
            bar.update(1)
            bar.set_postfix({metric: f"{metric_sum / n_done:.3f}"})

        def start(example: Example) -> None:
            gen = agent.episode(example, make_env())
            try:
                live.append((example, gen, next(gen)))
            except StopIteration as stop:  # the episode needed no LLM call at all
                finish(example, stop.value)

        streaming = route.streaming()
        if streaming is not None:
            _stream(streaming, pending, batch_size, start, finish, live)
        while True:
            while len(live) < batch_size and (ex := next(pending, None)) is not None:
                start(ex)
            if not live:
                break
            completions = route.generate([q for _, _, q in live], agent.name)
            still: list[tuple[Example, EpisodeGen, Query]] = []
            for (ex, gen, _), comp in zip(live, completions, strict=True):
                try:
                    still.append((ex, gen, gen.send(comp)))
                except StopIteration as stop:
                    finish(ex, stop.value)
            live = still
    bar.close()
    wanted = [done[e.id] for e in examples if e.id in done]
    summary = Summary.of(wanted, metrics=(*task.metrics, *getattr(agent, "metrics", ())), main_metric=metric,
                         wall_s=time.perf_counter() - t0, run=asdict(spec))
    errors = [{"id": d["id"], **e} for d in wanted for e in d.get("meta", {}).get("errors", [])]
    if errors or (out / ERRORS_FILE).exists():
        write_jsonl_atomic(out / ERRORS_FILE, errors)
    write_json_atomic(out / SUMMARY_FILE, summary.to_dict())
    return summary


class _Router:
    """Sends each query to the model of its role (``llms``: by role; a lone model serves all)."""

    def __init__(self, llms: Mapping[str, LLM]):
        self.llms = dict(llms)

    def model(self, role: str) -> LLM:
        if role in self.llms:
            return self.llms[role]
        if len(self.llms) == 1:
            return next(iter(self.llms.values()))
        raise ValueError(f"a query asks for role {role!r}, but this run has models only for "
                         f"{', '.join(sorted(self.llms)) or 'no role'}")

    def streaming(self) -> StreamingLLM | None:
        """The one model of the run when it streams (every role on it); else None: rounds."""
        distinct = {id(m): m for m in self.llms.values()}
        if len(distinct) == 1:
            (m,) = distinct.values()
            if isinstance(m, StreamingLLM):
                return m
        return None

    def generate(self, queries: list[Query], agent: str) -> list[Completion]:
        """One ``generate`` per model and distinct decoding parameters; results in query order."""
        if not self.llms:
            raise ValueError(f"agent {agent!r} asks for an LLM but none was given (--model)")
        groups: dict[tuple[int, str], list[int]] = {}
        for i, q in enumerate(queries):
            groups.setdefault((id(self.model(q.role)), repr(q.params)), []).append(i)
        results: list[Completion | None] = [None] * len(queries)
        for idxs in groups.values():
            llm = self.model(queries[idxs[0]].role)
            comps = llm.generate([queries[i].prompt for i in idxs], queries[idxs[0]].params)
            if len(comps) != len(idxs):
                raise RuntimeError(f"LLM {llm.name!r} returned {len(comps)} completions for {len(idxs)} prompts")
            for i, c in zip(idxs, comps, strict=True):
                results[i] = c
        return [c for c in results if c is not None]


def _router(llms: LLM | Mapping[str, LLM] | None) -> _Router:
    if llms is None:
        return _Router({})
    if isinstance(llms, Mapping):
        return _Router(llms)
    return _Router({DEFAULT_ROLE: llms})


def _stream(
    llm: StreamingLLM,
    pending: Iterator[Example],
    batch_size: int,
    start: Callable[[Example], None],
    finish: Callable[[Example, Trajectory], None],
    live: list[tuple[Example, EpisodeGen, Query]],
) -> None:
    """Continuous batching: each episode's next query is submitted the moment it exists."""
    waiting: dict[int, tuple[Example, EpisodeGen]] = {}
    keys = itertools.count()

    def submit(ex: Example, gen: EpisodeGen, q: Query) -> None:
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
            ex, gen = waiting.pop(key)  # type: ignore[call-overload]
            try:
                submit(ex, gen, gen.send(comp))
            except StopIteration as stop:
                finish(ex, stop.value)
        refill()


class _NoBar:
    def update(self, n: int) -> None: ...
    def set_postfix(self, postfix: dict[str, str]) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="q", file=sys.stderr, dynamic_ncols=True)
