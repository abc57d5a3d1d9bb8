"""HF safetensors -> Jittor -> HF is bit-exact, and a checkpoint that does not fit is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_round_trip_is_bit_exact(arch, make_tiny, tmp_path):
    from safetensors.numpy import load_file

    from reactlab.train.jittor.convert import load_hf, read_config, save_hf

    path = make_tiny(arch)
    model = load_hf(path)
    out = save_hf(model, tmp_path / "back", read_config(path))
    before, after = load_file(f"{path}/model.safetensors"), load_file(str(out / "model.safetensors"))
    if model.args.tie_word_embeddings:
        before.pop("lm_head.weight", None)
    assert sorted(before) == sorted(after)
    for k in before:
        assert before[k].dtype == after[k].dtype == np.float32
        assert before[k].tobytes() == after[k].tobytes(), k
    assert json.loads((out / "config.json").read_text())["model_type"] == arch

    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)  # transformers reads what we wrote


def test_a_checkpoint_that_does_not_fit_is_refused(tiny_model_dir):
    from reactlab.train.jittor.convert import check_state, hf_state, load_hf

    model = load_hf(tiny_model_dir)
    shapes = {k: v.shape for k, v in hf_state(model).items()}
    with pytest.raises(ValueError, match="missing"):
        check_state(model, {k: v for k, v in shapes.items() if "layers.1." not in k})
    with pytest.raises(ValueError, match="unexpected"):
        check_state(model, shapes | {"model.extra.weight": (3,)})
    with pytest.raises(ValueError, match=r"model.norm.weight has shape \(5,\)"):
        check_state(model, shapes | {"model.norm.weight": (5,)})
