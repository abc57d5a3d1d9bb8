"""bench/sft_vs_llamafactory.py: the LLaMA-Factory config it writes and what it reads back from
LLaMA-Factory's output (no LLaMA-Factory, no model, no training)."""

import json
from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="module")
def bench(load_bench):
    return load_bench("sft_vs_llamafactory")


def test_defaults_match_the_issue(bench):
    a = bench.parse_args([])
    assert (a.rows, a.batch, a.accum, a.steps, a.cutoff, a.lr, a.threads) == (48, 4, 2, 6, 768, 2e-4, 0)
    assert a.steps * a.batch * a.accum == a.rows  # one pass over the rows, each row once
    assert a.arms.split(",") == ["ours", "llamafactory", "trl"]


def test_lf_config_mirrors_our_settings(bench, tmp_path):
    a = bench.parse_args(["--rows", "8", "--batch", "2", "--accum", "3", "--steps", "1", "--cutoff", "512",
                          "--lr", "1e-4"])
    data = tmp_path / "hotpotqa_sharegpt"
    cfg = bench.lf_config(a, "/models/smollm2", data, tmp_path / "out")
    cfg = yaml.safe_load(yaml.safe_dump(cfg))  # what llamafactory-cli reads back
    assert cfg["dataset"] == "hotpotqa_sharegpt" and cfg["dataset_dir"] == str(data)  # dataset_info.json key
    assert cfg["model_name_or_path"] == "/models/smollm2" and cfg["template"] == "smollm2"
    assert (cfg["stage"], cfg["finetuning_type"], cfg["lora_target"]) == ("sft", "lora", "all")
    assert (cfg["lora_rank"], cfg["lora_alpha"], cfg["lora_dropout"]) == (16, 32, 0.0)
    assert (cfg["per_device_train_batch_size"], cfg["gradient_accumulation_steps"], cfg["max_steps"]) == (2, 3, 1)
    assert (cfg["cutoff_len"], cfg["max_samples"], cfg["learning_rate"]) == (512, 8, 1e-4)
    assert cfg["lr_scheduler_type"] == "constant" and cfg["save_strategy"] == "no" and cfg["report_to"] == "none"
    assert cfg["bf16"] is False and cfg["fp16"] is False and cfg["use_cpu"] is True
    assert cfg["disable_shuffling"] is True and cfg["seed"] == 0
    assert cfg["include_num_input_tokens_seen"] == "non_padding"  # True would count padding too
    # LLaMA-Factory's own defaults stay its own
    assert "disable_gradient_checkpointing" not in cfg and "flash_attn" not in cfg
    assert "default_system" not in cfg  # the template's own unless given
    assert bench.lf_config(a, "m", data, tmp_path / "out", "Be brief")["default_system"] == "Be brief"


SMOLLM2_TEMPLATE = (  # SmolLM2-Instruct's chat_template.jinja
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def test_template_system(bench, tmp_path):
    (tmp_path / "chat_template.jinja").write_text(SMOLLM2_TEMPLATE)
    assert bench.template_system(tmp_path) == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    plain = "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n'}}{% endfor %}"
    (tmp_path / "chat_template.jinja").unlink()
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": plain}))
    assert bench.template_system(tmp_path) is None  # no default system prompt
    assert bench.template_system(tmp_path / "nowhere") is None


def write_lf_output(out: Path, tokens=1234):
    out.mkdir()
    state = {"global_step": 2, "num_input_tokens_seen": tokens, "log_history": [
        {"step": 1, "loss": 2.5, "num_input_tokens_seen": tokens // 2},
        {"step": 2, "loss": 2.25, "num_input_tokens_seen": tokens},
        {"step": 2, "train_runtime": 10.0, "train_loss": 2.375}]}
    (out / "trainer_state.json").write_text(json.dumps(state))
    (out / "train_results.json").write_text(json.dumps({"train_runtime": 10.0, "train_loss": 2.375, "epoch": 1.0}))


def test_lf_result_reads_the_trainer_files(bench, tmp_path):
    write_lf_output(tmp_path / "out")
    log = "[INFO|checkpointing.py:178] >> Gradient checkpointing enabled.\n"
    r = bench.lf_result(tmp_path / "out", log)
    assert r == {"tokens": 1234, "train_s": 10.0, "final_loss": 2.25, "mean_loss": 2.375, "steps": 2, "grad_ckpt": True}
    assert bench.lf_result(tmp_path / "out", "")["grad_ckpt"] is False


def test_lf_result_without_a_loss_fails(bench, tmp_path):
    out = tmp_path / "out"
    write_lf_output(out)
    state = json.loads((out / "trainer_state.json").read_text())
    state["log_history"] = [h for h in state["log_history"] if "loss" not in h]
    (out / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match="no loss"):
        bench.lf_result(out, "")


def test_ratios_and_versions(bench):
    ours = {"tokens_per_s": 300.0, "peak_rss_mb": 1000.0, "final_loss": 1.0}
    other = {"tokens_per_s": 200.0, "peak_rss_mb": 2000.0, "final_loss": 0.5}
    assert bench.ratios(ours, other) == "speed x1.50  memory x0.50  final loss ratio 2.0000"
    line = bench.fmt_versions({"torch": "2.13.0+cpu", "cuda": None, "transformers": "5.6.0", "llamafactory": "0.9.5"})
    assert line == "torch 2.13.0+cpu (CPU build)  transformers 5.6.0  llamafactory 0.9.5"
    assert "CUDA 12.8 build" in bench.fmt_versions({"torch": "2.14.1", "cuda": "12.8"})


def test_unknown_arm_is_refused(bench):
    with pytest.raises(SystemExit, match="unknown arm"):
        bench.main(["--arms", "ours,axolotl"])


def test_check_same_rows(bench, tmp_path):
    from reactlab.data.formats import to_messages, to_sharegpt
    from reactlab.types import Action, Step, Trajectory

    trajs = [Trajectory(str(i), "hotpotqa", f"Q{i}?", "y", "react", "", "", steps=[
        Step(1, "Go.", Action("search", "X"), "X is y."), Step(2, "So y.", Action("finish", "y"), "Episode finished.")])
        for i in range(3)]
    msgs, share = tmp_path / "messages", tmp_path / "hotpotqa_sharegpt"
    for d, rows in ((msgs, [to_messages(t) for t in trajs]), (share, [to_sharegpt(t) for t in trajs])):
        d.mkdir()
        (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench.check_same_rows(msgs, share, 3)
    with pytest.raises(SystemExit, match="too many"):
        bench.check_same_rows(msgs, share, 4)
    rows = [to_sharegpt(t) for t in reversed(trajs)]
    (share / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(SystemExit, match="row 1: the messages and sharegpt exports differ"):
        bench.check_same_rows(msgs, share, 3)
