"""Write the EvoComp demo sample both demo apps bundle: an image, its visual tokens and a question.

compkit has no vision encoder (an MLLM's vision tower and projector are not part of it), so the visual tokens
are made the way a ViT's first layer makes them: a fixed (seeded) linear projection of each 14x14 RGB patch,
plus a position code. The question's token embeddings are seeded word vectors; the word naming the object
asked about points in the direction of that object's patches. Enough to drive the compressor and show which
patches it keeps; not what a real MLLM would hand it.

    python android_demo/tools/make_evo_sample.py [--visual-dim 896 --text-dim 896 --grid 24 24 --text-tokens 64]

Writes android_demo/app/src/main/assets/evo_sample/{evo_sample.png, evo_sample.bin, evo_sample.json};
the iOS app bundles the same folder. The sizes must match the EvoComp artifact's config (manifest.json
models.evo.config); the apps check and say so when they do not.
.bin layout (little-endian): float32 visual_tokens[N*Dv], float32 text_embeds[T*Dt], int32 text_mask[T].
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "..", "app", "src", "main", "assets", "evo_sample")
PATCH = 14
QUESTION = "What colour is the ball next to the tree?"
ASKED_WORD = "ball"


def draw_scene(path: str, rows: int, cols: int) -> np.ndarray:
    """A small outdoor scene (sky, sun, hill, tree, ball), saved as PNG; returns its RGB pixels [H, W, 3] in [0, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Ellipse, Rectangle

    h, w = rows * PATCH, cols * PATCH
    fig = plt.figure(figsize=(w / 100, h / 100), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, w), ax.set_ylim(h, 0), ax.axis("off")
    sky = np.linspace([0.45, 0.70, 0.95], [0.85, 0.93, 1.0], h)[:, None, :].repeat(w, axis=1)
    ax.imshow(sky, extent=(0, w, h, 0))
    ax.add_patch(Circle((0.82 * w, 0.16 * h), 0.07 * w, color="#ffd84d"))
    ax.add_patch(Ellipse((0.5 * w, 1.05 * h), 1.6 * w, 0.75 * h, color="#5fa845"))
    ax.add_patch(Rectangle((0.22 * w, 0.42 * h), 0.05 * w, 0.25 * h, color="#7a4b25"))
    ax.add_patch(Circle((0.245 * w, 0.36 * h), 0.13 * w, color="#2e7d32"))
    ax.add_patch(Circle((0.62 * w, 0.72 * h), 0.08 * w, color="#d32f2f"))
    ax.add_patch(Circle((0.60 * w, 0.70 * h), 0.025 * w, color="#ff8a80"))
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return plt.imread(path)[..., :3].astype(np.float32)


def word_vector(word: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(word.lower().encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def make_tokens(pixels: np.ndarray, rows: int, cols: int, visual_dim: int, text_tokens: int, text_dim: int):
    rng = np.random.default_rng(0)
    patches = pixels.reshape(rows, PATCH, cols, PATCH, 3).transpose(0, 2, 1, 3, 4).reshape(rows * cols, -1)
    patches = patches - patches.mean()
    proj = rng.standard_normal((patches.shape[1], visual_dim)).astype(np.float32) / np.sqrt(patches.shape[1])
    visual = patches @ proj * 4.0
    yy, xx = np.divmod(np.arange(rows * cols), cols)
    freqs = np.arange(visual_dim // 4) / max(visual_dim // 4, 1)
    pos = np.concatenate([np.sin(yy[:, None] * 10 ** -freqs), np.cos(yy[:, None] * 10 ** -freqs),
                          np.sin(xx[:, None] * 10 ** -freqs), np.cos(xx[:, None] * 10 ** -freqs)], axis=1)
    visual[:, : pos.shape[1]] += 0.2 * pos
    # the ball: patches whose mean colour is the ball's red
    mean_rgb = patches.reshape(rows * cols, PATCH * PATCH, 3).mean(axis=1) + pixels.mean()
    ball = (mean_rgb[:, 0] > 0.6) & (mean_rgb[:, 1] < 0.4)
    words = QUESTION.rstrip("?").split() + ["?"]
    if len(words) > text_tokens:
        sys.exit(f"error: the question has {len(words)} tokens but the model takes {text_tokens}; pass a larger --text-tokens")
    text = np.zeros((text_tokens, text_dim), np.float32)
    for i, word in enumerate(words):
        text[i] = word_vector(word, text_dim)
        if word == ASKED_WORD and ball.any():
            text[i] = 0.5 * text[i] + np.resize(visual[ball].mean(axis=0), text_dim)
    mask = np.zeros(text_tokens, np.int32)
    mask[: len(words)] = 1
    return visual.astype(np.float32), text, mask, int(ball.sum())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--visual-dim", type=int, default=896)
    ap.add_argument("--text-dim", type=int, default=896)
    ap.add_argument("--text-tokens", type=int, default=64)
    ap.add_argument("--grid", type=int, nargs=2, default=(24, 24), metavar=("ROWS", "COLS"))
    ap.add_argument("--out", default=OUT_DIR)
    a = ap.parse_args(argv)
    if min(a.visual_dim, a.text_dim, a.text_tokens, *a.grid) < 1:
        ap.error("every size must be a positive integer")
    os.makedirs(a.out, exist_ok=True)
    rows, cols = a.grid
    pixels = draw_scene(os.path.join(a.out, "evo_sample.png"), rows, cols)
    visual, text, mask, n_ball = make_tokens(pixels, rows, cols, a.visual_dim, a.text_tokens, a.text_dim)
    tmp = os.path.join(a.out, "evo_sample.bin.tmp")
    with open(tmp, "wb") as f:
        f.write(visual.astype("<f4").tobytes() + text.astype("<f4").tobytes() + mask.astype("<i4").tobytes())
    os.replace(tmp, os.path.join(a.out, "evo_sample.bin"))
    meta = {"image": "evo_sample.png", "question": QUESTION, "grid": [rows, cols], "patch_px": PATCH,
            "visual_tokens": rows * cols, "visual_dim": a.visual_dim, "text_tokens": a.text_tokens,
            "text_dim": a.text_dim, "real_text_tokens": int(mask.sum()), "ball_patches": n_ball,
            "provenance": "synthetic: seeded linear patch embedding of the PNG (no vision encoder in compkit)"}
    tmp = os.path.join(a.out, "evo_sample.json.tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(tmp, os.path.join(a.out, "evo_sample.json"))
    print(f"wrote {a.out}: {rows * cols} visual tokens x {a.visual_dim}, {int(mask.sum())} question tokens, {n_ball} ball patches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
