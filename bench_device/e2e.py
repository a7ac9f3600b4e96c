"""End-to-end speedup of prompt compression (MOOSComp) and visual-token compression (EvoComp) in front of an
ExecuTorch LLM, the figures the papers report (3.3x at 4x text compression, 1.6x at 3x fewer visual tokens).

    python -m bench_device.e2e --device local|adb:SERIAL [--llm 135m|0.5b|1b] [--quant fp32|8da4w]
                               [--compressor-quant int8dyn|fp32] [--ratios 1,2,3,4,5] [--prompt-tokens 2048]
                               [--out STEM]

Text: (a) LLM prefill of an N-token prompt against (b) the whole compression (tokenize + compressor forwards +
word selection, in the native runner's pipeline mode on the device) plus prefill of the compressed prompt, per
ratio (rate = 1/ratio); speedup = a / b. Vision: prefill of 576 visual + 64 text tokens against EvoComp (forward +
top-k + gather, pipeline mode) + prefill of the kept tokens, and time to first token with a SigLIP-base-shaped ViT
in front. Every weight is random except the embedded MiniLM: timing does not depend on values.
Writes STEM.json, STEM.md and STEM.png (speedup against ratio). See docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from compkit.errors import CompkitError
from compressors.moos_default import DEFAULT_GSM8K

from . import e2e_parts as parts
from .devices import device_from_spec
from .device_runner import DeviceRunner
from .e2e_report import markdown, plot
from .llm_export import LLM_SHAPES, QUANTS, LLMExport, ensure_llm
from .report import write_report
from .run import machine_load

GSM8K = os.path.join(DEFAULT_GSM8K, "test.jsonl")  # beside the checkout: ../shared/data/gsm8k


@dataclass
class Preset:
    """Model sizes. "paper": the shapes the papers' figures are about; "tiny": seconds-long test runs."""
    mbert: parts.BertShape = parts.MBERT_BASE
    minilm_scorer: parts.BertShape | None = None  # None: the real embedded MiniLM default
    vit: parts.VitShape = parts.SIGLIP_BASE_336
    evo: dict = field(default_factory=dict)  # EvoCompConfig overrides
    visual_tokens: int = 576
    text_tokens: int = 64


# the phone-sized EvoComp input shape of the "paper" preset; the architecture is EvoCompConfig's default
PHONE_EVO = dict(visual_dim=896, text_dim=896, max_visual_tokens=576, max_text_tokens=64, grid=(24, 24))

PRESETS = {
    "paper": Preset(),
    "tiny": Preset(mbert=parts.BertShape(2, 64, 2, 128, 119647), minilm_scorer=parts.BertShape(1, 32, 2, 64, 30622),
                   vit=parts.VitShape(1, 32, 2, 64, image_size=84, patch_size=14),
                   evo=dict(visual_dim=32, text_dim=24, hidden=32, layers=1, heads=2, ffn=64, max_visual_tokens=36,
                            max_text_tokens=8, grid=(6, 6)), visual_tokens=36, text_tokens=8),
}


def prompt_texts() -> tuple[list[str], str]:
    """GSM8K questions with worked answers (a few-shot chain-of-thought prompt, as LLMLingua-2 evaluates)
    when ../shared/data/gsm8k (beside the checkout) is present, else compkit's shipped corpus."""
    if os.path.isfile(GSM8K):
        with open(GSM8K, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        return [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in rows[:400]], "gsm8k test (few-shot CoT)"
    from compressors.corpus import corpus_texts

    return corpus_texts(), "compressors/data/prompts.jsonl"


def build_prompt(tokenizer, n_tokens: int) -> tuple[str, str]:
    """Real text cut at a token boundary to exactly n_tokens pieces of `tokenizer`."""
    texts, source = prompt_texts()
    text, i = "", 0
    while len(tokenizer(text, add_special_tokens=False)["input_ids"]) < n_tokens:
        text += ("\n\n" if text else "") + texts[i % len(texts)]
        i += 1
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return text[: enc["offset_mapping"][n_tokens - 1][1]], source


def llm_ids(tokenizer, text: str) -> np.ndarray:
    return np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64)


# ------------------------------------------------------------------------------------------- setup
@dataclass
class DeviceCompressor:
    """A MOOSComp compressor as the device runs it: bucket .pte files plus the tokenizer folder."""
    ptes: list
    tokenizer_dir: str


def make_compressors(preset: Preset, tokenizer_dir: str, quant: str) -> dict:
    """Both compressors exported as export.build exports MOOSComp for android (`quant` int8dyn by default:
    SmoothQuant + dynamic int8; fp32 on request), calibrated on the shipped corpus."""
    from compressors.moos import MOOSCompressor

    base = MOOSCompressor.from_default()
    base.tokenizer.save_pretrained(tokenizer_dir)
    out = {}
    for name, shape in {"minilm": preset.minilm_scorer, "mbert": preset.mbert}.items():
        module = base.torch_module if name == "minilm" and shape is None else parts.random_bert_scorer(shape)
        key = {"shape": asdict(shape) if shape else "embedded MiniLM-L6 default"}
        ptes = parts.scorer_ptes(base, module, name, key, quant)
        out[name] = DeviceCompressor([str(p) for p in ptes], tokenizer_dir)
    return out, base.tokenizer


def compressor_info(preset: Preset) -> dict:
    m = preset.minilm_scorer
    return {"minilm": "embedded default: MiniLM-L6 (6 layers, hidden 384, 22.7M params), GSM8K-trained head"
                      if m is None else f"tiny random BERT {asdict(m)}",
            "mbert": f"random weights, mBERT-base shape (LLMLingua-2 small checkpoint) {asdict(preset.mbert)}"}


# ------------------------------------------------------------------------------------------- the two benchmarks
def time_compression(runner: DeviceRunner, comp: DeviceCompressor, prompt: str, rate: float,
                     repeats: int) -> tuple[float, dict]:
    """Median ms of the whole compression on the device (runner pipeline mode) and the runner's report."""
    report = runner.moos_pipeline(comp.ptes, comp.tokenizer_dir, prompt, rate, iters=repeats, warmup=1)
    return parts.runner_ms(report, runner), report


def stage_split(report: dict) -> dict:
    """Median ms per pipeline stage, and the share of the total that is not the model forward."""
    stages = dict(report["stages_median_ms"])
    return {**stages, "non_forward_share": 1.0 - stages["forward"] / stages["total"]}


def cpu_speedup(full, *parts_) -> float | None:
    """full / sum(parts) in CPU time, or None when any part was not timed in this process."""
    cpus = [parts.cpu_of(x) for x in (full, *parts_)]
    return None if None in cpus else cpus[0] / sum(cpus[1:])


def text_bench(compressors: dict, runner, prefill, tokenizer, prompt: str, ratios, repeats: int, progress) -> dict:
    full_ids = llm_ids(tokenizer, prompt)
    full_ms = prefill(full_ids)
    progress(f"text: full prefill of {len(full_ids)} tokens {full_ms:.0f} ms")
    rows = []
    for name, comp in compressors.items():
        for ratio in ratios:
            comp_ms, report = time_compression(runner, comp, prompt, 1.0 / ratio, repeats)
            ids = llm_ids(tokenizer, report["compressed"])
            pre_ms = prefill(ids)
            rows.append({"compressor": name, "target_ratio": ratio, "tokens_in": len(full_ids), "tokens_out": len(ids),
                         "achieved_ratio": len(full_ids) / max(1, len(ids)), "compress_ms": comp_ms,
                         "prefill_ms": pre_ms, "total_ms": comp_ms + pre_ms, "speedup": full_ms / (comp_ms + pre_ms),
                         "prefill_only_speedup": full_ms / pre_ms, "stages_ms": stage_split(report),
                         "windows": report["windows"],
                         "cpu": {"compress_ms": parts.cpu_of(comp_ms), "prefill_ms": parts.cpu_of(pre_ms),
                                 "speedup": cpu_speedup(full_ms, comp_ms, pre_ms)}})
            progress(f"text {name} {ratio}x: compress {comp_ms:.0f} ms + prefill {pre_ms:.0f} ms "
                     f"-> {rows[-1]['speedup']:.2f}x")
    return {"full_prefill_ms": full_ms, "full_prefill_cpu_ms": parts.cpu_of(full_ms), "tokens": len(full_ids),
            "rows": rows}


def vision_bench(preset: Preset, prefill, runner, ratios, repeats: int, progress) -> dict:
    from compressors.evo import EvoCompConfig, EvoCompressor, keep_count, seeded_evo

    # the phone-sized shape (576 visual tokens of a 896-wide LLM), seeded: the trained default is 64 x 64
    evo = seeded_evo(EvoCompConfig(**PHONE_EVO)) if not preset.evo else EvoCompressor(EvoCompConfig(**preset.evo)).eval()
    cfg = evo.config
    n_vis, n_txt = preset.visual_tokens, preset.text_tokens
    v, e, _ = evo.example_inputs(visual_tokens=n_vis, text_tokens=n_txt)
    mask = torch.ones(1, n_txt, dtype=torch.int32)
    rng = np.random.default_rng(0)
    ids = lambda n: rng.integers(0, 1 << 30, n, dtype=np.int64)  # noqa: E731  (reduced mod the LLM vocab)

    vit = parts.VisionTower(preset.vit)
    patches = (preset.vit.image_size // preset.vit.patch_size) ** 2
    vit_ms, vit_where = parts.time_module(vit, vit.example(), repeats, runner, {"name": "vit", **asdict(preset.vit)},
                                          ["pixels"])
    evo_pte = parts.export_cached(evo, (v, e, mask), ["visual_tokens", "text_embeds", "text_mask"], ["keep_logits"],
                                  {"name": "evo", **asdict(cfg), "n": n_vis, "t": n_txt})
    inputs = {0: v.numpy(), 1: e.numpy(), 2: mask.numpy()}
    full_ms = prefill(ids(n_vis + n_txt))
    progress(f"vision: ViT {vit_ms:.0f} ms, full prefill {full_ms:.0f} ms")
    rows = []
    for ratio in ratios:
        report = runner.evo_pipeline(evo_pte, ratio=ratio, inputs=inputs, iters=repeats, warmup=1)
        kept = keep_count(n_vis, ratio=ratio)
        if report["kept"] != kept:
            raise RuntimeError(f"the runner kept {report['kept']} visual tokens at {ratio}x, Python keeps {kept}")
        pre_ms = prefill(ids(kept + n_txt))
        comp_ms = parts.runner_ms(report, runner)
        rows.append({"target_ratio": ratio, "visual_kept": kept, "tokens_in": n_vis + n_txt, "tokens_out": kept + n_txt,
                     "evo_ms": comp_ms, "evo_stages_ms": dict(report["stages_median_ms"]),
                     "prefill_ms": pre_ms, "prefill_speedup": full_ms / (comp_ms + pre_ms),
                     "ttft_full_ms": vit_ms + full_ms, "ttft_ms": vit_ms + comp_ms + pre_ms,
                     "ttft_speedup": (vit_ms + full_ms) / (vit_ms + comp_ms + pre_ms),
                     "cpu": {"evo_ms": parts.cpu_of(comp_ms), "prefill_ms": parts.cpu_of(pre_ms),
                             "prefill_speedup": cpu_speedup(full_ms, comp_ms, pre_ms),
                             "ttft_speedup": cpu_ttft_speedup(vit_ms, full_ms, comp_ms, pre_ms)}})
        progress(f"vision {ratio}x: EvoComp {comp_ms:.1f} ms + prefill {pre_ms:.0f} ms -> "
                 f"{rows[-1]['prefill_speedup']:.2f}x prefill, {rows[-1]['ttft_speedup']:.2f}x TTFT")
    return {"visual_tokens": n_vis, "text_tokens": n_txt, "vit_ms": vit_ms, "vit_cpu_ms": parts.cpu_of(vit_ms),
            "full_prefill_cpu_ms": parts.cpu_of(full_ms), "vit_where": vit_where,
            "vit_patches": patches, "evo_config": asdict(cfg), "full_prefill_ms": full_ms,
            "rows": rows}


def cpu_ttft_speedup(vit, full, comp, pre) -> float | None:
    cpus = [parts.cpu_of(x) for x in (vit, full, comp, pre)]
    return None if None in cpus else (cpus[0] + cpus[1]) / (cpus[0] + cpus[2] + cpus[3])


# ------------------------------------------------------------------------------------------- CLI
def parse_ratios(text: str) -> list[float]:
    try:
        ratios = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        ratios = []
    if not ratios or any(not math.isfinite(r) or r < 1 for r in ratios):
        raise ValueError(f"--ratios {text!r}: give comma-separated numbers >= 1, e.g. 1,2,3,4,5")
    return ratios


def run(args, progress=print) -> dict:
    preset = PRESETS[args.preset]
    ratios, vision_ratios = parse_ratios(args.ratios), parse_ratios(args.vision_ratios)
    remote = args.device != "local"
    device = device_from_spec(args.device)
    load_before = machine_load()
    tokenizer_dir = tempfile.TemporaryDirectory(prefix="compkit-e2e-tokenizer-")
    try:
        runner = DeviceRunner(device, threads=args.threads)
        if args.eager_llm:
            llm = {"name": args.llm, "quant": "fp32", "runtime": "eager PyTorch fallback", **asdict(LLM_SHAPES[args.llm])}
        elif args.llm_pte:
            pte, llm = args.llm_pte, {"pte": os.path.abspath(args.llm_pte), "shape": "given by --llm-pte"}
        else:
            need = max(args.prompt_tokens, preset.visual_tokens + preset.text_tokens) + 1
            cfg = LLMExport(LLM_SHAPES[args.llm], args.quant, 64 * math.ceil(need / 64), custom_sdpa=not remote)
            pte = ensure_llm(cfg, log=progress)
            llm = {"name": args.llm, "quant": args.quant, **asdict(cfg), "pte": str(pte)}
        if args.eager_llm:
            prefill = parts.EagerPrefill(LLM_SHAPES[args.llm], args.repeats)
        elif remote:
            prefill = parts.DevicePrefill(runner, pte, args.repeats)
        else:
            prefill = parts.LocalPrefill(pte, args.repeats)
        compressors, tokenizer = make_compressors(preset, tokenizer_dir.name, args.compressor_quant)
        prompt, source = build_prompt(tokenizer, args.prompt_tokens)
        text = text_bench(compressors, runner, prefill, tokenizer, prompt, ratios, args.repeats, progress)
        vision = vision_bench(preset, prefill, runner, vision_ratios, args.repeats, progress)
        info = device.info()
    finally:
        tokenizer_dir.cleanup()
        if remote:
            device.cleanup()
    here = f"device {args.device} (native runner, pipeline mode: runtime_cpp"
    return {
        "kind": "e2e_speedup", "device": args.device, "device_info": info, "preset": args.preset, "llm": llm,
        "compressor_quant": args.compressor_quant,
        "repeats": args.repeats, "prompt_source": source, "machine_load": {"before": load_before, "after": machine_load()},
        "compressors": compressor_info(preset),
        "timed_where": {
            "llm_prefill": prefill.where,
            "moos_compression": here + f" tokenize + {args.compressor_quant} XNNPACK forwards at buckets "
                                f"{'/'.join(map(str, parts.SCORER_BUCKETS))} + word selection)",
            "evo_compression": here + " forward + top-k + gather)",
            "vit": vision["vit_where"]},
        "notes": [
            "LLM token counts use the compressor's WordPiece tokenizer as the LLM tokenizer (no LLM tokenizer "
            "ships offline); ids are reduced modulo the LLM vocabulary: prefill time depends only on the count.",
            "The LLM .pte takes token ids only, so the vision prefill feeds the same NUMBER of token ids as there "
            "are visual + text tokens (embedding lookup instead of projector output: same transformer work).",
            "TTFT = ViT + (EvoComp) + prefill; the projector and the first decode step are left out (small).",
            "Random weights everywhere" + ("" if preset.minilm_scorer else
                                            " except the MiniLM encoder of the default compressor") + "."],
        "text": text, "vision": vision,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="local", help="local or adb:SERIAL")
    ap.add_argument("--llm", default="135m", choices=sorted(LLM_SHAPES))
    ap.add_argument("--quant", default="fp32", choices=QUANTS)
    ap.add_argument("--llm-pte", default=None, help="use this decoder .pte (forward(tokens[1,N], input_pos[1]))")
    ap.add_argument("--eager-llm", action="store_true",
                    help="fallback: time the LLM prefill in eager PyTorch on this machine (no .pte; local only)")
    ap.add_argument("--compressor-quant", default="int8dyn", choices=parts.COMPRESSOR_QUANTS,
                    help="the compressors' .pte precision (int8dyn: what export.build ships for android)")
    ap.add_argument("--ratios", default="1,2,3,4,5")
    ap.add_argument("--vision-ratios", default="2,3,4")
    ap.add_argument("--prompt-tokens", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per figure (median quoted)")
    ap.add_argument("--threads", type=int, default=None, help="runner thread pool size on an adb device")
    ap.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    ap.add_argument("--out", default=None, help="output stem (default bench_results/e2e-<device>-<llm>-<quant>)")
    args = ap.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # load reports of the random-weight models are expected noise
    if args.prompt_tokens < 8 or args.repeats < 1:
        print("error: --prompt-tokens must be >= 8 and --repeats >= 1", file=sys.stderr)
        return 2
    if args.eager_llm and args.device != "local":
        print("error: --eager-llm times PyTorch on this machine: use it with --device local", file=sys.stderr)
        return 2
    if args.llm_pte and not os.path.isfile(args.llm_pte):
        print(f"error: --llm-pte {args.llm_pte}: no such file", file=sys.stderr)
        return 2
    try:
        result = run(args)
    except (CompkitError, ValueError, RuntimeError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    stem = args.out or os.path.join("bench_results", f"e2e-{args.device.replace(':', '_')}-{args.llm}-{args.quant}")
    md = markdown(result, os.path.basename(stem) + ".png")
    plot(result, stem + ".png")
    paths = write_report(stem, result, md)
    print(md)
    print(f"wrote {paths[0]}, {paths[1]} and {stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
