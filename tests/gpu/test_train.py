"""Training on CUDA (bf16) on tiny models: a LoRA SFT run lowers the loss and reports CUDA's peak
memory; GRPO's rollouts come from the live weights (the engine's per-token logprobs equal the
trainer's within ``BF16_LOGPROB``); QLoRA loads the base in 4-bit and trains its adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")]

BF16_LOGPROB = (0.02, 0.15)
"""Engine vs trainer log-probabilities of the same tokens in bf16: (mean, max) absolute difference.
Two bf16 forwards of different shapes (a decoding batch vs one teacher-forced sequence) round
differently; fp32 on a CPU agrees to 1e-4 (tests/train/test_rl.py)."""

QUESTION = [{"role": "user", "content": "Say something."}]


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("gpu-sft")
    rows = []
    for i in range(16):
        city = ["Paris", "Berlin", "Rome", "Madrid"][i % 4]
        rows.append({"messages": [
            {"role": "user", "content": f"What is the capital of country {i}?"},
            {"role": "assistant", "content": f"Thought: I need to search country {i}.\nAction: search[country {i}]"},
            {"role": "user", "content": f"Observation: Country {i} has {city} as its capital."},
            {"role": "assistant", "content": f"Thought: So it is {city}.\nAction: finish[{city}]"}]})
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(d)


def sft_recipe(model: str, data: str, out: Path, method: str = "lora", **trl):
    from reactlab.train.recipes import SFTRecipe

    base = dict(max_steps=8, per_device_train_batch_size=4, logging_steps=1, learning_rate=1e-2, save_strategy="no",
                report_to=[], seed=0, disable_tqdm=True, bf16=True)
    return SFTRecipe(model={"name": model, "dtype": "bfloat16"}, data={"path": data, "val_file": None}, out=str(out),
                     method=method, lora={"r": 8, "alpha": 16}, trl=base | trl)


def test_lora_sft_on_cuda(tiny_train, sft_data, tmp_path):
    from reactlab.train.record import read_training_record
    from reactlab.train.sft import train_sft

    torch.cuda.reset_peak_memory_stats()
    result = train_sft(sft_recipe(tiny_train, sft_data, tmp_path / "sft"))
    info = read_training_record(tmp_path / "sft")
    curve = [h["loss"] for h in result.extra["log_history"] if "loss" in h]
    assert info["device"] == "cuda" and result.extra["precision"] == "bf16"
    assert len(curve) == 8 and curve[-1] < curve[0]
    assert 0 < result.peak_mem_mb < 2048  # CUDA's peak allocation, not the process' RSS
    assert result.tokens_per_s and result.tokens_per_s > 0


def test_grpo_rollouts_come_from_the_live_weights(tiny_train, tmp_path):
    """After two GRPO updates on CUDA, a fresh rollout's engine logprobs equal the trainer's
    recomputed ones within ``BF16_LOGPROB``, and differ from the starting model's by more."""
    from trl import GRPOTrainer

    from reactlab.train.cpu import patch_trl_for_cpu
    from reactlab.train.grpo import grpo_config
    from reactlab.train.online import EpisodeRollouts, rl_dataset, rl_rewards, rollout_spec
    from reactlab.train.policy import load_policy
    from reactlab.train.recipes import GRPORecipe
    from reactlab.train.rollout import RolloutSpec, run_rollouts

    d = tmp_path / "prompts"
    d.mkdir()
    rows = [{"prompt": QUESTION, "answer": "Alpine"}] * 8
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = GRPORecipe(model={"name": tiny_train, "dtype": "bfloat16"}, data={"path": str(d)}, out=str(tmp_path / "g"),
                     lora={"r": 8, "alpha": 16, "dropout": 0.0}, env="none", num_generations=4, max_episode_steps=2,
                     max_new_tokens=6, temperature=1.0,
                     trl=dict(max_steps=2, per_device_train_batch_size=4, logging_steps=1, learning_rate=5e-2,
                              save_strategy="no", report_to=[], seed=0, disable_tqdm=True, bf16=True))
    policy = load_policy(cfg)
    patch_trl_for_cpu()
    rollouts = EpisodeRollouts(rollout_spec(cfg, 0))
    trainer = GRPOTrainer(model=policy.model, args=grpo_config(cfg), train_dataset=rl_dataset(rows),
                          processing_class=policy.tokenizer, peft_config=policy.peft_config,
                          reward_funcs=rl_rewards(cfg), rollout_func=rollouts)
    trainer.train()
    model = trainer.model.eval()
    assert next(model.parameters()).is_cuda
    outs = run_rollouts(rollouts.llm, [QUESTION] * 4, RolloutSpec(max_steps=2, max_new_tokens=6, temperature=1.0, seed=7))
    diffs, moved = [], []
    for r in outs:
        ids = torch.tensor([r.prompt_ids + r.completion_ids], device="cuda")
        with torch.no_grad():
            logps, *_ = trainer._get_per_token_logps_and_entropies(model, ids, torch.ones_like(ids), len(r.completion_ids))
            with model.disable_adapter():
                base, *_ = trainer._get_per_token_logps_and_entropies(model, ids, torch.ones_like(ids),
                                                                     len(r.completion_ids))
        m = torch.tensor(r.env_mask, dtype=torch.bool, device="cuda")
        engine = torch.tensor(r.logprobs, device="cuda")
        diffs.append((logps[0].float() - engine)[m].abs())
        moved.append((base[0].float() - engine)[m].abs().mean().item())
    d_all = torch.cat(diffs)
    print(f"engine vs trainer logprob (bf16): mean {d_all.mean():.4f}, max {d_all.max():.4f}; "
          f"vs the starting model: mean {min(moved):.4f}")
    assert d_all.mean().item() <= BF16_LOGPROB[0] and d_all.max().item() <= BF16_LOGPROB[1]
    assert min(moved) > 2 * BF16_LOGPROB[0]  # training moved the policy beyond the bf16 noise


def test_qlora_sft_on_cuda(tiny_train, sft_data, tmp_path):
    """``method: qlora``: the base's linear layers in 4-bit (bitsandbytes), the adapter trains."""
    pytest.importorskip("bitsandbytes")
    from reactlab.train.sft import train_sft

    out = tmp_path / "qlora"
    result = train_sft(sft_recipe(tiny_train, sft_data, out, method="qlora", optim="paged_adamw_8bit"))
    curve = [h["loss"] for h in result.extra["log_history"] if "loss" in h]
    assert curve[-1] < curve[0]
    assert (out / "adapter_model.safetensors").is_file()
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["r"] == 8
