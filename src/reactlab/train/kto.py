"""Kahneman-Tversky Optimization: ``train_kto(recipe) -> RunResult``, a thin layer over TRL's
``KTOTrainer`` + PEFT.

KTO learns from unpaired judgements: each ``prompt``/``completion`` row of ``reactlab data build
--format kto`` carries ``label`` (true: a correct, finished trajectory; false: any other). The run is
DPO's (``reactlab.train.dpo``: the same policy and reference model, see ``policy.load_policy``; the
same outputs and ``training.json`` with ``trainer: kto``; the same tokenization: a completion's
log-probability sums all its tokens, observation turns included), with KTO's own constraints:

- TRL estimates KTO's KL term from mismatched pairs inside a batch (each prompt with its
  neighbour's completion), so ``trl.per_device_train_batch_size`` must be at least 2 and the
  sampler sequential (TRL's default for KTO; we refuse both mistakes before loading the model);
- the two label classes are weighted by ``desirable_weight`` / ``undesirable_weight``; agent runs
  usually give far more wrong trajectories than right ones, so ``balance_labels: true`` sets
  ``undesirable_weight = n_true / n_false`` from the training rows (``balanced_weights``).

The recipe's ``trl:`` block goes to ``KTOConfig`` untouched, except the keys the recipe owns
(``beta`` and the two weights) and our defaults for what it leaves unset (``args.trl_defaults``;
on a CPU ``bf16: false`` + ``use_cpu``, without which ``KTOConfig`` refuses to build).
"""

from __future__ import annotations

import time
from typing import Any

from reactlab.io import DataError
from reactlab.train.args import check_resume, check_trl_keys, trl_defaults
from reactlab.train.cpu import patch_trl_for_cpu
from reactlab.train.limits import with_time_limit
from reactlab.train.policy import check_method, load_policy
from reactlab.train.recipes import KTORecipe
from reactlab.train.record import RunResult, finish_run
from reactlab.train.rows import columns_dataset, load_splits

COLUMNS = ("prompt", "completion")
"""The text columns of a KTO row (``reactlab data build --format kto``), besides its ``label``."""
OWN_KEYS = ("beta", "desirable_weight", "undesirable_weight")
"""``KTOConfig`` arguments that are the recipe's own keys, refused in ``trl:``."""
TRL_DEFAULT_BATCH = 8
"""``TrainingArguments.per_device_train_batch_size`` when the recipe does not set it."""


def kto_dataset(rows: list[dict[str, Any]], where: str = "") -> Any:
    """A ``datasets.Dataset`` with the ``prompt``/``completion``/``label`` columns of ``rows``; a
    ``DataError`` names a row without them or with a ``label`` that is not true/false."""
    for n, row in enumerate(rows, 1):
        if "label" in row and not isinstance(row["label"], bool):
            raise DataError(f"{where}: row {n}: 'label' must be true or false, not {row['label']!r}")
    return columns_dataset(rows, COLUMNS, where, extra=("label",))


def balanced_weights(labels: list[bool], desirable_weight: float = 1.0) -> tuple[float, float]:
    """``(desirable_weight, undesirable_weight)`` with ``desirable * n_true == undesirable * n_false``:
    the bottom of the KTO paper's range [1, 4/3] for that ratio. One class missing: ``ValueError``.

    >>> balanced_weights([True, False, False, False])
    (1.0, 0.3333333333333333)
    """
    n_true = sum(labels)
    n_false = len(labels) - n_true
    if not n_true or not n_false:
        raise ValueError(f"balance_labels: the training rows have {n_true} label-true and {n_false} label-false rows; "
                         "KTO needs both")
    return desirable_weight, desirable_weight * n_true / n_false


def kto_config(cfg: KTORecipe, evaluate: bool = True, labels: list[bool] | None = None):
    """TRL's ``KTOConfig`` from the recipe's ``trl:`` block, its ``beta`` and weights (balanced over
    ``labels`` with ``balance_labels``), and our defaults (module doc). Unknown TRL arguments, the
    recipe's own keys in ``trl:`` and a batch of 1 fail with a ``ValueError`` naming the key."""
    from trl import KTOConfig

    check_trl_keys(cfg.trl, KTOConfig)
    own = [k for k in OWN_KEYS if k in cfg.trl]
    if own:
        raise ValueError(f"trl.{own[0]}: KTO's {', '.join(own)} are the recipe's own keys: write `{own[0]}: ...` "
                         f"(or -c {own[0]}=...), not trl.{own[0]}")
    kl = cfg.trl.get("loss_type", "kto") != "apo_zero_unpaired"  # the loss TRL estimates a KL term for
    if kl and cfg.trl.get("per_device_train_batch_size", TRL_DEFAULT_BATCH) < 2:
        raise ValueError("trl.per_device_train_batch_size: KTO needs at least 2 rows per device batch (its KL term "
                         "pairs each prompt with a neighbour's completion); use gradient_accumulation_steps to save memory")
    if kl and cfg.trl.get("train_sampling_strategy", "sequential") != "sequential":
        raise ValueError("trl.train_sampling_strategy: KTO's KL term needs 'sequential' (TRL's default for KTO)")
    weights = (cfg.desirable_weight, cfg.undesirable_weight)
    if cfg.balance_labels and labels is not None:
        weights = balanced_weights(labels, cfg.desirable_weight)
    kwargs = trl_defaults(cfg.trl, cfg.out) | {"beta": cfg.beta, "desirable_weight": weights[0],
                                                "undesirable_weight": weights[1]}
    if not evaluate:
        kwargs["eval_strategy"] = "no"
    return KTOConfig(**kwargs)


def train_kto(cfg: KTORecipe, resume: bool = False, callbacks: list | None = None) -> RunResult:
    """KTO of ``cfg.model`` (or its ``model.adapter``) on ``cfg.data``; writes ``cfg.out`` (see
    ``reactlab.train.dpo``). ``resume``: continue from the last ``checkpoint-N`` in ``out``
    (``ValueError`` when there is none). ``callbacks``: extra ``transformers.TrainerCallback``s.
    Returns the ``RunResult`` also written to ``out/training.json``."""
    check_method(cfg.method, cfg.model.name)
    t0 = time.perf_counter()
    if resume:
        check_resume(cfg.out)
    train_file, train_rows, val_file, val_rows = load_splits(cfg)
    train_ds = kto_dataset(train_rows, str(train_file))
    eval_ds = kto_dataset(val_rows, str(val_file)) if val_rows else None
    labels = list(train_ds["label"])
    args = kto_config(cfg, evaluate=eval_ds is not None, labels=labels)  # validated before the model load

    from trl import KTOTrainer

    patch_trl_for_cpu()
    policy = load_policy(cfg, reference=True)
    trainer = KTOTrainer(model=policy.model, ref_model=policy.ref_model, args=args, train_dataset=train_ds,
                         eval_dataset=eval_ds, processing_class=policy.tokenizer, peft_config=policy.peft_config,
                         callbacks=with_time_limit(cfg, callbacks))
    output = trainer.train(resume_from_checkpoint=True if resume else None)
    return finish_run(trainer, output, cfg, name="kto", t0=t0,
                      files=[f for f in (train_file, val_file) if f is not None], rows=train_rows + val_rows,
                      n_train=len(train_ds), n_val=len(val_rows), resume=resume,
                      extra={"labels": {"true": sum(labels), "false": len(labels) - sum(labels)},
                             "weights": {"desirable": args.desirable_weight, "undesirable": args.undesirable_weight}})
