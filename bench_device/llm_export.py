"""Llama-architecture decoders with random weights, exported once to .pte by ExecuTorch's own LLM export
tool and cached by config (a 135M-class 8da4w export takes ~13 minutes on 2 cores).

    python -m bench_device.llm_export --llm 135m --quant fp32 [--max-seq-len 2112]

prints the cached .pte path, exporting first when it is missing. Random weights are fine: prefill time does
not depend on weight values.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from compkit.errors import CompkitError
from compkit.files import atomic_path, dumps_json, write_text


@dataclass(frozen=True)
class LLMShape:
    """The params.json fields of ExecuTorch's llama ModelArgs that fix a model's size."""
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    hidden_dim: int
    vocab_size: int
    rope_theta: float = 10000.0


# Shapes of public checkpoints, Llama architecture (SwiGLU, RMSNorm, RoPE, GQA).
LLM_SHAPES = {
    "135m": LLMShape(dim=576, n_layers=30, n_heads=9, n_kv_heads=3, hidden_dim=1536, vocab_size=49152),  # SmolLM-135M
    "0.5b": LLMShape(dim=896, n_layers=24, n_heads=14, n_kv_heads=2, hidden_dim=4864, vocab_size=151936),  # Qwen2.5-0.5B
    "1b": LLMShape(dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, hidden_dim=8192, vocab_size=128256,
                   rope_theta=500000.0),  # Llama-3.2-1B
}
QUANTS = ("fp32", "8da4w")
# Divides every dim and hidden_dim above (576 is not a multiple of 128, the llama example's default).
GROUP_SIZE = 32


@dataclass(frozen=True)
class LLMExport:
    """Everything that changes the exported .pte; its hash names the cache folder."""
    shape: LLMShape
    quant: str = "fp32"
    max_seq_len: int = 2112
    # ExecuTorch's fused llama::custom_sdpa + update_cache: the fast prefill path, but those ops exist only in
    # the Python wheel (libcustom_ops_aot_lib needs libtorch), so the native runner needs custom_sdpa=False.
    custom_sdpa: bool = True

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("COMPKIT_CACHE", Path.home() / ".cache" / "compkit")) / "llm"


def llm_config_yaml(cfg: LLMExport, params_path: Path, out_dir: Path) -> str:
    """An export_llm config: KV cache + custom SDPA + dynamic sequence length, delegated to XNNPACK, so one
    method runs forward(tokens[1, N], input_pos[1]) for any N < max_seq_len."""
    quant = (f"quantization:\n  qmode: 8da4w\n  group_size: {GROUP_SIZE}\n" if cfg.quant == "8da4w" else "")
    return (
        "base:\n"
        "  model_class: llama3\n"
        f"  params: {params_path}\n"
        "  metadata: '{\"get_bos_id\": 1, \"get_eos_ids\": [2]}'\n"
        "model:\n"
        "  use_kv_cache: True\n"
        f"  use_sdpa_with_kv_cache: {cfg.custom_sdpa}\n"
        "  enable_dynamic_shape: True\n"
        "  dtype_override: fp32\n"
        "export:\n"
        f"  max_seq_length: {cfg.max_seq_len}\n"
        f"  max_context_length: {cfg.max_seq_len}\n"
        f"  output_dir: {out_dir}\n"
        "  output_name: model.pte\n"
        + quant +
        "backend:\n"
        "  xnnpack:\n"
        "    enabled: True\n"
        "    extended_ops: True\n"
    )


def cached_pte(cfg: LLMExport) -> Path:
    return cache_root() / cfg.key() / "model.pte"


def ensure_llm(cfg: LLMExport, log=print) -> Path:
    """The cached .pte for cfg, exporting it first when missing. The export runs in a temp folder beside the
    cache entry and is renamed into place only when complete, so an interrupted export leaves nothing."""
    pte = cached_pte(cfg)
    if pte.exists():
        return pte
    if cfg.quant not in QUANTS:
        raise ValueError(f"unknown --quant {cfg.quant!r}: use one of {', '.join(QUANTS)}")
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = pte.parent
    with atomic_path(str(final), directory=True) as tmp:
        tmp = Path(tmp)
        tmp.mkdir()
        params = tmp / "params.json"
        write_text(str(params), dumps_json({**asdict(cfg.shape), "norm_eps": 1e-5}, indent=1).rstrip("\n"))
        (tmp / "config.yaml").write_text(llm_config_yaml(cfg, params, tmp))
        log(f"exporting LLM {asdict(cfg)} -> {pte} (cached; large models take many minutes)")
        t0 = time.time()
        with open(tmp / "export.log", "w") as logf:
            proc = subprocess.run([sys.executable, "-m", "executorch.extension.llm.export.export_llm",
                                   "--config", str(tmp / "config.yaml")], stdout=logf, stderr=subprocess.STDOUT,
                                  cwd=tmp, env={**os.environ, "HYDRA_FULL_ERROR": "1"})
        if proc.returncode != 0 or not (tmp / "model.pte").exists():
            lines = [l for l in (tmp / "export.log").read_text(errors="replace").splitlines()
                     if l.strip() and "HYDRA_FULL_ERROR" not in l]
            raise RuntimeError(f"LLM export failed (exit {proc.returncode}): {(lines or ['no output'])[-1].strip()}")
        write_text(str(tmp / "export.json"), dumps_json({**asdict(cfg), "export_seconds": round(time.time() - t0, 1),
                                                         "exported_at": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1).rstrip("\n"))
    return pte


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="135m", choices=sorted(LLM_SHAPES))
    ap.add_argument("--quant", default="fp32", choices=QUANTS)
    ap.add_argument("--max-seq-len", type=int, default=2112)
    args = ap.parse_args(argv)
    try:
        print(ensure_llm(LLMExport(LLM_SHAPES[args.llm], args.quant, args.max_seq_len)))
    except (CompkitError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
