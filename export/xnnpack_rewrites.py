"""Export-time rewrites that keep more of a graph inside XNNPACK, with the same maths.

XNNPACK (ExecuTorch 1.5) has no layer_norm kernel: every LayerNorm stays outside the delegate and cuts the
graph, so a 6-layer BERT lowers into ~18 subgraphs with 13 CPU-portable layer norms between them
(toolchain.md pitfall 4). Written with ops XNNPACK does take (mean over the two innermost dims of a 4-D
tensor = global average pooling, sub, mul, rsqrt, add), LayerNorm is delegated and the encoder becomes
one subgraph, which also makes lowering faster (the XNNPACK passes run once per subgraph).

Reductions: XNNPACK has no sum kernel either, and MOOSComp's outlier z-score is five masked sums, each one a
cut in the graph. DelegableSums (a TorchFunctionMode active while torch.export traces) rewrites a float
sum over the last dim as a 4-D global average pool times n (delegated). Sums over other dims stay as they
are: the rewrites tried for them (permute + reshape, a ones-vector matmul) add undelegated copy / full ops.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.overrides import TorchFunctionMode


class DelegableLayerNorm(nn.Module):
    """nn.LayerNorm over the last dim of a [B, L, H] tensor, written for XNNPACK."""

    def __init__(self, ln: nn.LayerNorm):
        super().__init__()
        if len(ln.normalized_shape) != 1:
            raise ValueError(f"only last-dim LayerNorm is rewritten, not normalized_shape={ln.normalized_shape}")
        self.eps = ln.eps
        self.weight = ln.weight
        self.bias = ln.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [B, L, H] -> [B, L, H, 1]: a mean over dims (2, 3) with keepdim is XNNPACK's global average pool.
        # reshape with static sizes (not squeeze/unsqueeze): static view_copy is delegated, squeeze_copy is not
        shape = x.shape
        x4 = x.reshape(shape[0], shape[1], shape[2], 1)
        centred = x4 - x4.mean(dim=(2, 3), keepdim=True)
        var = (centred * centred).mean(dim=(2, 3), keepdim=True)
        y = (centred * torch.rsqrt(var + self.eps)).reshape(shape)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y


def delegable_layer_norms(module: nn.Module) -> nn.Module:
    """A deep copy of `module` with every last-dim nn.LayerNorm replaced by DelegableLayerNorm."""
    module = copy.deepcopy(module)
    for name, child in list(module.named_modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, nn.LayerNorm) and len(sub.normalized_shape) == 1:
                setattr(child, attr, DelegableLayerNorm(sub))
    return module


def delegable_sum(x: torch.Tensor, dim: int, keepdim: bool = False):
    """x.sum(dim, keepdim) over the last dim, with ops XNNPACK delegates; None for any other dim."""
    d = dim % x.dim()
    n = x.shape[d]
    if d == x.dim() - 1:
        y = x.reshape(1, math.prod(x.shape[:-1]), n, 1).mean(dim=(2, 3), keepdim=True) * n
    else:  # other dims need a permute + copy or an in-graph ones tensor: neither is delegated, so no gain
        return None
    shape = list(x.shape)
    shape[d] = 1
    if not keepdim:
        del shape[d]
    return y.reshape(shape)


class DelegableSums(TorchFunctionMode):
    """While active, float `sum(dim=...)` over one trailing dim is traced as delegable ops (module doc)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.sum, torch.Tensor.sum) and kwargs.get("dtype") is None:
            x = args[0]
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
            if isinstance(dim, (list, tuple)) and len(dim) == 1:
                dim = dim[0]
            if isinstance(dim, int) and isinstance(x, torch.Tensor) and x.is_floating_point() and x.dim() >= 2:
                y = delegable_sum(x, dim, bool(keepdim))
                if y is not None:
                    return y
        return func(*args, **kwargs)
