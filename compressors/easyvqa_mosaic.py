"""easy-VQA 2 x 2 mosaics: four easy-VQA images on one canvas, each question about one named tile.

An easy-VQA image is one shape on a plain background, and any visual token of it carries the whole image
(docs/EVOCOMP.md): which tokens reach the LLM barely matters, so no selector can beat random there. On a
mosaic the answer sits in one quarter of the image and the question says which ("top left what color is the
shape ?"), so keeping the right tokens, chosen from the question, is the whole task, as in a real scene.

Built from easy-VQA's own images and questions only, per split (train mosaics from TRAIN, test from TEST).
Each image is shrunk to a 32 px tile, so a mosaic is 64 px, the easy-VQA MLLM's own input size. `shuffles`
seeded permutations of the split's images cut into groups of four give `shuffles x N / 4`
mosaics, each image in `shuffles` of them at different tiles. Question q of image i uses shuffle q mod
`shuffles`, so every easy-VQA question appears exactly once, prefixed with its image's tile. Written once
(PNG files + questions.jsonl, the JSONL last and atomically) under the compkit cache.
"""
import json
from pathlib import Path

import numpy as np

from compkit.errors import CompkitError
from compkit.files import atomic_path

POSITIONS = ("top left", "top right", "bottom left", "bottom right")  # tile t sits at row t // 2, column t % 2
POSITION_WORDS = ("top", "bottom", "left", "right")
TILE = 32  # 2 x 32 = 64 px: the canvas the easy-VQA MLLM reads, so the mosaic model starts from its weights


def mosaic_root(split, shuffles=4, seed=0, tile=TILE):
    from compressors.easyvqa_mllm import cache_root
    return cache_root() / f"easyvqa-mosaic-t{tile}-s{shuffles}-seed{seed}" / split


def layout(n_images, shuffles, seed):
    """[shuffles, n_images] -> (mosaic index within the shuffle, tile) of each image; mosaics [shuffles, M, 4]."""
    rng = np.random.default_rng(seed)
    n = -(-n_images // 4) * 4  # a split whose size is no multiple of 4 repeats its first images to fill the last mosaic
    mosaics = np.stack([rng.permutation(np.arange(n) % n_images).reshape(-1, 4) for _ in range(shuffles)])
    where = np.zeros((shuffles, n_images, 2), dtype=np.int64)
    for s in range(shuffles):
        for j, four in enumerate(mosaics[s]):
            for t, i in enumerate(four):
                where[s, i] = (j, t)
    return mosaics, where


def tile_image(path, tile=TILE):
    """One easy-VQA image as a tile: RGB, resized (PIL bilinear) to tile x tile."""
    from PIL import Image
    with Image.open(path) as im:
        im = im.convert("RGB")
        return im if im.size == (tile, tile) else im.resize((tile, tile), Image.BILINEAR)


def compose(paths, tile=TILE):
    """The 2 x 2 mosaic (PIL RGB, 2 tile square) of four image files, tile t at row t // 2, column t % 2."""
    from PIL import Image
    canvas = Image.new("RGB", (2 * tile, 2 * tile))
    for t, p in enumerate(paths):
        canvas.paste(tile_image(p, tile), ((t % 2) * tile, (t // 2) * tile))
    return canvas


def build(questions, image_paths, root, shuffles=4, seed=0, tile=TILE):
    """Write the mosaics and questions.jsonl of one split ([(question, answer, image index)], image files) into
    root; returns [(png, question, answer)]."""
    root = Path(root)
    mosaics, where = layout(len(image_paths), shuffles, seed)
    root.mkdir(parents=True, exist_ok=True)
    for s in range(shuffles):
        for j, four in enumerate(mosaics[s]):
            png = root / f"{s}_{j}.png"
            if not png.is_file():
                with atomic_path(str(png)) as tmp:
                    compose([image_paths[i] for i in four], tile).save(tmp, format="PNG")
    rows = []
    for q, (question, answer, image) in enumerate(questions):
        s = q % shuffles
        j, t = where[s, image]
        rows.append({"image": f"{s}_{j}.png", "question": f"{POSITIONS[t]} {question}", "answer": answer,
                     "tile": int(t), "source_image": int(image)})
    with atomic_path(str(root / "questions.jsonl")) as tmp:
        Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return [(str(root / r["image"]), r["question"], r["answer"]) for r in rows]


def mosaic_split(split, shuffles=4, seed=0, tile=TILE):
    """[(mosaic png, question, answer)] of easy-VQA's 'train' or 'test' split as mosaics (built on first use)."""
    import easy_vqa
    if split not in ("train", "test"):
        raise ValueError(f"easy-VQA mosaic split must be 'train' or 'test', got {split!r}")
    root = mosaic_root(split, shuffles, seed, tile)
    done = root / "questions.jsonl"
    if not done.is_file():
        q, a, ids = easy_vqa.get_train_questions() if split == "train" else easy_vqa.get_test_questions()
        paths = easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()
        return build(list(zip(q, a, ids)), paths, root, shuffles, seed, tile)
    return read_built(root)


class MosaicCacheError(CompkitError):
    pass


def read_built(root):
    """The rows of a built split; a questions.jsonl someone edited or truncated is one clear error, not a traceback."""
    done, fix = root / "questions.jsonl", f"delete {root} and it is rebuilt on the next use"
    out = []
    for n, line in enumerate(done.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            image, question, answer = root / r["image"], r["question"], r["answer"]
        except (ValueError, KeyError, TypeError) as e:
            raise MosaicCacheError(f"{done} line {n} is not a mosaic question ({type(e).__name__}): {fix}") from None
        if not image.is_file():
            raise MosaicCacheError(f"{done} line {n} names {image.name}, which is missing: {fix}")
        out.append((str(image), question, answer))
    if not out:
        raise MosaicCacheError(f"{done} holds no questions: {fix}")
    return out
