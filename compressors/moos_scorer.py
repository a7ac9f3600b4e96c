"""The part of MOOSComp that runs as a model: token ids in, per-token keep probability (and outlier z) out.

This is what export lowers to .pte / .onnx / .mlpackage. It wraps a Hugging Face *ForTokenClassification
model but drives its embeddings and encoder directly, for three reasons that phones care about:
- the attention mask is built here as a finite additive mask ((1 - m) * -1e4); transformers' own mask
  builders emit -inf / dtype-min values that turn into NaN in fp16 and int8 and do not convert in CoreML;
- for export, attention runs in "eager" form (softmax(QK^T)V), which XNNPACK delegates; SDPA decomposes
  into ops it does not take (docs/TOOLCHAIN.md, pitfall 1). On the desktop SDPA is kept: with many windows in a
  batch eager attention was measured 3x slower (it materialises every attention matrix). Call
  `for_export()` before torch.export.
- token ids come in as int32, which every runtime accepts, and are widened inside the graph.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

INPUT_NAMES = ["input_ids", "attention_mask"]
OUTPUT_NAMES = ["keep_prob", "outlier_z"]
MASK_VALUE = -1e4  # finite: exp(-1e4) is exactly 0 in fp32 and fp16, and -1e4 is representable in fp16


def representation_outlier_z(hidden: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6,
                             matmul_sums: bool = False) -> torch.Tensor:
    """z-score, within each window, of every token's distance from the window's mean hidden state.

    hidden [B, L, H], mask [B, L] float (1 = real token). Padded positions get z = 0. The statistics run
    over every attended position, [CLS] and [SEP] included, so the z of a token depends only on its window.
    """
    m = mask.unsqueeze(-1)
    n = mask.sum(dim=1, keepdim=True).clamp(min=1.0)  # [B, 1]
    if matmul_sums:  # the same masked sum as a [B, 1, L] @ [B, L, H] matmul, which XNNPACK delegates
        centre = torch.matmul(mask.unsqueeze(1), hidden) / n.unsqueeze(-1)
    else:
        centre = (hidden * m).sum(dim=1, keepdim=True) / n.unsqueeze(-1)
    dist = ((hidden - centre) ** 2).sum(dim=-1).sqrt()  # [B, L]
    mean = (dist * mask).sum(dim=1, keepdim=True) / n
    var = (((dist - mean) ** 2) * mask).sum(dim=1, keepdim=True) / n
    return (dist - mean) / (var + eps).sqrt() * mask


class TokenScorer(nn.Module):
    """forward(input_ids int32 [B, L], attention_mask int32 [B, L]) -> (keep_prob [B, L], outlier_z [B, L])."""

    def __init__(self, model: nn.Module, with_outlier: bool = True):
        super().__init__()
        self.model = model.eval()
        self.with_outlier = with_outlier
        self.output_names = OUTPUT_NAMES if with_outlier else OUTPUT_NAMES[:1]
        self.export_form = False

    def for_export(self) -> "TokenScorer":
        """A copy in the forms that delegate fully: plain softmax(QK^T)V attention, the keep probability as a
        sigmoid of a logit difference, masked sums as matmuls. Same numbers to ~1e-7. A copy, so that the
        compressor itself (its test vectors, the parity reference) keeps computing in its own form."""
        export = copy.deepcopy(self)
        export.model.set_attn_implementation("eager")
        export.export_form = True
        return export

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        base = self.model.base_model
        mask = attention_mask.to(self.model.dtype)  # the model's own precision (fp16 recipes run it in half)
        additive = ((1.0 - mask) * MASK_VALUE)[:, None, None, :]
        hidden = base.embeddings(input_ids=input_ids.to(torch.long))
        hidden = base.encoder(hidden, attention_mask=additive).last_hidden_state
        logits = self.model.classifier(hidden)
        if self.export_form:
            # softmax(l)[1] == sigmoid(l1 - l0); the difference as a matmul avoids a select/slice left outside
            # the delegate. Not used on the desktop, where LLMLingua's exact softmax keeps near-ties identical.
            diff = torch.tensor([[-1.0], [1.0]], dtype=logits.dtype)
            keep_prob = torch.sigmoid(torch.matmul(logits, diff)).reshape(logits.shape[0], -1)
        else:
            keep_prob = torch.softmax(logits, dim=-1)[..., 1]
        if not self.with_outlier:
            return (keep_prob,)
        return keep_prob, representation_outlier_z(hidden, mask, matmul_sums=self.export_form)


def input_spec(seq_len: int, batch: int = 1) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """{name: (shape, dtype)} of the exported scorer: the Qualcomm-AI-Hub-style spec exporters build from."""
    return {name: ((batch, seq_len), torch.int32) for name in INPUT_NAMES}


def example_inputs(seq_len: int, batch: int = 1, vocab_size: int = 1000, n_real: int | None = None):
    """Deterministic (input_ids, attention_mask) for tracing and smoke runs; the last positions are padding."""
    g = torch.Generator().manual_seed(seq_len)
    ids = torch.randint(100, vocab_size, (batch, seq_len), generator=g, dtype=torch.int32)
    mask = torch.ones(batch, seq_len, dtype=torch.int32)
    mask[:, n_real if n_real is not None else seq_len - seq_len // 8 :] = 0
    return ids, mask
