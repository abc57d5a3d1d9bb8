"""REINFORCE Leave-One-Out with the wiki in the loop: ``train_rloo(recipe) -> RunResult``, TRL's
``RLOOTrainer`` whose rollouts are our ReAct episodes.

TRL 1.16's RLOO has no rollout hook and no per-token mask besides padding, so ``EpisodeRLOOTrainer``
is a thin subclass that changes two things and keeps the rest (advantages, clipping, KL, logging):

- ``_generate`` returns our episodes (``online.EpisodeRollouts``, the same rollouts GRPO gets) instead
  of sampling with ``model.generate``; the reward functions receive each episode's conversation as
  their ``completions``, and, where dynamic sampling replaced a drawn question, its reward columns
  (as GRPO's trainer merges a ``rollout_func``'s extra fields);
- ``env_mask``: RLOO's loss is sequence-level: ``log pi(completion) = sum over completion tokens``,
  and so are its KL penalty and its importance ratio. Those sums must run over the model's own
  tokens only, but RLOO uses ``completion_mask`` both for them and as the attention mask (it cannot
  be zeroed on observations: the model must still see them). So the mask is applied where the
  per-token log-probabilities are made (``_get_per_token_logps_and_entropies``): they are 0 on
  masked tokens, whatever sums them, and no gradient reaches the logits there. The mask travels
  in the batch (``inputs["env_mask"]``) from generation to each optimisation step, as TRL's own
  tensors do (TRL's buffering splits every tensor of the batch alike);
- the old policy's log-probabilities: TRL recomputes them after every generation round (one
  no-grad forward over the round), though the engine sampled those very tokens from those weights
  and kept their log-probabilities (``log_softmax(logits / temperature)``, 0 where masked, as the
  recomputation is after the mask). With ``engine_logprobs`` (the default) the engine's stand in
  and the forward is skipped; the reference model's, for the KL penalty, are still computed.

Why a subclass and not TRL's ``tools``/``environment_factory``: those need JSON tool calls and chat
templates with tool support; our agents act in ReAct text (``search[X]``) on any template.
Everything else is ``online.run_rl``: data, recipe checks, outputs (``trainer: rloo``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from reactlab.train.args import check_resume
from reactlab.train.cpu import patch_trl_for_cpu
from reactlab.train.online import EpisodeRollouts, read_prompt_rows, rl_config_kwargs, run_rl
from reactlab.train.policy import check_method
from reactlab.train.recipes import RLOORecipe
from reactlab.train.record import RunResult
from reactlab.types import Environment

ROLLOUT_KEYS = ("prompt_ids", "completion_ids", "logprobs", "env_mask", "episode")


def rloo_config(cfg: RLOORecipe):
    """TRL's ``RLOOConfig`` from the recipe (``online.rl_config_kwargs``), the reward weights in order."""
    from trl import RLOOConfig

    return RLOOConfig(**rl_config_kwargs(cfg, RLOOConfig) | {"reward_weights": list(cfg.rewards.values())})


def episode_rloo_trainer(*, engine_logprobs: bool = True, **kwargs: Any) -> Any:
    """An ``EpisodeRLOOTrainer`` (module docstring): ``RLOOTrainer``'s arguments plus ``rollouts``
    (an ``EpisodeRollouts``). ``engine_logprobs=False``: TRL's own recomputation of the old policy's
    log-probabilities (the benchmark's baseline). The class is made here so that importing this
    module imports no TRL."""
    import torch
    from trl import RLOOTrainer

    class EpisodeRLOOTrainer(RLOOTrainer):
        def __init__(self, *args: Any, rollouts: EpisodeRollouts, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self.rollouts = rollouts
            self._env_masks: list[list[int]] | None = None  # this generation round's, as generated
            self._active_mask: torch.Tensor | None = None  # the batch's, while its logps are computed
            self._columns: dict[str, list[Any]] = {}  # this round's reward columns, when the rollouts replaced rows
            self._engine_logps: list[list[float]] | None = None  # this round's, until the old policy's are asked

        def _generate(self, prompts: list) -> tuple[list, list, list]:
            out = self.rollouts(prompts, self)
            self._env_masks = out["env_mask"]
            self._engine_logps = out["logprobs"] if engine_logprobs else None
            self._columns = {k: v for k, v in out.items() if k not in ROLLOUT_KEYS}
            mode = "train" if getattr(self.model, "training", False) else "eval"
            lengths = [sum(m) for m in out["env_mask"]]
            if mode == "train":
                self.state.num_input_tokens_seen += sum(map(len, out["prompt_ids"])) + sum(map(len, out["completion_ids"]))
            self._metrics[mode]["num_tokens"] = [self.state.num_input_tokens_seen]
            self._metrics[mode]["completions/mean_length"].append(sum(lengths) / max(1, len(lengths)))
            return out["prompt_ids"], out["completion_ids"], out["episode"]

        def _calculate_rewards(self, inputs: list[dict[str, Any]], *args: Any) -> Any:
            # dynamic sampling's groups may be other questions than the drawn rows: their reward columns
            for i, row in enumerate(inputs):
                row.update({k: v[i] for k, v in self._columns.items()})
            return super()._calculate_rewards(inputs, *args)

        def _padded(self, masks: list[list[int]] | list[list[float]], width: int) -> torch.Tensor:
            rows = [list(m[:width]) + [0] * (width - len(m)) for m in masks]
            return torch.tensor(rows, dtype=torch.float32, device=self.accelerator.device)

        def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
            self._active_mask = None
            try:
                out = super()._generate_and_score_completions(inputs)
            finally:
                self._active_mask = None
            assert self._env_masks is not None
            out["env_mask"] = self._padded(self._env_masks, out["completion_ids"].size(1))
            self._env_masks = self._engine_logps = None
            return out

        def _get_per_token_logps_and_entropies(self, model: Any, input_ids: Any, attention_mask: Any,
                                               logits_to_keep: int, *args: Any, **kw: Any) -> Any:
            if self._engine_logps is not None and model is self.model and not torch.is_grad_enabled():
                # the round's first no-grad call is the old policy's (the reference's comes after): the engine's
                logps = self._padded(self._engine_logps, logits_to_keep)
                self._engine_logps = None
                return logps, None, None
            logps, entropies, *rest = super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, *args, **kw)
            mask = self._active_mask
            if mask is None and self._env_masks is not None:  # inside generation: this round's masks
                mask = self._padded(self._env_masks, logps.size(1))
            if mask is not None:
                logps = logps * mask  # no term, and no gradient, from tokens the model did not write
            return (logps, entropies, *rest)

        def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> Any:
            self._active_mask = inputs["env_mask"]
            try:
                return super()._compute_loss(model, inputs)
            finally:
                self._active_mask = None

    return EpisodeRLOOTrainer(**kwargs)


def train_rloo(cfg: RLOORecipe, resume: bool = False, callbacks: list | None = None,
               env_factory: Callable[[], Environment] | None = None) -> RunResult:
    """RLOO of ``cfg.model`` (or its ``model.adapter``) on episodes from ``cfg.data``'s prompts;
    writes ``cfg.out`` as ``train_grpo`` does (``trainer: rloo``)."""
    check_method(cfg.method, cfg.model.name)
    t0 = time.perf_counter()
    if resume:
        check_resume(cfg.out)
    train_file, rows = read_prompt_rows(cfg)
    args = rloo_config(cfg)  # validated before the (slow) model load

    patch_trl_for_cpu()
    return run_rl(cfg, "rloo", episode_rloo_trainer, args, resume, t0, train_file, rows, env_factory, callbacks)
