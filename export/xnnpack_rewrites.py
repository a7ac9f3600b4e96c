"""Export-time module rewrites that keep more of a graph inside XNNPACK, with the same maths.

XNNPACK (ExecuTorch 1.5) has no layer_norm kernel: every LayerNorm stays outside the delegate and cuts the
graph, so a 6-layer BERT lowers into ~18 subgraphs with 13 CPU-portable layer norms between them
(toolchain.md pitfall 4). Written with ops XNNPACK does take (mean over the two innermost dims of a 4-D
tensor = global average pooling, sub, mul, rsqrt, add), LayerNorm is delegated and the encoder becomes
one subgraph, which also makes lowering several times faster (the XNNPACK passes run once per subgraph).
"""
from __future__ import annotations

import copy

import torch
from torch import nn


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
