"""compkit's MOOSComp against llmlingua's LLMLingua-2 on the same checkpoint and the same long prompt.

    python -m bench_device.moos_vs_llmlingua [--checkpoint DIR] [--tokens 10000] [--rate 0.33] [--repeats 3]
                                             [--build BUILD_DIR --artifact xnnpack:int8dyn]
                                             [--out bench_results/moos_vs_llmlingua]

Times the model forward and the rest (tokenize, chunk, merge, threshold) separately for both, checks
that both return the same compressed prompt, and writes JSON and markdown. Without --checkpoint it uses
the embedded MiniLM-L6 default (its GSM8K-trained head; timing does not depend on the head). llmlingua's tiktoken
table cannot be downloaded here: both count target-LLM tokens with the compressor's own tokenizer.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time

import torch

from compkit.errors import CompkitError
from compkit.stats import median
from compressors.moos import DEMO_PROVENANCE, MOOSCompressor, default_token_classifier
from bench_device.report import write_report


class ForwardClock:
    """Wraps a callable and sums the wall time spent inside it."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


def checkpoint_provenance_differs(build_provenance: str, ours: str) -> bool:
    if build_provenance == DEMO_PROVENANCE:
        return not ours.startswith(DEMO_PROVENANCE)
    return os.path.abspath(build_provenance.removeprefix("checkpoint ")) != ours


def long_prompt(tokenizer, n_tokens: int) -> str:
    from compressors.corpus import corpus_texts

    texts, out = corpus_texts(), []
    while len(tokenizer.tokenize("\n".join(out))) < n_tokens:
        out.append(texts[len(out) % len(texts)])
    return "\n".join(out)


@contextlib.contextmanager
def offline_tiktoken(count):
    import tiktoken

    class Encoding:
        def encode(self, text):
            return [0] * count(text)

    saved = tiktoken.encoding_for_model
    tiktoken.encoding_for_model = lambda name: Encoding()
    try:
        yield
    finally:
        tiktoken.encoding_for_model = saved


def artifact_compressor(build_dir: str, spec: str):
    """compkit's compress_prompt through a build's bucket artifacts of one backend:quant (runtime_py)."""
    from runtime_py.pipeline import load_build

    backend, _, quant = spec.partition(":")
    build = load_build(build_dir)
    arts = [a for a in build.artifacts("moos") if a["backend"] == backend and a["quant"] == quant]
    if not arts:
        raise SystemExit(f"error: no moos {backend}:{quant} artifact in {build_dir}; build one with export.build")
    return build.moos_compressor(arts), build.manifest["models"]["moos"]["provenance"]


def run(checkpoint: str | None, n_tokens: int, rate: float, repeats: int, build=None, artifact=None) -> dict:
    try:
        from llmlingua import PromptCompressor
    except ImportError:
        raise SystemExit("error: llmlingua is not installed; `pip install -c constraints.txt llmlingua==0.2.2`")
    with tempfile.TemporaryDirectory() as tmp:
        if checkpoint is None:  # llmlingua picks its BERT branch by this substring of the directory name
            checkpoint = os.path.join(tmp, "minilm-bert-base-multilingual-cased")
            model, tokenizer = default_token_classifier()
            model.save_pretrained(checkpoint)
            tokenizer.save_pretrained(checkpoint)
            provenance = DEMO_PROVENANCE + " (MiniLM-L6)"
        else:
            provenance = os.path.abspath(checkpoint)
        from transformers import AutoTokenizer

        counter_tok = AutoTokenizer.from_pretrained(checkpoint)
        count = lambda text: len(counter_tok(text, add_special_tokens=False)["input_ids"])
        with offline_tiktoken(count):
            ref = PromptCompressor(model_name=checkpoint, device_map="cpu", use_llmlingua2=True)
        ours = MOOSCompressor.from_pretrained(checkpoint, token_counter=counter_tok)  # same counts, batched
        prompt = long_prompt(ours.tokenizer, n_tokens)
        ref_forward = ForwardClock(ref.model.forward)
        ref.model.forward = ref_forward
        ours_forward = ForwardClock(ours.scorer)
        ours.scorer = ours_forward
        contenders = [("llmlingua", ref, ref_forward), ("compkit", ours, ours_forward)]
        if build:
            art, art_provenance = artifact_compressor(build, artifact)
            if checkpoint_provenance_differs(art_provenance, provenance):
                raise SystemExit(f"error: the build holds {art_provenance}, the benchmark runs {provenance}: "
                                 "pass the build's checkpoint with --checkpoint")
            art_forward = ForwardClock(art.scorer)
            art.scorer = art_forward
            contenders.append((f"compkit {artifact}", art, art_forward))
        rows = {name: [] for name, _, _ in contenders}
        outputs = {}
        for _ in range(repeats):  # interleaved, so all see the same machine state
            for name, comp, clock in contenders:
                clock.seconds = 0.0
                t0 = time.perf_counter()
                with torch.inference_mode():
                    outputs[name] = comp.compress_prompt(prompt, rate=rate)
                total = time.perf_counter() - t0
                rows[name].append({"total_s": total, "forward_s": clock.seconds, "post_s": total - clock.seconds})
    same = outputs["llmlingua"]["compressed_prompt"] == outputs["compkit"]["compressed_prompt"]
    med = {n: {k: median(r[k] for r in rs) for k in rs[0]} for n, rs in rows.items()}
    speedups = {n: med["llmlingua"]["total_s"] / m["total_s"] for n, m in med.items() if n != "llmlingua"}
    return {
        "benchmark": "moos_vs_llmlingua",
        "command": "python -m bench_device.moos_vs_llmlingua " + " ".join(sys.argv[1:]),
        "checkpoint": provenance,
        "prompt_tokens": len(ours.tokenizer.tokenize(prompt)),
        "rate": rate,
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
        "identical_output": same,
        "median": med,
        "runs": rows,
        "speedup_total": med["llmlingua"]["total_s"] / med["compkit"]["total_s"],
        "speedup_vs_llmlingua": speedups,
        "compkit_post_share": med["compkit"]["post_s"] / med["compkit"]["total_s"],
    }


def markdown(r: dict) -> str:
    lines = [f"compkit vs llmlingua 0.2.2, {r['prompt_tokens']} tokens, rate {r['rate']}, {r['checkpoint']}, "
             f"median of {r['repeats']}, {r['torch_threads']} threads; identical output: {r['identical_output']}", "",
             "| | total (s) | forward (s) | post-processing (s) | post share |", "|---|---|---|---|---|"]
    for name, m in r["median"].items():
        lines.append(f"| {name} | {m['total_s']:.3f} | {m['forward_s']:.3f} | {m['post_s']:.3f} | {m['post_s'] / m['total_s']:.1%} |")
    for name, x in r["speedup_vs_llmlingua"].items():
        lines.append(f"\n{name} end-to-end speedup over llmlingua: {x:.2f}x")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench_device.moos_vs_llmlingua", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", help="a local token-classification checkpoint (default: embedded MiniLM-L6)")
    ap.add_argument("--tokens", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=0.33)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--build", help="also time compress_prompt through this export.build folder's artifacts")
    ap.add_argument("--artifact", default="xnnpack:int8dyn", help="backend:quant of the artifacts to use with --build")
    ap.add_argument("--out", default="bench_results/moos_vs_llmlingua")
    args = ap.parse_args(argv)
    if args.tokens < 16 or args.repeats < 1 or not 0 < args.rate <= 1:
        print("error: need --tokens >= 16, --repeats >= 1 and --rate in (0, 1]", file=sys.stderr)
        return 2
    if args.checkpoint and not os.path.isdir(args.checkpoint):
        print(f"error: checkpoint directory not found: {args.checkpoint}", file=sys.stderr)
        return 2
    if args.build and not os.path.isfile(os.path.join(args.build, "manifest.json")):
        print(f"error: no manifest.json in {args.build}; pass a folder written by python -m export.build", file=sys.stderr)
        return 2
    try:
        result = run(args.checkpoint, args.tokens, args.rate, args.repeats, args.build, args.artifact)
    except CompkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    text = markdown(result)
    write_report(args.out, result, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
