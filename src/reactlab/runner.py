"""Run many episodes: all live episodes share the model(s), so every model call is batched.

``run_from_config(RunConfig)`` (behind ``reactlab run`` and every demo stage) plans the run
(``plan_run``: examples, agent, identity, no model loaded), opens its models and environments, and
calls ``run``, which keeps ``batch_size`` episode generators live, routes each query to its role's
model, appends each scored trajectory to ``OUT/trajectories.jsonl`` and writes ``OUT/summary.json``.
A rerun with the same ``OUT`` resumes (errored episodes are run again) and must be the same run
(``run.json``: ``RunSpec``). The runner knows of an agent only what ``types.Agent`` declares.
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

from reactlab.io import DataError, JsonlAppender, read_jsonl_tolerant, write_json_atomic, write_jsonl_atomic
from reactlab.report import Summary
from reactlab.types import (
    DEFAULT_ROLE,
    LLM,
    Agent,
    AgentTraits,
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


def check_spec(out: Path, spec: RunSpec, write: bool = True, hashes: bool = True) -> None:
    """Refuse ``out`` when its ``run.json`` is another run's; write ``spec`` there when it has none
    (and ``write``). ``hashes``: see ``spec_differences``."""
    detail = spec_differences(out, spec, hashes)
    if detail:
        raise DataError(f"{out}: holds a different run ({detail}); use another --out or remove it")
    if write and not (out / RUN_FILE).exists():
        write_json_atomic(out / RUN_FILE, asdict(spec))


def spec_differences(out: Path, spec: RunSpec, hashes: bool = True) -> str:
    """What of ``out``'s ``run.json`` differs from ``spec`` (``""``: nothing, or no ``run.json``);
    the settings are named one by one. ``hashes``: False for a ``spec`` made without content hashes
    (``plan_run(hashes=False)``): the hashes ``run.json`` holds are then not compared."""
    path = out / RUN_FILE
    if not path.exists():
        return ""
    old = _upgrade(json.loads(path.read_text()))
    mine = asdict(spec)
    names = [f"{k}: {old[k]!r} there vs {mine[k]!r} now" for k in IDENTITY
             if k != "settings" and k in old and old[k] != mine[k]]
    a, b = old.get("settings", {}), mine["settings"]
    ignore = [] if hashes else [k for k in a if k not in b and "sha256" in k]
    settings = differences(a, b, ignore, prefix="settings.") if "settings" in old else ""
    return ", ".join([*names, *([settings] if settings else [])])


def differences(old: Mapping[str, Any], want: Mapping[str, Any], ignore: Sequence[str] = (), prefix: str = "") -> str:
    """``"key: OLD there vs WANT now, ..."`` for every key whose values differ (``""``: none).

    >>> differences({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4})
    'b: 2 there vs 3 now, c: None there vs 4 now'
    """
    keys = [k for k in sorted(set(old) | set(want)) if k not in ignore and old.get(k) != want.get(k)]
    return ", ".join(f"{prefix}{k}: {old.get(k)!r} there vs {want.get(k)!r} now" for k in keys)


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


@dataclass(frozen=True)
class Schedule:
    """When the episodes start and what token budget each gets: plain callables the caller makes
    (``reactlab.budget.schedule.for_run`` makes them from ``order_by`` / ``token_budget``).
    ``order`` / ``budgets`` take the examples and who answers them (``task``, ``agent``, ``method``,
    ``model`` keywords) and return them reordered / with ``meta["token_budget"]`` set;
    ``identity``: what of the budgets is part of the run's identity (``settings.token_budget``)."""

    order: Callable[..., list[Example]] | None = None
    budgets: Callable[..., list[Example]] | None = None
    identity: dict[str, Any] = field(default_factory=dict)


def run_from_config(
    cfg: RunConfig, *, index: Any = None, llms: Mapping[str, LLM] | None = None, progress: bool = True,
    schedule: Schedule | None = None,
) -> Summary:
    """Run ``cfg`` (see ``RunConfig``) into ``cfg.out``; return the summary (also in summary.json).

    ``index``: an open wiki index for the task's environments (else the task opens its own).
    ``llms``: models by role, already built (else built from ``cfg.model`` / ``cfg.roles``).
    ``schedule``: the ordering / token budgets that ``cfg.order_by`` / ``cfg.token_budget`` name.
    Raises ``ValueError`` / ``DataError`` / ``FileNotFoundError`` for bad options or inputs.
    """
    plan = plan_run(cfg, schedule=schedule, llms_given=llms is not None)
    agent, task, examples, refs = plan.agent, plan.task, plan.examples, plan.refs
    needs_model = agent.traits.needs_model
    check_spec(Path(cfg.out), plan.spec, write=False)  # a mismatch is refused before any model loads
    with contextlib.ExitStack() as stack:
        if llms is None and needs_model:
            llms = {role: stack.enter_context(_closing(open_llm(ref, workers=cfg.workers))) for role, ref in refs.items()}
        make_env = stack.enter_context(task.environments(examples, data=cfg.data, corpus=cfg.corpus or None,
                                                         index=index))
        return run(examples, agent, task, make_env, cfg.out, plan.spec, llms=llms if needs_model else None,
                   batch_size=cfg.batch_size, progress=progress)


@dataclass
class RunPlan:
    """What ``run_from_config`` runs, before any model loads: the task, its examples (in order,
    with their budgets), the agent, the models by role and the run's identity."""

    task: Task
    examples: list[Example]
    agent: Agent
    refs: dict[str, ModelRef]
    spec: RunSpec


def plan_run(cfg: RunConfig, *, schedule: Schedule | None = None, llms_given: bool = False,
             hashes: bool = True) -> RunPlan:
    """Check ``cfg`` and make its task, examples, agent and ``RunSpec`` (no model is loaded).
    ``hashes``: False leaves the content hashes of files (the data file, adapters) out of the
    spec, for a check made before those files exist (``check_spec`` then compares the rest)."""
    from reactlab.agents import make_agent
    from reactlab.tasks import make_task

    task = make_task(cfg.task)
    examples = task.examples(cfg.split, limit=cfg.limit, seed=cfg.seed, data=cfg.data)
    if not examples:
        raise DataError(f"{cfg.data or f'{task.name} split {cfg.split!r}'}: no examples to run")
    refs = _role_models(cfg)
    if cfg.options.pipeline.hint and not cfg.data and cfg.split in task.eval_splits:
        raise ValueError(f"hint shows the gold answer to the model (rationalisation, for training data): not on "
                         f"{task.name}'s evaluation split {cfg.split!r}")
    model_label = (refs[DEFAULT_ROLE].label() if DEFAULT_ROLE in refs
                   else ", ".join(f"{r}={m.label()}" for r, m in sorted(refs.items())))
    agent = make_agent(cfg.agent, task=task, method=cfg.method, style=cfg.style, prompt=cfg.prompt,
                       max_steps=cfg.max_steps, model=model_label, temperature=cfg.temperature, options=cfg.options)
    traits = agent.traits
    if (cfg.temperature > 0 or cfg.samples > 1) and not traits.samples_episodes:
        raise ValueError(f"temperature / samples (sampled runs) apply to --agent react with methods react, act, "
                         f"cot; not to --agent {cfg.agent} --method {agent.method}")
    if cfg.samples > 1:
        if cfg.temperature <= 0:
            raise ValueError(f"samples={cfg.samples} of a greedy run would be {cfg.samples} copies: "
                             "give temperature > 0 (e.g. -c temperature=0.7)")
        examples = [replace(e, id=f"{e.id}#{k}") for e in examples for k in range(1, cfg.samples + 1)]
    schedule = schedule or Schedule()
    who = dict(task=task.name, agent=agent.name, method=agent.method, model=model_label)
    if cfg.order_by:
        if schedule.order is None:
            raise ValueError(f"order_by {cfg.order_by!r}: no ordering was given for it (library callers pass "
                             "schedule=reactlab.budget.schedule.for_run(cfg))")
        examples = schedule.order(examples, **who)
    if cfg.token_budget:
        if not traits.token_budgets:
            raise ValueError(f"token_budget applies to --agent react with methods react, act; not to --agent "
                             f"{cfg.agent} --method {agent.method}")
        if schedule.budgets is None:
            raise ValueError(f"token_budget {cfg.token_budget!r}: no budgets were given for it (library callers "
                             "pass schedule=reactlab.budget.schedule.for_run(cfg))")
        examples = schedule.budgets(examples, **who)
    needs_model = traits.needs_model
    if needs_model and not llms_given and DEFAULT_ROLE not in refs:
        missing = [r for r in traits.roles if r not in refs]
        if missing:
            raise ValueError(f"--agent {cfg.agent} needs --model ({_model_forms()})"
                             + (f", or --model ROLE=SPEC for each of its roles ({', '.join(missing)} has none)"
                                if refs else ""))
    spec = RunSpec(
        task=task.name, split=cfg.data or cfg.split, agent=agent.name, method=agent.method,
        model=model_label if needs_model and refs else traits.model,
        prompt_id=agent.prompt_id,
        roles={r: m.label() for r, m in refs.items() if r != DEFAULT_ROLE} if needs_model else {},
        settings=_settings(cfg, traits, refs if needs_model else {}, schedule, hashes),
    )
    return RunPlan(task, list(examples), agent, refs, spec)


def _settings(cfg: RunConfig, traits: AgentTraits, refs: Mapping[str, ModelRef], schedule: Schedule,
              hashes: bool = True) -> dict[str, Any]:
    """The part of a run's identity beyond names: what else changes the episodes."""
    from reactlab.io import files_sha256

    out: dict[str, Any] = {"max_steps": cfg.max_steps}
    if traits.params is not None:
        out["decoding"] = asdict(traits.params)
    if cfg.method == "reflexion":
        out["reflexion_trials"] = cfg.options.reflexion.trials
    if cfg.samples > 1:
        out["samples"] = cfg.samples
    if cfg.agent == "pipeline" and cfg.options.pipeline.samples > 1:
        out["answer_samples"] = cfg.options.pipeline.samples
        out["answer_temperature"] = cfg.options.pipeline.temperature
    if cfg.data and hashes:
        out["data_sha256"] = files_sha256([cfg.data])
    if cfg.token_budget:
        out["token_budget"] = dict(schedule.identity)
    for role, ref in sorted(refs.items()):
        if ref.adapter and hashes:
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
    check_spec(out, spec)
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
    metric_sum = sum(d.get("scores", {}).get(metric, 0.0) for d in done.values())
    n_done = len(done)

    with JsonlAppender(traj_path, kept=len(records), noun="episodes") as f:

        def finish(example: Example, traj: Trajectory) -> None:
            nonlocal metric_sum, n_done
            traj.split = traj.split or spec.split
            traj.task = traj.task or spec.task
            traj.scores = task.score(example, traj.answer)
            traj.scores.update(agent.scores(example, traj, task))  # an agent's own (the pipeline's flips)
            rec = traj.to_dict()
            f.append(rec)
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
    summary = Summary.of(wanted, metrics=(*task.metrics, *agent.traits.metrics), main_metric=metric,
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
