"""The Gemma 3 (text) parts of the GGUF export: ``Gemma3ForCausalLM`` -> llama.cpp's ``gemma3``.

Written to match, key by key, what llama.cpp's ``convert_hf_to_gguf.py`` wrote for the embedded
``gemma3-270m`` (checked by ``tests/export/test_gemma3_export.py``). Deliberate deviations from that
file: ``rope.freq_base_swa`` is added (and, where the config has them, ``final_logit_softcapping``
and linear rope scaling); the ``general.*`` provenance keys are left out; the tokenizer's scores are
derived from token ids (tokenizer.json has none) and, though some differ, keep the same order, so
the tokenization is the same. What llama.cpp hard-codes for gemma3 is checked, and a config that
differs is refused. Details: docs/export-serving.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

# llama.cpp's gemma3 hard-codes this sliding-window layer pattern (llama-model.cpp, set_swa_pattern).
SWA_PATTERN = 6
DEFAULT_SWA_THETA = 10000.0
SPACE = "\u2581"  # SentencePiece's space
_BYTE = re.compile(r"<0x[0-9A-F]{2}>")


def check_config(cfg: dict[str, Any]) -> None:
    """Raise ``ValueError`` for a Gemma 3 config llama.cpp's ``gemma3`` would run differently."""
    problems = []
    n = cfg["num_hidden_layers"]
    want = ["full_attention" if (i + 1) % SWA_PATTERN == 0 else "sliding_attention" for i in range(n)]
    if cfg.get("layer_types", want) != want:
        problems.append(f"layer_types must be 5 sliding then 1 full attention layer, repeated; got {cfg['layer_types']}")
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    if cfg.get("query_pre_attn_scalar", head_dim) != head_dim:
        problems.append(f"query_pre_attn_scalar {cfg['query_pre_attn_scalar']} != head_dim {head_dim}")
    if cfg.get("attn_logit_softcapping") is not None:
        problems.append("attention logit softcapping is not run by llama.cpp's gemma3")
    act = cfg.get("hidden_activation") or cfg.get("hidden_act") or "gelu_pytorch_tanh"
    if act != "gelu_pytorch_tanh":
        problems.append(f"hidden_activation {act!r} (llama.cpp's gemma3 uses GELU tanh)")
    if cfg.get("use_bidirectional_attention"):
        problems.append("bidirectional attention (an embedding model, not a causal LM)")
    if problems:
        raise ValueError("cannot export this Gemma 3 config to llama.cpp's gemma3: " + "; ".join(problems))


def rope(cfg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(full-attention rope, sliding-attention rope)`` dicts with ``rope_theta`` and ``rope_type``,
    from transformers >= 5 ``rope_parameters`` or the older ``rope_theta`` / ``rope_local_base_freq``
    / ``rope_scaling`` keys.

    >>> rope({"rope_theta": 1e6, "rope_local_base_freq": 1e4, "rope_scaling": None})
    ({'rope_theta': 1000000.0, 'rope_type': 'default'}, {'rope_theta': 10000.0, 'rope_type': 'default'})
    """
    params = cfg.get("rope_parameters") or {}
    if "full_attention" in params:
        full, swa = dict(params["full_attention"]), dict(params.get("sliding_attention") or {})
    else:
        full = dict(cfg.get("rope_scaling") or {})
        full.setdefault("rope_theta", cfg.get("rope_theta", 1e6))
        swa = {"rope_theta": cfg.get("rope_local_base_freq", DEFAULT_SWA_THETA)}
    for r in (full, swa):
        r["rope_type"] = r.get("rope_type", r.pop("type", "default"))
        r["rope_theta"] = float(r.get("rope_theta", DEFAULT_SWA_THETA))
    return full, swa


def add_hparams(w, cfg: dict[str, Any], gguf) -> None:
    check_config(cfg)
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    full, swa = rope(cfg)
    w.add_rope_freq_base(full["rope_theta"])
    w.add_sliding_window(cfg["sliding_window"])
    w.add_head_count_kv(cfg.get("num_key_value_heads") or cfg["num_attention_heads"])
    w.add_rope_freq_base_swa(swa["rope_theta"])
    if swa["rope_type"] != "default":
        raise ValueError(f"rope scaling {swa['rope_type']!r} on sliding-window layers is not supported")
    if full["rope_type"] == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(full["factor"]))
    elif full["rope_type"] != "default":
        raise ValueError(f"rope scaling {full['rope_type']!r} is not supported (only default, linear)")
    if cfg.get("final_logit_softcapping") is not None:
        w.add_final_logit_softcapping(float(cfg["final_logit_softcapping"]))


def tensor(hf_name: str, data):
    """A tensor as llama.cpp's gemma3 wants it: RMSNorm weights + 1 (see the module doc)."""
    return data + 1.0 if hf_name.endswith("norm.weight") else data


def vocab(hf_dir: Path, cfg: dict[str, Any], gguf) -> tuple[list[str], list[float], list[int]]:
    """``(tokens, scores, token types)`` of the SentencePiece vocabulary (see the module doc)."""
    path = hf_dir / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"{hf_dir} has no tokenizer.json")
    tj = json.loads(path.read_text())
    model = tj["model"]
    if model.get("type") != "BPE" or not model.get("byte_fallback"):
        raise ValueError(f"{path}: expected Gemma's BPE tokenizer with byte fallback, got {model.get('type')!r}")
    by_id = {i: t for t, i in model["vocab"].items()}
    added = {a["id"]: a for a in tj.get("added_tokens", [])}
    by_id.update({i: a["content"] for i, a in added.items()})
    n = max(cfg["vocab_size"], max(by_id) + 1)
    T = gguf.TokenType
    types, tokens = [], []
    for i in range(n):
        text = by_id.get(i, f"<unused_pad{i}>")
        if i not in by_id:
            types.append(T.UNUSED)
        elif i in added and added[i].get("special"):
            types.append(T.CONTROL)
        elif i in added or (len(text) > 1 and set(text) == {SPACE}):
            # user-defined pieces, spaces written as spaces (as llama.cpp's converter does)
            types.append(T.USER_DEFINED)
            text = text.replace(SPACE, " ")
        elif _BYTE.fullmatch(text):
            types.append(T.BYTE)
        else:
            types.append(T.NORMAL)
        tokens.append(text)
    first = next((i for i, t in enumerate(types) if t == T.NORMAL), 0)
    score = {T.BYTE: 0.0}
    scores = [float(first - i) if t == T.NORMAL else score.get(t, -1000.0) for i, t in enumerate(types)]
    return tokens, scores, [int(t) for t in types]


def _prepends_space(tokenizer_json: dict[str, Any]) -> bool:
    """Whether the normalizer prepends ``▁`` (Gemma 1's does, Gemma 3's does not).

    >>> _prepends_space({"normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}]}})
    True
    """
    norm = tokenizer_json.get("normalizer") or {}
    parts = norm.get("normalizers", []) if norm.get("type") == "Sequence" else [norm]
    return any(p.get("type") == "Prepend" and p.get("prepend") == "\u2581" for p in parts)


def add_tokenizer(w, hf_dir: Path, cfg: dict[str, Any], pre: str | None, gguf) -> None:
    from transformers import AutoTokenizer

    tokens, scores, types = vocab(hf_dir, cfg, gguf)
    tok = AutoTokenizer.from_pretrained(hf_dir)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre(pre or "default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    for attr, add in (
        ("bos_token_id", w.add_bos_token_id),
        ("eos_token_id", w.add_eos_token_id),
        ("unk_token_id", w.add_unk_token_id),
        ("pad_token_id", w.add_pad_token_id),
    ):
        if getattr(tok, attr, None) is not None:
            add(getattr(tok, attr))
    ids = tok("a").input_ids
    w.add_add_bos_token(bool(ids) and tok.bos_token_id is not None and ids[0] == tok.bos_token_id)
    w.add_add_sep_token(False)
    w.add_add_eos_token(bool(ids) and tok.eos_token_id is not None and ids[-1] == tok.eos_token_id)
    w.add_add_space_prefix(_prepends_space(json.loads((hf_dir / "tokenizer.json").read_text())))
    if isinstance(tok.chat_template, str) and tok.chat_template:
        w.add_chat_template(tok.chat_template)
