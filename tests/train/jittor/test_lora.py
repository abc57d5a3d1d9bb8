"""LoRA in Jittor: the merge computes the unmerged forward, and the saved adapter is PEFT's: PEFT
loads it onto the transformers model and gives the Jittor model's logits."""

from __future__ import annotations

import numpy as np
import pytest


def _randomise_b(model, seed=1):
    """Nonzero B matrices (a fresh adapter's B is 0: merging it would prove nothing)."""
    from reactlab.train.jittor import lora
    from reactlab.train.jittor.runtime import import_jittor

    jt = import_jittor()
    rng = np.random.default_rng(seed)
    for m in lora.lora_layers(model).values():
        m.lora_B.weight.assign(jt.array(rng.normal(0, 0.05, size=m.lora_B.weight.shape).astype(np.float32)))


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_merge_equals_the_unmerged_forward(arch, make_tiny, token_batch):
    from reactlab.train.jittor import lora
    from reactlab.train.jittor.convert import load_hf
    from reactlab.train.jittor.runtime import import_jittor

    jt = import_jittor()
    model = load_hf(make_tiny(arch))
    ids, _ = token_batch(model.args.vocab_size)
    x = jt.array(ids.astype(np.int32))
    base = model(x).numpy()
    names = lora.inject(model, r=4, alpha=8, dropout=0.1, target_modules="all-linear")
    assert len(names) == 7 * model.args.num_layers
    model.eval()  # no dropout
    assert np.abs(model(x).numpy() - base).max() == 0.0  # B = 0: the adapted model starts as the base
    _randomise_b(model)
    unmerged = model(x).numpy()
    assert np.abs(unmerged - base).max() > 1e-2
    merged = lora.merge(model)(x).numpy()
    assert np.abs(merged - unmerged).max() < 1e-4


def test_target_modules_by_name_and_unknown_names(tiny_model_dir):
    from reactlab.train.jittor import lora
    from reactlab.train.jittor.convert import load_hf

    model = load_hf(tiny_model_dir)
    assert lora.inject(model, 2, 4, 0.0, ["q_proj", "v_proj"]) == [
        f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]
    assert len(lora.lora_params(model)) == 8
    with pytest.raises(ValueError, match=r"lora.target_modules: \['qkv'\]"):
        lora.inject(load_hf(tiny_model_dir), 2, 4, 0.0, ["q_proj", "qkv"])


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_the_adapter_loads_in_peft_with_the_same_logits(arch, make_tiny, torch_model, token_batch, tmp_path):
    import torch
    from peft import PeftModel

    from reactlab.train.jittor import lora
    from reactlab.train.jittor.convert import load_hf
    from reactlab.train.jittor.runtime import import_jittor

    jt = import_jittor()
    path = make_tiny(arch)
    model = load_hf(path)
    lora.inject(model, r=4, alpha=16, dropout=0.05, target_modules="all-linear", seed=3)
    _randomise_b(model)
    model.eval()
    lora.save_adapter(model, tmp_path / "adapter", base_model=path, r=4, alpha=16, dropout=0.05)
    ids, _ = token_batch(model.args.vocab_size)
    ours = model(jt.array(ids.astype(np.int32))).numpy()

    peft_model = PeftModel.from_pretrained(torch_model(path), str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        theirs = peft_model(input_ids=torch.tensor(ids)).logits.numpy()
    assert np.abs(ours - theirs).max() < 1e-4
    base = torch_model(path)(input_ids=torch.tensor(ids)).logits.detach().numpy()
    assert np.abs(theirs - base).max() > 1e-2  # the adapter was applied, not ignored

    cfg, tensors = lora.read_adapter(tmp_path / "adapter")
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 16 and cfg["peft_type"] == "LORA"
    fresh = load_hf(path)
    lora.inject(fresh, r=4, alpha=16, dropout=0.0, target_modules=cfg["target_modules"])
    lora.set_lora_state(fresh, tensors)
    fresh.eval()
    assert np.abs(fresh(jt.array(ids.astype(np.int32))).numpy() - ours).max() == 0.0
