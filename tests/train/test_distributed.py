"""Training under several processes: `torchrun` with 2 CPU processes over gloo trains the same
LoRA as 1 process with the same global batch (loss within 1% at every logged step), only the main
process writes the record, and the shipped accelerate configs load with accelerate's own reader."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from reactlab.paths import recipes_dir

pytest.importorskip("trl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_train_like_one(tiny_dir, react_data, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {tiny_dir}\ndata:\n  path: {react_data}\nlora: {{r: 8, alpha: 16}}\n"
                      "trl:\n  max_steps: 6\n  logging_steps: 1\n  learning_rate: 1.0e-2\n"
                      "  activation_checkpointing: false\n  save_strategy: 'no'\n  report_to: []\n  seed: 0\n"
                      "  disable_tqdm: true\n")
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    cli = ["-m", "reactlab.cli", "train", "sft", "-c", str(recipe)]
    one = subprocess.run([sys.executable, *cli, "-c", f"out={tmp_path / 'one'}", "-c", "trl.per_device_train_batch_size=4"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(free_port()), *cli, "-c", f"out={tmp_path / 'two'}",
                          "-c", "trl.per_device_train_batch_size=2"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    curves = {}
    for name in ("one", "two"):
        record = json.loads((tmp_path / name / "training.json").read_text())
        curves[name] = {h["step"]: h["loss"] for h in record["result"]["extra"]["log_history"] if "loss" in h}
    assert sorted(curves["one"]) == sorted(curves["two"]) == [1, 2, 3, 4, 5, 6]
    rel = {s: abs(curves["two"][s] - curves["one"][s]) / curves["one"][s] for s in curves["one"]}
    assert max(rel.values()) < 0.01, rel
    # one process group, not two lone runs: a lone process with batch 2 sees other rows from step 2 on
    lone = subprocess.run([sys.executable, *cli, "-c", f"out={tmp_path / 'lone'}", "-c", "trl.per_device_train_batch_size=2"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert lone.returncode == 0, lone.stderr[-2000:]
    record = json.loads((tmp_path / "lone" / "training.json").read_text())
    alone = {h["step"]: h["loss"] for h in record["result"]["extra"]["log_history"] if "loss" in h}
    assert alone != curves["two"]
    assert (tmp_path / "two" / "adapter_model.safetensors").is_file() and (tmp_path / "two" / "loss.png").is_file()


@pytest.mark.parametrize("name, kind, extra", [
    ("ddp", "MULTI_GPU", None),
    ("fsdp", "FSDP", ("fsdp_config", {"fsdp_version": 2, "fsdp_state_dict_type": "FULL_STATE_DICT"})),
    ("deepspeed_zero2", "DEEPSPEED", ("deepspeed_config", {"zero_stage": 2})),
    ("deepspeed_zero3", "DEEPSPEED", ("deepspeed_config", {"zero_stage": 3, "zero3_save_16bit_model": True})),
])
def test_accelerate_configs_load(name, kind, extra):
    pytest.importorskip("accelerate")
    from accelerate.commands.config.config_args import load_config_from_file

    path = Path(recipes_dir()) / "accelerate" / f"{name}.yaml"
    cfg = load_config_from_file(str(path))  # raises on a key accelerate does not know
    assert (cfg.distributed_type.value, cfg.num_processes, cfg.mixed_precision, cfg.use_cpu) == (kind, 2, "bf16", False)
    if extra:
        block, want = extra
        got = getattr(cfg, block)
        assert {k: got[k] for k in want} == want
    assert "accelerate launch --config_file configs/accelerate/" in path.read_text()
