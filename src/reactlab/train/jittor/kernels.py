"""Matrix products for the Jittor model on a CPU: Jittor ops whose kernel is numpy's BLAS.

Jittor 1.3 multiplies matrices on a CPU with MKL-DNN when it can download it (``use_mkl=1``), or
else as a fused broadcast-multiply-reduce loop, far slower than BLAS (most of it in the backward).
Offline there is no MKL-DNN, so by default ``linear`` and ``bmm`` are ``jt.numpy_code`` ops
(Jittor's own mechanism for custom ops): forward and both gradients are ``numpy.matmul``
(OpenBLAS sgemm), and Jittor keeps the graph, the autograd and every other kernel.
``REACTLAB_JITTOR_MATMUL=jittor`` uses Jittor's kernels instead (what the bench compares); so do
a CUDA run (``jt.flags.use_cuda``): there Jittor's matmul is cuBLAS, and the numpy bridge would copy
every operand to the host and back.

Half-precision operands on a CPU are multiplied in float32 (cast in, sgemm, cast out): Jittor's
own CPU kernel accumulates a bfloat16 product in bfloat16 (a 10% relative error on a 64-term dot
product, and LoRA gradients that point elsewhere), and numpy has no bfloat16. Weights and
activations are still stored in half precision.

- ``linear(x, w)``: ``x @ w^T`` for ``x (..., in)`` and a torch-layout weight ``w (out, in)``;
- ``bmm(a, b)``: ``a @ b`` for ``a (..., n, m)``, ``b (..., m, k)`` with the same leading dims.
"""

from __future__ import annotations

import os
from typing import Any

from reactlab.train.jittor.runtime import import_jittor

BACKEND_ENV = "REACTLAB_JITTOR_MATMUL"


def backend() -> str:
    """``numpy`` (the default on a CPU) or ``jittor`` (``REACTLAB_JITTOR_MATMUL=jittor``, or CUDA)."""
    name = os.environ.get(BACKEND_ENV, "numpy") or "numpy"
    if name not in ("numpy", "jittor"):
        raise ValueError(f"{BACKEND_ENV}={name!r}: expected numpy or jittor")
    return "jittor" if import_jittor().flags.use_cuda else name


def _flat(a: Any) -> Any:
    return a.reshape(-1, a.shape[-1])


def _linear_fwd(np: Any, data: dict[str, Any]) -> None:
    x, w = data["inputs"][:2]
    out = data["outputs"][0]
    np.matmul(_flat(x), w.T, out=_flat(out))


def _linear_dx(np: Any, data: dict[str, Any]) -> None:
    w = data["inputs"][1]
    out = data["outputs"][0]
    np.matmul(_flat(data["dout"]), w, out=_flat(out))


def _linear_dw(np: Any, data: dict[str, Any]) -> None:
    x = data["inputs"][0]
    np.matmul(_flat(data["dout"]).T, _flat(x), out=data["outputs"][0])


def _bmm_fwd(np: Any, data: dict[str, Any]) -> None:
    a, b = data["inputs"][:2]
    np.matmul(a, b, out=data["outputs"][0])


def _bmm_da(np: Any, data: dict[str, Any]) -> None:
    b = data["inputs"][1]
    np.matmul(data["dout"], np.swapaxes(b, -1, -2), out=data["outputs"][0])


def _bmm_db(np: Any, data: dict[str, Any]) -> None:
    a = data["inputs"][0]
    np.matmul(np.swapaxes(a, -1, -2), data["dout"], out=data["outputs"][0])


def linear(x: Any, w: Any) -> Any:
    """``x @ w^T`` (see the module doc)."""
    jt = import_jittor()
    if backend() == "jittor":
        return jt.matmul(x, w.transpose(1, 0))
    if x.dtype != "float32":  # half precision on a CPU: float32 products (see the module doc)
        return linear(x.float32(), w.float32()).cast(x.dtype)
    return jt.numpy_code([*x.shape[:-1], w.shape[0]], x.dtype, [x, w], _linear_fwd, [_linear_dx, _linear_dw])


def bmm(a: Any, b: Any) -> Any:
    """``a @ b`` over matching leading dims (see the module doc)."""
    jt = import_jittor()
    if backend() == "jittor":
        return jt.matmul(a, b)
    if a.dtype != "float32":
        return bmm(a.float32(), b.float32()).cast(a.dtype)
    return jt.numpy_code([*a.shape[:-1], b.shape[-1]], a.dtype, [a, b], _bmm_fwd, [_bmm_da, _bmm_db])
