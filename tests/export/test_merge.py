"""LoRA merge: same outputs as the unmerged adapter; mismatched adapters refused by shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import make_adapter

pytest.importorskip("peft")


def test_merge_equals_adapter_and_keeps_tokenizer(tiny_llama_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reactlab.export.merge import PROVENANCE, merge_adapter

    adapter = make_adapter(tiny_llama_dir, tmp_path / "adapter", scale=0.1)
    res = merge_adapter(tiny_llama_dir, adapter, tmp_path / "merged", dtype="fp32")
    assert res.warnings == []
    ids = torch.tensor([[1, 520, 3000, 17, 42, 999]])
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    with torch.no_grad():
        plain = base(ids).logits
        want = PeftModel.from_pretrained(base, adapter).eval()(ids).logits
        got = AutoModelForCausalLM.from_pretrained(res.path, dtype=torch.float32)(ids).logits
    assert (want - plain).abs().max() > 0.1  # the adapter does something...
    assert torch.allclose(got, want, atol=1e-4)  # ...and the merged model does the same
    tok = AutoTokenizer.from_pretrained(res.path)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    prov = json.loads((res.path / PROVENANCE).read_text())
    assert prov["adapter"] == adapter and prov["dtype"] == "fp32"
    assert not list(res.path.glob("adapter_*"))  # a plain model, no PEFT files


def test_merge_dtype(tiny_llama_dir, tmp_path):
    from reactlab.export.merge import merge_adapter

    for dtype, name in (("fp16", "float16"), ("bf16", "bfloat16")):
        out = merge_adapter(tiny_llama_dir, None, tmp_path / dtype, dtype=dtype).path
        assert json.loads((out / "config.json").read_text())["dtype"] == name
    with pytest.raises(ValueError, match="unknown dtype"):
        merge_adapter(tiny_llama_dir, None, tmp_path / "x", dtype="int8")


def test_adapter_for_another_base_is_refused(tiny_llama_dir, tmp_path):
    """An adapter trained on a model of another width names another base and does not fit: refused
    before PEFT gets a chance to fail half-way; nothing is written."""
    from reactlab.export.merge import merge_adapter
    from reactlab.weights import AdapterMismatch

    wide = _tiny_wide(tiny_llama_dir, tmp_path / "wide")
    adapter = make_adapter(wide, tmp_path / "adapter")
    with pytest.raises(AdapterMismatch, match=r"was trained on .*does not fit.*shape"):
        merge_adapter(tiny_llama_dir, adapter, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_adapter_naming_another_base_but_fitting_is_merged_with_warning(tiny_llama_dir, tmp_path):
    from reactlab.export.merge import merge_adapter

    adapter = Path(make_adapter(tiny_llama_dir, tmp_path / "adapter"))
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "someone/other-model"
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    res = merge_adapter(tiny_llama_dir, str(adapter), tmp_path / "merged", dtype="fp32")
    assert res.warnings and "all shapes fit" in res.warnings[0]


def test_missing_target_module_is_refused(tiny_llama_dir, tmp_path):
    from reactlab.export.merge import merge_adapter
    from reactlab.weights import AdapterMismatch

    adapter = Path(make_adapter(tiny_llama_dir, tmp_path / "adapter"))
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["target_modules"] = ["q_proj", "query_key_value"]
    cfg["base_model_name_or_path"] = "someone/falcon"
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(AdapterMismatch, match="query_key_value"):
        merge_adapter(tiny_llama_dir, str(adapter), tmp_path / "merged")


def test_unknown_base_is_explained(tmp_path):
    from reactlab.export.merge import check_local_base

    with pytest.raises(FileNotFoundError, match="named model"):
        check_local_base(str(tmp_path / "nope"))


def _tiny_wide(tiny_dir: str, out: Path) -> str:
    """The tiny Llama with hidden size 96 instead of 64 (same tokenizer, other name)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    cfg = json.loads((Path(tiny_dir) / "config.json").read_text())
    cfg.update(hidden_size=96)
    cfg.pop("dtype", None)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    model.config.name_or_path = "tiny-wide"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_dir).save_pretrained(out)
    return str(out)
