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


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_products_on_a_cpu_are_accumulated_in_float32(dtype):
    """Half-precision operands, float32 accumulation: within the inputs' rounding of the float32
    product (Jittor's own CPU kernel, accumulating in bfloat16, is off by ~10% here)."""
    from reactlab.train.jittor import kernels
    from reactlab.train.jittor.runtime import import_jittor

    jt = import_jittor()
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(16, 256)).astype(np.float32), rng.normal(size=(32, 256)).astype(np.float32)
    xv, wv = jt.array(x), jt.array(w)
    y = kernels.linear(xv.cast(dtype), wv.cast(dtype))
    assert y.dtype == dtype
    assert np.linalg.norm(y.float32().numpy() - x @ w.T) < 0.01 * np.linalg.norm(x @ w.T)
    gx, gw = jt.grad(y.float32().sum(), [xv, wv])
    assert np.linalg.norm(gx.numpy() - np.ones((16, 32)) @ w) < 0.01 * np.linalg.norm(np.ones((16, 32)) @ w)
    a, b = rng.normal(size=(2, 8, 64)).astype(np.float32), rng.normal(size=(2, 64, 8)).astype(np.float32)
    z = kernels.bmm(jt.array(a).cast(dtype), jt.array(b).cast(dtype))
    assert z.dtype == dtype and np.linalg.norm(z.float32().numpy() - a @ b) < 0.01 * np.linalg.norm(a @ b)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_present(), reason="needs an NVIDIA GPU with nvcc (Jittor's CUDA build)")
def test_a_cuda_bf16_step_keeps_float32_master_weights_near_the_cpu_float32_step(make_tiny, token_batch):
    """The GPU path's mixed precision: bf16 weights and activations, cuBLAS products, float32 LoRA
    factors and gradients close to the CPU's float32 step."""
    from reactlab.train.jittor import lora
    from reactlab.train.jittor.convert import load_hf
    from reactlab.train.jittor.runtime import import_jittor

    jt = import_jittor()
    path = make_tiny("qwen2", init_std=0.02)
    ids, labels = token_batch(1000)

    def step(cuda: int, dtype: str):
        jt.flags.use_cuda = cuda
        model = load_hf(path)
        lora.inject(model, r=4, alpha=8, dropout=0.0, target_modules="all-linear", seed=1)
        for m in lora.lora_layers(model).values():
            m.lora_B.weight.assign(jt.full(m.lora_B.weight.shape, 0.01))
        params = lora.lora_params(model)
        model.set_precision(dtype, params)
        model.checkpoint = True
        return model.loss_and_grads(ids, labels, params)

    try:
        cpu = step(0, "float32")
        gpu = step(1, "bfloat16")
    finally:
        jt.flags.use_cuda = 1
    assert gpu[0] == pytest.approx(cpu[0], rel=2e-2)
    for g, c in zip(gpu[2], cpu[2], strict=True):
        assert g.dtype == np.float32 and np.linalg.norm(g - c) < 0.1 * np.linalg.norm(c)


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
