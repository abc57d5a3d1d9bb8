"""HF -> GGUF on tiny random models: read back with transformers' GGUF loader, compare logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PROMPT = "<|im_start|>user\nWho wrote Hamlet?<|im_end|>\n<|im_start|>assistant\n"


def _logits(model_dir: str, ids, gguf_file: str | None = None):
    import torch
    from transformers import AutoModelForCausalLM

    kw = {"gguf_file": gguf_file} if gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **kw).eval()
    with torch.no_grad():
        return model, model(ids).logits[0]


def _ids(model_dir: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)(PROMPT, return_tensors="pt").input_ids


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_tiny_round_trip_f32_f16_q8(arch, tiny_llama_dir, tiny_qwen2_dir, tmp_path):
    from reactlab.export.gguf import export_gguf

    src = tiny_llama_dir if arch == "llama" else tiny_qwen2_dir
    ids = _ids(src)
    _, ref = _logits(src, ids)
    # Tolerances are for this tiny model's large random weights (logits of a few units): f32 is
    # exact, f16 rounds weights (rel. 5e-4), q8_0 (rel. ~4e-3 per block) moves logits by ~0.03
    # on average and a few tenths at most.
    for outtype, tol in (("f32", 1e-4), ("f16", 5e-2), ("q8_0", 0.6)):
        res = export_gguf(src, tmp_path / f"m-{outtype}.gguf", outtype)
        model, got = _logits(str(tmp_path), ids, gguf_file=res.path.name)
        assert (got - ref).abs().max().item() < tol, (arch, outtype)
        assert (got - ref).abs().mean().item() < tol / 10, (arch, outtype)
    # q8_0 keeps most greedy choices (random weights have near-ties, so not necessarily all).
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean().item() >= 0.75
    # Qwen2's output head is untied: it must be written (and 1-D biases kept in f32).
    assert res.tensor_types["F32"] > 0
    if arch == "qwen2":
        assert not model.config.tie_word_embeddings


def test_q4_0_types_and_fallback(tiny_llama_dir, tmp_path):
    from reactlab.export.gguf import export_gguf, tensor_type

    res = export_gguf(tiny_llama_dir, tmp_path / "m.gguf", "q4_0")
    # token_embd stays q8_0 (tied: it is also the output head); norms stay f32.
    assert res.tensor_types == {"Q4_0": 14, "Q8_0": 1, "F32": 5}
    assert tensor_type("blk.0.ffn_down.weight", (64, 48), "q4_0").name == "F16"  # 48 % 32 != 0
    assert tensor_type("blk.0.attn_norm.weight", (64,), "q8_0").name == "F32"


def test_metadata_and_tokenizer(tiny_llama_dir, tmp_path):
    from gguf import GGUFReader

    from reactlab.export.gguf import export_gguf, gguf_string

    path = export_gguf(tiny_llama_dir, tmp_path / "m.gguf", "f16").path
    r = GGUFReader(path)
    val = {
        k: f.contents()
        for k, f in r.fields.items()
        if not k.startswith("tokenizer.ggml.") or k.endswith("_id")
    }
    assert val["general.architecture"] == "llama"
    assert (val["llama.block_count"], val["llama.embedding_length"], val["llama.feed_forward_length"]) == (
        2,
        64,
        128,
    )
    assert (val["llama.attention.head_count"], val["llama.attention.head_count_kv"]) == (4, 2)
    assert val["llama.rope.dimension_count"] == 16 and val["llama.context_length"] == 4096
    assert (val["tokenizer.ggml.bos_token_id"], val["tokenizer.ggml.eos_token_id"]) == (1, 2)
    assert gguf_string(path, "tokenizer.ggml.model") == "gpt2"
    assert gguf_string(path, "tokenizer.ggml.pre") == "gpt-2"  # tokenizer.json: plain ByteLevel
    assert "<|im_start|>" in gguf_string(path, "tokenizer.chat_template")
    assert r.fields["tokenizer.ggml.add_bos_token"].contents() is False
    assert "output.weight" not in {t.name for t in r.tensors}  # tied
    tokens = r.fields["tokenizer.ggml.tokens"]
    assert bytes(tokens.parts[tokens.data[1]]).decode() == "<|im_start|>"
    types = r.fields["tokenizer.ggml.token_type"].contents()
    assert types[1] == 3 and types[100] == 1  # CONTROL for special tokens, NORMAL otherwise


def test_unsupported_architecture_lists_supported(tiny_llama_dir, tmp_path):
    from reactlab.export.gguf import export_gguf

    d = tmp_path / "m"
    d.mkdir()
    cfg = json.loads((Path(tiny_llama_dir) / "config.json").read_text())
    cfg["architectures"] = ["FalconForCausalLM"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Gemma3ForCausalLM"):
        export_gguf(d, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()
    with pytest.raises(ValueError, match="unknown GGUF type"):
        export_gguf(tiny_llama_dir, tmp_path / "x.gguf", "q5_k")


def test_permutation_matches_llama_cpp_layout():
    """Head h's rows [a0..a7, b0..b7] (the two rotary halves) become interleaved [a0, b0, a1, b1, ...]."""
    import numpy as np

    from reactlab.export.gguf import _permute

    w = np.arange(2 * 16, dtype=np.float32).reshape(32, 1)  # 2 heads of size 16
    got = _permute(w, 2, 2)[:, 0]
    assert got[:4].tolist() == [0, 8, 1, 9] and got[16:20].tolist() == [16, 24, 17, 25]


def test_detect_pre_refuses_unknown():
    from reactlab.export.gguf import detect_pre

    with pytest.raises(ValueError, match="pass pre="):
        detect_pre({"pre_tokenizer": {"type": "Metaspace"}})


def test_gemma3_config_checks():
    """What llama.cpp's gemma3 hard-codes is checked, not silently exported wrong."""
    from reactlab.export.gguf_gemma3 import check_config, rope

    base = {"num_hidden_layers": 12, "hidden_size": 640, "num_attention_heads": 4, "head_dim": 256,
            "query_pre_attn_scalar": 256, "hidden_activation": "gelu_pytorch_tanh",
            "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 2}
    check_config(base)
    for change, words in (
        ({"layer_types": ["full_attention"] * 12}, "layer_types"),
        ({"query_pre_attn_scalar": 168}, "query_pre_attn_scalar"),
        ({"attn_logit_softcapping": 50.0}, "softcapping"),
        ({"use_bidirectional_attention": True}, "bidirectional"),
    ):
        with pytest.raises(ValueError, match=words):
            check_config({**base, **change})
    full, swa = rope({"rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                                          "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}})
    assert (full["rope_type"], full["factor"], swa["rope_theta"]) == ("linear", 8.0, 10000.0)
