"""HF directory -> one GGUF file that llama.cpp, Ollama and transformers' GGUF loader read, written
with the ``gguf`` package (no llama.cpp checkout), as llama.cpp's own converter writes it: the Llama
Q/K projections permuted for its rope, 1-D tensors kept f32, and in ``q4_0`` the embedding and
output projection kept at q8_0. Gemma 3: ``gguf_gemma3.py``. Details: docs/export-serving.md.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reactlab.progress import progress

OUTTYPES = ("f32", "f16", "q8_0", "q4_0")

# HF class name -> (gguf arch name, whether Q/K are permuted). Mistral is llama to llama.cpp.
ARCHITECTURES: dict[str, tuple[str, bool]] = {
    "LlamaForCausalLM": ("llama", True),
    "MistralForCausalLM": ("llama", True),
    "Qwen2ForCausalLM": ("qwen2", False),
    "Gemma3ForCausalLM": ("gemma3", False),  # text only; the specifics are in gguf_gemma3.py
}

# tokenizer.json pre-tokenizer regexes -> the llama.cpp pre-tokenizer that reproduces them.
_QWEN2_RE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3_RE = _QWEN2_RE.replace(r"\p{N}|", r"\p{N}{1,3}|")
_SPLIT_PRE = {_QWEN2_RE: "qwen2", _LLAMA3_RE: "llama-bpe"}


@dataclass
class GGUFResult:
    """What ``export_gguf`` wrote: the file, its type, size, tensor types and the time it took."""

    path: Path
    outtype: str
    size_bytes: int
    seconds: float
    tensor_types: Counter = field(default_factory=Counter)


def export_gguf(
    hf_dir: str | Path,
    out: str | Path,
    outtype: str = "f16",
    *,
    pre: str | None = None,
    name: str | None = None,
) -> GGUFResult:
    """Convert the HF model in ``hf_dir`` (config.json, *.safetensors, tokenizer.json) to ``out``.

    ``pre``: the llama.cpp pre-tokenizer name (``tokenizer.ggml.pre``); by default it is read off
    tokenizer.json's pre-tokenizer (``detect_pre``); pass the source GGUF's value when the HF dir
    was itself converted from one. ``name``: ``general.name`` (default: the directory's name).
    The file is written beside ``out`` and renamed into place, so a failed export leaves nothing.
    Raises ``ValueError`` for an unknown ``outtype``, an unsupported architecture (listing the
    supported ones) or a tokenizer that is not a byte-level BPE ``tokenizer.json``.
    """
    import gguf

    from reactlab.export import gguf_gemma3 as gemma3

    if outtype not in OUTTYPES:
        raise ValueError(f"unknown GGUF type {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    t0 = time.perf_counter()
    hf_dir, out = Path(hf_dir), Path(out)
    cfg = json.loads((hf_dir / "config.json").read_text())
    arch, permute_qk = architecture(cfg)
    n_layers = cfg["num_hidden_layers"]
    tmp = out.with_name(f".{out.name}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(tmp, arch)
    try:
        writer.add_name(name or cfg.get("_model_name_or_path") or hf_dir.name)
        writer.add_file_type(_FILE_TYPE[outtype](gguf))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        if arch == "gemma3":
            gemma3.add_hparams(writer, cfg, gguf)
            gemma3.add_tokenizer(writer, hf_dir, cfg, pre, gguf)
        else:
            _add_hparams(writer, cfg, gguf)
            _add_tokenizer(writer, hf_dir, cfg, pre, gguf)
        types: Counter = Counter()
        tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], n_layers)
        tied = bool(cfg.get("tie_word_embeddings", False))
        for hf_name, data in progress(_tensors(hf_dir), desc=f"GGUF {outtype}", unit="tensor",
                                      total=_n_tensors(hf_dir)):
            if hf_name == "lm_head.weight" and tied:
                continue  # llama.cpp uses token_embd when output.weight is absent
            new = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if new is None:
                raise ValueError(f"{hf_dir}: no GGUF name for tensor {hf_name!r} ({arch})")
            if permute_qk and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
                data = _permute(data, cfg["num_attention_heads"], cfg["num_attention_heads"])
            elif permute_qk and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
                data = _permute(data, cfg["num_attention_heads"], _n_kv(cfg))
            elif arch == "gemma3":
                data = gemma3.tensor(hf_name, data)
            qtype = tensor_type(new, data.shape, outtype, gguf)
            packed = gguf.quants.quantize(data, qtype)
            types[qtype.name] += 1
            if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
                writer.add_tensor(new, packed)
            else:
                writer.add_tensor(new, packed, raw_shape=packed.shape, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return GGUFResult(out, outtype, out.stat().st_size, time.perf_counter() - t0, types)


def gguf_string(path: str | Path, key: str) -> str | None:
    """A string field of a GGUF file's metadata (e.g. ``tokenizer.ggml.pre``), or None."""
    from gguf import GGUFReader

    f = GGUFReader(path).fields.get(key)
    return None if f is None else bytes(f.parts[f.data[0]]).decode("utf-8")


def architecture(cfg: dict[str, Any]) -> tuple[str, bool]:
    """``(gguf arch name, permute Q/K)`` for a config.json dict; unsupported ones raise ``ValueError``.

    >>> architecture({"architectures": ["LlamaForCausalLM"]})
    ('llama', True)
    """
    names = cfg.get("architectures") or []
    for n in names:
        if n in ARCHITECTURES:
            return ARCHITECTURES[n]
    raise ValueError(
        f"cannot export architecture {names or cfg.get('model_type')!r} to GGUF; "
        f"supported: {', '.join(ARCHITECTURES)}"
    )


def tensor_type(gguf_name: str, shape: tuple[int, ...], outtype: str, gguf_mod=None):
    """The ``GGMLQuantizationType`` one tensor is stored as for an ``outtype`` (see module doc)."""
    if gguf_mod is None:
        import gguf as gguf_mod
    Q = gguf_mod.GGMLQuantizationType
    if outtype == "f32" or len(shape) < 2:
        return Q.F32
    if outtype == "f16":
        return Q.F16
    want = Q.Q8_0 if outtype == "q8_0" else Q.Q4_0
    if want == Q.Q4_0 and gguf_name.split(".")[0] in ("token_embd", "output"):
        want = Q.Q8_0
    block, _ = gguf_mod.GGML_QUANT_SIZES[want]
    return want if shape[-1] % block == 0 else Q.F16


def detect_pre(tokenizer_json: dict[str, Any]) -> str:
    """The llama.cpp pre-tokenizer name matching a tokenizer.json's ``pre_tokenizer``.

    >>> detect_pre({"pre_tokenizer": {"type": "ByteLevel", "use_regex": True}})
    'gpt-2'
    >>> detect_pre({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
    ...     {"type": "Digits", "individual_digits": True}, {"type": "ByteLevel", "use_regex": True}]}})
    'smollm'
    """
    pt = tokenizer_json.get("pre_tokenizer") or {}
    parts = pt.get("pretokenizers", []) if pt.get("type") == "Sequence" else [pt]
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if (
        kinds == ["Digits", "ByteLevel"]
        and parts[0].get("individual_digits")
        and parts[1].get("use_regex", True)
    ):
        return "smollm"  # = starcoder's: single digits, then the GPT-2 regex
    if kinds[:1] == ["Split"] and kinds[-1:] == ["ByteLevel"] and not parts[-1].get("use_regex", True):
        pattern = parts[0].get("pattern", {}).get("Regex")
        if pattern in _SPLIT_PRE:
            return _SPLIT_PRE[pattern]
    raise ValueError(
        f"unrecognised pre-tokenizer {json.dumps(pt)[:200]}; pass pre=<llama.cpp name> explicitly "
        "(e.g. the tokenizer.ggml.pre of the model's original GGUF)"
    )


# --- pieces ---------------------------------------------------------------------------------------

_FILE_TYPE = {
    "f32": lambda g: g.LlamaFileType.ALL_F32,
    "f16": lambda g: g.LlamaFileType.MOSTLY_F16,
    "q8_0": lambda g: g.LlamaFileType.MOSTLY_Q8_0,
    "q4_0": lambda g: g.LlamaFileType.MOSTLY_Q4_0,
}


def _n_kv(cfg: dict[str, Any]) -> int:
    return cfg.get("num_key_value_heads") or cfg["num_attention_heads"]


def _add_hparams(w, cfg: dict[str, Any], gguf) -> None:
    n_head = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(_n_kv(cfg))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(cfg["vocab_size"])
    w.add_rope_dimension_count(head_dim)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    # transformers >= 5 keeps rope settings in rope_parameters; older configs in rope_theta/rope_scaling.
    rope = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    w.add_rope_freq_base(float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))))
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(rope["factor"]))
    elif kind != "default":
        raise ValueError(f"rope scaling {kind!r} is not supported by this exporter (only default, linear)")


def _add_tokenizer(w, hf_dir: Path, cfg: dict[str, Any], pre: str | None, gguf) -> None:
    """The byte-level BPE vocabulary as llama.cpp's HF converter writes it (``gpt2`` model)."""
    from transformers import AutoTokenizer

    path = hf_dir / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"{hf_dir} has no tokenizer.json; only byte-level BPE tokenizers are exported")
    tj = json.loads(path.read_text())
    model = tj["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"{path}: tokenizer model {model.get('type')!r} is not BPE")
    tok = AutoTokenizer.from_pretrained(hf_dir)
    vocab: dict[str, int] = dict(model["vocab"])
    added = {a["id"]: a for a in tj.get("added_tokens", [])}
    vocab.update({a["content"]: i for i, a in added.items()})
    # config.vocab_size can exceed the tokenizer (rows padded for speed): those ids get placeholders.
    n = max(cfg["vocab_size"], max(vocab.values()) + 1)
    by_id = {i: t for t, i in vocab.items()}
    T = gguf.TokenType
    tokens, types = [], []
    for i in range(n):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(T.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(T.CONTROL if added[i].get("special") else T.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(T.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre or detect_pre(tj))
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for attr, add in (
        ("bos_token_id", w.add_bos_token_id),
        ("eos_token_id", w.add_eos_token_id),
        ("unk_token_id", w.add_unk_token_id),
        ("pad_token_id", w.add_pad_token_id),
    ):
        if getattr(tok, attr, None) is not None:
            add(getattr(tok, attr))
    # Whether the HF tokenizer itself prepends BOS (SmolLM2's does not): llama.cpp must agree.
    ids = tok("a").input_ids
    w.add_add_bos_token(bool(ids) and tok.bos_token_id is not None and ids[0] == tok.bos_token_id)
    template = tok.chat_template
    if isinstance(template, str) and template:
        w.add_chat_template(template)


def _n_tensors(hf_dir: Path) -> int:
    from safetensors import safe_open

    n = 0
    for f in sorted(hf_dir.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            n += len(list(st.keys()))  # noqa: SIM118  (safe_open is not a Mapping)
    return n


def _tensors(hf_dir: Path):
    """``(name, float32 numpy array)`` for every tensor of the safetensors files, one at a time."""
    import torch
    from safetensors import safe_open

    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{hf_dir} has no *.safetensors weights")
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():  # noqa: SIM118  (safe_open is not a Mapping)
                yield key, st.get_tensor(key).to(torch.float32).numpy()


def _permute(w, n_head: int, n_head_kv: int):
    """llama.cpp's Q/K row order: per head, interleave the two rotary halves (as convert_hf_to_gguf)."""
    n = n_head_kv if n_head != n_head_kv else n_head
    return w.reshape(n, 2, w.shape[0] // n // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
