"""`accelerate launch` over gloo on a CPU against one process: the same LoRA SFT, the same global
batch and row order, loss per logged step side by side.

A tiny random Llama (2 layers, hidden 64) on SmolLM2's tokenizer trains on synthetic ReAct
conversations: once in one process (per-device batch ``procs x batch``), once under
``accelerate launch --config_file configs/accelerate/cpu_gloo.yaml`` (``procs`` processes of batch
``batch``), both with ``accum`` accumulation steps. The curves must agree within 1% at every step.

    .venv/bin/python bench/accelerate_gloo.py                  # 2 processes, 6 updates of 8 rows
    .venv/bin/python bench/accelerate_gloo.py --steps 10 --accum 1

Prints the CPU, both curves, the relative difference per step and its maximum, each run's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reactlab.hardware import describe_cpu
from reactlab.paths import recipes_dir


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--procs", type=int, default=2, help="processes of the launched run (the config's num_processes)")
    p.add_argument("--batch", type=int, default=2, help="per-device batch of the launched run")
    p.add_argument("--accum", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--rows", type=int, default=16)
    return p.parse_args(argv)


def tiny_model(out: Path) -> str:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from reactlab.models import resolve

    tok = AutoTokenizer.from_pretrained(resolve("smollm2"))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def react_rows(n: int) -> list[dict]:
    """Short FireAct-style conversations of varied lengths (loss normalisation over tokens matters)."""
    rows = []
    for i in range(n):
        city = ["Paris", "Berlin", "Rome", "Madrid"][i % 4]
        msgs = [{"role": "user", "content": f"What is the capital of country number {i}?"},
                {"role": "assistant", "content": f"Thought: I need to search country {i}.\nAction: search[country {i}]"},
                {"role": "user", "content": f"Observation: Country {i} has {city} as its capital." + " More." * (i % 5)},
                {"role": "assistant", "content": f"Thought: So it is {city}.\nAction: finish[{city}]"}]
        rows.append({"messages": msgs, "source": "bench", "prompt_id": "messages:bench@1"})
    return rows


def train(tmp: Path, name: str, batch: int, launcher: list[str]) -> tuple[dict[int, float], float]:
    cmd = [sys.executable, *launcher, "-m", "reactlab.cli", "train", "sft", "-c", str(tmp / "recipe.yaml"),
           "-c", f"out={tmp / name}", "-c", f"trl.per_device_train_batch_size={batch}"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=os.environ | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
    record = json.loads((tmp / name / "training.json").read_text())
    return ({h["step"]: h["loss"] for h in record["result"]["extra"]["log_history"] if "loss" in h},
            time.perf_counter() - t0)


def main() -> None:
    a = parse_args()
    print(f"CPU: {describe_cpu()}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "data").mkdir()
        (tmp / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in react_rows(a.rows)))
        (tmp / "recipe.yaml").write_text(json.dumps({
            "model": tiny_model(tmp / "tiny"), "data": {"path": str(tmp / "data")}, "lora": {"r": 8, "alpha": 16},
            "trl": {"max_steps": a.steps, "logging_steps": 1, "learning_rate": 1e-2, "gradient_accumulation_steps": a.accum,
                    "activation_checkpointing": False, "save_strategy": "no", "report_to": [], "seed": 0,
                    "disable_tqdm": True}}))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        config = recipes_dir() / "accelerate" / "cpu_gloo.yaml"
        one, t_one = train(tmp, "one", a.procs * a.batch, [])
        many, t_many = train(tmp, "many", a.batch, ["-m", "accelerate.commands.launch", "--config_file", str(config),
                                                    "--num_processes", str(a.procs), "--main_process_port", str(port)])
    print(f"global batch {a.procs * a.batch * a.accum} rows/update: 1 process x {a.procs * a.batch} x {a.accum} accum "
          f"vs {a.procs} processes x {a.batch} x {a.accum} accum (accelerate launch, gloo)")
    print(f"{'step':>4}  {'1 process':>10}  {f'{a.procs} processes':>12}  {'rel diff':>9}")
    rel = {}
    for step in sorted(one):
        rel[step] = abs(many[step] - one[step]) / one[step]
        print(f"{step:>4}  {one[step]:>10.5f}  {many[step]:>12.5f}  {rel[step]:>9.2e}")
    print(f"max relative difference: {max(rel.values()):.2e} (bound 1e-2)")
    print(f"wall: 1 process {t_one:.1f} s, {a.procs} processes {t_many:.1f} s (start-up included)")
    if sorted(one) != sorted(many) or max(rel.values()) >= 0.01:
        sys.exit("FAIL: the curves differ")


if __name__ == "__main__":
    main()
