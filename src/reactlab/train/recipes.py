"""The training recipes, one pydantic record per trainer (TRL's ``*Config`` beside ``*Trainer``):
what ``reactlab train METHOD -c RECIPE -c key=value`` validates before anything heavy loads.

The ``trl:`` block of a recipe is a plain mapping handed to TRL's config class untouched: we never
re-declare TRL's arguments, so its documentation is ours.

>>> from reactlab.config import load_config
>>> cfg = load_config(SFTRecipe, [], ["data.path=/d", "out=/o", "lora.r=4", "trl.learning_rate=2e-4"])
>>> cfg.lora.r, cfg.trl["learning_rate"], cfg.model.name
(4, 0.0002, 'smollm2')
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from reactlab.config import ModelRef, _Strict


def _default_model() -> ModelRef:
    return ModelRef(name="smollm2")


class DataConfig(_Strict):
    """A dataset directory from ``reactlab data build``: ``train.jsonl`` (+ ``val.jsonl``, optional,
    empty allowed) with TRL columns ``messages`` or ``prompt``/``completion``. ``limit`` /
    ``val_limit``: use only the first N rows (quick runs, benchmarks)."""

    path: str
    train_file: str = "train.jsonl"
    val_file: str | None = "val.jsonl"
    limit: int | None = Field(default=None, ge=1)
    val_limit: int | None = Field(default=None, ge=0)


class LoraConfig(_Strict):
    """LoRA adapter shape (PEFT ``LoraConfig``): rank ``r``, scale ``alpha``/``r``, ``dropout``, and
    ``target_modules`` (``all-linear`` = every linear layer except the output head, as in QLoRA)."""

    r: int = Field(default=16, ge=1, le=1024)
    alpha: int = Field(default=32, ge=1, le=4096)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class TrainRecipe(_Strict):
    """What every ``reactlab train`` recipe has: the ``model`` (its ``adapter``, when set, is an SFT
    run's adapter to continue from; see ``reactlab.train.policy``), the ``data`` dir, the ``method``
    (``lora``: an adapter on a frozen base; ``full``: every weight, ``lora`` ignored), the ``lora``
    shape, ``out`` (the adapter / model dir, also checkpoints, TensorBoard logs, ``training.json``,
    ``loss.png``) and ``trl``: the trainer's TRL config arguments, passed through untouched.
    ``max_minutes``: a wall-time budget: training ends after the update that crosses it (then the
    final eval, save and record as usual; ``training.json`` says ``stopped_by_time``). For arms of a
    comparison sized in minutes of one machine; pair it with a schedule that does not depend on
    the end (e.g. ``trl.lr_scheduler_type: constant_with_warmup``) and a large ``trl.max_steps``."""

    model: ModelRef = Field(default_factory=_default_model)
    data: DataConfig
    method: Literal["lora", "full"] = "lora"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    out: str
    max_minutes: float | None = Field(default=None, gt=0, le=100_000)
    trl: dict[str, Any] = Field(default_factory=dict)

    @field_validator("model", mode="before")
    @classmethod
    def _default_name(cls, v: Any) -> Any:
        """A recipe's model is ``smollm2`` unless named (``-c model.adapter=...`` alone keeps it)."""
        return {"name": _default_model().name, **v} if isinstance(v, dict) and "name" not in v else v


class SFTRecipe(TrainRecipe):
    """``reactlab train sft``. ``method``: ``lora`` (adapter on a frozen base), ``qlora`` (the same on
    a 4-bit base: CUDA + bitsandbytes only), ``full`` (every weight; ``lora`` ignored).
    ``train_on``: ``assistant`` (thought + action turns and their end-of-turn token; the default) or
    ``all`` (observations too, FireAct's behaviour) — see ``reactlab.data.masking``. ``out``: the
    adapter / model dir (also checkpoints, TensorBoard logs, ``training.json``, ``loss.png``). ``trl``:
    ``trl.SFTConfig`` arguments, passed through untouched. ``framework``: ``torch`` (TRL + PEFT; the
    default) or ``jittor`` (``reactlab.train.jittor``: LoRA only, same rows, masks, schedule and
    PEFT-format adapter; ``reactlab train sft --framework jittor`` sets it). ``model.adapter``
    continues an adapter (``lora``) or merges it first (``full``); not with ``qlora`` or Jittor."""

    method: Literal["lora", "qlora", "full"] = "lora"  # type: ignore[assignment]  # SFT adds qlora
    train_on: Literal["assistant", "all"] = "assistant"
    framework: Literal["torch", "jittor"] = "torch"


class PreferenceRecipe(TrainRecipe):
    """What the preference trainers (``train dpo``, ``train kto``) share. ``method``: ``lora`` or ``full`` (no
    QLoRA: a frozen reference beside a 4-bit policy is not supported here). ``data``: a
    ``reactlab data build --format dpo|kto`` dir. ``beta``: the strength of the pull towards the
    reference model (TRL's ``beta``; higher = stay closer); set here, not in ``trl:``."""

    beta: float = Field(default=0.1, gt=0, le=100)


class DPORecipe(PreferenceRecipe):
    """``reactlab train dpo`` on ``prompt``/``chosen``/``rejected`` rows (``data build --format dpo``).
    ``trl``: ``trl.DPOConfig`` arguments (``loss_type``, ``max_length``, ...), passed through."""


class KTORecipe(PreferenceRecipe):
    """``reactlab train kto`` on ``prompt``/``completion``/``label`` rows (``data build --format kto``).
    ``desirable_weight`` / ``undesirable_weight``: the losses' weights of ``label: true`` / ``false``
    rows (the KTO paper keeps ``desirable_weight * n_desirable / (undesirable_weight * n_undesirable)``
    in [1, 4/3]); ``balance_labels: true`` sets ``undesirable_weight`` from the training rows' counts
    (to ``n_desirable / n_undesirable``, the bottom of that range) instead. ``trl``: ``trl.KTOConfig``
    arguments, passed through."""

    desirable_weight: float = Field(default=1.0, gt=0, le=1000)
    undesirable_weight: float = Field(default=1.0, gt=0, le=1000)
    balance_labels: bool = False


class SamplingConfig(_Strict):
    """Which questions an update trains on (``reactlab.train.online``). ``dynamic``: DAPO's dynamic
    sampling: a group whose episodes all got the same reward (no advantage) is dropped and the
    update is filled with groups of other questions, preferring those whose last measured group
    differed; at most ``max_rollouts`` episodes per update in all (default: 3 x the update's batch),
    and groups still missing then are kept masked out of the loss. ``screen``: episodes per train
    question sampled before the first update to measure each one's pass rate (0: measure as
    training goes). ``refresh``: a measurement older than this many updates is taken again (the
    policy moved). ``pass_reward`` / ``pass_at``: an episode passes when that reward reaches it."""

    dynamic: bool = False
    max_rollouts: int | None = Field(default=None, ge=1)
    screen: int = Field(default=0, ge=0, le=256)
    refresh: int = Field(default=20, ge=1)
    pass_reward: str = "exact_match_reward"
    pass_at: float = 1.0

    @field_validator("pass_reward")
    @classmethod
    def _known_reward(cls, v: str) -> str:
        from reactlab.train.rewards import REWARDS

        if v not in REWARDS:
            raise ValueError(f"unknown reward {v!r}; known: {', '.join(REWARDS)}")
        return v


class RLRecipe(TrainRecipe):
    """What the online RL trainers (``train grpo``, ``train rloo``) share (``reactlab.train.online``).

    ``data``: a ``reactlab data build --format prompts`` dir (``prompt`` messages + ``answer``).
    ``model``: the base, or an SFT ``adapter`` to continue. ``rewards``: reward function names
    (``reactlab.train.rewards.REWARDS``) and their weights; the reward of an episode is the weighted
    sum. ``num_generations``: episodes per prompt (the group whose mean is the baseline).
    ``multi_turn``: whole ReAct episodes (``max_episode_steps`` model turns at most, each at most
    ``max_new_tokens``), or one completion per prompt. ``env``: ``wiki`` (``WikiEnv`` over the
    local index of ``corpus``, the vendored pages by default) or ``none`` (no tool: think, then
    finish). ``temperature``: the rollouts' sampling temperature (also TRL's, which scales the
    logits it recomputes). ``sampling``: which questions an update trains on (``SamplingConfig``).
    ``mask_truncated``: an episode cut by ``max_episode_steps`` (no answer) is kept out of the loss
    (TRL's ``mask_truncated_completions`` reads EOS, which a multi-turn episode never ends on).
    ``trl``: the TRL config's other arguments, passed through."""

    rewards: dict[str, float] = Field(default_factory=lambda: {"exact_match_reward": 1.0, "format_reward": 0.1})
    num_generations: int = Field(default=8, ge=2, le=256)
    multi_turn: bool = True
    max_episode_steps: int = Field(default=4, ge=1, le=100)
    max_new_tokens: int = Field(default=128, ge=1, le=32768)
    temperature: float = Field(default=1.0, gt=0, le=10)
    env: Literal["wiki", "none"] = "wiki"
    corpus: list[str] | None = None
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    mask_truncated: bool = False

    @field_validator("rewards")
    @classmethod
    def _known_rewards(cls, v: dict[str, float]) -> dict[str, float]:
        from reactlab.train.rewards import REWARDS

        if not v:
            raise ValueError("at least one reward function is needed")
        bad = [k for k in v if k not in REWARDS]
        if bad:
            raise ValueError(f"unknown reward {', '.join(map(repr, bad))}; known: {', '.join(REWARDS)}")
        return v


class GRPORecipe(RLRecipe):
    """``reactlab train grpo``: TRL's ``GRPOTrainer`` with our episodes as rollouts (group-normalised
    advantages, per-token loss, observation tokens masked out). ``trl``: ``trl.GRPOConfig`` arguments."""


class RLOORecipe(RLRecipe):
    """``reactlab train rloo``: TRL's ``RLOOTrainer`` with our episodes as rollouts (leave-one-out
    baseline, sequence-level loss over the model's own tokens). ``trl``: ``trl.RLOOConfig`` arguments."""


class RFTRecipe(_Strict):
    """``reactlab train rft``: rejection-sampling fine-tuning (expert iteration), ``reactlab.train.rft``.

    ``sft``: the SFT recipe (file or packaged name) every round trains with, ``sft_overrides``
    (``key=value``) on top; its ``model`` is the base. ``data``: the original SFT rows (a ``data
    build --format messages`` dir; None: the SFT recipe's ``data.path``). ``adapter``: the SFT adapter round 1 samples from
    (None: round 0 trains it from ``sft`` on the original rows; a given one may have seen the
    held-out questions). Of HotpotQA's train pool
    (evaluation questions dropped), shuffled with ``seed``: ``heldout`` questions, which no
    training row holds (the original rows included), score every round's adapter greedily, so
    settings are chosen on them and never on the eval split; the next ``questions`` are sampled
    ``k`` times each at ``temperature`` (chat, zero-shot, ``max_steps`` steps, ``batch_size``
    episodes at once). ``grounded``: keep only correct episodes whose every step is grounded
    (``data build --grounded``); false: every correct one. ``init``: each round trains from the
    ``base`` model, or continues the ``previous`` round's adapter. ``rounds``: may grow on a rerun
    (no other key may change). ``out``: the stage dirs and ``rft.json``."""

    sft: str = "sft_smollm2_lora"
    sft_overrides: list[str] = Field(default_factory=list)
    data: str | None = None
    adapter: str | None = None
    questions: int = Field(default=200, ge=1)
    heldout: int = Field(default=50, ge=0)
    k: int = Field(default=4, ge=1, le=256)
    temperature: float = Field(default=0.7, gt=0, le=10)
    max_steps: int = Field(default=7, ge=1, le=100)
    batch_size: int = Field(default=32, ge=1, le=65536)
    grounded: bool = True
    init: Literal["base", "previous"] = "base"
    rounds: int = Field(default=1, ge=1, le=100)
    seed: int = 0
    out: str
