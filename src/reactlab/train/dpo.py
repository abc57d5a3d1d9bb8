"""Direct Preference Optimization: ``train_dpo(recipe) -> RunResult``, a thin layer over TRL's
``DPOTrainer`` + PEFT.

Read top to bottom, a run is:

1. check the recipe (method, ``trl:`` keys, ``--resume``) before loading anything;
2. read the ``prompt``/``chosen``/``rejected`` rows of ``reactlab data build --format dpo``
   (``reactlab.data.preference``: chat message lists; ``prompt`` = the turns both trajectories share,
   ``chosen``/``rejected`` = the assistant continuation of each from the first turn they differ).
   Other columns (``source``, ``prompt_id``) stay out of the dataset but count in ``training.json``;
3. load the policy and its frozen reference (``policy.load_policy``): a new LoRA adapter on the
   base, whose reference is the base (adapter disabled); or, from an SFT ``model.adapter``, that
   adapter trained on, whose reference is a frozen copy of it (the SFT model: what DPO must stay
   close to, not the bare base); or the full model and a frozen copy;
4. TRL tokenizes each row with the chat template: ``prompt`` with the generation prompt, then
   ``prompt + chosen`` and ``prompt + rejected``; a sequence's log-probability is the sum over its
   completion tokens. With ``continuation: full`` rows, the completion is the rest of the
   trajectory, its observation (user) turns included: they are the same text the environment
   returned, so they add the same kind of terms to both sides, but they are not masked out (TRL has
   no per-turn mask for DPO); ``continuation: turn`` rows compare single assistant turns only;
5. ``trainer.train`` (``resume`` continues from the last checkpoint in ``out``), a final eval when
   there are val rows, then the adapter (or full model) + tokenizer saved to ``out``, ``loss.png``
   and ``training.json`` (``trainer: dpo``), as SFT does.

The recipe's ``trl:`` block goes to ``DPOConfig`` untouched; we only fill in what it leaves unset
(``args.trl_defaults``: ``output_dir``, TensorBoard, bf16 on CUDA only, ``use_cpu`` without CUDA,
no activation checkpointing); ``beta`` is the recipe's own key. Mind TRL's DPO ``learning_rate``
default, 1e-6: meant for full fine-tuning, far too small for LoRA (the packaged recipe sets 5e-5).
"""

from __future__ import annotations

import time
from typing import Any

from reactlab.train.args import check_resume, check_trl_keys, trl_defaults
from reactlab.train.cpu import patch_trl_for_cpu
from reactlab.train.limits import with_time_limit
from reactlab.train.policy import check_method, load_policy
from reactlab.train.recipes import DPORecipe
from reactlab.train.record import RunResult, finish_run
from reactlab.train.rows import columns_dataset, load_splits

COLUMNS = ("prompt", "chosen", "rejected")
"""The columns of a DPO row (``reactlab data build --format dpo``)."""


def dpo_dataset(rows: list[dict[str, Any]], where: str = "") -> Any:
    """A ``datasets.Dataset`` with the ``prompt``/``chosen``/``rejected`` columns of ``rows`` (strings,
    or chat message lists, alike in a row); a ``DataError`` names a row without them."""
    return columns_dataset(rows, COLUMNS, where)


def dpo_config(cfg: DPORecipe, evaluate: bool = True):
    """TRL's ``DPOConfig`` from the recipe's ``trl:`` block, ``beta``, and our defaults (module doc).
    An unknown TRL argument fails with the closest names; ``trl.beta`` is refused (it is the recipe's
    ``beta``). ``evaluate=False`` (no val rows) turns periodic evaluation off."""
    from trl import DPOConfig

    check_trl_keys(cfg.trl, DPOConfig)
    if "beta" in cfg.trl:
        raise ValueError("trl.beta: DPO's beta is the recipe's own key: write `beta: ...` (or -c beta=...), not trl.beta")
    kwargs = trl_defaults(cfg.trl, cfg.out) | {"beta": cfg.beta}
    if not evaluate:
        kwargs["eval_strategy"] = "no"
    return DPOConfig(**kwargs)


def train_dpo(cfg: DPORecipe, resume: bool = False, callbacks: list | None = None) -> RunResult:
    """DPO of ``cfg.model`` (or its ``model.adapter``) on ``cfg.data``; writes ``cfg.out`` (see the
    module docstring). ``resume``: continue from the last ``checkpoint-N`` in ``out``
    (``ValueError`` when there is none). ``callbacks``: extra ``transformers.TrainerCallback``s.
    Returns the ``RunResult`` also written to ``out/training.json``."""
    check_method(cfg.method, cfg.model.name)
    t0 = time.perf_counter()
    if resume:
        check_resume(cfg.out)
    train_file, train_rows, val_file, val_rows = load_splits(cfg)
    train_ds = dpo_dataset(train_rows, str(train_file))
    eval_ds = dpo_dataset(val_rows, str(val_file)) if val_rows else None
    args = dpo_config(cfg, evaluate=eval_ds is not None)  # validated before the (slow) model load

    from trl import DPOTrainer

    patch_trl_for_cpu()
    policy = load_policy(cfg, reference=True)
    trainer = DPOTrainer(model=policy.model, ref_model=policy.ref_model, args=args, train_dataset=train_ds,
                         eval_dataset=eval_ds, processing_class=policy.tokenizer, peft_config=policy.peft_config,
                         callbacks=with_time_limit(cfg, callbacks))
    output = trainer.train(resume_from_checkpoint=True if resume else None)
    return finish_run(trainer, output, cfg, name="dpo", t0=t0,
                      files=[f for f in (train_file, val_file) if f is not None], rows=train_rows + val_rows,
                      n_train=len(train_ds), n_val=len(val_rows), resume=resume)
