"""easy-VQA as compkit's MLLM and EvoComp code read it: the splits, decoded images, training augmentation and
the kind of each question (docs/EVOCOMP.md)."""
import numpy as np
import torch
import torch.nn.functional as F

DATA_SETS = ("easy-vqa", "easy-vqa-mosaic")


def easyvqa_split(split):
    """[(image_path, question, answer)] of easy-VQA's 'train' or 'test' split."""
    import easy_vqa
    if split == "train":
        q, a, ids = easy_vqa.get_train_questions()
        paths = easy_vqa.get_train_image_paths()
    elif split == "test":
        q, a, ids = easy_vqa.get_test_questions()
        paths = easy_vqa.get_test_image_paths()
    else:
        raise ValueError(f"easy-VQA split must be 'train' or 'test', got {split!r}")
    return [(paths[i], qq, aa) for qq, aa, i in zip(q, a, ids)]


def data_split(data, split):
    """[(image_path, question, answer)] of a data set this module trains on ('easy-vqa' or 'easy-vqa-mosaic')."""
    if data == "easy-vqa":
        return easyvqa_split(split)
    if data == "easy-vqa-mosaic":
        from compressors.easyvqa_mosaic import mosaic_split
        return mosaic_split(split)
    raise ValueError(f"unknown data set {data!r}: use one of {', '.join(DATA_SETS)}")


def load_pixels(path, image_size=64):
    """[3, S, S] float in [-1, 1] (CLIP-style mean = std = 0.5); a clear error for a bad image."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (image_size, image_size):
                im = im.resize((image_size, image_size), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.float32)
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"unreadable image {path}: {str(e).splitlines()[0]}") from None
    return torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1.0


def question_words(question):
    return question.lower().replace("?", " ?").split()


class PixelCache:
    """Decoded images by path (easy-VQA has 5,000 images of 48 KB each as floats)."""

    def __init__(self, image_size):
        self.size, self.store = image_size, {}

    def __call__(self, paths):
        for p in paths:
            if p not in self.store:
                self.store[p] = load_pixels(p, self.size)
        return torch.stack([self.store[p] for p in paths])


class AugmentedPixels:
    """PixelCache's batches, each image flipped left-right at random and shifted by up to `shift` px (seeded)."""

    def __init__(self, pixels, shift, seed):
        self.pixels, self.shift, self.rng = pixels, shift, np.random.default_rng(seed)

    def __call__(self, paths):
        x, s = self.pixels(paths), self.shift
        size = x.shape[-1]
        padded = F.pad(x, (s, s, s, s), mode="replicate")
        out = torch.empty_like(x)
        for i in range(len(x)):
            dy, dx = self.rng.integers(0, 2 * s + 1, size=2)
            out[i] = padded[i, :, dy:dy + size, dx:dx + size]
            if self.rng.random() < 0.5:
                out[i] = out[i].flip(-1)
        return out


SHAPES = ("circle", "rectangle", "triangle")


def question_kind(question, answer):
    """'shape' or 'color' (the answer names it), 'yes/no shape' or 'yes/no color' (what the question asks about)."""
    if answer in ("yes", "no"):
        return "yes/no shape" if any(s in question_words(question) for s in SHAPES) else "yes/no color"
    return "shape" if answer in SHAPES else "color"


def share_by_kind(items, hits):
    """{question_kind: share of hits} over (image, question, answer) items and their per-question correctness."""
    groups = {}
    for (_, question, answer), hit in zip(items, hits):
        groups.setdefault(question_kind(question, answer), []).append(float(hit))
    return {k: round(sum(v) / len(v), 4) for k, v in sorted(groups.items())}
