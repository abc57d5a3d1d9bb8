"""Training under several processes: `accelerate launch` with the shipped CPU config (2 processes
over gloo) trains the same LoRA as 1 process with the same global batch (loss within 1% at every
logged step), only the main process writes the record and prints the result, and every shipped
accelerate config loads with accelerate's own reader."""

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
pytest.importorskip("accelerate")

ACCELERATE = Path(recipes_dir()) / "accelerate"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loss_curve(out: Path) -> dict[int, float]:
    record = json.loads((out / "training.json").read_text())
    return {h["step"]: h["loss"] for h in record["result"]["extra"]["log_history"] if "loss" in h}


def test_two_gloo_processes_train_like_one(tiny_dir, react_data, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {tiny_dir}\ndata:\n  path: {react_data}\nlora: {{r: 8, alpha: 16}}\n"
                      "trl:\n  max_steps: 4\n  logging_steps: 1\n  learning_rate: 1.0e-2\n"
                      "  gradient_accumulation_steps: 2\n  activation_checkpointing: false\n"
                      "  save_strategy: 'no'\n  report_to: []\n  seed: 0\n  disable_tqdm: true\n")
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    cli = ["-m", "reactlab.cli", "train", "sft", "-c", str(recipe)]

    def train(name: str, batch: int, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, *launcher, *cli, "-c", f"out={tmp_path / name}",
                               "-c", f"trl.per_device_train_batch_size={batch}"],
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    # global batch 8 rows per update either way: 1 x 4 x 2 accumulation, 2 processes x 2 x 2
    train("one", 4)
    two = train("two", 2, ("-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE / "cpu_gloo.yaml"),
                           "--main_process_port", str(free_port())))
    one, both = loss_curve(tmp_path / "one"), loss_curve(tmp_path / "two")
    assert sorted(one) == sorted(both) == [1, 2, 3, 4]
    rel = {s: abs(both[s] - one[s]) / one[s] for s in one}
    assert max(rel.values()) < 0.01, rel
    assert two.stdout.count('"out": ') == 1  # the result printed by the main process only
    assert (tmp_path / "two" / "adapter_model.safetensors").is_file() and (tmp_path / "two" / "loss.png").is_file()
    # one process group, not two lone runs: a process training alone on batch 2 x 2 sees other rows
    train("lone", 2)
    assert loss_curve(tmp_path / "lone") != both


def _time_limit_on(rank: int, port: int, over: bool, results) -> None:
    import time
    from types import SimpleNamespace

    import torch.distributed as dist
    from transformers import TrainerControl

    from reactlab.train.limits import time_limit

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        limit = time_limit(1.0)
        limit.t0 = time.perf_counter() - (120 if over else 0)
        control = limit.on_step_end(SimpleNamespace(device="cpu"), SimpleNamespace(global_step=3), TrainerControl())
        results.put((rank, control.should_training_stop, limit.stopped_at_step))
    finally:
        dist.destroy_process_group()


def test_max_minutes_stops_every_process_at_the_same_step():
    """Process 0 is past its time budget and process 1 is not (they started at different times):
    both stop after this update, or process 1 would wait alone in its next all-reduce."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    results, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=_time_limit_on, args=(rank, port, rank == 0, results)) for rank in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(results.get(timeout=5) for _ in procs) == [(0, True, 3), (1, True, 3)]


@pytest.mark.parametrize("name, kind, precision, cpu, extra", [
    ("cpu_gloo", "MULTI_GPU", "no", True, None),  # MULTI_GPU: the torchrun launcher (the file says why)
    ("ddp", "MULTI_GPU", "bf16", False, None),
    ("fsdp", "FSDP", "bf16", False, ("fsdp_config", {"fsdp_version": 2, "fsdp_state_dict_type": "FULL_STATE_DICT",
                                                    "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP"})),
    ("deepspeed_zero2", "DEEPSPEED", "bf16", False, ("deepspeed_config", {"zero_stage": 2})),
    ("deepspeed_zero3", "DEEPSPEED", "bf16", False, ("deepspeed_config", {"zero_stage": 3, "zero3_save_16bit_model": True})),
])
def test_accelerate_configs_load(name, kind, precision, cpu, extra):
    from accelerate.commands.config.config_args import load_config_from_file

    path = ACCELERATE / f"{name}.yaml"
    cfg = load_config_from_file(str(path))  # what `accelerate launch --config_file` reads; raises on an unknown key
    assert (cfg.distributed_type.value, cfg.num_processes, cfg.mixed_precision, cfg.use_cpu) == (kind, 2, precision, cpu)
    if extra:
        block, want = extra
        got = getattr(cfg, block)
        assert {k: got[k] for k in want} == want
    assert f"accelerate launch --config_file configs/accelerate/{name}.yaml" in path.read_text()


def test_every_shipped_config_is_checked():
    checked = {p[0] for p in test_accelerate_configs_load.pytestmark[0].args[1]}
    assert {p.stem for p in ACCELERATE.glob("*.yaml")} == checked
