"""LLaMA-Factory 0.9.5 trains on our ShareGPT tool rows with its own CLI (issue #40, item 2).

    .venv/bin/python bench/llamafactory_tools.py                  # 8 FireAct rows, 2 LoRA steps, template qwen
    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python bench/llamafactory_tools.py --rows 4 --cutoff 512

Builds ``reactlab data build --format sharegpt-tools`` rows (and their ``dataset_info.json``) from
FireAct's text trajectories, runs ``llamafactory-cli train`` on them (LoRA, ``max_steps``) with a
template that renders tools (``qwen``: ChatML, Hermes ``<tool_call>`` blocks, as Qwen2.5), then
compares the first training example LLaMA-Factory prints (its ``input_ids`` / ``label_ids``) with
``masking.mask_tool_conversation`` under Qwen2.5's chat template (TRL ships it) on the same tokenizer.

LLaMA-Factory lives in its own venv (``--lf-venv``), created when missing: ``torch==<ours>`` first
(the CPU build on this machine's disk, so no CUDA torch comes), then ``llamafactory==0.9.5``. Its
torchvision and torchaudio come from the package index as CUDA builds that do not load with a CPU
torch; the text stage needs neither, so ``--fix-cpu`` removes torchvision and moves torchaudio's
CUDA-linked extension libraries aside (torchaudio then imports as pure Python), each step printed.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from reactlab.hardware import cpu_name
from sft_vs_llamafactory import LF_VERSION, OFFLINE, versions

LF_TEMPLATE = "qwen"  # ChatML with Qwen2.5's tool section and <tool_call> blocks


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--source", default="fireact:hotpotqa", help="any `data build --from` source")
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--cutoff", type=int, default=1024)
    p.add_argument("--lf-venv", default=".venv-lf")
    p.add_argument("--fix-cpu", action=argparse.BooleanOptionalAction, default=True,
                   help="make a CPU torch's LLaMA-Factory import (module doc)")
    p.add_argument("--keep", help="keep the data, config, log and output here (default: a temp dir)")
    return p.parse_args(argv)


# --- LLaMA-Factory's venv ------------------------------------------------------------------------


def lf_error(venv: Path) -> str:
    """'' when ``llamafactory-cli version`` runs, else the last line of its error."""
    out = subprocess.run([str(venv / "bin" / "llamafactory-cli"), "version"], capture_output=True, text=True,
                         env=os.environ | OFFLINE)
    lines = (out.stderr or out.stdout).strip().splitlines()
    return "" if out.returncode == 0 else (lines[-1] if lines else f"exit {out.returncode}")


def ensure_lf(venv: Path, fix_cpu: bool) -> None:
    """Create ``venv`` with our torch and LLaMA-Factory unless it has ``llamafactory-cli``; make it import."""
    import torch

    py, torch_pin = str(venv / "bin" / "python"), f"torch=={torch.__version__.split('+')[0]}"
    if not (venv / "bin" / "llamafactory-cli").exists():
        print(f"installing {torch_pin}, then llamafactory=={LF_VERSION} into {venv} (once; several minutes)", flush=True)
        if not Path(py).exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([py, "-m", "pip", "install", torch_pin], check=True)
        subprocess.run([py, "-m", "pip", "install", torch_pin, f"llamafactory=={LF_VERSION}"], check=True)
    err = lf_error(venv)
    if err and fix_cpu and versions(py).get("cuda") is None:
        print(f"llamafactory-cli fails with a CPU torch ({err}): fixing torchvision and torchaudio", flush=True)
        subprocess.run([py, "-m", "pip", "uninstall", "-y", "torchvision"], check=True)
        print("  removed torchvision (a CUDA build; the text stage does not use it)", flush=True)
        site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        for lib in sorted(Path(site, "torchaudio", "lib").glob("*.so")):
            lib.rename(lib.with_name(lib.name + ".cuda"))
            print(f"  moved torchaudio's CUDA-linked {lib.name} aside: torchaudio imports as pure Python", flush=True)
        err = lf_error(venv)
    if err:
        sys.exit(f"{venv}/bin/llamafactory-cli version fails: {err}")


# --- the run -------------------------------------------------------------------------------------


def lf_config(a, model: str, dataset_dir: Path, out_dir: Path) -> dict[str, Any]:
    """LLaMA-Factory's ``train`` config: LoRA on every linear layer, ``max_steps`` updates, CPU, fp32."""
    return {
        "model_name_or_path": model, "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_target": "all", "lora_rank": 8, "dataset": dataset_dir.name, "dataset_dir": str(dataset_dir),
        "template": LF_TEMPLATE, "cutoff_len": a.cutoff, "preprocessing_num_workers": 1,
        "output_dir": str(out_dir), "per_device_train_batch_size": a.batch, "max_steps": a.steps,
        "learning_rate": 1e-4, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
        "use_cpu": True, "bf16": False, "fp16": False, "seed": 0, "disable_tqdm": True,
    }


def first_example(log: str) -> tuple[list[int], list[int]]:
    """The ``input_ids`` and ``label_ids`` of the training example LLaMA-Factory prints."""
    got = [re.search(rf"^{k}:\n(\[.*?\])$", log, re.M) for k in ("input_ids", "label_ids")]
    if not all(got):
        raise ValueError("no training example in LLaMA-Factory's log")
    return ast.literal_eval(got[0].group(1)), ast.literal_eval(got[1].group(1))


def compare(model: str, row: dict[str, Any], ids: list[int], labels: list[int]) -> dict[str, Any]:
    """Our ids and labels of ``row`` (Qwen2.5's template, which LLaMA-Factory's ``qwen`` follows) against
    LLaMA-Factory's: equal ids, and the label positions where they differ, by token."""
    from transformers import AutoTokenizer
    from trl.chat_template_utils import qwen2_5_chat_template

    from reactlab.data.formats import row_tools, tool_row_messages
    from reactlab.data.masking import mask_tool_conversation

    tok = AutoTokenizer.from_pretrained(model)
    tok.chat_template = qwen2_5_chat_template
    msgs = tool_row_messages(row)
    ours = mask_tool_conversation(tok, msgs, row_tools(row))
    diff = [i for i, (x, y) in enumerate(zip(labels, ours["labels"], strict=False)) if x != y]
    return {"tokens": len(ids), "same_ids": ids == ours["input_ids"], "label_diffs": len(diff),
            "label_diff_tokens": sorted({tok.decode([ids[i]]) for i in diff}),
            "trained_by_lf_only": sum(labels[i] != -100 for i in diff),
            "calls": sum(1 for m in msgs if m.get("tool_calls"))}


def main(argv=None) -> None:
    a = parse_args(argv)
    import yaml

    from reactlab.data.build import build_dataset
    from reactlab.models import parse_model

    venv = Path(a.lf_venv)
    ensure_lf(venv, a.fix_cpu)
    work = Path(a.keep or tempfile.mkdtemp(prefix="lf-tools-"))
    data = work / "hotpotqa_tools"
    stats = build_dataset([a.source], data, "sharegpt-tools", tokenizer=None, max_rows=a.rows, val_frac=0.0)
    model = parse_model(a.model).path()
    out = work / "out"
    cfg = work / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(lf_config(a, model, data, out), sort_keys=False))
    print(f"CPU: {cpu_name()}  ({os.cpu_count()} logical CPUs; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    v = versions(str(venv / "bin" / "python"))
    print("LLaMA-Factory venv: " + "  ".join(f"{k} {v[k]}" for k in ("llamafactory", "torch", "transformers", "peft",
                                                                     "datasets") if k in v))
    print(f"data: {stats['rows']['train']} sharegpt-tools rows from {a.source} in {data}; template {LF_TEMPLATE}")
    log = work / "train.log"
    with open(log, "w") as f:
        rc = subprocess.run([str(venv / "bin" / "llamafactory-cli"), "train", str(cfg)], stdout=f,
                            stderr=subprocess.STDOUT, env=os.environ | OFFLINE).returncode
    text = log.read_text()
    if rc:
        sys.exit(f"llamafactory-cli train exited {rc}; {log}:\n{text[-4000:]}")
    state = json.loads((out / "trainer_state.json").read_text())
    losses = [round(h["loss"], 4) for h in state["log_history"] if "loss" in h]
    runtime = json.loads((out / "train_results.json").read_text())["train_runtime"]
    print(f"llamafactory-cli train: {state['global_step']} steps, losses {losses}, train_runtime {runtime:.1f} s")
    row = json.loads((data / "train.jsonl").read_text().splitlines()[0])
    print("first example, LLaMA-Factory vs reactlab (mask_tool_conversation, Qwen2.5's template):",
          json.dumps(compare(model, row, *first_example(text))))


if __name__ == "__main__":
    main()
