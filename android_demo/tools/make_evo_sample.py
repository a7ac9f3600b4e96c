"""Write the EvoComp demo sample both demo apps bundle: a real easy-VQA TEST image, the visual tokens the
easy-VQA MLLM's vision tower + projector make of it, and the LLM's input embeddings of its question.

These are exactly what the shipped EvoComp default (compressors/data/evocomp_default) was trained to read,
so the app shows which patches a trained compressor keeps for a real question about a real image.

    python android_demo/tools/make_evo_sample.py [--mllm DIR] [--index 0]

--mllm defaults to the cached easy-VQA MLLM the shipped default learned from (python -m compressors.easyvqa_mllm
--recipe patches_qf_shape_aug trains it once); --index
picks the test question. Writes android_demo/app/src/main/assets/evo_sample/{evo_sample.png, evo_sample.bin,
evo_sample.json}; the iOS app bundles the same folder. The sizes match the default EvoComp config (the
apps check manifest.json models.evo.config and say so when they do not).
.bin layout (little-endian): float32 visual_tokens[N*Dv], float32 text_embeds[T*Dt], int32 text_mask[T].
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT_DIR = os.path.join(HERE, "..", "app", "src", "main", "assets", "evo_sample")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mllm", help="easy-VQA LLaVA checkpoint (default: the cached DEFAULT_RECIPE one (patches_qf_shape_aug), trained if missing)")
    ap.add_argument("--index", type=int, default=0, help="easy-VQA test question")
    ap.add_argument("--out", default=OUT_DIR)
    # the apps' mismatch message names these: the sizes come from the MLLM, so they can only be checked
    ap.add_argument("--visual-dim", type=int)
    ap.add_argument("--text-dim", type=int)
    ap.add_argument("--text-tokens", type=int)
    ap.add_argument("--grid", type=int, nargs=2, metavar=("ROWS", "COLS"))
    a = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    import torch

    from compressors import easyvqa_data, easyvqa_mllm
    from compressors.evo import default_evo
    from compressors.evo_label import LlavaAdapter
    from compressors.evo_label_cli import load_llava, model_fingerprint, pixel_values

    # the MLLM the shipped default learned from: easyvqa_mllm.DEFAULT_RECIPE (docs/EVOCOMP.md, "The trained default")
    mllm = a.mllm or str(easyvqa_mllm.trained_mllm_dir(easyvqa_mllm.MLLMConfig(**easyvqa_mllm.RECIPES[easyvqa_mllm.DEFAULT_RECIPE])))
    model, tok, processor = load_llava(mllm)
    adapter = LlavaAdapter(model)
    cfg = default_evo().config
    test = easyvqa_data.easyvqa_split("test")
    if not 0 <= a.index < len(test):
        ap.error(f"--index must be in [0, {len(test)})")
    path, question, answer = test[a.index]
    with torch.no_grad():
        visual = adapter.visual_tokens(pixel_values(processor, path)).numpy()
        ids = tok(question, add_special_tokens=False)["input_ids"][:cfg.max_text_tokens]
        words = model.get_input_embeddings()(torch.tensor(ids)).numpy()
    if visual.shape != (cfg.max_visual_tokens, cfg.visual_dim) or words.shape[1] != cfg.text_dim:
        sys.exit(f"error: the MLLM gives {visual.shape[0]} x {visual.shape[1]} visual tokens, the default EvoComp takes "
                 f"{cfg.max_visual_tokens} x {cfg.visual_dim}: pass the MLLM it was trained against")
    asked = {"--visual-dim": (a.visual_dim, cfg.visual_dim), "--text-dim": (a.text_dim, cfg.text_dim),
             "--text-tokens": (a.text_tokens, cfg.max_text_tokens), "--grid": (a.grid and tuple(a.grid), tuple(cfg.grid))}
    bad = [f"{k} {v[0]} (this sample has {v[1]})" for k, v in asked.items() if v[0] is not None and v[0] != v[1]]
    if bad:
        sys.exit(f"error: the sample is the easy-VQA MLLM's real tokens, sized for the trained default EvoComp: {', '.join(bad)}; "
                 "export the default EvoComp (export.build without --evo-checkpoint) for the demo")
    text = np.zeros((cfg.max_text_tokens, cfg.text_dim), np.float32)
    text[:len(words)] = words
    mask = np.zeros(cfg.max_text_tokens, np.int32)
    mask[:len(words)] = 1
    os.makedirs(a.out, exist_ok=True)
    shutil.copyfile(path, os.path.join(a.out, "evo_sample.png.tmp"))
    os.replace(os.path.join(a.out, "evo_sample.png.tmp"), os.path.join(a.out, "evo_sample.png"))
    tmp = os.path.join(a.out, "evo_sample.bin.tmp")
    with open(tmp, "wb") as f:
        f.write(visual.astype("<f4").tobytes() + text.astype("<f4").tobytes() + mask.astype("<i4").tobytes())
    os.replace(tmp, os.path.join(a.out, "evo_sample.bin"))
    rows, cols = cfg.grid
    meta = {"image": "evo_sample.png", "question": question, "answer": answer, "grid": [rows, cols],
            "patch_px": model.config.vision_config.patch_size, "visual_tokens": rows * cols, "visual_dim": cfg.visual_dim,
            "text_tokens": cfg.max_text_tokens, "text_dim": cfg.text_dim, "real_text_tokens": int(mask.sum()),
            "provenance": f"easy-VQA test question {a.index} (image {os.path.basename(path)}): visual tokens from the "
                          f"easy-VQA LLaVA MLLM {model_fingerprint(mllm)}'s vision tower + projector, text = its LLM input embeddings"}
    tmp = os.path.join(a.out, "evo_sample.json.tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(tmp, os.path.join(a.out, "evo_sample.json"))
    print(f"wrote {a.out}: {rows * cols} visual tokens x {cfg.visual_dim}, {int(mask.sum())} question tokens ({question!r} -> {answer})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
