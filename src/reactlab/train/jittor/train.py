"""LoRA SFT in Jittor: ``train_sft_jittor(recipe) -> RunResult``, the torch path's run on the same
rows, labels and optimizer schedule, with the same outputs.

Read top to bottom, a run is:

1. ``check_recipe`` refuses what this path does not do (QLoRA, full fine-tuning, a GGUF base,
   bf16 and fp16 together, packing / padding-free batches, any ``trl:`` argument it does not honour set to a value
   other than TRL's default) with one line naming the field, before anything is loaded;
2. the rows are tokenized by ``reactlab.train.sft.tokenize_rows``, i.e. ``reactlab.data.masking``:
   the torch path's ``input_ids`` and assistant-only ``labels``, truncated to ``trl.max_length``
   (rows left without a trained token are dropped, as TRL does);
3. the base (an HF dir: a named model's converted dir, or a path) becomes the Jittor model
   (``convert.load_hf``) with LoRA on ``lora.target_modules`` (``lora.inject``), computing in the
   dtype ``precision`` picks (``trl.bf16`` / ``trl.fp16``; unset: bf16 on CUDA as the torch path,
   float32 on a CPU, where the numpy-BLAS matmuls are float32 only) with float32 LoRA weights;
4. each update: ``gradient_accumulation_steps`` right-padded batches of
   ``per_device_train_batch_size`` rows; the loss is the summed token cross-entropy over the
   update's trained tokens divided by their count (transformers' ``num_items_in_batch``), the
   gradient clipped to ``max_grad_norm``, then AdamW at the schedule's rate (``optim.py``);
   under fp16 the loss is scaled dynamically (``optim.LossScale``) and an update with an inf or NaN
   gradient is skipped, as the Trainer's GradScaler does.
   ``activation_checkpointing`` (or ``gradient_checkpointing``), as the torch path reads it (on
   unless the recipe turns it off), recomputes each decoder layer in the backward pass
   (``model.loss_and_grads``); each micro-batch's graph is freed before the next is built.
   Row order per epoch: ``train_sampling_strategy`` (``random``, ``sequential`` or
   ``group_by_length``: transformers' own grouping function), seeded by ``trl.seed`` and the
   epoch, not the Trainer's sampler stream: same rows and batches sizes, another shuffle;
5. every ``logging_steps`` a log record (Trainer's keys: ``loss``, ``grad_norm``,
   ``learning_rate``, ``epoch``, ``num_tokens``, ``step``) to stderr and TensorBoard; evaluation
   and ``checkpoint-N`` dirs (adapter + optimizer + ``trainer_state.json``) as the ``trl:`` block
   says; ``resume`` continues from the last checkpoint exactly (dropout is seeded per update);
6. the adapter in PEFT's format + the tokenizer to ``out``, ``loss.png`` and ``training.json``
   (``extra.framework: jittor``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from reactlab.io import DataError, write_json_atomic
from reactlab.train.jittor import convert, lora
from reactlab.train.jittor.optim import (
    SCHEDULES,
    AdamW,
    LossScale,
    all_finite,
    clip_grads,
    lr_factor,
    warmup_steps,
)
from reactlab.train.jittor.runtime import import_jittor
from reactlab.train.recipes import SFTRecipe

HONOURED = {
    "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type",
    "warmup_steps", "warmup_ratio", "num_train_epochs", "max_steps", "max_length", "logging_steps",
    "eval_strategy", "eval_steps", "per_device_eval_batch_size", "save_strategy", "save_steps",
    "save_total_limit", "seed", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon",
    "max_grad_norm", "train_sampling_strategy", "report_to", "output_dir", "use_cpu",
    "dataloader_num_workers", "dataloader_pin_memory", "disable_tqdm", "activation_checkpointing",
    "gradient_checkpointing", "bf16", "fp16",
}
"""``trl:`` arguments the Jittor path reads (any value) or that do not change what is computed."""
ONLY = {"padding_free": (False,), "packing": (False,),
        "train_sampling_strategy": ("random", "sequential", "group_by_length"),
        "eval_strategy": ("no", "steps", "epoch"), "save_strategy": ("no", "steps", "epoch"),
        "lr_scheduler_type": SCHEDULES}
"""Arguments accepted only with these values."""


def check_recipe(cfg: SFTRecipe) -> None:
    """``ValueError`` (one line, naming the field) for what the Jittor path does not support."""
    from trl import SFTConfig

    from reactlab.train.sft import check_trl_keys

    if cfg.method != "lora":
        raise ValueError(f"method: {cfg.method} is not supported by the Jittor path (LoRA only); "
                         "use -c method=lora, or --framework torch")
    if cfg.model.adapter:
        raise ValueError("model.adapter: the Jittor path trains a new adapter from the base; use --framework torch")
    if cfg.model.dtype not in ("auto", "float32"):
        raise ValueError(f"model.dtype: {cfg.model.dtype} is not supported by the Jittor path (it trains in float32)")
    if cfg.model.attn_implementation:
        raise ValueError("model.attn_implementation: not supported by the Jittor path (it has one attention)")
    if cfg.model.name.endswith(".gguf"):
        raise ValueError("model.name: the Jittor path needs an HF model dir or a named model, not a GGUF file")
    check_trl_keys(cfg.trl)
    if cfg.trl.get("bf16") and cfg.trl.get("fp16"):
        raise ValueError("trl.bf16 and trl.fp16 are both true: choose one")
    defaults = {f.name: f.default for f in dataclasses.fields(SFTConfig) if f.default is not dataclasses.MISSING}
    for k, v in cfg.trl.items():
        if k in ONLY and _name(v) not in {str(x) for x in ONLY[k]}:
            raise ValueError(f"trl.{k}: {v!r} is not supported by the Jittor path "
                             f"(supported: {', '.join(map(str, ONLY[k]))}); or use --framework torch")
        if k not in HONOURED and k not in ONLY and v != defaults.get(k, v):
            raise ValueError(f"trl.{k}: not supported by the Jittor path (only TRL's default, "
                             f"{defaults.get(k)!r}); remove it or use --framework torch")


def precision(trl: dict[str, Any], cuda: bool) -> str:
    """The compute dtype: ``trl.bf16`` / ``trl.fp16`` where the recipe sets them, else bfloat16 on
    CUDA (the torch path's default there) and float32 on a CPU.

    >>> precision({}, cuda=False), precision({}, cuda=True), precision({"fp16": True}, cuda=False)
    ('float32', 'bfloat16', 'float16')
    """
    if trl.get("bf16"):
        return "bfloat16"
    if trl.get("fp16"):
        return "float16"
    return "bfloat16" if cuda and "bf16" not in trl else "float32"


@dataclasses.dataclass
class Plan:
    """The run's numbers, resolved from the recipe as the Trainer resolves them."""

    batch: int
    accum: int
    per_epoch: int
    total: int
    warmup: int
    lr: float
    schedule: str


def make_plan(args: Any, n_rows: int) -> Plan:
    """Updates per epoch = ceil(batches / accumulation); total = ``max_steps`` or ceil(epochs * that)."""
    batches = math.ceil(n_rows / args.per_device_train_batch_size)
    per_epoch = math.ceil(batches / args.gradient_accumulation_steps)
    total = args.max_steps if args.max_steps and args.max_steps > 0 else math.ceil(args.num_train_epochs * per_epoch)
    return Plan(batch=args.per_device_train_batch_size, accum=args.gradient_accumulation_steps, per_epoch=per_epoch,
                total=total, warmup=warmup_steps(args.warmup_steps, getattr(args, "warmup_ratio", 0.0) or 0.0, total),
                lr=args.learning_rate, schedule=_name(args.lr_scheduler_type))


def encode(tok: Any, rows: list[dict[str, Any]], train_on: str, where: str, max_length: int | None) -> list[tuple[list[int], list[int]]]:
    """``(input_ids, labels)`` per row (the torch path's ``tokenize_rows``), cut to ``max_length``;
    rows without a trained token left are dropped."""
    from reactlab.train.sft import tokenize_rows

    ds = tokenize_rows(tok, rows, train_on, where)
    out = []
    for ids, labels in zip(ds["input_ids"], ds["labels"], strict=True):
        if max_length:
            ids, labels = ids[:max_length], labels[:max_length]
        if any(x != -100 for x in labels[1:]):
            out.append((list(ids), list(labels)))
    return out


def pad(rows: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad a batch to its longest row (pads: ``pad_id``, label -100)."""
    n = max(len(ids) for ids, _ in rows)
    ids = np.full((len(rows), n), pad_id, np.int64)
    labels = np.full((len(rows), n), -100, np.int64)
    for i, (a, b) in enumerate(rows):
        ids[i, : len(a)], labels[i, : len(b)] = a, b
    return ids, labels


def epoch_order(lengths: list[int], strategy: str, seed: int, epoch: int, group: int) -> list[int]:
    """The row order of one epoch (see the module doc, step 4)."""
    import torch

    gen = torch.Generator().manual_seed(seed + epoch)
    if strategy == "sequential":
        return list(range(len(lengths)))
    if strategy == "group_by_length":
        from transformers.trainer_pt_utils import get_length_grouped_indices

        return [int(i) for i in get_length_grouped_indices(lengths, group, generator=gen)]
    return torch.randperm(len(lengths), generator=gen).tolist()


def mean_loss(model: Any, data: list[tuple[list[int], list[int]]], batch: int, pad_id: int) -> float:
    """The Trainer's ``eval_loss``: each batch's token-mean loss, averaged weighted by its rows.
    A batch's sum is taken row by row (the same number): a Jittor forward holds every activation
    of its graph, so a batch of 16 long rows at once would need tens of GB."""
    jt = import_jittor()
    model.eval()
    total, rows = 0.0, 0
    with jt.no_grad():
        for i in range(0, len(data), batch):
            part = data[i : i + batch]
            sums = [(float(loss.item()), n) for loss, n in (model.loss(*pad([row], pad_id), scale=1.0) for row in part)]
            total += sum(s for s, _ in sums) / max(1, sum(n for _, n in sums)) * len(part)
            rows += len(part)
    model.train()
    return total / max(rows, 1)


def _name(v: Any) -> str:
    """A TrainingArguments choice as its plain name (they are enums: ``IntervalStrategy.STEPS``)."""
    return str(getattr(v, "value", v))


def due(strategy: str, every: int, step: int, end_of_epoch: bool) -> bool:
    return (strategy == "steps" and every > 0 and step % every == 0) or (strategy == "epoch" and end_of_epoch)


def last_checkpoint(out: Path) -> Path | None:
    found = [(int(p.name.split("-")[1]), p) for p in out.glob("checkpoint-*") if p.name.split("-")[1].isdigit()]
    return max(found)[1] if found else None


def train_sft_jittor(cfg: SFTRecipe, resume: bool = False) -> Any:
    """Fine-tune ``cfg.model`` with LoRA in Jittor on ``cfg.data``, writing ``cfg.out`` as the torch
    path does (see the module doc). ``resume``: continue from the last ``checkpoint-N`` in ``out``
    (``ValueError`` when there is none). Returns the ``RunResult`` written to ``training.json``."""
    from transformers import AutoTokenizer

    from reactlab.models import parse_model
    from reactlab.train.plots import plot_losses
    from reactlab.train.record import RunResult, peak_memory_mb, prompt_ids, write_training_record
    from reactlab.train.rows import load_splits
    from reactlab.train.sft import sft_config

    t0 = time.perf_counter()
    check_recipe(cfg)
    out = Path(cfg.out)
    ckpt = last_checkpoint(out) if resume else None
    if resume and ckpt is None:
        raise ValueError(f"--resume: no checkpoint-N directory in {out} (set trl.save_steps to save them)")
    train_file, train_rows, val_file, val_rows = load_splits(cfg)
    args = sft_config(cfg, evaluate=bool(val_rows))
    base = parse_model(cfg.model.name).path()
    tok = AutoTokenizer.from_pretrained(base)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    train = encode(tok, train_rows, cfg.train_on, str(train_file), args.max_length)
    val = encode(tok, val_rows, cfg.train_on, str(val_file), args.max_length) if val_rows else []
    if not train:
        raise DataError(f"{train_file}: no row has a trained token within max_length {args.max_length}")
    plan = make_plan(args, len(train))

    jt = import_jittor()
    model = convert.load_hf(base)
    lora.inject(model, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.target_modules, seed=args.seed)
    model.train()
    model.checkpoint = bool(getattr(args, "activation_checkpointing", False) or args.gradient_checkpointing)
    params = lora.lora_params(model)
    dtype = precision(cfg.trl, bool(jt.flags.use_cuda))
    model.set_precision(dtype, params)
    opt = AdamW([tuple(p.shape) for p in params], args.weight_decay, (args.adam_beta1, args.adam_beta2), args.adam_epsilon)
    state: dict[str, Any] = {"global_step": 0, "log_history": [], "num_tokens": 0, "pending": []}
    if ckpt is not None:
        _, tensors = lora.read_adapter(ckpt)
        lora.set_lora_state(model, tensors, where=str(ckpt))
        opt.load(ckpt / "optimizer.npz")
        state = json.loads((ckpt / "trainer_state.json").read_text())
    scaler = LossScale.from_state(state.get("loss_scale")) if dtype == "float16" else None
    writer = _tensorboard(args, out)
    lengths = [len(ids) for ids, _ in train]
    orders: dict[int, list[int]] = {}
    pad_id = tok.pad_token_id
    t_train = time.perf_counter()
    tokens_this_run = 0
    stopped_by_time = False
    for step in range(state["global_step"], plan.total):
        epoch, k = divmod(step, plan.per_epoch)
        if epoch not in orders:
            orders = {epoch: epoch_order(lengths, _name(args.train_sampling_strategy), args.seed, epoch, plan.batch * plan.accum)}
        order = orders[epoch]
        micro = [order[i : i + plan.batch] for i in range(k * plan.accum * plan.batch,
                                                          min(len(order), (k + 1) * plan.accum * plan.batch), plan.batch)]
        batches = [pad([train[i] for i in idx], pad_id) for idx in micro]
        n_items = sum(int((lab[:, 1:] != -100).sum()) for _, lab in batches)
        jt.set_global_seed(args.seed * 100003 + step)  # dropout masks: a function of the update, so resume is exact
        grads = [np.zeros(tuple(p.shape), np.float32) for p in params]
        loss_sum = 0.0
        mult = scaler.scale if scaler else 1.0
        for idx, (ids, labels) in zip(micro, batches, strict=True):
            loss, _, found = model.loss_and_grads(ids, labels, params, scale=n_items / mult)
            for g, d in zip(grads, found, strict=True):
                g += d
            loss_sum += loss / mult
            jt.gc()  # this micro-batch's graph is done with: free it before the next one
            tokens = sum(len(train[i][0]) for i in idx)  # real tokens, pads left out (TRL's num_tokens)
            state["num_tokens"] += tokens
            tokens_this_run += tokens
        finite = True
        if scaler:
            grads = [g / mult for g in grads]
            finite = all_finite(grads)
            scaler.update(finite)
            state["loss_scale"] = scaler.state()
        lr = plan.lr * lr_factor(plan.schedule, step, plan.warmup, plan.total)
        if finite:
            norm = clip_grads(grads, args.max_grad_norm)
            for p, new in zip(params, opt.step([p.numpy() for p in params], grads, lr), strict=True):
                p.assign(jt.array(new))
        else:  # fp16 overflow: the update is skipped, as GradScaler skips optimizer.step()
            norm = float("nan")
        state["pending"].append(loss_sum)
        done = step + 1
        end_of_epoch = k == plan.per_epoch - 1
        state["global_step"] = done
        if args.logging_steps and done % int(args.logging_steps) == 0:
            rec = {"loss": float(np.mean(state["pending"])), "grad_norm": norm, "learning_rate": lr,
                   "epoch": done / plan.per_epoch, "num_tokens": float(state["num_tokens"]), "step": done}
            state["pending"] = []
            _log(rec, state, writer)
        if val and due(_name(args.eval_strategy), int(args.eval_steps or args.logging_steps or 0), done, end_of_epoch) \
                and done < plan.total:
            _log({"eval_loss": mean_loss(model, val, args.per_device_eval_batch_size, pad_id), "epoch": done / plan.per_epoch,
                  "step": done}, state, writer)
        if due(_name(args.save_strategy), int(args.save_steps or 0), done, end_of_epoch):
            _checkpoint(model, opt, state, out / f"checkpoint-{done}", tok, cfg, base, args.save_total_limit)
        if cfg.max_minutes and time.perf_counter() - t0 >= cfg.max_minutes * 60:
            stopped_by_time = True
            break
    runtime = time.perf_counter() - t_train
    eval_loss = None
    if val:
        eval_loss = mean_loss(model, val, args.per_device_eval_batch_size, pad_id)
        _log({"eval_loss": eval_loss, "epoch": state["global_step"] / plan.per_epoch, "step": state["global_step"]},
             state, writer)
    if writer is not None:
        writer.close()
    lora.save_adapter(model, out, base_model=base, r=cfg.lora.r, alpha=cfg.lora.alpha, dropout=cfg.lora.dropout)
    tok.save_pretrained(str(out))
    history = state["log_history"]
    plot_losses(history, out / "loss.png", title=f"SFT {cfg.method} (jittor) · {Path(cfg.model.name).name}")
    losses = [h["loss"] for h in history if "loss" in h]
    result = RunResult(
        out=str(out), train_loss=losses[-1] if losses else None, eval_loss=eval_loss, steps=state["global_step"],
        train_tokens=int(state["num_tokens"]),
        tokens_per_s=round(tokens_this_run / runtime, 1) if runtime and tokens_this_run else None,
        wall_s=round(time.perf_counter() - t0, 1), peak_mem_mb=round(peak_memory_mb(), 1),
        extra={"framework": "jittor", "jittor_version": jt.__version__, "precision": dtype, "train_runtime_s": round(runtime, 1),
               "train_rows": len(train), "val_rows": len(val), "resumed": resume,
               **({"max_minutes": cfg.max_minutes, "stopped_by_time": stopped_by_time} if cfg.max_minutes else {}),
               "log_history": [{k: h[k] for k in ("step", "loss", "eval_loss") if k in h} for h in history]},
    )
    files = [f for f in (train_file, val_file) if f]
    write_training_record(out, base_model=cfg.model.name, method=cfg.method, recipe=cfg.model_dump(mode="json"),
                          data_files=files, prompt_id_counts=prompt_ids(train_rows + val_rows), result=result)
    return result


def _log(rec: dict[str, Any], state: dict[str, Any], writer: Any) -> None:
    """Append to the log history, print it as the Trainer does, and write TensorBoard scalars."""
    state["log_history"].append(rec)
    print({k: round(v, 6) if isinstance(v, float) else v for k, v in rec.items()}, file=sys.stderr, flush=True)
    if writer is not None:
        for k, v in rec.items():
            if k not in ("step", "epoch"):
                writer.add_scalar(f"eval/{k[5:]}" if k.startswith("eval_") else f"train/{k}", v, rec["step"])


def _tensorboard(args: Any, out: Path) -> Any:
    if "tensorboard" not in (args.report_to or []):
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(out / "runs" / time.strftime("%b%d_%H-%M-%S_jittor")))


def _checkpoint(model: Any, opt: AdamW, state: dict[str, Any], path: Path, tok: Any, cfg: SFTRecipe, base: str,
                limit: int | None) -> None:
    """``checkpoint-N``: the adapter (PEFT format), optimizer state and trainer state; then only
    the newest ``limit`` checkpoints are kept."""
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    lora.save_adapter(model, tmp, base_model=base, r=cfg.lora.r, alpha=cfg.lora.alpha, dropout=cfg.lora.dropout)
    opt.save(tmp / "optimizer.npz")
    tok.save_pretrained(str(tmp))
    write_json_atomic(tmp / "trainer_state.json", state)
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    if limit:
        found = sorted((int(p.name.split("-")[1]), p) for p in path.parent.glob("checkpoint-*")
                       if p.name.split("-")[1].isdigit())
        for _, old in found[:-limit]:
            shutil.rmtree(old, ignore_errors=True)
