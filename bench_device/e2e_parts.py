"""The timed pieces of the end-to-end benchmark (bench_device.e2e): LLM prefill, compressor forwards and the
vision encoder, each timed on this machine or on an adb device through the native runner.

Where things run:
- compression, on every device (local included): the native runner's pipeline mode, i.e. runtime_cpp's core
  with the compressor .pte files: MOOSComp tokenization + window forwards + word selection, EvoComp forward +
  top-k + gather. The ViT forward: the runner's benchmark mode on its .pte.
- LLM prefill: locally the ExecuTorch Python runtime (the .pte with ExecuTorch's fused custom SDPA); on adb the
  runner (a .pte exported without custom ops, which the runner cannot load).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from compkit.stats import median
from export.backends import get_backend
from export.targets import DEFAULT_SEQ_LENS

from .device_runner import DeviceRunner, latency_ms
from .llm_export import cache_root


class Ms(float):
    """A median wall time in ms that also carries the median CPU time of this process over the same calls
    (`cpu`, None when the work ran elsewhere). Other processes on shared cores stretch wall time, not the
    CPU time a computation needs, so speedups from CPU time are the load-robust cross-check."""

    def __new__(cls, wall: float, cpu: float | None = None):
        obj = super().__new__(cls, wall)
        obj.cpu = cpu
        return obj


def cpu_of(x) -> float | None:
    return getattr(x, "cpu", None)


def median_ms(fn, repeats: int, warmup: int = 1) -> Ms:
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append((time.perf_counter() - t) * 1e3)
        cpus.append((time.process_time() - c) * 1e3)
    return Ms(median(walls), median(cpus))


# ------------------------------------------------------------------------------------------- LLM prefill
def pte_vocab(pte: str | os.PathLike) -> int:
    """The vocabulary of an LLM .pte: the last dim of its logits (readable without loading any kernels)."""
    from executorch.runtime import Runtime

    return int(Runtime.get().load_program(Path(pte)).metadata("forward").output_tensor_meta(0).sizes()[-1])


class Prefill:
    """Median ms of one prefill forward of N token ids. Time depends only on N (ids are reduced modulo the
    vocabulary), so each N is timed once: both compressors usually keep the same number of tokens."""

    where = ""

    def __init__(self, vocab: int, repeats: int):
        self.vocab, self.repeats, self._memo = vocab, repeats, {}

    def __call__(self, ids: np.ndarray) -> float:
        if len(ids) not in self._memo:
            self._memo[len(ids)] = self._time((ids.astype(np.int64) % self.vocab)[None])
        return self._memo[len(ids)]


class LocalPrefill(Prefill):
    """forward(tokens [1, N] int64, input_pos [1] int64) through executorch.runtime on this machine."""

    where = "host (ExecuTorch Python runtime)"

    def __init__(self, pte, repeats: int):
        import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401  (registers llama::custom_sdpa)
        from executorch.runtime import Runtime

        super().__init__(pte_vocab(pte), repeats)
        self.method = Runtime.get().load_program(Path(pte)).load_method("forward")

    def _time(self, tokens: np.ndarray) -> float:
        tokens, pos = torch.from_numpy(tokens), torch.zeros(1, dtype=torch.int64)
        return median_ms(lambda: self.method.execute([tokens, pos]), self.repeats)


class DevicePrefill(Prefill):
    """The same call on the device: the runner's median of `repeats` timed calls after one warm-up."""

    def __init__(self, runner: DeviceRunner, pte, repeats: int):
        super().__init__(pte_vocab(pte), repeats)
        self.runner, self.pte = runner, pte
        self.where = f"device {runner.device.name} (native runner)"

    def _time(self, tokens: np.ndarray) -> float:
        r = self.runner.run(self.pte, {0: tokens, 1: np.zeros(1, dtype=np.int64)}, iters=self.repeats, warmup=1)
        return Ms(latency_ms(r))


class EagerPrefill(Prefill):
    """Fallback when no .pte of the LLM can be exported here: the same shape as a transformers
    LlamaForCausalLM (random weights, SDPA attention) in eager PyTorch on this machine, last-token logits."""

    where = "host (EAGER PyTorch fallback: transformers LlamaForCausalLM, SDPA; not ExecuTorch)"

    def __init__(self, shape, repeats: int):
        from transformers import LlamaConfig, LlamaForCausalLM

        super().__init__(shape.vocab_size, repeats)
        cfg = LlamaConfig(vocab_size=shape.vocab_size, hidden_size=shape.dim, intermediate_size=shape.hidden_dim,
                          num_hidden_layers=shape.n_layers, num_attention_heads=shape.n_heads,
                          num_key_value_heads=shape.n_kv_heads, rope_theta=shape.rope_theta,
                          max_position_embeddings=4096, attn_implementation="sdpa")
        torch.manual_seed(0)
        self.model = LlamaForCausalLM(cfg).eval()

    @torch.no_grad()
    def _time(self, tokens: np.ndarray) -> float:
        ids = torch.from_numpy(tokens)
        return median_ms(lambda: self.model(input_ids=ids, use_cache=False, logits_to_keep=1), self.repeats)


# ------------------------------------------------------------------------------------------- model shapes
@dataclass(frozen=True)
class BertShape:
    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab: int


@dataclass(frozen=True)
class VitShape:
    layers: int
    hidden: int
    heads: int
    intermediate: int
    image_size: int
    patch_size: int


MBERT_BASE = BertShape(layers=12, hidden=768, heads=12, intermediate=3072, vocab=119547 + 100)  # + [NEW0..99]
SIGLIP_BASE_336 = VitShape(layers=12, hidden=768, heads=12, intermediate=3072, image_size=336, patch_size=14)


def random_bert_scorer(shape: BertShape, seed: int = 0):
    """A TokenScorer of the given BERT shape with random weights (speed does not depend on the weights)."""
    from transformers import BertConfig, BertForTokenClassification

    from compressors.moos_scorer import TokenScorer

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=shape.vocab, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                     num_attention_heads=shape.heads, intermediate_size=shape.intermediate, num_labels=2,
                     attn_implementation="sdpa")
    model = BertForTokenClassification(cfg).eval()
    return TokenScorer(model, with_outlier=True)


class VisionTower(torch.nn.Module):
    """A SigLIP-shaped ViT: pixels [1, 3, H, W] -> patch features [1, (H/p)^2, hidden]."""

    def __init__(self, shape: VitShape, seed: int = 0):
        super().__init__()
        from transformers import SiglipVisionConfig, SiglipVisionModel

        torch.manual_seed(seed)
        cfg = SiglipVisionConfig(hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                                 num_attention_heads=shape.heads, intermediate_size=shape.intermediate,
                                 image_size=shape.image_size, patch_size=shape.patch_size,
                                 attn_implementation="eager")  # SDPA would not delegate (docs/TOOLCHAIN.md pitfall 1)
        self.vit = SiglipVisionModel(cfg).eval()
        self.shape = shape

    def forward(self, pixels):
        return self.vit(pixel_values=pixels).last_hidden_state

    def example(self):
        s = self.shape.image_size
        return (torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0)),)


# ------------------------------------------------------------------------------------------- forwards on a device
def cached_pte(key: dict, quant: str = "fp32") -> Path:
    """Where export_cached keeps the .pte of `key` in `quant`."""
    from export.executorch_xnnpack import GRAPH_FORM

    key = {**key, "quant": quant, "graph_form": GRAPH_FORM}  # a .pte lowered by older export code is not reused
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return cache_root().parent / "e2e" / f"{key.get('name', 'model')}-{digest}.pte"


def export_cached(module: torch.nn.Module, example: tuple, names: list[str], outputs: list[str], key: dict,
                  dynamic_shapes=None, quant: str = "fp32") -> Path:
    """An XNNPACK .pte of `module` (fp32, or another export.executorch_xnnpack quant), cached under the compkit
    cache by `key` (shape + seed + inputs) and the quant."""
    from export.executorch_xnnpack import export

    path = cached_pte(key, quant)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        export(module, example, names, outputs, quant, str(path), dynamic_shapes=dynamic_shapes)
    return path


SCORER_BUCKETS = DEFAULT_SEQ_LENS  # export.build's default MOOSComp buckets
COMPRESSOR_QUANTS = tuple(get_backend("xnnpack").recipes)


def scorer_ptes(compressor, scorer_module, name: str, shape_key: dict, quant: str = "fp32") -> list[Path]:
    """The MOOSComp scorer `scorer_module` (with `compressor`'s tokenizer and calibration text) lowered by
    export.build's own code path for android (ModelJob.export: XNNPACK, one .pte per fixed bucket, SmoothQuant
    and calibration as the recipe says), cached per bucket by shape, quant and SmoothQuant alpha."""
    from compressors.moos_spec import MOOS, loaded
    from export.build import ModelJob
    from quant.smoothquant import ALPHA

    backend = get_backend("xnnpack")
    recipe = backend.recipe(quant)
    job = ModelJob(MOOS, loaded(compressor, list(SCORER_BUCKETS), module=scorer_module))
    key = {"name": name, **shape_key, **({"smoothquant_alpha": ALPHA} if job.smoothed(recipe) else {})}
    paths = [cached_pte({**key, "bucket": L}, quant) for L in SCORER_BUCKETS]
    for L, path in zip(SCORER_BUCKETS, paths):
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            job.export(backend, recipe, L, str(path))
    return paths


def runner_ms(report: dict, runner: DeviceRunner) -> Ms:
    """The runner's median, carrying its median CPU time when it ran on this machine (CPU speedups are only
    formed from work timed on this machine, like the in-process LLM prefill)."""
    return Ms(latency_ms(report), report.get("cpu_median_ms") if runner.local else None)


def time_module(module, example: tuple, repeats: int, runner: DeviceRunner, key: dict,
                names: list[str]) -> tuple[float, str]:
    """(median ms, where) of one forward of the module's cached .pte on the device."""
    pte = export_cached(module, example, names, ["out"], key)
    inputs = {i: x.numpy() for i, x in enumerate(example)}
    return runner_ms(runner.run(pte, inputs, iters=repeats, warmup=1), runner), f"device {runner.device.name} (native runner)"


def shapes_json(*shapes) -> list[dict]:
    return [asdict(s) for s in shapes]
