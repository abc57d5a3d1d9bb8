"""What the online RL trainers (``grpo.py``, ``rloo.py``) share: a run with the wiki in the loop,
whose rollouts are our ReAct episodes (``reactlab.train.rollout``).

Read top to bottom, a run is:

1. check the recipe (method, ``trl:`` keys, ``--resume``) before loading anything;
2. read the ``prompt`` rows of ``reactlab data build --format prompts`` (``prompt`` messages and
   the reward columns: ``answer``...; ``source``/``prompt_id`` count in ``training.json`` only);
3. load the policy (``policy.load_policy``: a new LoRA adapter on the base, or the SFT
   ``model.adapter`` continued, or the full model). The reference for TRL's KL term (``trl.beta``)
   is TRL's own: with LoRA, the model with the adapter disabled (the base) or TRL's frozen copy of
   the SFT adapter (the SFT model); with ``full``, the base re-loaded from its path (so ``full`` +
   ``model.adapter`` + ``beta > 0`` is refused: it would be the bare base, not the SFT model);
4. every generation round, TRL hands ``EpisodeRollouts`` its prompts (each repeated
   ``num_generations`` times); each becomes one episode sampled from the *current* weights
   through our engine (``HFLLM.from_model`` around the trainer's model: the same module, LoRA
   unmerged, so an optimizer step is seen by the next rollout); TRL gets ``prompt_ids``,
   ``completion_ids`` (the flattened episode), the engine's ``logprobs``, ``env_mask`` (1 on the
   model's tokens only: the loss, its token count and the KL term skip observations and template
   tokens) and ``episode`` (the conversation);
4b. with ``sampling.dynamic`` (DAPO's dynamic sampling), a generation round keeps only groups whose
   rewards differ (a group of equal rewards has no advantage): TRL's drawn questions, less those
   measured lately as all-equal, are rolled out together; each group is scored by the recipe's
   rewards; the dropped groups' slots are refilled with other questions (measured lately as
   differing first, then unmeasured or stale ones: ``PassRates``), round after round, until the
   update is full or ``sampling.max_rollouts`` episodes are spent; a slot still empty then takes a
   dropped group with its ``env_mask`` all 0 (no loss, no KL term). ``sampling.screen`` measures
   every question before the first update. The episodes spent and groups kept per update are
   logged (``sampling/*``) and written to ``training.json`` (``result.extra.sampling``);
5. each reward of ``rewards`` scores the ``episode`` (TRL's own ``completions`` would be the
   flattened text, observations included, as one assistant turn), weighted by its weight;
6. ``trainer.train``; the adapter (or model) saved to ``out`` with ``loss.png``, ``reward.png``
   (mean episode reward and its spread per step) and ``training.json`` (the reward curve under
   ``result.extra.rewards``).

The recipe's ``trl:`` block goes to the TRL config untouched, with our defaults for what it leaves
unset (``args.trl_defaults``: bf16 autocast on a CPU whose bf16 matmuls are fast, as for SFT; its speed
and its effect on the importance ratio are measured in docs/training.md). ``num_generations`` and
``temperature`` are the recipe's own keys
(the rollouts use them too). TRL's ``max_completion_length`` cannot cut an episode (each turn is
bounded by ``max_new_tokens``, an episode by ``max_episode_steps``), so setting it is refused; it is
set to ``max_episode_steps * max_new_tokens`` for TRL's own bookkeeping. ``mask_truncated_completions``
would mask every multi-turn episode (they end at a stop string, not EOS) and is refused with them.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reactlab.io import DataError
from reactlab.train.args import check_trl_keys, trl_defaults
from reactlab.train.limits import with_time_limit
from reactlab.train.policy import load_policy
from reactlab.train.recipes import RLRecipe, SamplingConfig
from reactlab.train.record import RunResult, finish_run
from reactlab.train.rollout import RolloutSpec, run_rollouts
from reactlab.train.rows import columns_dataset, data_files, load_rows
from reactlab.types import Environment

OWN_KEYS = ("num_generations", "temperature")
"""TRL config arguments that are recipe keys (the rollouts use them as well)."""
META_COLUMNS = ("source", "prompt_id")


def rl_dataset(rows: list[dict[str, Any]], where: str = "") -> Any:
    """A ``datasets.Dataset`` of the ``prompt`` column (chat messages) and every reward column of
    ``rows`` (all columns but ``source``/``prompt_id``, as the first row has them)."""
    extra = [k for k in rows[0] if k not in ("prompt", *META_COLUMNS)] if rows else []
    return columns_dataset(rows, ("prompt",), where, extra=extra)


def rl_config_kwargs(cfg: RLRecipe, config_cls: type) -> dict[str, Any]:
    """The TRL config's arguments: the ``trl:`` block, our defaults, the recipe's own keys. An
    unknown TRL argument fails with the closest names; the recipe's own keys and an episode cap are
    refused in ``trl:`` (module docstring)."""
    check_trl_keys(cfg.trl, config_cls)
    for k in OWN_KEYS:
        if k in cfg.trl:
            raise ValueError(f"trl.{k}: this is the recipe's own key (the rollouts use it): write `{k}: ...`")
    if "max_completion_length" in cfg.trl:
        raise ValueError("trl.max_completion_length: rollouts are whole episodes and are never cut; bound them with "
                         "max_new_tokens (per model turn) and max_episode_steps instead")
    if cfg.multi_turn and cfg.trl.get("mask_truncated_completions"):
        raise ValueError("trl.mask_truncated_completions: multi-turn episodes end at a stop string, not EOS; "
                         "this would mask every one of them")
    return trl_defaults(cfg.trl, cfg.out, cpu_bf16=True) | {
        "num_generations": cfg.num_generations, "temperature": cfg.temperature,
        "max_completion_length": cfg.max_episode_steps * cfg.max_new_tokens if cfg.multi_turn else cfg.max_new_tokens,
    }


def episode_reward(fn: Callable[..., list[float]]) -> Callable[..., list[float]]:
    """``fn`` scoring the ``episode`` column (the conversation of each rollout) instead of TRL's
    ``completions`` when there is one; same name (TRL logs a reward under its function's name)."""

    def reward(prompts: list[Any], completions: list[Any], episode: list[Any] | None = None, **columns: Any) -> list[float]:
        return fn(prompts, episode if episode is not None else completions, **columns)

    reward.__name__ = reward.__qualname__ = fn.__name__
    reward.__doc__ = fn.__doc__
    return reward


def rl_rewards(cfg: RLRecipe) -> list[Callable[..., list[float]]]:
    """The recipe's reward functions, in ``rewards`` order (weights go to the TRL config)."""
    from reactlab.train.rewards import REWARDS

    return [episode_reward(REWARDS[name]) for name in cfg.rewards]


def rollout_spec(cfg: RLRecipe, seed: int) -> RolloutSpec:
    return RolloutSpec(multi_turn=cfg.multi_turn, max_steps=cfg.max_episode_steps,
                       max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=seed)


Scorer = Callable[[list[Any], list[dict[str, Any]]], tuple[list[float], list[bool]]]
"""``(episodes, rows) -> (rewards, passed)``: each episode's weighted reward and whether it passed."""


def episode_scorer(cfg: RLRecipe) -> Scorer:
    """The recipe's reward of each episode, summed with its weights as the trainer sums them, and
    whether it passed (``sampling.pass_reward`` reached ``sampling.pass_at``); the reward columns
    are each episode's row's."""
    from reactlab.train.rewards import REWARDS

    def score(episodes: list[Any], rows: list[dict[str, Any]]) -> tuple[list[float], list[bool]]:
        cols: dict[str, Any] = {k: [r.get(k) for r in rows] for r in rows[:1] for k in r
                                if k not in ("prompt", *META_COLUMNS)}
        prompts = [r["prompt"] for r in rows]
        total = [0.0] * len(episodes)
        for name, w in cfg.rewards.items():
            total = [t + w * v for t, v in zip(total, REWARDS[name](prompts, episodes, **cols), strict=True)]
        passed = [v >= cfg.sampling.pass_at for v in REWARDS[cfg.sampling.pass_reward](prompts, episodes, **cols)]
        return total, passed

    return score


def prompt_key(prompt: Any) -> str:
    """A prompt's identity (its roles and texts), to find the dataset row TRL drew it from."""
    return json.dumps([[m.get("role"), m.get("content")] for m in prompt])


@dataclass
class Measured:
    """A question's last group under the policy: at which update, its pass rate, whether its rewards differed."""

    step: int
    pass_rate: float
    differed: bool


class PassRates:
    """Each train question's last measured group (``Measured``), by row index; a measurement
    older than ``refresh`` updates is stale (the policy moved since)."""

    def __init__(self, refresh: int):
        self.refresh = refresh
        self.last: dict[int, Measured] = {}

    def record(self, q: int, step: int, rewards: list[float], passed: list[bool]) -> bool:
        """Record a group; True when its rewards differ (the group has an advantage to train on)."""
        differed = max(rewards) - min(rewards) > 1e-6
        self.last[q] = Measured(step, sum(passed) / len(passed), differed)
        return differed

    def known(self, q: int, step: int) -> Measured | None:
        m = self.last.get(q)
        return m if m is not None and step - m.step < self.refresh else None

    def candidates(self, questions: list[int], step: int, rng: random.Random) -> list[int]:
        """``questions`` worth a group, best first: measured lately and differing, then unmeasured
        or stale ones; never one measured lately with all rewards equal. Random within each."""
        fresh = [q for q in questions if (m := self.known(q, step)) is not None and m.differed]
        unknown = [q for q in questions if self.known(q, step) is None]
        rng.shuffle(fresh)
        rng.shuffle(unknown)
        return fresh + unknown

    def summary(self) -> dict[str, float]:
        """How many questions were measured, how many differed, their mean pass rate."""
        ms = list(self.last.values())
        return {"measured": len(ms), "differed": sum(m.differed for m in ms),
                "mean_pass_rate": sum(m.pass_rate for m in ms) / len(ms) if ms else 0.0}


@dataclass
class Sampling:
    """What dynamic sampling needs beside the rollouts: the recipe's ``SamplingConfig``, the
    dataset ``rows`` (replacement questions and their reward columns), the ``scorer``, the group
    size."""

    cfg: SamplingConfig
    rows: list[dict[str, Any]]
    scorer: Scorer
    group: int


class EpisodeRollouts:
    """TRL's ``rollout_func``: ``(prompts, trainer) -> {prompt_ids, completion_ids, logprobs,
    env_mask, episode}``, one episode per prompt (module docstring, step 4). The engine around the
    trainer's model is made at the first call (the trainer wraps the model in PEFT first). Rollout
    round ``k`` of the run is seeded from ``spec.seed`` and the trainer's global step, so a resumed
    run samples what the uninterrupted one would have; under several processes each sample is seeded
    by its place in the global batch, so a group split across processes gets distinct samples and
    the processes together sample what one process with the whole batch would.

    With ``sampling`` (dynamic sampling, module docstring step 4b) the update's groups may be other
    questions than TRL drew: the output then also carries each episode's reward columns (``answer``,
    ...), which the trainers hand to the reward functions in place of the drawn row's."""

    def __init__(self, spec: RolloutSpec, env_factory: Callable[[], Environment] | None = None,
                 sampling: Sampling | None = None, mask_truncated: bool = False):
        self.spec, self.env_factory, self.sampling = spec, env_factory, sampling
        self.mask_truncated = mask_truncated
        self.llm: Any = None
        self.last: list[Any] = []  # the last round's Rollouts (for tests and debugging)
        self.rates = PassRates(sampling.cfg.refresh if sampling else 1)
        self.log: list[dict[str, Any]] = []  # per update: rollouts spent, groups kept / dropped / masked
        self.screened = 0  # episodes sampled before the first update (``sampling.screen``)
        if sampling is not None:
            self._rows = {prompt_key(r["prompt"]): i for i, r in enumerate(sampling.rows)}

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list[Any]]:
        from reactlab.llm.hf import HFLLM

        model = trainer.accelerator.unwrap_model(trainer.model)
        if self.llm is None or self.llm.model is not model:
            self.llm = HFLLM.from_model(model, trainer.processing_class, batch_size=max(1, len(prompts)))
        training = model.training
        model.eval()  # no dropout while sampling: the logprobs are the policy's
        # process p's n prompts are entries p*n .. p*n+n-1 of the global batch (accelerate hands out
        # per-device batches in process order)
        first = trainer.accelerator.process_index * len(prompts)
        seed = trainer.state.global_step * 100_003 + first
        columns: dict[str, list[Any]] = {}
        try:
            with plain_forward(model):  # rollouts in fp32 under bf16 training: the engine's log-probs are fp32
                if self.sampling is None:
                    outs = self.rollouts(prompts, seed)
                else:
                    outs, columns = self.dynamic(prompts, trainer, seed)
        finally:
            model.train(training)
        if self.mask_truncated:
            for r in outs:
                if r.status == "max_steps":
                    r.env_mask = [0] * len(r.env_mask)
        self.last = outs
        return {"prompt_ids": [r.prompt_ids for r in outs], "completion_ids": [r.completion_ids for r in outs],
                "logprobs": [r.logprobs for r in outs], "env_mask": [r.env_mask for r in outs],
                "episode": [r.messages for r in outs], **columns}

    def rollouts(self, prompts: list[Any], seed: int) -> list[Any]:
        return run_rollouts(self.llm, prompts, self.spec, self.env_factory, round_seed=seed)

    def dynamic(self, prompts: list[Any], trainer: Any, seed: int) -> tuple[list[Any], dict[str, list[Any]]]:
        """DAPO's dynamic sampling: roll out groups, keep those whose rewards differ, draw other
        questions for the rest (each round's groups decoded together), within the rollout budget;
        groups still missing then are the dropped ones, masked out of the loss (``env_mask`` 0)."""
        assert self.sampling is not None
        smp, step, g = self.sampling, trainer.state.global_step, self.sampling.group
        if trainer.accelerator.num_processes != 1:
            raise ValueError("sampling.dynamic: one process only (a group must not be split across processes)")
        if len(prompts) % g:
            raise ValueError(f"sampling.dynamic: {len(prompts)} episodes per generation round is not a whole number "
                             f"of groups of num_generations={g}")
        budget = smp.cfg.max_rollouts or 3 * len(prompts)
        if budget < len(prompts):
            raise ValueError(f"sampling.max_rollouts={budget} is below one update's {len(prompts)} episodes")
        questions = list(range(len(smp.rows)))
        rng = random.Random(seed)
        if smp.cfg.screen and not self.rates.last:
            self.screen(questions, step, len(prompts))
        drawn = [self._rows[prompt_key(p)] for p in prompts[::g]]
        # TRL's draw, less the questions measured lately as all-equal, topped up with the best others
        pool = [q for q in self.rates.candidates(questions, step, rng) if q not in drawn]
        todo = [q for q in drawn if (m := self.rates.known(q, step)) is None or m.differed]
        need = len(drawn)
        kept: list[tuple[int, list[Any], list[float]]] = []  # (question, its group, their rewards)
        flat: list[tuple[int, list[Any], list[float]]] = []
        spent = 0
        while len(kept) < need:
            want = need - len(kept)
            if len(todo) < want:
                todo, pool = todo + pool[: want - len(todo)], pool[want - len(todo):]
            todo = todo[: min(want, (budget - spent) // g)]
            if not todo:  # the budget is spent, or no question is worth a group
                break
            rows = [smp.rows[q] for q in todo for _ in range(g)]
            outs = self.rollouts([r["prompt"] for r in rows], seed + spent)
            spent += len(outs)
            rewards, passed = smp.scorer([r.messages for r in outs], rows)
            for k, q in enumerate(todo):
                part = slice(k * g, (k + 1) * g)
                (kept if self.rates.record(q, step, rewards[part], passed[part]) else flat).append(
                    (q, outs[part], rewards[part]))
            todo = []
        masked = 0
        while len(kept) < need:
            # A slot no informative group filled: a dropped group takes it, out of the loss. Without
            # one, fewer than ``need`` groups were sampled, so one more still fits the budget.
            if flat:
                q, outs, rewards = flat.pop()
            else:
                q = drawn[len(kept)]
                outs = self.rollouts([smp.rows[q]["prompt"]] * g, seed + spent)
                spent += g
                rewards = smp.scorer([r.messages for r in outs], [smp.rows[q]] * g)[0]
            for r in outs:
                r.env_mask = [0] * len(r.env_mask)
            kept.append((q, outs, rewards))
            masked += 1
        mean = sum(sum(rs) for *_, rs in kept) / (need * g)  # what the trainer's own scoring should log
        self.log.append({"step": step, "rollouts": spent, "kept": need - masked, "masked": masked,
                         "dropped": len(flat) + masked, "reward": mean})
        metrics = trainer._metrics["train"]
        metrics["sampling/rollouts"].append(spent)
        metrics["sampling/kept_groups"].append(need - masked)
        metrics["sampling/masked_groups"].append(masked)
        rows = [smp.rows[q] for q, *_ in kept for _ in range(g)]
        names = [k for k in rows[0] if k not in ("prompt", *META_COLUMNS)]
        return [r for _, outs, _ in kept for r in outs], {k: [row.get(k) for row in rows] for k in names}

    def screen(self, questions: list[int], step: int, batch: int) -> None:
        """Measure every question's pass rate before the first update: ``sampling.screen`` episodes
        each, ``batch`` episodes decoded together."""
        assert self.sampling is not None
        k, smp = self.sampling.cfg.screen, self.sampling
        per = max(1, batch // k)
        for start in range(0, len(questions), per):
            qs = questions[start:start + per]
            rows = [smp.rows[q] for q in qs for _ in range(k)]
            outs = self.rollouts([r["prompt"] for r in rows], 7_919 * (start + 1))
            self.screened += len(outs)
            rewards, passed = smp.scorer([r.messages for r in outs], rows)
            for j, q in enumerate(qs):
                self.rates.record(q, step, rewards[j * k:(j + 1) * k], passed[j * k:(j + 1) * k])


@contextlib.contextmanager
def plain_forward(model: Any) -> Iterator[None]:
    """The model's own ``forward`` while inside: accelerate wraps it in bf16 autocast under
    ``trl.bf16`` and ``unwrap_model`` keeps that wrapper, so the rollouts would decode in bf16 too,
    which costs casts on a CPU and changes the old policy's log-probs; outside, the wrapper is back
    for the loss. A model without the wrapper is left as it is."""
    original = model.__dict__.get("_original_forward")  # accelerate's prepare_model keeps it there
    if original is None:
        yield
        return
    wrapped = model.forward
    model.forward = original
    try:
        yield
    finally:
        model.forward = wrapped


@contextlib.contextmanager
def environments(cfg: RLRecipe) -> Iterator[Callable[[], Environment] | None]:
    """The episodes' environment factory: ``WikiEnv`` over the open index of ``cfg.corpus`` for
    ``env: wiki`` (closed after the run), ``NoToolEnv`` for ``none``; None for single-turn runs."""
    if not cfg.multi_turn:
        yield None
        return
    if cfg.env == "none":
        from reactlab.envs.none import NoToolEnv

        yield NoToolEnv
        return
    from reactlab.envs.wikienv import WikiEnv
    from reactlab.wiki.index import get_index

    with get_index(corpora=[Path(c) for c in cfg.corpus] if cfg.corpus else None) as index:
        yield lambda: WikiEnv(index)


def reward_log(history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """``[{step, reward, reward_std}, ...]`` from a GRPO/RLOO trainer's log history.

    >>> reward_log([{"step": 1, "reward": 0.5, "reward_std": 0.1, "loss": 0.0}, {"step": 1, "train_loss": 0.0}])
    [{'step': 1, 'reward': 0.5, 'reward_std': 0.1}]
    """
    return [{k: h[k] for k in ("step", "reward", "reward_std") if k in h} for h in history if "reward" in h]


def run_rl(cfg: RLRecipe, name: str, make_trainer: Callable[..., Any], config: Any, resume: bool, t0: float,
           train_file: Path, rows: list[dict[str, Any]], env_factory: Callable[[], Environment] | None,
           callbacks: list | None) -> RunResult:
    """Load the policy, build the trainer (``make_trainer(model=, args=, train_dataset=,
    processing_class=, peft_config=, reward_funcs=, rollouts=, callbacks=)``), train, save, record."""
    from reactlab.train.plots import plot_rewards

    if cfg.method == "full" and cfg.model.adapter and float(getattr(config, "beta", 0.0)) != 0.0:
        # TRL makes a full fine-tune's reference itself, re-loading the base from its path: that would
        # be the bare base, not the SFT model the run starts from.
        raise ValueError("method: full with model.adapter and trl.beta > 0: the KL reference would be the bare base, "
                         "not the SFT model; use method: lora (the reference is then the SFT adapter, frozen) or trl.beta: 0")
    dataset = rl_dataset(rows, str(train_file))
    spec = rollout_spec(cfg, seed=int(config.seed))
    sampling = Sampling(cfg.sampling, rows, episode_scorer(cfg), cfg.num_generations) if cfg.sampling.dynamic else None
    with contextlib.ExitStack() as stack:
        if env_factory is None:
            env_factory = stack.enter_context(environments(cfg))
        policy = load_policy(cfg)  # TRL makes its own reference (module docstring, step 3)
        rollouts = EpisodeRollouts(spec, env_factory, sampling, mask_truncated=cfg.mask_truncated)
        trainer = make_trainer(model=policy.model, args=config, train_dataset=dataset, processing_class=policy.tokenizer,
                               peft_config=policy.peft_config, reward_funcs=rl_rewards(cfg),
                               rollouts=rollouts, callbacks=with_time_limit(cfg, callbacks))
        output = trainer.train(resume_from_checkpoint=True if resume else None)
    extra: dict[str, Any] = {"rewards": reward_log(trainer.state.log_history)}
    if sampling is not None:
        extra["sampling"] = {"screened": rollouts.screened, "updates": rollouts.log, "questions": rollouts.rates.summary()}
    result = finish_run(trainer, output, cfg, name=name, t0=t0, files=[train_file], rows=rows, n_train=len(dataset),
                        n_val=0, resume=resume, extra=extra)
    if trainer.is_world_process_zero():
        plot_rewards(trainer.state.log_history, Path(cfg.out) / "reward.png",
                     title=f"{name.upper()} {cfg.method} · {Path(cfg.model.name).name}")
    return result


def read_prompt_rows(cfg: RLRecipe) -> tuple[Path, list[dict[str, Any]]]:
    """``(train file, rows)``; an empty file is a ``DataError``. RL trainers have no eval set."""
    train_file, _ = data_files(cfg)
    rows = load_rows(train_file, cfg.data.limit)
    if not rows:
        raise DataError(f"{train_file}: no prompt rows to train on")
    return train_file, rows
