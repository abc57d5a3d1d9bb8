"""Supervised fine-tuning: ``train_sft(recipe) -> RunResult``, a thin layer over TRL's ``SFTTrainer``.

Read top to bottom, a run is:

1. refuse what this machine cannot do (QLoRA without CUDA) before loading anything;
2. load the policy (``policy.load_policy``: the base model + tokenizer and a new LoRA config, or
   the ``model.adapter`` continued);
3. tokenize the rows ourselves with ``reactlab.data.masking`` — ``mask_conversation`` for
   ``messages`` rows, ``mask_completion`` for ``prompt``/``completion`` rows — the very functions the
   data issue defines the loss mask with, so the labels the model is trained on are those labels by
   construction. Why not TRL's ``assistant_only_loss``: it needs ``{% generation %}`` markers, which
   SmolLM2's ChatML template (like most shipped templates) lacks;
4. hand TRL the pre-tokenized ``input_ids``/``labels`` dataset. TRL uses a ``labels`` column as is,
   truncates rows to ``max_length`` (and drops rows left without a trained token), and its collator
   pads each batch to its own longest row (labels with -100) — never to a fixed length. With
   ``trl.padding_free: true`` the batch is one flattened row whose ``position_ids`` restart per
   example (transformers builds the block-diagonal mask from them, so it is exact with SDPA too);
5. ``trainer.train`` (``resume`` continues from the last checkpoint in ``out``), a final eval, then
   the adapter (or full model) + tokenizer saved to ``out``, ``loss.png`` and ``training.json``.

The recipe's ``trl:`` block goes to ``SFTConfig`` untouched; we only fill in what it leaves unset,
as for every trainer (``args.trl_defaults``): ``output_dir`` (= ``out``), ``report_to``
(TensorBoard), ``use_cpu`` without CUDA (which is also what lets ``torchrun`` processes on a CPU form
one gloo process group; without it each trains alone), activation checkpointing (it halves the peak
memory for a little time), and ``bf16`` (autocast over
fp32 weights) on CUDA and on CPUs whose bf16 matmuls are fast (AMX or AVX-512 BF16, detected at run time:
``hardware.bf16_matmuls_fast``); ``training.json`` records the precision used.

The loss is computed by TRL's chunked LM head, which never builds the full-vocabulary logits; on a CPU
``cpu.patch_trl_for_cpu`` makes it project only the positions that carry a label, as it does on
CUDA (the prompt's positions carry no loss).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from reactlab.data.formats import row_tools
from reactlab.data.masking import mask_completion, mask_conversation, mask_tool_conversation
from reactlab.io import DataError
from reactlab.train.args import check_resume, trl_defaults
from reactlab.train.args import check_trl_keys as args_check_trl_keys
from reactlab.train.cpu import patch_trl_for_cpu
from reactlab.train.limits import with_time_limit
from reactlab.train.policy import check_method, load_policy
from reactlab.train.recipes import SFTRecipe
from reactlab.train.record import RunResult, finish_run
from reactlab.train.rows import load_rows, load_splits

__all__ = ["check_trl_keys", "load_rows", "sft_config", "tokenize_row", "tokenize_rows", "train_sft"]


def tokenize_row(tokenizer: Any, row: dict[str, Any], train_on: str = "assistant") -> dict[str, list[int]]:
    """``{"input_ids", "labels"}`` of one SFT row: ``messages`` (conversational; with ``tools``, a tool
    conversation: ``mask_tool_conversation``) or ``prompt`` + ``completion`` (texts: the paper's
    layout; or message lists, trained like ``messages``)."""
    if "messages" in row and "tools" in row:
        enc = mask_tool_conversation(tokenizer, row["messages"], row_tools(row), train_on)
    elif "messages" in row:
        enc = mask_conversation(tokenizer, row["messages"], train_on)
    elif "prompt" in row and "completion" in row:
        p, c = row["prompt"], row["completion"]
        if isinstance(p, list):  # conversational prompt + completion: a conversation like `messages`
            enc = mask_conversation(tokenizer, p + c, train_on)
        else:
            enc = mask_completion(tokenizer, p, c, train_on)
    else:
        raise DataError(f"an SFT row needs 'messages' or 'prompt' + 'completion'; this one has {sorted(row)}")
    return {"input_ids": enc["input_ids"], "labels": enc["labels"]}


def tokenize_rows(tokenizer: Any, rows: list[dict[str, Any]], train_on: str, where: str = "") -> Any:
    """A ``datasets.Dataset`` with ``input_ids`` and ``labels`` columns, one row per input row."""
    from datasets import Dataset

    cols: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    for n, row in enumerate(rows, 1):
        try:
            enc = tokenize_row(tokenizer, row, train_on)
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{where}: row {n}: {e}") from None
        cols["input_ids"].append(enc["input_ids"])
        cols["labels"].append(enc["labels"])
    return Dataset.from_dict(cols)


def check_trl_keys(trl: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming each key of a ``trl:`` block that ``trl.SFTConfig`` does not take
    (with the closest argument names), without building the config (which checks the hardware)."""
    from trl import SFTConfig

    args_check_trl_keys(trl, SFTConfig)


def sft_config(cfg: SFTRecipe, evaluate: bool = True):
    """TRL's ``SFTConfig`` from the recipe's ``trl:`` block plus our defaults (module doc).
    An unknown TRL argument fails with the closest names (``check_trl_keys``). ``evaluate=False``
    (no val rows) turns periodic evaluation off: ``DataConfig`` allows an empty or missing val file,
    and the Trainer refuses an ``eval_strategy`` with nothing to evaluate."""
    from trl import SFTConfig

    check_trl_keys(cfg.trl)
    kwargs: dict[str, Any] = trl_defaults(cfg.trl, cfg.out, cpu_bf16=True, checkpointing=True)
    if not evaluate:
        kwargs["eval_strategy"] = "no"
    return SFTConfig(**kwargs)


def train_sft(cfg: SFTRecipe, resume: bool = False, callbacks: list | None = None) -> RunResult:
    """Fine-tune ``cfg.model`` on ``cfg.data`` and write ``cfg.out`` (see the module docstring).

    ``resume``: continue from the last ``checkpoint-N`` in ``out`` (``ValueError`` when there is
    none). ``callbacks``: extra ``transformers.TrainerCallback`` objects (tests, notebooks).
    Returns the ``RunResult`` also written to ``out/training.json``.
    """
    if cfg.framework != "torch":
        raise ValueError(f"framework: {cfg.framework}: train with reactlab.train.jittor.train.train_sft_jittor "
                         "(what `reactlab train sft` calls for it); train_sft is the torch path")
    check_method(cfg.method, cfg.model.name)
    t0 = time.perf_counter()
    out = Path(cfg.out)
    if resume:
        check_resume(out)
    train_file, train_rows, val_file, val_rows = load_splits(cfg)
    args = sft_config(cfg, evaluate=bool(val_rows))  # validated before the (slow) model load

    from trl import SFTTrainer

    patch_trl_for_cpu()
    policy = load_policy(cfg)
    train_ds = tokenize_rows(policy.tokenizer, train_rows, cfg.train_on, str(train_file))
    eval_ds = tokenize_rows(policy.tokenizer, val_rows, cfg.train_on, str(val_file)) if val_rows else None
    trainer = SFTTrainer(model=policy.model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=policy.tokenizer, peft_config=policy.peft_config,
                         callbacks=with_time_limit(cfg, callbacks))
    output = trainer.train(resume_from_checkpoint=True if resume else None)
    return finish_run(trainer, output, cfg, name="sft", t0=t0, files=[f for f in (train_file, val_file) if f],
                      rows=train_rows + val_rows, n_train=len(train_ds), n_val=len(val_rows), resume=resume)

