"""Group Relative Policy Optimization with the wiki in the loop: ``train_grpo(recipe) -> RunResult``,
TRL's ``GRPOTrainer`` whose rollouts are our ReAct episodes (``rollout_func``: ``online.EpisodeRollouts``).
The run (data, policy, rollouts, rewards, outputs) is ``online.run_rl``'s; TRL's KL term
(``trl.beta``) is 0 by default here; ``training.json`` says ``trainer: grpo``.

One change to TRL's trainer (``EpisodeGRPOTrainer``): where TRL would recompute the rollouts'
log-probabilities under the sampling weights (``old_per_token_logps``: with ``num_iterations > 1``,
or a generation round that is not a whole number of accumulation steps), it takes the engine's
instead: the engine sampled from those very weights and returns exactly those log-probabilities
(``reactlab.train.rollout``'s invariant), so that forward pass over the whole round is saved.
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

    patch_trl_for_cpu()
    return run_rl(cfg, "grpo", episode_grpo_trainer, args, resume, t0, train_file, rows, env_factory, callbacks)


def episode_grpo_trainer(*, rollouts: EpisodeRollouts, engine_logprobs: bool = True, **kwargs: Any) -> Any:
    """An ``EpisodeGRPOTrainer`` (module docstring): ``GRPOTrainer``'s arguments with ``rollouts``
    as its ``rollout_func``. ``engine_logprobs=False``: TRL's own recomputation (the benchmark's
    baseline). The class is made here so that importing this module imports no TRL."""
    from trl import GRPOTrainer

    class EpisodeGRPOTrainer(GRPOTrainer):
        def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
            args: Any = self.args
            recompute = args.gradient_accumulation_steps % (args.steps_per_generation * self.num_iterations) != 0
            if not engine_logprobs or not recompute or self.use_vllm:
                return super()._generate_and_score_completions(inputs)
            # TRL recomputes when generation and optimizer steps misalign: make them align for this
            # call only, then hand the loss the engine's log-probabilities as the old policy's
            iterations, steps = self.num_iterations, args.steps_per_generation
            self.num_iterations, args.steps_per_generation = 1, args.gradient_accumulation_steps
            try:
                out = super()._generate_and_score_completions(inputs)
            finally:
                self.num_iterations, args.steps_per_generation = iterations, steps
            out["old_per_token_logps"] = out["sampling_per_token_logps"]  # 0 where masked: the loss skips it
            return out

    return EpisodeGRPOTrainer(rollout_func=rollouts, **kwargs)
