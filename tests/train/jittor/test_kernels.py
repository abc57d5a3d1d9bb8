"""The matmul kernels: numpy's BLAS on a CPU; Jittor's (cuBLAS) on CUDA, where a training step
computes what the CPU computes."""

from __future__ import annotations

import numpy as np
import pytest

from reactlab.train.jittor.runtime import cuda_present


def test_the_numpy_bridge_computes_jittors_matmul_and_its_gradients(monkeypatch):
    from reactlab.train.jittor import kernels
    from reactlab.train.jittor.runtime import import_jittor

    jt = import_jittor()
    rng = np.random.default_rng(0)
    x, w = (jt.array(rng.normal(size=s).astype(np.float32)) for s in ((2, 5, 6), (4, 6)))
    a, b = (jt.array(rng.normal(size=s).astype(np.float32)) for s in ((2, 3, 5, 6), (2, 3, 6, 4)))
    out = {}
    for name in ("numpy", "jittor"):
        monkeypatch.setenv(kernels.BACKEND_ENV, name)
        y = (kernels.linear(x, w) ** 2).sum() + (kernels.bmm(a, b) ** 2).sum()
        out[name] = [v.numpy() for v in [y, *jt.grad(y, [x, w, a, b])]]
    for mine, theirs in zip(out["numpy"], out["jittor"], strict=True):
        assert np.abs(mine - theirs).max() < 1e-3 * max(1.0, np.abs(theirs).max())


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_present(), reason="needs an NVIDIA GPU with nvcc (Jittor's CUDA build)")
def test_a_cuda_training_step_uses_cublas_and_computes_the_cpu_step(make_tiny, token_batch):
    from reactlab.train.jittor import kernels, lora
    from reactlab.train.jittor.convert import load_hf
    from reactlab.train.jittor.runtime import import_jittor

    jt = import_jittor()
    assert jt.flags.use_cuda == 1 and kernels.backend() == "jittor"
    model = load_hf(make_tiny("qwen2"))
    lora.inject(model, r=4, alpha=8, dropout=0.0, target_modules="all-linear", seed=1)
    for m in lora.lora_layers(model).values():
        m.lora_B.weight.assign(jt.full(m.lora_B.weight.shape, 0.01))
    params = lora.lora_params(model)
    model.checkpoint = True
    ids, labels = token_batch(model.args.vocab_size)
    gpu = model.loss_and_grads(ids, labels, params)
    jt.flags.use_cuda = 0
    try:
        assert kernels.backend() == "numpy"
        cpu = model.loss_and_grads(ids, labels, params)
    finally:
        jt.flags.use_cuda = 1
    assert gpu[0] == pytest.approx(cpu[0], rel=1e-4)
    for g, c in zip(gpu[2], cpu[2], strict=True):
        assert np.abs(g - c).max() < 1e-3 * max(1.0, np.abs(c).max())
