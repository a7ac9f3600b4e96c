"""Export-time rewrites that keep more of a graph inside XNNPACK, and make it cheaper there, with the same maths.

LayerNorm: XNNPACK (ExecuTorch 1.5) has no layer_norm kernel, so every nn.LayerNorm stays outside the delegate
and cuts the graph (a 6-layer BERT: ~18 subgraphs, 13 CPU-portable layer norms; docs/TOOLCHAIN.md pitfall 4).
DelegableLayerNorm writes it with delegated ops. Its two means over the hidden dim are [H] -> [1] matmuls:
the earlier form (a 4-D mean = global average pooling) made ExecuTorch wrap every LayerNorm in two NHWC
transposes, ~7% of the int8 MiniLM's time at 512 tokens (docs/EXPORT.md, "Pushing the non-delegated count down").

Self-attention: DelegableSelfAttention replaces a BERT-family self-attention (transformers' *SelfAttention with
query / key / value Linears) with the same function minus two passes over the [heads, L, L] scores: the
1/sqrt(d) scale is folded into the query projection, and the additive padding mask rides inside the QK^T
matmul as one extra column per head (queries get a constant 1, keys get the mask value), so q'.k' = q.k/sqrt(d)
+ mask. The keys are permuted once, straight to [B, heads, d+1, L].

Reductions: XNNPACK has no sum kernel either, and MOOSComp's outlier z-score is five masked sums, each one a
cut in the graph. DelegableSums (a TorchFunctionMode active while torch.export traces) rewrites a float
sum over the last dim as a 4-D global average pool times n (delegated). Sums over other dims stay as they
are: the rewrites tried for them (permute + reshape, a ones-vector matmul) add undelegated copy / full ops.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode


class DelegableLayerNorm(nn.Module):
    """nn.LayerNorm over the last dim, written for XNNPACK (module doc)."""

    def __init__(self, ln: nn.LayerNorm):
        super().__init__()
        if len(ln.normalized_shape) != 1:
            raise ValueError(f"only last-dim LayerNorm is rewritten, not normalized_shape={ln.normalized_shape}")
        self.eps = ln.eps
        self.weight = ln.weight
        self.bias = ln.bias
        h = ln.normalized_shape[0]
        dtype = ln.weight.dtype if ln.weight is not None else torch.float32
        self.register_buffer("average", torch.full((1, h), 1.0 / h, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - F.linear(x, self.average)
        y = centred * torch.rsqrt(F.linear(centred * centred, self.average) + self.eps)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y


def _with_extra_column(proj: nn.Module, heads: int, head_dim: int, extra_bias: float, scale: float = 1.0) -> nn.Module:
    """A copy of a projection (nn.Linear, or a wrapper holding one as `.linear`, e.g. quant.smoothquant's
    SmoothedLinear) whose output is [heads, head_dim + 1] per token: the rows times `scale`, and per head one
    more output with zero weights and bias `extra_bias`, exact in fp32 and in per-channel int8."""
    inner = proj.linear if hasattr(proj, "linear") else proj
    ext = nn.Linear(inner.in_features, heads * (head_dim + 1), dtype=inner.weight.dtype)
    with torch.no_grad():
        w = inner.weight.new_zeros(heads, head_dim + 1, inner.in_features)
        b = inner.weight.new_zeros(heads, head_dim + 1)
        w[:, :head_dim] = inner.weight.reshape(heads, head_dim, -1) * scale
        if inner.bias is not None:
            b[:, :head_dim] = inner.bias.reshape(heads, head_dim) * scale
        b[:, head_dim] = extra_bias
        ext.weight.copy_(w.reshape(heads * (head_dim + 1), -1))
        ext.bias.copy_(b.reshape(-1))
    if inner is proj:
        return ext
    wrapper = copy.copy(proj)  # shares the wrapper's buffers (e.g. SmoothQuant's inv_factor), swaps the Linear
    wrapper._modules = dict(proj._modules, linear=ext)
    return wrapper


def _is_plain_self_attention(m: nn.Module) -> bool:
    """transformers' BERT-family encoder self-attention with absolute positions (no relative-position tables)."""
    return (type(m).__name__.endswith("SelfAttention") and all(isinstance(getattr(m, n, None), nn.Module)
                                                               for n in ("query", "key", "value"))
            and hasattr(m, "num_attention_heads") and hasattr(m, "attention_head_size")
            and not getattr(m, "is_decoder", False) and not hasattr(m, "distance_embedding"))


class DelegableSelfAttention(nn.Module):
    """softmax(QK^T / sqrt(d) + mask) V with the scale and the mask folded into the QK^T matmul (module doc).

    Takes the call of the module it replaces and returns (context [B, L, heads * d], None). The mask must be
    the additive key mask [B, 1, 1, L] that compressors.moos_scorer builds."""

    def __init__(self, attn: nn.Module):
        super().__init__()
        self.heads, self.head_dim = attn.num_attention_heads, attn.attention_head_size
        scaling = getattr(attn, "scaling", self.head_dim ** -0.5)
        self.query = _with_extra_column(attn.query, self.heads, self.head_dim, 1.0, scaling)
        self.key = _with_extra_column(attn.key, self.heads, self.head_dim, 0.0)
        self.value = attn.value
        mask_column = torch.zeros(self.head_dim + 1)
        mask_column[-1] = 1.0
        self.register_buffer("mask_column", mask_column)

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, **kwargs):
        if encoder_hidden_states is not None:
            raise ValueError("DelegableSelfAttention is for encoder self-attention, not cross-attention")
        b, n, _ = hidden_states.shape
        h, d = self.heads, self.head_dim
        q = self.query(hidden_states).reshape(b, n, h, d + 1).transpose(1, 2)
        k = self.key(hidden_states).reshape(b, n, h, d + 1)
        if attention_mask is not None:
            if tuple(attention_mask.shape) != (b, 1, 1, n):
                raise ValueError(f"DelegableSelfAttention needs an additive key mask [B, 1, 1, L], got "
                                 f"{list(attention_mask.shape)}")
            k = k + attention_mask.reshape(b, n, 1, 1) * self.mask_column
        v = self.value(hidden_states).reshape(b, n, h, d).transpose(1, 2)
        probs = torch.softmax(torch.matmul(q, k.permute(0, 2, 3, 1)), dim=-1)
        return torch.matmul(probs, v).transpose(1, 2).reshape(b, n, h * d), None


def xnnpack_form(module: nn.Module) -> nn.Module:
    """A deep copy of `module` with every last-dim nn.LayerNorm replaced by DelegableLayerNorm and every plain
    BERT-family self-attention by DelegableSelfAttention (same function, module doc)."""
    module = copy.deepcopy(module)
    for _, child in list(module.named_modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, nn.LayerNorm) and len(sub.normalized_shape) == 1:
                setattr(child, attr, DelegableLayerNorm(sub))
            elif _is_plain_self_attention(sub):
                setattr(child, attr, DelegableSelfAttention(sub))
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
