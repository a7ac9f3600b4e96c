"""Both compressors on the embedded defaults, in a terminal: what each keeps and drops.

    python -m compressors.demo [--rate 0.33] [--prompt-id meeting-...] [--ratio 3]

MOOSComp: a shipped prompt compressed, with the kept-token map (dropped words in [brackets]).
EvoComp: seeded visual tokens of the default's shape plus a question; the grid map of kept patches at the ratio.
MOOSComp runs the trained default (MiniLM-L6, top layer + head trained on GSM8K train); EvoComp runs the trained
default (easy-VQA), but on random tokens: its map shows the mechanics, not the model's judgement of an image.
"""
from __future__ import annotations

import argparse
import sys

import torch

from compkit.errors import CompkitError
from compressors.corpus import prompts
from compressors.evo import default_evo
from compressors.moos import MOOSCompressor


def kept_token_map(labelled: str, word_sep: str = "\t\t|\t\t") -> str:
    """'word 1<sep>word 0...' -> 'word [word] ...' (dropped words in brackets)."""
    out = []
    for pair in labelled.split(word_sep):
        word, label = pair.rsplit(" ", 1)
        out.append(word if label == "1" else f"[{word}]")
    return " ".join(out)


def grid_map(kept, rows: int, cols: int) -> str:
    on = set(int(i) for i in kept)
    return "\n".join("".join("#" if r * cols + c in on else "." for c in range(cols)) for r in range(rows))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compressors.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=0.33, help="MOOSComp: fraction of tokens to keep")
    ap.add_argument("--prompt-id", default=None, help="a prompt id from compressors/data/prompts.jsonl")
    ap.add_argument("--ratio", type=float, default=3.0, help="EvoComp: visual-token compression ratio")
    args = ap.parse_args(argv)
    rows = prompts()
    chosen = next((r for r in rows if r["id"] == args.prompt_id), None) if args.prompt_id else \
        next(r for r in rows if r["kind"] == "meeting")
    if chosen is None:
        print(f"error: no prompt with id {args.prompt_id!r}; ids: {', '.join(r['id'] for r in rows)}", file=sys.stderr)
        return 2
    if not 0 < args.rate <= 1 or args.ratio < 1:
        print("error: --rate must be in (0, 1] and --ratio >= 1", file=sys.stderr)
        return 2

    try:
        moos = MOOSCompressor.from_default()
    except CompkitError as e:  # a broken shipped checkpoint: one line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    res = moos.compress_prompt(chosen["text"], rate=args.rate, force_tokens=["\n"], return_word_label=True)
    print(f"== MOOSComp ({moos.provenance}; MiniLM-L6 encoder) on prompt {chosen['id']!r}, rate {args.rate}")
    print(f"tokens: {res['origin_tokens']} -> {res['compressed_tokens']} ({res['ratio']})\n")
    print("compressed prompt:\n" + res["compressed_prompt"] + "\n")
    print("kept-token map (dropped words in [brackets]):\n" + kept_token_map(res["fn_labeled_original_prompt"]) + "\n")

    evo = default_evo()
    cfg = evo.config
    g = torch.Generator().manual_seed(0)
    visual = torch.randn(1, cfg.max_visual_tokens, cfg.visual_dim, generator=g)
    question = torch.randn(1, 12, cfg.text_dim, generator=g)
    kept_tokens, kept = evo.compress(visual, question, ratio=args.ratio)
    rows_, cols = cfg.grid
    print(f"== EvoComp ({evo.provenance}) {cfg.max_visual_tokens} visual tokens + a 12-token question, {args.ratio}x")
    print(f"kept {kept.shape[-1]} of {cfg.max_visual_tokens} visual tokens -> {tuple(kept_tokens.shape)}; "
          f"kept-patch map (# kept):")
    print(grid_map(kept[0], rows_, cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
