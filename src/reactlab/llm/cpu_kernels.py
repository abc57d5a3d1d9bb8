"""CPU kernels for inference: ``nn.Linear`` through oneDNN, which beats MKL's sgemm on the few-row
products of decoding (docs/performance.md). ``hf.py`` swaps the linears of a model it serves.
"""

from __future__ import annotations

from typing import Any

import torch


class OneDNNLinear(torch.nn.Module):
    """``nn.Linear`` through oneDNN's kernel (the weight is the same tensor, not a copy)."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")


def use_onednn_linear(model: Any) -> int:
    """Swap every fp32 CPU ``nn.Linear`` of ``model`` (inference only) for ``OneDNNLinear``; returns
    how many were swapped (0 where oneDNN is not there, on a GPU, or for other dtypes)."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return 0
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (type(child) is torch.nn.Linear and child.weight.device.type == "cpu"
                    and child.weight.dtype == torch.float32):
                setattr(parent, name, OneDNNLinear(child))
                swapped += 1
    return swapped
