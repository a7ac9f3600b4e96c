"""compkit's MOOSComp against llmlingua's LLMLingua-2 on the same checkpoint and the same long prompt.

    python -m bench_device.moos_vs_llmlingua [--checkpoint DIR] [--tokens 10000] [--rate 0.33] [--repeats 3]
                                             [--out bench_results/moos_vs_llmlingua]

Times the model forward and the rest (tokenize, chunk, merge, threshold) separately for both, checks
that both return the same compressed prompt, and writes JSON and markdown. Without --checkpoint it uses
the embedded MiniLM-L6 default (untrained head; timing does not depend on the head). llmlingua's tiktoken
table cannot be downloaded here: both count target-LLM tokens with the compressor's own tokenizer.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

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


def run(checkpoint: str | None, n_tokens: int, rate: float, repeats: int) -> dict:
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
        ours = MOOSCompressor.from_pretrained(checkpoint, token_counter=count)
        prompt = long_prompt(ours.tokenizer, n_tokens)
        ref_forward = ForwardClock(ref.model.forward)
        ref.model.forward = ref_forward
        ours_forward = ForwardClock(ours.scorer)
        ours.scorer = ours_forward
        rows = {"llmlingua": [], "compkit": []}
        outputs = {}
        for _ in range(repeats):  # interleaved, so both see the same machine state
            for name, comp, clock in (("llmlingua", ref, ref_forward), ("compkit", ours, ours_forward)):
                clock.seconds = 0.0
                t0 = time.perf_counter()
                with torch.inference_mode():
                    outputs[name] = comp.compress_prompt(prompt, rate=rate)
                total = time.perf_counter() - t0
                rows[name].append({"total_s": total, "forward_s": clock.seconds, "post_s": total - clock.seconds})
    same = outputs["llmlingua"]["compressed_prompt"] == outputs["compkit"]["compressed_prompt"]
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in rows.items()}
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
        "compkit_post_share": med["compkit"]["post_s"] / med["compkit"]["total_s"],
    }


def markdown(r: dict) -> str:
    lines = [f"compkit vs llmlingua 0.2.2, {r['prompt_tokens']} tokens, rate {r['rate']}, {r['checkpoint']}, "
             f"median of {r['repeats']}, {r['torch_threads']} threads; identical output: {r['identical_output']}", "",
             "| | total (s) | forward (s) | post-processing (s) | post share |", "|---|---|---|---|---|"]
    for name, m in r["median"].items():
        lines.append(f"| {name} | {m['total_s']:.3f} | {m['forward_s']:.3f} | {m['post_s']:.3f} | {m['post_s'] / m['total_s']:.1%} |")
    lines.append(f"\ncompkit end-to-end speedup over llmlingua: {r['speedup_total']:.2f}x")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench_device.moos_vs_llmlingua", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", help="a local token-classification checkpoint (default: embedded MiniLM-L6)")
    ap.add_argument("--tokens", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=0.33)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench_results/moos_vs_llmlingua")
    args = ap.parse_args(argv)
    if args.tokens < 16 or args.repeats < 1 or not 0 < args.rate <= 1:
        print("error: need --tokens >= 16, --repeats >= 1 and --rate in (0, 1]", file=sys.stderr)
        return 2
    if args.checkpoint and not os.path.isdir(args.checkpoint):
        print(f"error: checkpoint directory not found: {args.checkpoint}", file=sys.stderr)
        return 2
    result = run(args.checkpoint, args.tokens, args.rate, args.repeats)
    text = markdown(result)
    write_report(args.out, result, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
