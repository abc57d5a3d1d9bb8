"""The Jittor SFT loop: the torch path's rows, masks and loss; its outputs; exact resume; and
one-line refusals of what it does not support."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reactlab.train.recipes import SFTRecipe


def recipe(model: str, data: str, out: Path, **trl) -> SFTRecipe:
    """The fast recipe of tests/train/test_sft.py, on the Jittor path."""
    base = dict(max_steps=4, per_device_train_batch_size=4, per_device_eval_batch_size=4, logging_steps=1,
                learning_rate=1e-2, activation_checkpointing=False, save_strategy="no", report_to=[],
                seed=0, disable_tqdm=True)
    return SFTRecipe(model=model, data={"path": data}, out=str(out), lora={"r": 8, "alpha": 16},
                     framework="jittor", trl=base | trl)


def losses(history) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in history if "loss" in h}


@pytest.fixture(scope="module")
def trained(tiny_dir, react_data, tmp_path_factory):
    from reactlab.train.jittor.train import train_sft_jittor

    out = tmp_path_factory.mktemp("jt-sft") / "out"
    cfg = recipe(tiny_dir, react_data, out, max_steps=12, report_to=["tensorboard"], eval_strategy="steps",
                 eval_steps=6, save_strategy="steps", save_steps=4, save_total_limit=2, activation_checkpointing=True)
    return cfg, train_sft_jittor(cfg)


def test_loss_falls_and_the_run_is_recorded(trained):
    cfg, result = trained
    out = Path(cfg.out)
    info = json.loads((out / "training.json").read_text())
    curve = losses(info["result"]["extra"]["log_history"])
    assert sorted(curve) == list(range(1, 13))
    assert curve[12] < curve[1] - 0.5, curve
    assert result.steps == 12 and result.train_loss == curve[12] and result.eval_loss is not None
    assert info["result"]["extra"]["framework"] == "jittor" and info["recipe"]["framework"] == "jittor"
    assert info["trainer"] == "sft" and info["method"] == "lora" and info["data"]["sha256"]
    assert result.tokens_per_s and result.tokens_per_s > 0 and result.peak_mem_mb > 0
    for f in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "loss.png", "README.md"):
        assert (out / f).is_file(), f
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-8"]  # save_total_limit
    assert list((out / "runs").rglob("events.out.tfevents.*"))  # TensorBoard, as the torch path writes


def test_the_rows_and_labels_are_the_torch_paths(tiny_dir, react_data):
    from transformers import AutoTokenizer

    from reactlab.train.jittor.train import encode
    from reactlab.train.rows import load_rows
    from reactlab.train.sft import tokenize_rows

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    rows = load_rows(Path(react_data) / "train.jsonl")
    want = tokenize_rows(tok, rows, "assistant")
    assert encode(tok, rows, "assistant", "x", None) == list(zip(want["input_ids"], want["labels"], strict=True))
    cut = encode(tok, rows, "assistant", "x", 40)
    assert all(len(ids) <= 40 for ids, _ in cut) and len(cut) < len(rows)  # rows with no trained token left: dropped


@pytest.mark.parametrize("checkpointing", [False, True])
def test_first_update_loss_equals_the_torch_paths(checkpointing, tiny_dir, react_data, tmp_path):
    """Same rows in the same order (sequential), the same base: the first update's loss (before any
    weight moves; LoRA starts as the base) is the torch path's, with gradient accumulation, with and
    without activation checkpointing."""
    from reactlab.train.jittor.train import train_sft_jittor
    from reactlab.train.sft import train_sft

    kw = dict(max_steps=1, gradient_accumulation_steps=2, train_sampling_strategy="sequential",
              activation_checkpointing=checkpointing)
    jt_result = train_sft_jittor(recipe(tiny_dir, react_data, tmp_path / "jt", **kw))
    pt_result = train_sft(recipe(tiny_dir, react_data, tmp_path / "pt", **kw).model_copy(update={"framework": "torch"}))
    assert jt_result.train_loss == pytest.approx(pt_result.train_loss, rel=1e-5)
    assert jt_result.train_tokens == pt_result.train_tokens


def test_resume_matches_uninterrupted_run(tiny_dir, react_data, tmp_path, monkeypatch):
    """Interrupted right after checkpoint-3 is written, then resumed: steps 4-6 log what an
    uninterrupted run logs (LoRA dropout on: its masks are seeded per update)."""
    from reactlab.train.jittor import train as jt_train

    kw = dict(max_steps=6, save_strategy="steps", save_steps=3)
    full = jt_train.train_sft_jittor(recipe(tiny_dir, react_data, tmp_path / "a", **kw))
    full_curve = losses(json.loads((tmp_path / "a" / "training.json").read_text())["result"]["extra"]["log_history"])

    real = jt_train._checkpoint

    def interrupted(model, opt, state, path, *a, **k):
        real(model, opt, state, path, *a, **k)
        if path.name == "checkpoint-3":
            raise KeyboardInterrupt

    cfg = recipe(tiny_dir, react_data, tmp_path / "b", **kw)
    monkeypatch.setattr(jt_train, "_checkpoint", interrupted)
    with pytest.raises(KeyboardInterrupt):
        jt_train.train_sft_jittor(cfg)
    monkeypatch.setattr(jt_train, "_checkpoint", real)
    assert not (tmp_path / "b" / "training.json").exists()
    result = jt_train.train_sft_jittor(cfg, resume=True)
    curve = losses(json.loads((tmp_path / "b" / "training.json").read_text())["result"]["extra"]["log_history"])
    assert result.steps == 6 and result.extra["resumed"] is True
    assert curve == full_curve  # bit for bit, steps 1-3 from the checkpoint's history
    assert full.train_loss == result.train_loss


def test_resume_without_checkpoint_fails(tiny_dir, react_data, tmp_path):
    from reactlab.train.jittor.train import train_sft_jittor

    with pytest.raises(ValueError, match="no checkpoint"):
        train_sft_jittor(recipe(tiny_dir, react_data, tmp_path / "none"), resume=True)


def _recipe_file(tmp_path: Path, model: str, data: str) -> Path:
    f = tmp_path / "r.yaml"
    f.write_text(f"model: {{name: {model}}}\ndata:\n  path: {data}\nlora: {{r: 4}}\n"
                 "trl:\n  max_steps: 2\n  per_device_train_batch_size: 4\n  activation_checkpointing: false\n"
                 "  report_to: []\n  save_strategy: 'no'\n  disable_tqdm: true\n")
    return f


def test_cli_framework_jittor(tiny_dir, react_data, tmp_path):
    from reactlab.train.cli import train_app

    out = tmp_path / "out"
    res = CliRunner().invoke(train_app, ["sft", "-c", str(_recipe_file(tmp_path, tiny_dir, react_data)),
                                         "-c", f"out={out}", "--framework", "jittor"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index('{\n  "out"'):])["steps"] == 2
    assert json.loads((out / "training.json").read_text())["result"]["extra"]["framework"] == "jittor"


@pytest.mark.parametrize(("override", "message"), [
    ("method=full", "method: full is not supported by the Jittor path"),
    ("method=qlora", "method: qlora is not supported by the Jittor path"),
    ("trl.padding_free=true", "trl.padding_free: True is not supported by the Jittor path"),
    ("trl.neftune_noise_alpha=5", "trl.neftune_noise_alpha: not supported by the Jittor path"),
    ("trl.lr_scheduler_type=cosine_with_restarts", "trl.lr_scheduler_type: 'cosine_with_restarts' is not supported"),
    ("model.dtype=bfloat16", "model.dtype: bfloat16 is not supported by the Jittor path"),
    ("trl.no_such_argument=1", "trl.no_such_argument"),
    ("trl.fp16=true -c trl.bf16=true", "trl.bf16 and trl.fp16 are both true"),
])
def test_what_the_jittor_path_does_not_do_is_a_one_line_error(override, message, react_data, tmp_path):
    from reactlab.train.cli import train_app

    recipe_file = _recipe_file(tmp_path, "no/such-model", react_data)  # refused before any model is loaded
    res = CliRunner().invoke(train_app, ["sft", "-c", str(recipe_file), "-c", f"out={tmp_path / 'o'}",
                                         *[x for o in override.split(" -c ") for x in ("-c", o)],
                                         "--framework", "jittor"])
    assert res.exit_code == 2, res.output
    assert message in res.output and len(res.output.strip().splitlines()) == 1, res.output


@pytest.mark.parametrize("flag", ["bf16", "fp16"])
def test_half_precision_trains_with_float32_master_weights(flag, tiny_dir, react_data, tmp_path):
    """``trl.bf16`` / ``trl.fp16``: the run computes in half precision (recorded), its loss falls as
    the float32 run's does, the adapter is saved in float32, and fp16's loss scale is checkpointed."""
    from safetensors.numpy import load_file

    from reactlab.train.jittor.train import train_sft_jittor

    out = tmp_path / flag
    train_sft_jittor(recipe(tiny_dir, react_data, out, max_steps=6, save_strategy="steps", save_steps=3,
                            **{flag: True}))
    extra = json.loads((out / "training.json").read_text())["result"]["extra"]
    assert extra["precision"] == {"bf16": "bfloat16", "fp16": "float16"}[flag]
    curve = losses(extra["log_history"])
    assert curve[6] < curve[1] - 0.3, curve
    assert {str(v.dtype) for v in load_file(str(out / "adapter_model.safetensors")).values()} == {"float32"}
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    assert ("loss_scale" in state) == (flag == "fp16")
    if flag == "fp16":
        assert state["loss_scale"]["scale"] > 0
