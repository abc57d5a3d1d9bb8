"""The Jittor Llama computes what transformers' Llama / Qwen2 compute: logits, loss and gradients."""

from __future__ import annotations

import numpy as np
import pytest

from reactlab.train.jittor.model import LlamaArgs, inv_freq


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_logits_loss_and_gradients_match_transformers(arch, make_tiny, torch_model, token_batch):
    import torch

    from reactlab.train.jittor.convert import load_hf
    from reactlab.train.jittor.runtime import import_jittor

    jt = import_jittor()
    path = make_tiny(arch)
    ref, ours = torch_model(path), load_hf(path)
    ids, labels = token_batch(ref.config.vocab_size)
    out = ref(input_ids=torch.tensor(ids), labels=torch.tensor(labels))
    logits = ours(jt.array(ids.astype(np.int32))).numpy()
    assert np.abs(logits - out.logits.detach().numpy()).max() < 1e-4
    assert (logits.argmax(-1) == out.logits.argmax(-1).numpy()).all()

    out.loss.backward()
    loss, n = ours.loss(ids, labels)
    assert n == int((labels[:, 1:] != -100).sum())
    assert abs(float(loss.item()) - out.loss.item()) < 1e-5
    names = ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight",
             "model.layers.0.input_layernorm.weight", "model.embed_tokens.weight"]
    params = dict(ours.state_dict())
    grads = jt.grad(loss, [params[n] for n in names])
    for name, g in zip(names, grads, strict=True):
        want = dict(ref.named_parameters())[name].grad.numpy()
        assert np.abs(g.numpy() - want).max() < 1e-5 * max(1.0, np.abs(want).max()), name


def test_right_padding_leaves_the_real_tokens_alone(tiny_model_dir, token_batch):
    from reactlab.train.jittor.convert import load_hf
    from reactlab.train.jittor.runtime import import_jittor

    jt = import_jittor()
    model = load_hf(tiny_model_dir)
    ids, _ = token_batch(model.args.vocab_size, rows=1, length=10)
    padded = np.concatenate([ids, np.full((1, 6), 2)], axis=1)
    a = model(jt.array(ids.astype(np.int32))).numpy()
    b = model(jt.array(padded.astype(np.int32))).numpy()[:, :10]
    assert np.abs(a - b).max() < 1e-4  # BLAS sums in another order for another shape: fp32 noise only


def test_llama3_rope_scaling_matches_transformers():
    import torch
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64, "rope_theta": 500000.0}
    cfg = LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                      num_hidden_layers=1, vocab_size=100, max_position_embeddings=512, rope_parameters=scaling)
    want, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, torch.device("cpu"))
    args = LlamaArgs.from_hf(cfg.to_dict())
    assert args.rope_scaling is not None and args.rope_theta == 500000.0
    assert np.allclose(inv_freq(args), want.numpy(), rtol=1e-6)
    assert not np.allclose(inv_freq(args), inv_freq(LlamaArgs.from_hf({**cfg.to_dict(), "rope_parameters": {
        "rope_type": "default", "rope_theta": 500000.0}})))


@pytest.mark.parametrize(("change", "field"), [
    ({"model_type": "gemma3"}, "model_type"), ({"hidden_act": "gelu"}, "hidden_act"),
    ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}}, "rope type 'yarn'"),
    ({"rope_scaling": {"type": "dynamic", "factor": 2.0}}, "rope type 'dynamic'"),
])
def test_unsupported_configs_are_refused_by_name(change, field):
    cfg = {"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
           "num_hidden_layers": 1, "num_attention_heads": 2}
    with pytest.raises(ValueError, match=field):
        LlamaArgs.from_hf(cfg | change)


def _full_loss(model, ids, labels):
    """Every position's logits, then numpy's mean cross-entropy over the labelled ones."""
    from reactlab.train.jittor.runtime import import_jittor

    jt = import_jittor()
    logits = model(jt.array(ids.astype(np.int32))).numpy()[:, :-1].astype(np.float64)
    target = labels[:, 1:]
    keep = target != -100
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    gold = np.take_along_axis(logits, np.where(keep, target, 0)[..., None], -1)[..., 0]
    return float(((lse - gold) * keep).sum() / keep.sum())


def test_the_chunked_labelled_position_loss_equals_the_full_loss(tiny_qwen_dir, token_batch):
    from reactlab.train.jittor.convert import load_hf
    from reactlab.train.jittor.runtime import import_jittor

    jt = import_jittor()
    model = load_hf(tiny_qwen_dir)
    ids, labels = token_batch(model.args.vocab_size)
    labels[1, 15:] = -100  # rows with different label counts
    weight = model.lm_head.weight
    loss, n = model.loss(ids, labels)
    whole = (float(loss.item()), jt.grad(loss, [weight])[0].numpy())
    model.loss_chunk = 7  # n = 39: five full chunks and a short one
    loss, n = model.loss(ids, labels)
    assert n == 39
    chunked = (float(loss.item()), jt.grad(loss, [weight])[0].numpy())
    assert abs(chunked[0] - _full_loss(model, ids, labels)) < 1e-5
    assert abs(chunked[0] - whole[0]) <= 4 * np.spacing(np.float32(whole[0]))  # fp32 sums in another order: a few ulps
    assert np.abs(chunked[1] - whole[1]).max() < 1e-6


def _lora_model(path, dropout):
    from reactlab.train.jittor import lora
    from reactlab.train.jittor.convert import load_hf
    from reactlab.train.jittor.runtime import import_jittor

    jt = import_jittor()
    model = load_hf(path)
    lora.inject(model, r=4, alpha=8, dropout=dropout, target_modules="all-linear", seed=1)
    rng = np.random.default_rng(2)
    for m in lora.lora_layers(model).values():  # B != 0: the adapter takes part in every gradient
        m.lora_B.weight.assign(jt.array(rng.normal(0, 0.05, size=m.lora_B.weight.shape).astype(np.float32)))
    return model, lora.lora_params(model)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_a_checkpointed_step_gives_the_plain_steps_gradients(arch, make_tiny, token_batch):
    """Recomputing each layer in the backward pass changes no gradient: the LoRA factors' (with
    dropout: the recomputation draws the forward's masks) and the base weights' of every stage."""
    from reactlab.train.jittor.convert import load_hf

    path = make_tiny(arch)
    model = load_hf(path)
    ids, labels = token_batch(model.args.vocab_size, seed=4)
    state = dict(model.state_dict())
    names = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.up_proj.weight",
             "model.layers.1.post_attention_layernorm.weight", "model.norm.weight"]
    names += [] if model.args.tie_word_embeddings else ["lm_head.weight"]
    base = [state[n] for n in names]
    plain = model.loss_and_grads(ids, labels, base, scale=50.0)
    model.checkpoint, model.loss_chunk = True, 8
    ckpt = model.loss_and_grads(ids, labels, base, scale=50.0)
    assert plain[0] == pytest.approx(ckpt[0], rel=1e-6) and plain[1] == ckpt[1]  # fp32 sums in another order
    for name, a, b in zip(names, plain[2], ckpt[2], strict=True):
        assert np.abs(a).max() > 0, name
        assert np.abs(a - b).max() < 1e-5 * max(1.0, np.abs(a).max()), name

    model, params = _lora_model(path, dropout=0.5)
    model.train()
    np.random.seed(7)  # the checkpointed step draws its dropout seeds from numpy's stream; give the
    seed = int(np.random.randint(0, 2**30))  # plain step the same per-module seeds
    for i, layer in enumerate(model.model.layers):
        for j, m in enumerate(layer.modules()):
            if hasattr(m, "dropout_seed"):
                m.dropout_seed = seed + 64 * i + j
    plain = model.loss_and_grads(ids, labels, params)
    model.checkpoint = True
    np.random.seed(7)
    ckpt = model.loss_and_grads(ids, labels, params)
    assert plain[0] == pytest.approx(ckpt[0], rel=1e-6)
    worst = max(float(np.abs(a - b).max() / max(1e-3, np.abs(a).max())) for a, b in zip(plain[2], ckpt[2], strict=True))
    assert worst < 1e-4
    again = model.loss_and_grads(ids, labels, params)  # another seed: other masks, another loss
    assert abs(again[0] - ckpt[0]) > 1e-4


def test_a_checkpointed_step_keeps_no_layers_graph_alive(tiny_qwen_dir, token_batch, monkeypatch):
    """While a checkpointed step recomputes layer after layer, no earlier layer's graph lives on:
    as many Jittor variables live when the backward of layer 0 starts as when layer 1's did (a
    graph kept alive per layer is what made long rows need GBs)."""
    from reactlab.train.jittor import lora
    from reactlab.train.jittor.convert import load_hf
    from reactlab.train.jittor.runtime import import_jittor

    jt = import_jittor()
    model = load_hf(tiny_qwen_dir)
    lora.inject(model, r=4, alpha=8, dropout=0.1, target_modules="all-linear")
    model.train()
    model.checkpoint, model.loss_chunk = True, 8
    params = lora.lora_params(model)
    ids, labels = token_batch(model.args.vocab_size)
    lived, grad = [], jt.grad

    def counting(loss, targets, retain_graph=True):
        lived.append(jt.liveness_info()["lived_vars"])
        return grad(loss, targets, retain_graph)

    monkeypatch.setattr(jt, "grad", counting)
    model.loss_and_grads(ids, labels, params)
    assert model.args.num_layers == 2 and len(lived) >= 4  # head chunks, the norm, layer 1, layer 0
    assert lived[-1] <= lived[-2], lived


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_half_precision_keeps_float32_master_weights_and_the_float32_gradients(dtype, checkpoint, tiny_qwen_dir,
                                                                              token_batch):
    """Computing in bf16/fp16 casts the frozen weights only: the LoRA factors stay float32 and get
    float32 gradients close to the float32 step's (bf16 keeps ~3 significant digits, fp16 ~4)."""
    model, params = _lora_model(tiny_qwen_dir, dropout=0.0)
    ids, labels = token_batch(model.args.vocab_size, seed=5)
    model.checkpoint = checkpoint
    ref = model.loss_and_grads(ids, labels, params)
    model.set_precision(dtype, params)
    assert model.dtype == dtype
    assert model.model.layers[0].self_attn.q_proj.weight.dtype == dtype
    assert model.model.embed_tokens.weight.dtype == dtype and model.model.norm.weight.dtype == dtype
    assert all(p.dtype == "float32" for p in params)
    half = model.loss_and_grads(ids, labels, params)
    assert half[1] == ref[1]
    assert half[0] == pytest.approx(ref[0], rel=2e-2)
    for a, b in zip(ref[2], half[2], strict=True):
        assert b.dtype == np.float32 and np.isfinite(b).all()
        # this model's weights are large (init std 0.2): half-precision rounding grows through it
        assert np.linalg.norm(a - b) <= {"bfloat16": 0.12, "float16": 0.05}[dtype] * np.linalg.norm(a)


def test_an_unknown_precision_is_refused(tiny_qwen_dir):
    model, params = _lora_model(tiny_qwen_dir, dropout=0.0)
    with pytest.raises(ValueError, match="float64"):
        model.set_precision("float64", params)
