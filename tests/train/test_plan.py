"""The memory planner against published figures (within 20%), from configs of the published shapes
built here (no download): the QLoRA paper's 65B on one 48 GB GPU and its >780 GB for 16-bit fine-tuning,
Qwen's QLoRA 7B table (batch 1, 11.5-13.9 GB for 256-2048 tokens), full fine-tuning's ~16 bytes per
parameter with mixed-precision Adam (ZeRO paper); then ``--plan`` on the command line."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reactlab.train.plan import HEADROOM, GiB, Setup, estimate, model_shape

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def llama65b():
    return model_shape(transformers.LlamaConfig(
        hidden_size=8192, num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=64,
        intermediate_size=22016, vocab_size=32000, max_position_embeddings=2048, tie_word_embeddings=False))


@pytest.fixture(scope="module")
def qwen2_7b():
    return model_shape(transformers.Qwen2Config(
        hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
        intermediate_size=18944, vocab_size=152064, max_position_embeddings=32768, tie_word_embeddings=False))


@pytest.fixture(scope="module")
def qwen_7b():
    """Qwen(1)-7B, the model Qwen's table was measured on: Llama's layout with Qwen's sizes."""
    return model_shape(transformers.LlamaConfig(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
        intermediate_size=11008, vocab_size=151936, max_position_embeddings=8192, tie_word_embeddings=False))


def close(got: float, want: float, tol: float = 0.20) -> bool:
    return abs(got - want) <= tol * want


def test_parameter_counts(llama65b, qwen2_7b):
    """The meta-device counts give the published sizes: LLaMA-65B 65.2B, Qwen2-7B 7.62B."""
    assert close(llama65b.params, 65.2e9, 0.01), llama65b.params
    assert close(qwen2_7b.params, 7.62e9, 0.01), qwen2_7b.params
    assert qwen2_7b.embedding == qwen2_7b.head == 152064 * 3584  # untied head
    assert qwen2_7b.quantized == qwen2_7b.params - 2 * qwen2_7b.embedding - (2 * 28 + 1) * 3584


# The QLoRA paper's recipe: NF4 + double quantisation, LoRA r=64 on every linear layer, adapters in
# bf16, paged 32-bit AdamW, activation checkpointing; batch 1 x 512 tokens (its memory figure).
QLORA_PAPER = Setup(method="qlora", lora_r=64, lora_dropout=0.05, adapter_dtype="bfloat16",
                    optim="paged_adamw_32bit", checkpointing=True, batch=1, length=512)


def test_qlora_65b_fits_one_48gb_gpu(llama65b):
    plan = estimate(llama65b, QLORA_PAPER)
    assert close(plan.parts["weights"], 35e9, 0.10), plan.parts["weights"]  # ~35 GB of 4-bit weights
    assert plan.total <= 48 * GiB * (1 - HEADROOM), plan.total / GiB
    assert plan.total > 0.8 * 48 * GiB  # and not by a wide margin: 48 GB is the paper's smallest GPU for it
    assert plan.max_tokens(48) >= 512
    assert estimate(llama65b, Setup(method="lora", lora_r=64, batch=1, length=512)).max_tokens(48) == 0  # 16-bit base: no


def test_full_16bit_finetuning_of_65b_needs_over_780gb(llama65b):
    """The paper's ">780 GB": bf16 weights and gradients, fp32 Adam moments, 12 bytes per parameter."""
    plan = estimate(llama65b, Setup(method="full", weight_dtype="bfloat16", optim="adamw_torch_32bit",
                                    batch=1, length=512))
    assert close(plan.total, 780e9, 0.20) and plan.total > 780e9, plan.total / 1e9


# Qwen's QLoRA fine-tuning: LoRA r=64 on every linear, dropout 0.05, AdamW, adapters and the
# unquantised weights in fp32, batch 1, gradient checkpointing, the loss on bf16 logits (Qwen's
# modeling code); GB per sequence length.
QWEN_QLORA = {256: 11.5, 512: 11.5, 1024: 12.3, 2048: 13.9}
QWEN_SETUP = Setup(method="qlora", lora_r=64, lora_dropout=0.05, optim="adamw_torch", checkpointing=True,
                   batch=1, logits_fp32=False)


@pytest.mark.parametrize("length", sorted(QWEN_QLORA))
@pytest.mark.parametrize("model", ["qwen_7b", "qwen2_7b"])
def test_qwen_7b_qlora_table(request, model, length):
    shape = request.getfixturevalue(model)
    plan = estimate(shape, replace(QWEN_SETUP, length=length))
    assert close(plan.total / GiB, QWEN_QLORA[length]), (model, length, plan.total / GiB)


def test_qwen_7b_qlora_grows_with_length_as_published(qwen_7b):
    """The table's slope (2.4 GB from 256 to 2048 tokens) is the logits and activations per token."""
    a, b = (estimate(qwen_7b, replace(QWEN_SETUP, length=n)).total for n in (256, 2048))
    assert close((b - a) / GiB, 13.9 - 11.5), (b - a) / GiB


def test_full_finetuning_is_16_bytes_per_parameter(qwen2_7b):
    """Mixed-precision Adam: fp32 weights, gradients and two moments (ZeRO paper's 16 bytes: 112 GB
    for 7B) before activations."""
    plan = estimate(qwen2_7b, Setup(method="full", weight_dtype="float32", compute_dtype="bfloat16", optim="adamw_torch"))
    states = plan.parts["weights"] + plan.parts["gradients"] + plan.parts["optimizer"]
    assert close(states / qwen2_7b.params, 16, 0.01)
    assert plan.parts["activations"] > 0 and plan.total > states


def test_checkpointing_and_chunked_head_cut_per_token_memory(qwen2_7b):
    base = Setup(method="lora", batch=4, length=2048, checkpointing=False)
    plain = estimate(qwen2_7b, base)
    ckpt = estimate(qwen2_7b, replace(base, checkpointing=True))
    chunked = estimate(qwen2_7b, replace(base, checkpointing=True, chunked_head=True))
    assert ckpt.parts["activations"] < plain.parts["activations"] / 5
    assert chunked.parts["logits"] < ckpt.parts["logits"] / 4
    assert plain.per_token > ckpt.per_token > chunked.per_token


def test_max_tokens_is_the_fit_boundary(qwen2_7b):
    plan = estimate(qwen2_7b, Setup(method="lora", batch=1, length=1))
    n = plan.max_tokens(24)
    budget = 24 * GiB * (1 - HEADROOM)
    assert plan.static + n * plan.per_token <= budget < plan.static + (n + 1) * plan.per_token
    assert plan.largest_batches(24)[1024] == n // 1024


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture()
def recipe_file(tmp_path, tiny_dir):
    p = tmp_path / "r.yaml"
    p.write_text(f"model: {tiny_dir}\ndata: {{path: {tmp_path}/nodata}}\nout: {tmp_path}/out\n"
                 "trl: {per_device_train_batch_size: 4, max_length: 256}\n")
    return p


def test_plan_prints_without_training(recipe_file, tmp_path):
    """``--plan`` reads the config only: no data is needed, nothing is written."""
    from typer.testing import CliRunner

    from reactlab.train.cli import train_app

    res = CliRunner().invoke(train_app, ["sft", "-c", str(recipe_file), "--plan", "--gpu-memory", "16"])
    assert res.exit_code == 0, res.output
    assert "trainable" in res.output and "total" in res.output and "batch 4 x length 256" in res.output
    assert "length  4096: batch" in res.output
    assert not (tmp_path / "out").exists()


def test_plan_of_a_gguf_file_is_a_one_line_error(tmp_path):
    from typer.testing import CliRunner

    from reactlab.cli import app

    p = tmp_path / "r.yaml"
    p.write_text(f"model: {tmp_path}/m.gguf\ndata: {{path: {tmp_path}}}\nout: {tmp_path}/out\n")
    res = CliRunner().invoke(app, ["train", "dpo", "-c", str(p), "--plan"])
    assert res.exit_code == 2, res.output
    assert "GGUF" in res.output and "Traceback" not in res.output


# --- the GPU recipes -------------------------------------------------------------------------------

QWEN25 = {  # Qwen2.5 sizes (hidden, layers, heads, kv heads, MLP, vocabulary, tied head)
    "0.5b": (896, 24, 14, 2, 4864, 151936, True),
    "1.5b": (1536, 28, 12, 2, 8960, 151936, True),
    "7b": (3584, 28, 28, 4, 18944, 152064, False),
}


@pytest.fixture(scope="module")
def qwen25(tmp_path_factory):
    """Saved Qwen2.5 configs (no weights): what ``--plan`` reads for a hub id."""
    out = {}
    for size, (h, n, heads, kv, i, v, tied) in QWEN25.items():
        d = tmp_path_factory.mktemp(f"qwen2.5-{size}")
        transformers.Qwen2Config(hidden_size=h, num_hidden_layers=n, num_attention_heads=heads, num_key_value_heads=kv,
                                 intermediate_size=i, vocab_size=v, tie_word_embeddings=tied,
                                 max_position_embeddings=32768).save_pretrained(d)
        out[size] = str(d)
    return out


@pytest.mark.parametrize("method, recipe, size", [
    ("dpo", "dpo_gpu_qwen2.5-0.5b", "0.5b"), ("kto", "kto_gpu_qwen2.5-0.5b", "0.5b"),
    ("grpo", "grpo_gpu_qwen2.5-0.5b", "0.5b"), ("rloo", "rloo_gpu_qwen2.5-0.5b", "0.5b"),
    ("sft", "sft_gpu_qlora", "0.5b"), ("sft", "sft_gpu_qlora", "1.5b"), ("sft", "sft_gpu_qlora", "7b"),
])
def test_gpu_recipes_fit_a_24gb_gpu(qwen25, method, recipe, size):
    """What the recipes' comments state: each fits a 24 GB GPU as shipped (its model size)."""
    from reactlab import config as configs
    from reactlab.train import recipes
    from reactlab.train.plan import load_config as model_config
    from reactlab.train.plan import setup_from_recipe

    cfg = configs.load_config(getattr(recipes, f"{method.upper()}Recipe"), [recipe], [f"model.name={qwen25[size]}"])
    setup = setup_from_recipe(cfg, method)
    plan = estimate(model_shape(model_config(cfg.model.name)), setup)
    assert plan.total <= 24 * GiB * (1 - HEADROOM), (recipe, size, plan.total / GiB)
    if method in ("dpo", "kto", "grpo", "rloo"):  # and would not at the micro-batch it had before
        assert estimate(plan.shape, replace(setup, batch=setup.batch * 2)).total > 24 * GiB * (1 - HEADROOM)


def test_recipe_setup(qwen25):
    """What ``--plan`` reads from a recipe: SFT checkpoints by default, QLoRA always; DPO runs two
    sequences per row; an RL episode's length comes from its steps."""
    from reactlab import config as configs
    from reactlab.train import recipes
    from reactlab.train.plan import EPISODE_PROMPT, OBSERVATION_TOKENS, setup_from_recipe

    sft = setup_from_recipe(configs.load_config(recipes.SFTRecipe, ["sft_smollm2_lora"]), "sft")
    assert sft.checkpointing and sft.sequences_per_row == 1
    dpo = setup_from_recipe(configs.load_config(recipes.DPORecipe, ["dpo_gpu_qwen2.5-0.5b"]), "dpo")
    assert dpo.sequences_per_row == 2 and not dpo.checkpointing and dpo.length == 1024
    grpo = configs.load_config(recipes.GRPORecipe, ["grpo_gpu_qwen2.5-0.5b"])
    assert setup_from_recipe(grpo, "grpo").length == EPISODE_PROMPT + 6 * (128 + OBSERVATION_TOKENS)
    qlora = setup_from_recipe(configs.load_config(recipes.SFTRecipe, ["sft_gpu_qlora"], ["trl.activation_checkpointing=false"]), "sft")
    assert qlora.method == "qlora" and qlora.checkpointing and qlora.optim == "paged_adamw_8bit"
