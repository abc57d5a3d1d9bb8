"""Group Relative Policy Optimization with the wiki in the loop: ``train_grpo(recipe) -> RunResult``,
TRL's ``GRPOTrainer`` whose rollouts are our ReAct episodes (``rollout_func``: ``online.EpisodeRollouts``).
The run (data, policy, rollouts, rewards, outputs) is ``online.run_rl``'s; TRL's KL term
(``trl.beta``) is 0 by default here; ``training.json`` says ``trainer: grpo``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from reactlab.train.args import check_resume
from reactlab.train.cpu import patch_trl_for_cpu
from reactlab.train.online import EpisodeRollouts, read_prompt_rows, rl_config_kwargs, run_rl
from reactlab.train.policy import check_method
from reactlab.train.recipes import GRPORecipe
from reactlab.train.record import RunResult
from reactlab.types import Environment


def grpo_config(cfg: GRPORecipe):
    """TRL's ``GRPOConfig`` from the recipe (``online.rl_config_kwargs``), the reward weights in order."""
    from trl import GRPOConfig

    return GRPOConfig(**rl_config_kwargs(cfg, GRPOConfig) | {"reward_weights": list(cfg.rewards.values())})


def train_grpo(cfg: GRPORecipe, resume: bool = False, callbacks: list | None = None,
               env_factory: Callable[[], Environment] | None = None) -> RunResult:
    """GRPO of ``cfg.model`` (or its ``model.adapter``) on episodes from ``cfg.data``'s prompts;
    writes ``cfg.out`` (``reactlab.train.online``). ``resume``: continue from the last
    ``checkpoint-N``. ``env_factory``: the episodes' environment instead of ``cfg.env`` (tests,
    custom tools)."""
    check_method(cfg.method, cfg.model.name)
    t0 = time.perf_counter()
    if resume:
        check_resume(cfg.out)
    train_file, rows = read_prompt_rows(cfg)
    args = grpo_config(cfg)  # validated before the (slow) model load

    from trl import GRPOTrainer

    def make(*, rollouts: EpisodeRollouts, **kw: Any) -> Any:
        return GRPOTrainer(rollout_func=rollouts, **kw)

    patch_trl_for_cpu()
    return run_rl(cfg, "grpo", make, args, resume, t0, train_file, rows, env_factory, callbacks)
