"""bench/rl_arms_table.py: EM and the paired difference to the first arm, and what an RL run's
training.json says it spent (episodes in kept groups counted as episodes, not groups)."""

import json
import sys


def _run(path, ems):
    path.mkdir()
    rows = [{"id": f"q{i}", "scores": {"em": float(e), "f1": 0.5 * e}} for i, e in enumerate(ems)]
    (path / "trajectories.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_table_pairs_arms_and_reads_rl_training(load_bench, tmp_path, capsys, monkeypatch):
    base = _run(tmp_path / "sft", [1, 1, 0, 0])
    rl = _run(tmp_path / "rl", [1, 0, 1, 1])
    train = tmp_path / "grpo"
    train.mkdir()
    updates = [{"step": s, "rollouts": 12, "kept": 1, "masked": 1, "dropped": 2, "reward": 0.1} for s in (1, 2)]
    rewards = [{"step": s, "reward": r} for s, r in enumerate([0.0, 0.2, 0.4, 0.6, 0.8], 1)]
    (train / "training.json").write_text(json.dumps({
        "recipe": {"num_generations": 4},
        "result": {"steps": 2, "wall_s": 120.0, "peak_mem_mb": 2048.0,
                   "extra": {"sampling": {"updates": updates}, "rewards": rewards}}}))
    monkeypatch.setattr(sys, "argv", ["rl_arms_table.py", "--arm", f"sft={base}", "--arm", f"grpo={rl}:{train}"])
    load_bench("rl_arms_table").main()
    out = capsys.readouterr().out
    assert "| sft | 4 | 0.500 ± 0.289 | 0.250 | - | - |" in out
    row = next(x for x in out.splitlines() if x.startswith("| grpo |"))
    # gained q2, q3; lost q1: +1/4
    assert "| 0.750 ± 0.250 | 0.375 | +25.0 ±" in row and "| 2 / 1 |" in row
    assert "| 2 | 24 / 8 | 2.0 | 2.0 | 0.00 0.20 0.40 0.60 0.80 |" in row


def test_without_dynamic_sampling_an_update_of_one_group_is_kept_when_its_rewards_differ(load_bench, tmp_path):
    train = tmp_path / "grpo-old"
    train.mkdir()
    rewards = [{"step": s, "reward": 0.1, "reward_std": std} for s, std in enumerate([0.0, 0.3, 0.0, 0.5], 1)]
    record = {"trainer": "grpo", "recipe": {"num_generations": 8, "trl": {"per_device_train_batch_size": 4,
                                                                          "gradient_accumulation_steps": 2}},
              "result": {"steps": 4, "wall_s": 60.0, "peak_mem_mb": 1024.0, "extra": {"rewards": rewards}}}
    (train / "training.json").write_text(json.dumps(record))
    t = load_bench("rl_arms_table").training(train)
    assert (t["updates"], t["rollouts"], t["kept"]) == (4, 32, 16)
    record["recipe"]["num_generations"] = 4  # two groups an update: the spread of the update says nothing of each
    (train / "training.json").write_text(json.dumps(record))
    assert load_bench("rl_arms_table").training(train)["kept"] is None
    record |= {"trainer": "dpo"}
    (train / "training.json").write_text(json.dumps(record))
    assert load_bench("rl_arms_table").training(train)["rollouts"] is None
