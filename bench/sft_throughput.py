"""SFT throughput and memory: our trainer (TRL, masked labels) with its defaults and with each lever
switched on or off, vs a naive HF ``Trainer`` loop that pads every row to a fixed 600 tokens.

Variants (``--variants``, comma-separated):

- ``ours``: `reactlab train sft`'s defaults on this CPU (activation checkpointing; bf16 autocast only
  where AMX or AVX-512 BF16 is detected);
- ``full_head``: fp32, the LM head projecting every position (TRL's choice off Triton devices), the
  defaults before the head was compacted to the labelled positions on CPUs;
- ``fp32`` / ``bf16``: the compacted head with bf16 autocast off / on;
- ``fp32_ckpt`` / ``bf16_ckpt``: the same with activation checkpointing;
- ``padding_free``: ours with ``padding_free`` (one flattened row per batch, no pad tokens);
- ``trl_tiles``: ours with TRL's LM head tiles (4,096 tokens x 32,768 vocabulary entries) instead of
  ``train.cpu.CPU_HEAD_TILE``;
- ``naive600``: HF ``Trainer`` + PEFT, rows padded to 600 tokens.

All see the same rows in the same order, the same labels, LoRA config (dropout 0), seed, learning
rate and steps, so their losses must agree (within 2%) while their cost differs. Each variant runs
in its own subprocess so that its peak RSS is its own.

    .venv/bin/python bench/sft_throughput.py                 # 200 FireAct rows, batch 8
    .venv/bin/python bench/sft_throughput.py --data datasets/sft --rows 48 --threads 1

Prints, per variant: real (non-pad) tokens/s, tokens fed (pad included), wall time of training,
peak RSS, final and mean train loss; then the ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIXED = 600  # the seed scripts' padded length


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="dataset dir (train.jsonl, messages rows); default: build one from fireact:hotpotqa")
    p.add_argument("--model", default="smollm2")
    p.add_argument("--rows", type=int, default=200)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--variants", default="full_head,fp32,bf16,fp32_ckpt,bf16_ckpt,naive600")
    p.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    return p.parse_args(argv)


def build_data(out: Path) -> str:
    from reactlab.data.build import build_dataset

    build_dataset(["fireact:hotpotqa"], out, "messages", tokenizer=None)
    return str(out)


def lora():
    from reactlab.train.recipes import LoraConfig

    return LoraConfig(r=16, alpha=32, dropout=0.0)


def common_trl(a) -> dict:
    return dict(per_device_train_batch_size=a.batch, max_steps=a.rows // a.batch, learning_rate=a.lr,
                lr_scheduler_type="constant", train_sampling_strategy="sequential", logging_steps=1,
                activation_checkpointing=False, save_strategy="no", report_to=[], seed=0, disable_tqdm=True,
                max_length=FIXED)


OURS = {  # variant -> trl overrides of our defaults
    "ours": {},
    "full_head": {"bf16": False, "activation_checkpointing": False},
    "fp32": {"bf16": False, "activation_checkpointing": False},
    "bf16": {"bf16": True, "activation_checkpointing": False},
    "fp32_ckpt": {"bf16": False, "activation_checkpointing": True},
    "bf16_ckpt": {"bf16": True, "activation_checkpointing": True},
    "bf16_ckpt_pad64": {"bf16": True, "activation_checkpointing": True, "pad_to_multiple_of": 64},
    # TRL leaves truncation to the caller here; the few rows over 600 tokens stay whole.
    "padding_free": {"padding_free": True, "max_length": None},
    "trl_tiles": {},
}


def run_ours(a, variant: str) -> dict:
    import reactlab.train.cpu as cpu
    from reactlab.train.recipes import SFTRecipe
    from reactlab.train.sft import train_sft

    if variant == "full_head":
        cpu.score_labelled_positions_only = lambda: False  # patch_trl_for_cpu leaves TRL's CPU choice as is
    if variant in ("full_head", "trl_tiles"):
        cpu.cpu_lm_head_tiles = lambda tile=None: False  # TRL's tile sizes
    trl = common_trl(a)
    trl.pop("activation_checkpointing")  # our default (on) unless the variant says
    trl |= OURS[variant]
    with tempfile.TemporaryDirectory() as out:
        cfg = SFTRecipe(model=a.model, data={"path": a.data, "limit": a.rows, "val_file": None}, out=out,
                        lora=lora(), trl=trl)
        res = train_sft(cfg)
    return {"precision": res.extra["precision"], "ckpt": res.extra["activation_checkpointing"],
            "tokens": res.train_tokens, "fed": None, "train_s": res.extra["train_runtime_s"], "final_loss": res.train_loss, "mean_loss": res.extra["mean_train_loss"], "steps": res.steps}


def run_naive(a) -> dict:
    """HF ``Trainer`` + PEFT on rows padded to 600 tokens: every batch is 600 wide."""
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from reactlab.data.masking import mask_conversation
    from reactlab.models import parse_model
    from reactlab.train.policy import peft_config
    from reactlab.train.sft import load_rows

    path = parse_model(a.model).path()
    tok = AutoTokenizer.from_pretrained(path)
    rows = load_rows(Path(a.data) / "train.jsonl", a.rows)
    cols = {"input_ids": [], "labels": [], "attention_mask": []}
    real = []
    for r in rows:
        enc = mask_conversation(tok, r["messages"], "assistant")
        ids, lab = enc["input_ids"][:FIXED], enc["labels"][:FIXED]
        pad = FIXED - len(ids)
        real.append(len(ids))
        cols["input_ids"].append(ids + [tok.pad_token_id] * pad)
        cols["labels"].append(lab + [-100] * pad)
        cols["attention_mask"].append([1] * len(ids) + [0] * pad)
    ds = Dataset.from_dict(cols)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(model, peft_config(lora(), "lora"))
    trl = common_trl(a)
    trl.pop("max_length")
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, **trl)
        trainer = Trainer(model=model, args=args, train_dataset=ds)
        output = trainer.train()
    steps = trainer.state.global_step
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"tokens": sum(real[: steps * a.batch]), "fed": steps * a.batch * FIXED,
            "train_s": output.metrics["train_runtime"], "final_loss": losses[-1],
            "mean_loss": output.training_loss, "steps": steps}


def child(a) -> None:
    import resource

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    if a.variant == "naive600":
        r = run_naive(a)
    else:
        r = run_ours(a, a.variant)
    r["wall_s"] = time.perf_counter() - t0
    r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(r))


def main(argv=None) -> None:
    a = parse_args(argv)
    if a.variant:
        return child(a)
    from reactlab.hardware import describe_cpu

    print(f"CPU: {describe_cpu()}", flush=True)
    tmp = tempfile.TemporaryDirectory()
    a.data = a.data or build_data(Path(tmp.name) / "data")
    results = {}
    for v in a.variants.split(","):
        cmd = [sys.executable, __file__, "--variant", v, "--data", a.data, "--model", a.model, "--rows", str(a.rows),
               "--batch", str(a.batch), "--lr", str(a.lr), "--threads", str(a.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{v} failed:\n{proc.stderr[-3000:]}")
        results[v] = r = json.loads(line[7:])
        r["tokens_per_s"] = r["tokens"] / r["train_s"]
        how = f"{r.get('precision', 'fp32')}{' ckpt' if r.get('ckpt') else ''}"
        print(f"{v:>13} ({how:>9}): {r['tokens_per_s']:7.1f} real tok/s  fed {r['fed'] or r['tokens']:>7} tok  "
              f"({r['tokens']} real)  train {r['train_s']:7.1f}s  wall {r['wall_s']:7.1f}s  "
              f"peak RSS {r['peak_rss_mb']:7.0f} MB  final loss {r['final_loss']:.4f}  mean loss {r['mean_loss']:.4f}",
              flush=True)
    base_name = next((b for b in ("full_head", "naive600") if b in results), None)
    if base_name:
        base = results[base_name]
        for v, r in results.items():
            if v == base_name:
                continue
            print(f"{v} / {base_name}: speed x{r['tokens_per_s'] / base['tokens_per_s']:.2f}  "
                  f"memory x{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}  "
                  f"final loss ratio {r['final_loss'] / base['final_loss']:.4f}  "
                  f"mean loss ratio {r['mean_loss'] / base['mean_loss']:.4f}")


if __name__ == "__main__":
    main()
