"""SFT three ways on the same rows: ours (``reactlab.train.sft.train_sft``) vs LLaMA-Factory 0.9.5's own
CLI (``llamafactory-cli train cfg.yaml``) vs plain TRL ``SFTTrainer`` with its defaults (issue #17).

    .venv/bin/python bench/sft_vs_llamafactory.py                      # 48 FireAct rows, batch 4 x accum 2, 6 steps
    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python bench/sft_vs_llamafactory.py --rows 8 --steps 1

Each arm runs in its own subprocess (so each peak RSS is its own) on the same FireAct rows, tokens,
LoRA config, batch, steps, learning rate, seed and cut-off; each tool keeps its own loss mask,
truncation, padding and precision defaults, as its user would run it (docs/performance.md lists
what is and is not the same). LLaMA-Factory lives in its own venv (``--lf-venv``), created when it
lacks ``llamafactory-cli``. Prints per arm real tokens/s, runtimes, peak RSS and losses, then the
ratios ours / LLaMA-Factory and ours / plain TRL.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from reactlab.hardware import cpu_name

LF_VERSION = "0.9.5"
LF_TEMPLATE = "smollm2"  # ChatML + SmolLM2's default system prompt, as its tokenizer's chat template
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
ARMS = ("ours", "llamafactory", "trl")
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
VERSIONS = """import importlib.metadata as m, json, torch
names = ["transformers", "trl", "peft", "datasets", "llamafactory", "torchvision", "torchaudio"]
v = {}
for n in names:
    try:
        v[n] = m.version(n)
    except m.PackageNotFoundError:
        pass
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, **v}))
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--rows", type=int, default=48)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--accum", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--cutoff", type=int, default=768, help="max tokens per row (TRL max_length, LF cutoff_len)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--threads", type=int, default=0, help="torch threads in every arm (0: as the environment says)")
    p.add_argument("--lf-venv", default=".venv-lf", help="LLaMA-Factory's venv (created when it lacks llamafactory-cli; keep it apart from .venv: it pulls a CUDA torch)")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--keep", help="keep the data, LLaMA-Factory's config, log and output here (default: a temp dir)")
    p.add_argument("--arm", help=argparse.SUPPRESS)  # internal: run one arm, print RESULT json
    p.add_argument("--work", help=argparse.SUPPRESS)  # internal: the parent's working dir
    return p.parse_args(argv)


# --- LLaMA-Factory's venv ------------------------------------------------------------------------


def reachable(url: str, timeout: float = 10.0) -> bool:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout)
        return True
    except Exception:
        return False


def versions(python: str) -> dict[str, Any]:
    """torch (+ its CUDA, None for a CPU build) and the training libraries of a venv's python."""
    out = subprocess.run([python, "-c", VERSIONS], capture_output=True, text=True, env=os.environ | OFFLINE)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def lf_works(venv: Path) -> bool:
    return subprocess.run([str(venv / "bin" / "llamafactory-cli"), "version"], capture_output=True,
                          env=os.environ | OFFLINE).returncode == 0


def ensure_lf(venv: Path) -> None:
    """Create ``venv`` with LLaMA-Factory unless it has ``llamafactory-cli`` already (module doc)."""
    if (venv / "bin" / "llamafactory-cli").exists():
        return
    print(f"installing llamafactory=={LF_VERSION} into {venv} (once; several minutes)", flush=True)
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    cmd = [str(venv / "bin" / "python"), "-m", "pip", "install", f"llamafactory=={LF_VERSION}"]
    if reachable(CPU_INDEX + "/torch/"):
        print(f"PyTorch's CPU index {CPU_INDEX} answers: CPU builds of torch, torchvision, torchaudio", flush=True)
        cmd += ["torch", "torchvision", "torchaudio", "--extra-index-url", CPU_INDEX]
    else:
        print(f"PyTorch's CPU index {CPU_INDEX} does not answer: pip's torch (a CUDA build)", flush=True)
    subprocess.run(cmd, check=True)
    if not lf_works(venv):
        sys.exit(f"{venv}/bin/llamafactory-cli version fails")


# --- data ----------------------------------------------------------------------------------------


def build_data(work: Path) -> tuple[Path, Path]:
    """``work/messages`` (ours, plain TRL) and ``work/hotpotqa_sharegpt`` (LLaMA-Factory; its
    ``dataset_info.json`` names the dataset after the folder), both from ``fireact:hotpotqa``."""
    from reactlab.data.build import build_dataset

    msgs, share = work / "messages", work / "hotpotqa_sharegpt"
    if not (msgs / "train.jsonl").is_file():
        build_dataset(["fireact:hotpotqa"], msgs, "messages", tokenizer=None)
    if not (share / "dataset_info.json").is_file():
        build_dataset(["fireact:hotpotqa"], share, "sharegpt", tokenizer=None)
    return msgs, share


def check_same_rows(msgs: Path, share: Path, n: int) -> None:
    """The first ``n`` rows of both files are the same conversations (``formats.row_views``)."""
    from reactlab.data.formats import row_views
    from reactlab.train.rows import load_rows

    a, b = load_rows(msgs / "train.jsonl", n), load_rows(share / "train.jsonl", n)
    if len(a) < n or len(b) < n:
        sys.exit(f"only {len(a)} / {len(b)} rows; --rows {n} is too many")
    for i, (x, y) in enumerate(zip(a, b, strict=True), 1):
        if row_views(x, "messages") != row_views(y, "sharegpt"):
            sys.exit(f"row {i}: the messages and sharegpt exports differ")


# --- LLaMA-Factory's config and output -----------------------------------------------------------


def template_system(model_dir: str | Path) -> str | None:
    """The system prompt a ChatML chat template writes when a conversation has none (SmolLM2's
    ``chat_template.jinja``), or None."""
    d = Path(model_dir)
    if (d / "chat_template.jinja").is_file():
        text = (d / "chat_template.jinja").read_text()
    elif (d / "tokenizer_config.json").is_file():
        text = json.loads((d / "tokenizer_config.json").read_text()).get("chat_template") or ""
    else:
        return None
    m = re.search(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", text, re.S)
    return m.group(1) if m and not re.search(r"[{}'\"]", m.group(1)) else None


def lf_config(a, model: str, dataset_dir: Path, out_dir: Path, system: str | None = None) -> dict[str, Any]:
    """LLaMA-Factory's ``train`` config: our settings; its defaults (gradient checkpointing on, its
    attention choice, padding to a multiple of 8) left as they are. ``system``: the template's
    default system prompt, replaced (LLaMA-Factory's ``smollm2`` template ends SmolLM2's with a period
    its tokenizer's template does not have)."""
    cfg = {
        "model_name_or_path": model,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.0,
        "lora_target": "all",
        "dataset": dataset_dir.name,
        "dataset_dir": str(dataset_dir),
        "template": LF_TEMPLATE,
        "cutoff_len": a.cutoff,
        "max_samples": a.rows,
        "preprocessing_num_workers": 1,
        "output_dir": str(out_dir),
        "per_device_train_batch_size": a.batch,
        "gradient_accumulation_steps": a.accum,
        "max_steps": a.steps,
        "learning_rate": a.lr,
        "lr_scheduler_type": "constant",
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "seed": 0,
        "disable_shuffling": True,
        "include_num_input_tokens_seen": "non_padding",
        "disable_tqdm": True,
    }
    if system is not None:
        cfg["default_system"] = system
    return cfg


def lf_result(out_dir: Path, log: str) -> dict[str, Any]:
    """Steps, real tokens, runtime and losses from LLaMA-Factory's ``trainer_state.json`` and
    ``train_results.json`` (the Trainer's own files), gradient checkpointing from its log."""
    state = json.loads((out_dir / "trainer_state.json").read_text())
    metrics = json.loads((out_dir / "train_results.json").read_text())
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    if not losses:
        raise ValueError(f"{out_dir}/trainer_state.json: no loss logged")
    return {"tokens": int(state.get("num_input_tokens_seen") or 0), "train_s": metrics["train_runtime"],
            "final_loss": losses[-1], "mean_loss": metrics["train_loss"], "steps": state["global_step"],
            "grad_ckpt": "Gradient checkpointing enabled." in log}


def run_lf(a, work: Path) -> dict[str, Any]:
    """LLaMA-Factory's CLI as the only child of this process (no torch here): its peak RSS is
    RUSAGE_CHILDREN's."""
    import resource

    import yaml

    from reactlab.models import parse_model

    lf = work / "lf"
    lf.mkdir(exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="out-", dir=lf))
    out.rmdir()  # LLaMA-Factory wants a new (or empty) output dir
    cfg = lf / "cfg.yaml"
    model = parse_model(a.model).path()
    config = lf_config(a, model, work / "hotpotqa_sharegpt", out, template_system(model))
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    log = lf / "train.log"
    with open(log, "w") as f:
        rc = subprocess.run([str(Path(a.lf_venv) / "bin" / "llamafactory-cli"), "train", str(cfg)],
                            stdout=f, stderr=subprocess.STDOUT, env=os.environ | OFFLINE).returncode
    text = log.read_text()
    if rc:
        sys.exit(f"llamafactory-cli train exited {rc}; {log}:\n{text[-4000:]}")
    r = lf_result(out, text)
    r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return r


# --- ours and plain TRL ----------------------------------------------------------------------------


def gc_probe(seen: dict[str, Any]):
    """A callback recording whether the model trains with gradient checkpointing."""
    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            seen["grad_ckpt"] = bool(getattr(model, "is_gradient_checkpointing", False))

    return Probe()


def run_ours(a, work: Path) -> dict[str, Any]:
    from reactlab.train.recipes import LoraConfig, SFTRecipe
    from reactlab.train.sft import train_sft

    trl = dict(per_device_train_batch_size=a.batch, gradient_accumulation_steps=a.accum, max_steps=a.steps,
               learning_rate=a.lr, lr_scheduler_type="constant", train_sampling_strategy="sequential",
               logging_steps=1, save_strategy="no", report_to=[], seed=0, disable_tqdm=True, max_length=a.cutoff)
    seen: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as out:
        cfg = SFTRecipe(model=a.model, data={"path": str(work / "messages"), "limit": a.rows, "val_file": None},
                        out=out, lora=LoraConfig(r=16, alpha=32, dropout=0.0), trl=trl)
        res = train_sft(cfg, callbacks=[gc_probe(seen)])
    return {"tokens": res.train_tokens, "train_s": res.extra["train_runtime_s"], "final_loss": res.train_loss,
            "mean_loss": res.extra["mean_train_loss"], "steps": res.steps, "precision": res.extra["precision"], **seen}


def run_trl(a, work: Path) -> dict[str, Any]:
    """TRL's ``SFTTrainer`` as its docs show it: the model by path, a ``messages`` dataset, a PEFT
    config; only batch, steps, learning rate, logging, saving, CPU and row order set."""
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from reactlab.models import parse_model

    ds = load_dataset("json", data_files=str(work / "messages" / "train.jsonl"), split="train")
    ds = ds.select(range(a.rows))
    seen: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(output_dir=out, per_device_train_batch_size=a.batch, gradient_accumulation_steps=a.accum,
                         max_steps=a.steps, learning_rate=a.lr, lr_scheduler_type="constant",
                         train_sampling_strategy="sequential", logging_steps=1, save_strategy="no", report_to="none",
                         seed=0, use_cpu=True, bf16=False, max_length=a.cutoff, disable_tqdm=True)
        peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
        trainer = SFTTrainer(model=parse_model(a.model).path(), args=args, train_dataset=ds, peft_config=peft,
                             callbacks=[gc_probe(seen)])
        output = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    tokens = int(getattr(trainer, "_total_train_tokens", 0) or trainer.state.num_input_tokens_seen or 0)
    return {"tokens": tokens, "train_s": output.metrics["train_runtime"], "final_loss": losses[-1],
            "mean_loss": output.training_loss, "steps": trainer.state.global_step, **seen}


def child(a) -> None:
    import resource

    work = Path(a.work)
    if a.arm == "llamafactory":
        r = run_lf(a, work)
    else:
        import torch

        if a.threads:
            torch.set_num_threads(a.threads)
        r = run_ours(a, work) if a.arm == "ours" else run_trl(a, work)
        r["threads"] = torch.get_num_threads()
        r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(r), flush=True)


# --- the parent ------------------------------------------------------------------------------------


def fmt_versions(v: dict[str, Any]) -> str:
    if "error" in v:
        return f"(versions unavailable: {v['error']})"
    build = f"CUDA {v['cuda']} build" if v.get("cuda") else "CPU build"
    rest = "  ".join(f"{k} {v[k]}" for k in ("transformers", "trl", "peft", "datasets", "llamafactory") if k in v)
    extra = "  ".join(f"{k} {v[k]}" for k in ("torchvision", "torchaudio") if k in v)
    return f"torch {v['torch']} ({build})  {rest}" + (f"  [{extra}]" if extra else "")


def ratios(ours: dict[str, Any], other: dict[str, Any]) -> str:
    return (f"speed x{ours['tokens_per_s'] / other['tokens_per_s']:.2f}  "
            f"memory x{ours['peak_rss_mb'] / other['peak_rss_mb']:.2f}  "
            f"final loss ratio {ours['final_loss'] / other['final_loss']:.4f}")


def main(argv=None) -> None:
    a = parse_args(argv)
    if a.arm:
        return child(a)
    arms = [x for x in a.arms.split(",") if x]
    bad = [x for x in arms if x not in ARMS]
    if bad:
        sys.exit(f"unknown arm(s) {bad}; known: {', '.join(ARMS)}")
    lf_venv = Path(a.lf_venv)
    ours_v = versions(sys.executable)
    if "llamafactory" in arms:
        ensure_lf(lf_venv)
    if a.threads:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(a.threads)
    tmp = None
    if a.keep:
        work = Path(a.keep)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory()
        work = Path(tmp.name)
    msgs, share = build_data(work)
    check_same_rows(msgs, share, a.rows)

    print(f"CPU: {cpu_name()}  ({os.cpu_count()} logical CPUs; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    print(f"ours, plain TRL: {fmt_versions(ours_v)}")
    if "llamafactory" in arms:
        from reactlab.models import parse_model

        system = template_system(parse_model(a.model).path())
        print(f"LLaMA-Factory ({lf_venv}): {fmt_versions(versions(str(lf_venv / 'bin' / 'python')))}")
        print(f"LLaMA-Factory template {LF_TEMPLATE}, default_system "
              + (f"{system!r} (the model's chat template's)" if system else "the template's"))
    print(f"{a.rows} rows, batch {a.batch} x accum {a.accum}, {a.steps} steps, cutoff {a.cutoff}, lr {a.lr}, "
          f"LoRA r16 a32 dropout 0 all linear, fp32 weights, constant lr, no shuffling", flush=True)

    results: dict[str, dict[str, Any]] = {}
    for arm in arms:
        cmd = [sys.executable, __file__, "--arm", arm, "--work", str(work), "--model", a.model, "--rows", str(a.rows),
               "--batch", str(a.batch), "--accum", str(a.accum), "--steps", str(a.steps), "--cutoff", str(a.cutoff),
               "--lr", str(a.lr), "--threads", str(a.threads), "--lf-venv", a.lf_venv]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | OFFLINE)
        wall = time.perf_counter() - t0
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{arm} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
        results[arm] = r = json.loads(line[7:])
        r["wall_s"] = wall
        r["tokens_per_s"] = r["tokens"] / r["train_s"]
        print(f"{arm:>12}: {r['tokens_per_s']:7.1f} real tok/s ({r['tokens']} tok, {r['steps']} steps)  "
              f"train {r['train_s']:7.1f}s  wall {wall:7.1f}s  peak RSS {r['peak_rss_mb']:6.0f} MB  "
              f"final loss {r['final_loss']:.4f}  mean loss {r['mean_loss']:.4f}  "
              f"grad ckpt {'on' if r.get('grad_ckpt') else 'off'}  {r.get('precision', 'fp32')}", flush=True)
    if "ours" in results:
        for arm, name in (("llamafactory", "LLaMA-Factory"), ("trl", "plain TRL")):
            if arm in results:
                print(f"ours / {name}: {ratios(results['ours'], results[arm])}")
    if "trl" in results:
        print("(plain TRL's loss is over every token, ours and LLaMA-Factory's over assistant turns: see the module doc)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
