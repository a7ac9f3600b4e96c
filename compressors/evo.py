"""EvoComp: a small text-conditioned encoder that scores visual tokens; the top-k reach the LLM.

The paper (arXiv 2604.17087) reads the MLLM's aligned visual tokens together with the question's text
tokens in ONE bidirectional encoder layer with a skip connection and scores each visual token with a
linear head. That design is the default (`EVO_VARIANTS["paper"]`: the layer runs on the MLLM's own width,
no input projection, so the residual stream carries the aligned embeddings themselves to the head);
compkit's earlier 2 x 256 design stays as `EVO_VARIANTS["compact"]`. Heads, FFN width, the position and
type embeddings and the way text joins the image are compkit's choices (docs/EVOCOMP.md).

Written to export cleanly (ExecuTorch XNNPACK, CoreML, ONNX): attention is plain softmax(QK^T/sqrt(d))V
with matmuls (SDPA decomposes into ops XNNPACK rejects), reshapes use -1, the text padding mask is a
finite additive -1e4 (-inf turns into NaN in fp16/int8), and nothing branches on tensor values.
Top-k selection stays outside the model (`select`), because delegates reject or fragment on sort/topk.
"""
import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from compkit.files import atomic_path, write_json

DEMO_PROVENANCE = "untrained demo weights"
FRESH_PROVENANCE = "untrained (random init)"
MASK_VALUE = -1e4  # finite, so fp16 and int8 graphs never see -inf


HEAD_DIM = 64  # width of one attention head when `heads` is derived
# The designs compkit ships, by name (docs/EVOCOMP.md). None = derived from the widths as EvoCompConfig says.
EVO_VARIANTS = {
    # EvoComp's compressor: one bidirectional layer on the MLLM's own width, 64-wide heads, FFN 4x.
    "paper": dict(hidden=None, layers=1, heads=None, ffn=None, input_proj=False),
    # compkit's first design: both inputs projected to 256, two layers (~2.2 M parameters at width 896).
    "compact": dict(hidden=256, layers=2, heads=4, ffn=1024, input_proj=True),
}
ARCH_FIELDS = ("hidden", "layers", "heads", "ffn", "input_proj")
# A config.json written before variants existed has no "variant" key and no input_proj / use_text: it is
# the compact design (its explicit fields still win).
LEGACY_FIELDS = {**EVO_VARIANTS["compact"], "use_text": True}


def derived_heads(hidden: int) -> int:
    return hidden // HEAD_DIM if hidden % HEAD_DIM == 0 else 1


@dataclass
class EvoCompConfig:
    # Sized for a phone MLLM: LLM hidden 896 (Qwen2-0.5B, as in small LLaVA-style models), 576 visual
    # tokens on a 24x24 grid (a 336px CLIP/SigLIP tower with 14px patches), questions up to 64 tokens.
    # The architecture defaults are the paper's design (EVO_VARIANTS["paper"]) at these widths.
    visual_dim: int = 896  # width of the visual tokens after the MLLM's projector
    text_dim: int = 896  # width of the LLM's input embeddings of the question
    hidden: int | None = None  # None: visual_dim (the MLLM's own width)
    layers: int = 1
    heads: int | None = None  # None: hidden // 64 (64-wide heads), one head when hidden is no multiple of 64
    ffn: int | None = None  # None: 4 * hidden
    # True: both inputs go through a Linear to `hidden`; False: only an input whose width differs from hidden.
    input_proj: bool = False
    # False: the text inputs are accepted (same signature, same exports) and ignored: the "without text" ablation.
    use_text: bool = True
    max_visual_tokens: int = 576
    max_text_tokens: int = 64
    grid: tuple = (24, 24)  # rows, cols of the visual tokens (raster order); used by spatial baselines
    dropout: float = 0.0
    # Derived and recorded in config.json: the EVO_VARIANTS name whose design these fields are, else "custom".
    # Passing a name that does not describe the fields is an error.
    variant: str | None = None

    @classmethod
    def for_variant(cls, name: str, **widths) -> "EvoCompConfig":
        """The design `name` of EVO_VARIANTS at the given widths / token counts (visual_dim, text_dim,
        max_visual_tokens, max_text_tokens, grid, dropout, use_text)."""
        if name not in EVO_VARIANTS:
            raise ValueError(f"unknown EvoComp variant {name!r}: choose one of {sorted(EVO_VARIANTS)}")
        fixed = sorted(set(widths) & set(ARCH_FIELDS + ("variant",)))
        if fixed:
            raise ValueError(f"for_variant sets {fixed} from the variant; build EvoCompConfig(...) for a custom design")
        return cls(**EVO_VARIANTS[name], **widths, variant=name)

    @classmethod
    def from_dict(cls, raw: dict) -> "EvoCompConfig":
        """From a saved dict (config.json, a build manifest); a dict without "variant" is read as written before
        variants existed (LEGACY_FIELDS fill what it lacks)."""
        unknown = sorted(set(raw) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown keys {unknown}")
        return cls(**({**LEGACY_FIELDS, **raw} if "variant" not in raw else raw))

    def __post_init__(self):
        self.grid = tuple(int(g) for g in self.grid)
        if self.hidden is None:
            self.hidden = self.visual_dim
        if self.heads is None and isinstance(self.hidden, int):
            self.heads = derived_heads(self.hidden)
        if self.ffn is None and isinstance(self.hidden, int):
            self.ffn = 4 * self.hidden
        for f in ("input_proj", "use_text"):
            if not isinstance(getattr(self, f), bool):
                raise ValueError(f"EvoCompConfig.{f} must be true or false, got {getattr(self, f)!r}")
        for f in ("visual_dim", "text_dim", "hidden", "layers", "heads", "ffn", "max_visual_tokens", "max_text_tokens"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"EvoCompConfig.{f} must be a positive integer, got {v!r}")
        if self.hidden % self.heads:
            raise ValueError(f"EvoCompConfig.hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if len(self.grid) != 2 or self.grid[0] * self.grid[1] != self.max_visual_tokens:
            raise ValueError(f"EvoCompConfig.grid {self.grid} must be (rows, cols) with rows*cols == max_visual_tokens ({self.max_visual_tokens})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"EvoCompConfig.dropout must be in [0, 1), got {self.dropout}")
        design = {f: getattr(self, f) for f in ARCH_FIELDS}
        derived = next((name for name in EVO_VARIANTS if variant_design(name, self.visual_dim) == design), "custom")
        if self.variant is not None and self.variant != derived:
            raise ValueError(f"EvoCompConfig.variant {self.variant!r} does not describe these fields ({design} is the "
                             f"{derived!r} design at visual_dim {self.visual_dim}): drop variant or fix the fields")
        self.variant = derived


def variant_design(name: str, visual_dim: int) -> dict:
    """EVO_VARIANTS[name] with its derived fields filled in for visual tokens of width visual_dim."""
    d = dict(EVO_VARIANTS[name])
    d["hidden"] = visual_dim if d["hidden"] is None else d["hidden"]
    d["heads"] = derived_heads(d["hidden"]) if d["heads"] is None else d["heads"]
    d["ffn"] = 4 * d["hidden"] if d["ffn"] is None else d["ffn"]
    return d


class EncoderLayer(nn.Module):
    """Pre-norm transformer block with hand-written attention (see module docstring)."""

    def __init__(self, cfg: EvoCompConfig):
        super().__init__()
        self.heads, self.head_dim = cfg.heads, cfg.hidden // cfg.heads
        self.norm1 = nn.LayerNorm(cfg.hidden)
        self.q = nn.Linear(cfg.hidden, cfg.hidden)
        self.k = nn.Linear(cfg.hidden, cfg.hidden)
        self.v = nn.Linear(cfg.hidden, cfg.hidden)
        self.out = nn.Linear(cfg.hidden, cfg.hidden)
        self.norm2 = nn.LayerNorm(cfg.hidden)
        self.fc1 = nn.Linear(cfg.hidden, cfg.ffn)
        self.fc2 = nn.Linear(cfg.ffn, cfg.hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(cfg.dropout)

    def attention(self, x, key_bias):
        b = x.shape[0]
        # the scale on the queries, not on the [heads, N, N] scores: N / head_dim (~10x) fewer multiplies
        q = self.q(x).reshape(b, -1, self.heads, self.head_dim).transpose(1, 2) * (1.0 / math.sqrt(self.head_dim))
        k = self.k(x).reshape(b, -1, self.heads, self.head_dim).transpose(1, 2)
        v = self.v(x).reshape(b, -1, self.heads, self.head_dim).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-2, -1))
        if key_bias is not None:
            scores = scores + key_bias
        probs = self.drop(torch.softmax(scores, dim=-1))
        y = torch.matmul(probs, v).transpose(1, 2).reshape(b, -1, self.heads * self.head_dim)
        return self.out(y)

    def forward(self, x, key_bias=None):
        x = x + self.drop(self.attention(self.norm1(x), key_bias))
        return x + self.drop(self.fc2(self.act(self.fc1(self.norm2(x)))))


class EvoCompressor(nn.Module):
    """Scores visual tokens given the question: forward -> one keep logit per visual token [B, N]."""

    INPUT_NAMES = ["visual_tokens", "text_embeds", "text_mask"]
    OUTPUT_NAMES = ["keep_logits"]

    def __init__(self, config: EvoCompConfig = None, provenance: str = FRESH_PROVENANCE):
        super().__init__()
        self.config = cfg = config or EvoCompConfig()
        self.provenance = provenance
        with torch.random.fork_rng(devices=[]):  # nn defaults draw from the global RNG; leave it untouched
            self._build(cfg)
        self.init_weights(torch.Generator().manual_seed(0))

    def _build(self, cfg):
        def projection(width):  # the paper's design reads the aligned embeddings as they are
            return nn.Linear(width, cfg.hidden) if cfg.input_proj or width != cfg.hidden else nn.Identity()

        # Registration order fixes which draws of init_weights' generator each tensor gets: kept as before
        # variants existed, so a seed gives the compact design the same weights it always had.
        text = cfg.use_text
        self.visual_proj = projection(cfg.visual_dim)
        self.text_proj = projection(cfg.text_dim) if text else None
        # Separate tensors rather than an Embedding: an added constant is delegated, a gather is not.
        self.visual_type = nn.Parameter(torch.zeros(cfg.hidden))
        self.text_type = nn.Parameter(torch.zeros(cfg.hidden)) if text else None
        self.visual_pos = nn.Parameter(torch.zeros(cfg.max_visual_tokens, cfg.hidden))
        self.text_pos = nn.Parameter(torch.zeros(cfg.max_text_tokens, cfg.hidden)) if text else None
        self.blocks = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.hidden)
        self.head = nn.Linear(cfg.hidden, 1)

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator):
        """nanoGPT-style init (normal 0.02, zero bias, unit norms), drawn from `generator` only."""
        for name, p in self.named_parameters():
            if "norm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, 0.02, generator=generator)

    def _inputs(self, visual_tokens, text_embeds, text_mask):
        """(visual, text, mask, was_numpy): torch or numpy inputs as tensors of the model's float dtype (float64
        and float16 are converted), or a one-line TypeError / ValueError naming the argument that is wrong."""
        dtype, was_numpy, out = self.head.weight.dtype, isinstance(visual_tokens, np.ndarray), []
        for name, x in (("visual_tokens", visual_tokens), ("text_embeds", text_embeds), ("text_mask", text_mask)):
            if isinstance(x, np.ndarray):
                x = torch.from_numpy(x)
            elif x is not None and not isinstance(x, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, not {type(x).__name__}")
            if x is not None and name != "text_mask":
                if not x.is_floating_point():
                    raise TypeError(f"{name} must hold floating-point embeddings, not {x.dtype}")
                x = x if x.dtype == dtype else x.to(dtype)
            out.append(x)
        v, e, m = out
        if v.dim() != 3 or e.dim() != 3:
            raise ValueError(f"expected visual_tokens [B, N, Dv] and text_embeds [B, T, Dt], got {tuple(v.shape)} and {tuple(e.shape)}")
        if v.shape[0] < 1 or v.shape[0] != e.shape[0]:
            raise ValueError(f"visual_tokens and text_embeds must share one batch size >= 1, got {v.shape[0]} and {e.shape[0]}")
        if v.shape[1] < 1:
            raise ValueError("visual_tokens holds no tokens: pass at least one visual token per image")
        if m is not None and tuple(m.shape) != tuple(e.shape[:2]):
            raise ValueError(f"text_mask must be [B, T] = {list(e.shape[:2])} like text_embeds, got {list(m.shape)}")
        return v, e, m, was_numpy

    def forward(self, visual_tokens, text_embeds, text_mask=None):
        was_numpy = isinstance(visual_tokens, np.ndarray)
        h = self.hidden_states(visual_tokens, text_embeds, text_mask)
        logits = self.head(h).reshape(h.shape[0], -1)
        return logits.detach().numpy() if was_numpy else logits

    def hidden_states(self, visual_tokens, text_embeds, text_mask=None):
        """The states the linear head scores, [B, N, hidden] (visual positions, after the final LayerNorm):
        what EvoComp's cosine term compares between retained and discarded tokens."""
        cfg = self.config
        visual_tokens, text_embeds, text_mask, _ = self._inputs(visual_tokens, text_embeds, text_mask)
        b, n, dv = visual_tokens.shape
        t, dt = text_embeds.shape[1], text_embeds.shape[2]
        if dv != cfg.visual_dim or dt != cfg.text_dim:
            raise ValueError(f"expected visual width {cfg.visual_dim} and text width {cfg.text_dim}, got {dv} and {dt}")
        if n > cfg.max_visual_tokens or t > cfg.max_text_tokens:
            raise ValueError(f"{n} visual / {t} text tokens exceed the config's maxima ({cfg.max_visual_tokens} / {cfg.max_text_tokens})")
        x = self.visual_proj(visual_tokens) + self.visual_type + self.visual_pos[:n]
        key_bias = None
        if cfg.use_text:  # else the "without text" ablation: text accepted (same signature) and ignored
            x = torch.cat([x, self.text_proj(text_embeds) + self.text_type + self.text_pos[:t]], dim=1)
            if text_mask is not None:
                # Padded text keys get a large finite negative bias; visual keys get 0 by left-padding
                # (a pad is delegated to XNNPACK, a zeros_like of a slice is not).
                text_bias = (1.0 - text_mask.to(x.dtype)) * MASK_VALUE
                key_bias = F.pad(text_bias, (n, 0)).reshape(b, 1, 1, -1)
        for block in self.blocks:
            x = block(x, key_bias)
        return self.norm(x[:, :n] if cfg.use_text else x)  # a whole-tensor slice is an alias XNNPACK leaves out

    def input_spec(self, batch=1, visual_tokens=None, text_tokens=None):
        """{input name: (shape, dtype)} for building example inputs; defaults to the config's maxima."""
        cfg = self.config
        n, t = visual_tokens or cfg.max_visual_tokens, text_tokens or cfg.max_text_tokens
        return {
            "visual_tokens": ((batch, n, cfg.visual_dim), torch.float32),
            "text_embeds": ((batch, t, cfg.text_dim), torch.float32),
            "text_mask": ((batch, t), torch.float32),
        }

    def example_inputs(self, batch=1, visual_tokens=None, text_tokens=None, seed=0):
        """Seeded random inputs in INPUT_NAMES order (text mask all ones)."""
        g = torch.Generator().manual_seed(seed)
        spec = self.input_spec(batch, visual_tokens, text_tokens)
        v, e = (torch.randn(*spec[k][0], generator=g) for k in ("visual_tokens", "text_embeds"))
        return v, e, torch.ones(spec["text_mask"][0])

    @torch.no_grad()
    def compress(self, visual_tokens, text_embeds, ratio=3.0, text_mask=None, k=None):
        """Keep the top-scoring visual tokens: (kept tokens [B, k, Dv], kept indices [B, k]).

        Pass `ratio` (kept = round(N / ratio)) or `k`. Unbatched [N, Dv] / [T, Dt] inputs give unbatched outputs.
        """
        single = getattr(visual_tokens, "ndim", None) == 2

        def batched(x):
            return x[None] if single and isinstance(x, (torch.Tensor, np.ndarray)) else x

        v, e, m, was_numpy = self._inputs(batched(visual_tokens), batched(text_embeds), batched(text_mask))
        idx = select(self(v, e, m), k=k, ratio=None if k is not None else ratio)
        source = torch.from_numpy(batched(visual_tokens)) if was_numpy else batched(visual_tokens)  # its own dtype
        kept = torch.gather(source, 1, idx[..., None].expand(-1, -1, source.shape[-1]))
        kept, idx = (kept[0], idx[0]) if single else (kept, idx)
        return (kept.numpy(), idx.numpy()) if was_numpy else (kept, idx)

    def save(self, directory):
        """Write model.safetensors + config.json. A new directory appears whole (temp dir, then rename);
        into an existing directory each file is replaced atomically and other files are left alone."""
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise NotADirectoryError(f"cannot save EvoComp checkpoint: {directory} exists and is not a directory")
        directory.parent.mkdir(parents=True, exist_ok=True)
        meta = {"provenance": self.provenance}
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        cfg = {"model_type": "evocomp", **asdict(self.config), **meta}
        if not directory.exists():
            with atomic_path(str(directory)) as tmp:
                os.mkdir(tmp)
                save_file(state, os.path.join(tmp, "model.safetensors"), metadata=meta)
                write_json(os.path.join(tmp, "config.json"), cfg)
        else:
            with atomic_path(str(directory / "model.safetensors")) as tmp:
                save_file(state, tmp, metadata=meta)
            write_json(str(directory / "config.json"), cfg)
        return directory

    @classmethod
    def load(cls, directory):
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"EvoComp checkpoint directory not found: {directory} (create one with EvoCompressor.save, or use default_evo())")
        for name in ("config.json", "model.safetensors"):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"EvoComp checkpoint {directory} has no {name}: save it with EvoCompressor.save(dir)")
        try:
            raw = json.loads((directory / "config.json").read_text())
            if not isinstance(raw, dict) or raw.get("model_type") != "evocomp":
                raise ValueError("model_type is not 'evocomp'")
            provenance = raw.get("provenance", "unknown")
            config = EvoCompConfig.from_dict({k: v for k, v in raw.items() if k not in ("model_type", "provenance")})
        except (ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"bad EvoComp config {directory / 'config.json'}: {str(e).splitlines()[0]}") from None
        model = cls(config, provenance=provenance)
        try:
            state = load_file(directory / "model.safetensors")
        except (SafetensorError, OSError) as e:
            raise ValueError(f"unreadable weights {directory / 'model.safetensors'}: {str(e).splitlines()[0]}") from None
        expected = model.state_dict()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
        if missing or unexpected or wrong:
            raise ValueError(f"weights in {directory} do not match config.json: missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}")
        model.load_state_dict(state)
        return model.eval()


DEFAULT_DIR = Path(__file__).resolve().parent / "data" / "evocomp_default"


def default_evo():
    """The shipped trained default (compressors/data/evocomp_default): the paper's single-layer design on
    the easy-VQA MLLM's width, trained on evolutionary labels of easy-VQA TRAIN questions searched against
    that MLLM (docs/EVOCOMP.md); its provenance says so. 64 visual tokens (8 x 8), 64 wide, 16 text tokens:
    a phone-sized shape needs a checkpoint trained for that MLLM (export.build --evo-checkpoint)."""
    if not (DEFAULT_DIR / "model.safetensors").is_file():
        raise FileNotFoundError(f"the trained EvoComp default is missing from the install ({DEFAULT_DIR}): reinstall compkit")
    return EvoCompressor.load(DEFAULT_DIR)


def seeded_evo(config: EvoCompConfig, seed=0):
    """A seeded UNTRAINED compressor of `config` (benchmarks of a shape no trained default has)."""
    model = EvoCompressor(config, provenance=DEMO_PROVENANCE)
    model.init_weights(torch.Generator().manual_seed(seed))
    return model.eval()


def keep_count(n, k=None, ratio=None):
    """How many of n tokens to keep: k itself, or round(n / ratio) (halves round up), at least 1."""
    if (k is None) == (ratio is None):
        raise ValueError("pass exactly one of k (tokens to keep) or ratio (compression factor >= 1)")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
            raise ValueError(f"k must be an integer in [1, {n}] (the number of tokens), got {k!r}")
        return int(k)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.number)) or not math.isfinite(ratio) or ratio < 1:
        raise ValueError(f"ratio must be a finite number >= 1 (3.0 keeps a third), got {ratio!r}")
    return max(1, min(n, math.floor(n / ratio + 0.5)))


def as_torch(x):
    """(tensor, was_numpy): selectors accept numpy or torch and hand back the same kind."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x), True
    if isinstance(x, torch.Tensor):
        return x, False
    raise TypeError(f"expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def as_input_kind(t, was_numpy):
    return t.numpy() if was_numpy else t


def select(scores, k=None, ratio=None):
    """Indices of the k highest scores in ORIGINAL order, for scores [N] or [B, N] (torch or numpy).

    Ties are deterministic: among equal scores the lower index is kept (a stable descending sort).
    """
    s, was_numpy = as_torch(scores)
    if s.dim() not in (1, 2) or s.shape[-1] == 0:
        raise ValueError(f"scores must be [N] or [B, N] with N >= 1, got shape {tuple(s.shape)}")
    s = s.detach()
    if s.is_floating_point() and torch.isnan(s).any():
        raise ValueError("scores contain NaN: check the model's inputs")
    kk = keep_count(s.shape[-1], k, ratio)
    order = torch.sort(s, dim=-1, descending=True, stable=True).indices[..., :kk]
    return as_input_kind(torch.sort(order, dim=-1).values, was_numpy)
