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
5. each reward of ``rewards`` scores the ``episode`` (TRL's own ``completions`` would be the
   flattened text, observations included, as one assistant turn), weighted by its weight;
6. ``trainer.train``; the adapter (or model) saved to ``out`` with ``loss.png``, ``reward.png``
   (mean episode reward and its spread per step) and ``training.json`` (the reward curve under
   ``result.extra.rewards``).

The recipe's ``trl:`` block goes to the TRL config untouched, with our defaults for what it leaves
unset (``args.trl_defaults``). ``num_generations`` and ``temperature`` are the recipe's own keys
(the rollouts use them too). TRL's ``max_completion_length`` cannot cut an episode (each turn is
bounded by ``max_new_tokens``, an episode by ``max_episode_steps``), so setting it is refused; it is
set to ``max_episode_steps * max_new_tokens`` for TRL's own bookkeeping. ``mask_truncated_completions``
would mask every multi-turn episode (they end at a stop string, not EOS) and is refused with them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from reactlab.io import DataError
from reactlab.train.args import check_trl_keys, trl_defaults
from reactlab.train.limits import with_time_limit
from reactlab.train.policy import load_policy
from reactlab.train.recipes import RLRecipe
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
    return trl_defaults(cfg.trl, cfg.out) | {
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


class EpisodeRollouts:
    """TRL's ``rollout_func``: ``(prompts, trainer) -> {prompt_ids, completion_ids, logprobs,
    env_mask, episode}``, one episode per prompt (module docstring, step 4). The engine around the
    trainer's model is made at the first call (the trainer wraps the model in PEFT first). Rollout
    round ``k`` of the run is seeded from ``spec.seed`` and the trainer's global step, so a resumed
    run samples what the uninterrupted one would have; under several processes each sample is seeded
    by its place in the global batch, so a group split across processes gets distinct samples and
    the processes together sample what one process with the whole batch would."""

    def __init__(self, spec: RolloutSpec, env_factory: Callable[[], Environment] | None = None):
        self.spec, self.env_factory = spec, env_factory
        self.llm: Any = None
        self.last: list[Any] = []  # the last round's Rollouts (for tests and debugging)

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
        try:
            outs = run_rollouts(self.llm, prompts, self.spec, self.env_factory,
                                round_seed=trainer.state.global_step * 100_003 + first)
        finally:
            model.train(training)
        self.last = outs
        return {"prompt_ids": [r.prompt_ids for r in outs], "completion_ids": [r.completion_ids for r in outs],
                "logprobs": [r.logprobs for r in outs], "env_mask": [r.env_mask for r in outs],
                "episode": [r.messages for r in outs]}


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
    with contextlib.ExitStack() as stack:
        if env_factory is None:
            env_factory = stack.enter_context(environments(cfg))
        policy = load_policy(cfg)  # TRL makes its own reference (module docstring, step 3)
        trainer = make_trainer(model=policy.model, args=config, train_dataset=dataset, processing_class=policy.tokenizer,
                               peft_config=policy.peft_config, reward_funcs=rl_rewards(cfg),
                               rollouts=EpisodeRollouts(spec, env_factory),
                               callbacks=with_time_limit(cfg, callbacks))
        output = trainer.train(resume_from_checkpoint=True if resume else None)
    rewards = reward_log(trainer.state.log_history)
    result = finish_run(trainer, output, cfg, name=name, t0=t0, files=[train_file], rows=rows, n_train=len(dataset),
                        n_val=0, resume=resume, extra={"rewards": rewards})
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
