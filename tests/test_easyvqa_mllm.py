"""compressors/easyvqa_mllm.py: the small LLaVA trained on easy-VQA (its recipes, cache keys, image-use check)."""
from __future__ import annotations

import json

import pytest
import torch

from compressors import easyvqa_data as ed
from compressors import easyvqa_mllm as em


def test_earlier_recipes_keep_their_cache_keys_and_the_default_has_its_own():
    # docs/EVOCOMP.md names these cache folders; a new field must not silently orphan a trained checkpoint
    keys = [em.MLLMConfig(**em.RECIPES[r]).key() for r in ("v1", "v2", "v3", "v4")]
    assert keys[:3] == ["c6a2acacec49", "d4ad18579cdb", "177891cd6ef7"]
    assert len(set(keys)) == 4 and em.MLLMConfig().key() == keys[3]
    assert em.MLLMConfig(seed=1).key() != keys[3]


def test_uses_image_needs_a_margin_over_the_question_alone():
    assert em.uses_image({"test_accuracy": 0.79, "test_accuracy_no_image": 0.67})
    assert not em.uses_image({"test_accuracy": 0.69, "test_accuracy_no_image": 0.67})


def test_v3_trains_on_whole_images_first_then_on_subsets(tmp_path, monkeypatch):
    """A tiny model on 64 real easy-VQA questions: epoch 1 never drops visual tokens, epoch 2 always does
    (p_drop = 1); the checkpoint is a real LlavaForConditionalGeneration and records question-only accuracy."""
    cfg = em.MLLMConfig(vision_hidden=16, vision_heads=2, text_hidden=16, text_heads=2, text_ffn=32, english_words=20,
                        epochs=2, batch=16, p_drop=1.0, keep_counts=(4,), full_image_epochs=1)
    events = []
    subset, accuracy = em.subset_answer_logits, em.accuracy

    def spy_subset(model, *a, **k):
        events.append("train-subset" if model.training else "eval-subset")
        return subset(model, *a, **k)

    def spy_accuracy(*a, **k):
        events.append("accuracy")
        return accuracy(*a, **k)

    monkeypatch.setattr(em, "subset_answer_logits", spy_subset)
    monkeypatch.setattr(em, "accuracy", spy_accuracy)
    items = (ed.easyvqa_split("train")[:64], ed.easyvqa_split("test")[:32])
    out = em.train(cfg, tmp_path / "mllm", log=lambda *_: None, items=items)

    first_eval = events.index("accuracy")
    assert "train-subset" not in events[:first_eval]  # epoch 1: whole images only
    second_epoch = events[first_eval:]
    second_epoch = second_epoch[second_epoch.index("train-subset"):]
    assert second_epoch[:4] == ["train-subset"] * 4  # epoch 2: every one of its 4 batches dropped tokens

    metrics = json.loads((out / "easyvqa_metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy_no_image"] <= 1.0 and metrics["config"]["full_image_epochs"] == 1
    assert set(metrics["test_accuracy_by_kind"]) <= {"color", "shape", "yes/no color", "yes/no shape"}
    model, tok = em.load_mllm(out)
    assert type(model).__name__ == "LlavaForConditionalGeneration" and tok.convert_tokens_to_ids("<image>") == em.IMAGE_ID


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="'train' or 'test'"):
        ed.easyvqa_split("validation")


def test_spread_term_spreads_the_visual_tokens(tmp_path):
    """The same tiny training with and without the spread term: with it, an image's projected visual tokens are
    less alike (lower mean pairwise cosine); the term's weight is part of the cache key only when set."""
    import torch

    base = dict(vision_hidden=16, vision_heads=2, text_hidden=16, text_heads=2, text_ffn=32, english_words=20,
                epochs=1, batch=16, p_drop=0.0, keep_counts=(), full_image_epochs=0)
    items = (ed.easyvqa_split("train")[:64], ed.easyvqa_split("test")[:16])
    pixels = ed.PixelCache(64)([p for p, _, _ in items[1]])
    spread = {}
    for w in (0.0, 1.0):
        out = em.train(em.MLLMConfig(spread_weight=w, **base), tmp_path / f"m{w}", log=lambda *_: None, items=items)
        model, _ = em.load_mllm(out)
        with torch.no_grad():
            spread[w] = float(em.visual_spread(model, pixels).mean())
    assert -1.0 <= spread[1.0] < spread[0.0] <= 1.0
    assert em.MLLMConfig(spread_weight=0.0).key() == em.MLLMConfig().key() != em.MLLMConfig(spread_weight=0.5).key()


@pytest.mark.parametrize("question_first", [False, True])
def test_subset_with_every_token_equals_the_models_own_forward(question_first):
    """Keeping all visual tokens, in order, through the subset path gives exactly what LLaVA's own forward gives
    for the prompt, with the image after [BOS] or after the question; and question_first moves it there."""
    import torch

    cfg = em.MLLMConfig(vision_hidden=16, vision_heads=2, text_hidden=16, text_heads=2, text_ffn=32, english_words=20,
                        question_first=question_first)
    tok = em.build_tokenizer(cfg)
    model = em.build_model(cfg, len(tok)).eval()
    items = ed.easyvqa_split("test")[:4]
    pixels = ed.PixelCache(64)
    ids, mask, pos = em.encode_batch(tok, items, cfg)
    first_image = (ids[0] == em.IMAGE_ID).nonzero()[0].item()
    assert first_image == (1 + len(ed.question_words(items[0][1])) if question_first else 1)
    with torch.no_grad():
        full = em.answer_logits(model, ids, mask, pixels([p for p, _, _ in items]), pos)
        keep = torch.arange(cfg.n_visual)[None].expand(len(items), -1)
        sub, target = em.subset_answer_logits(model, tok, items, cfg, pixels, keep)
    assert torch.allclose(full, sub, atol=1e-5) and (target == ids[torch.arange(4), pos]).all()
    assert cfg.key() != em.MLLMConfig(**{**cfg.__dict__, "question_first": not question_first}).key()


def test_patch_feature_layer_makes_each_visual_token_its_own_patch():
    """vision_feature_layer -4 = hidden state 0 (the 'patches' recipe): changing one 8 px patch changes only its
    visual token, through the model's own forward too; at
    LLaVA's -2 the tower's attention spreads the change over every token. Old recipes keep their cache keys."""
    import torch

    def changed_tokens(layer):
        cfg = em.MLLMConfig(vision_hidden=16, vision_heads=2, text_hidden=16, text_heads=2, text_ffn=32,
                            english_words=20, vision_feature_layer=layer)
        model = em.build_model(cfg, 64).eval()
        assert model.config.vision_feature_layer == layer
        x = torch.rand(1, 3, 64, 64) * 2 - 1
        y = x.clone()
        y[:, :, 8:16, 16:24] = -x[:, :, 8:16, 16:24]  # the patch at row 1, column 2: token 1 * 8 + 2
        with torch.no_grad():
            a, b = em.projected_visual(model, x)[0], em.projected_visual(model, y)[0]
            ids = torch.tensor([[em.BOS_ID] + [em.IMAGE_ID] * 64 + [5]])
            model(input_ids=ids, pixel_values=x)  # LLaVA's own forward takes this feature layer
        return set(torch.nonzero((a - b).abs().amax(-1) > 1e-6).flatten().tolist())

    assert changed_tokens(-4) == {10}
    assert len(changed_tokens(-2)) == 64
    assert em.MLLMConfig(**em.RECIPES["patches"]).vision_feature_layer == -4
    assert em.MLLMConfig(**em.RECIPES["patches"]).key() != em.MLLMConfig().key()


def test_the_default_recipe_is_the_mllm_the_shipped_evocomp_learned_from():
    # evo_eval, easyvqa_mllm and make_evo_sample default to DEFAULT_RECIPE: it must be the MLLM whose labels
    # trained the shipped default, or the documented commands would rebuild something else
    from compressors.evo import default_evo
    key = em.MLLMConfig(**em.RECIPES[em.DEFAULT_RECIPE]).key()
    assert f"easyvqa-llava-{key} " in default_evo().provenance


def test_augmented_pixels_flip_and_shift_each_image_reproducibly():
    import torch
    x = torch.full((64, 3, 16, 16), -1.0)
    x[:, :, 6:10, 6:10] = 1.0  # a bright square in the middle of every image
    cache = lambda paths: x[: len(paths)]  # noqa: E731
    a = ed.AugmentedPixels(cache, 3, seed=5)([None] * 64)
    b = ed.AugmentedPixels(cache, 3, seed=5)([None] * 64)
    assert torch.equal(a, b) and a.shape == x.shape
    centres = {tuple(torch.nonzero(img[0] > 0).float().mean(0).tolist()) for img in a}
    assert len(centres) > 10  # shifted to many places
    for img in a:  # a shift moves the square whole: never cut off, never resized, background replicated
        assert int((img[0] > 0).sum()) == 16 and int((img == -1).sum()) == 3 * (256 - 16)
    assert not torch.equal(a, ed.AugmentedPixels(cache, 3, seed=6)([None] * 64))


def test_augmentation_is_keyed_and_refused_where_positions_matter():
    assert em.MLLMConfig(**em.RECIPES["patches_qf_aug"]).key() != em.MLLMConfig(**em.RECIPES["patches_qf"]).key()
    assert em.MLLMConfig(**em.RECIPES["patches_qf"]).key() == "113007a0d6e0"  # the shipped default's MLLM
    cfg = em.MLLMConfig(**dict(em.RECIPES["mosaic"], augment_shift=4))
    with pytest.raises(ValueError, match="moves the tiles"):
        em.train(cfg, "/nonexistent/never-written", items=([], []))


def test_question_kinds_split_the_accuracy_the_way_the_questions_ask():
    assert ed.question_kind("Is there not a circle?", "yes") == "yes/no shape"
    assert ed.question_kind("Does the image not contain a brown shape?", "no") == "yes/no color"
    assert ed.question_kind("What shape is present?", "triangle") == "shape"
    assert ed.question_kind("What is the color of the shape?", "teal") == "color"
    cfg = em.MLLMConfig(vision_hidden=16, vision_heads=2, text_hidden=16, text_heads=2, text_ffn=32, english_words=20)
    tok = em.build_tokenizer(cfg)
    model = em.build_model(cfg, len(tok))
    items, pixels = ed.easyvqa_split("test")[:120], ed.PixelCache(64)
    by_kind = em.accuracy_by_kind(model, tok, items, cfg, pixels)
    counts = {}
    for _, q, a in items:
        counts[ed.question_kind(q, a)] = counts.get(ed.question_kind(q, a), 0) + 1
    assert set(by_kind) == set(counts) and len(counts) == 4
    overall = em.accuracy(model, tok, items, cfg, pixels)
    assert abs(sum(by_kind[k] * n for k, n in counts.items()) / len(items) - overall) < 1e-3
    hits = em.correct(model, tok, items, cfg, pixels)  # what train() already has: by kind without a second pass
    assert em.accuracy_by_kind(model, tok, items, cfg, pixels, hits) == by_kind
    assert em.accuracy_by_kind(model, tok, items, cfg, pixels, ~hits) != by_kind  # the hits given are the ones used


@pytest.mark.parametrize("yesno", [False, True])
def test_shape_epochs_come_first_and_see_only_shape_questions(tmp_path, monkeypatch, yesno):
    cfg = em.MLLMConfig(vision_hidden=16, vision_heads=2, text_hidden=16, text_heads=2, text_ffn=32, english_words=20,
                        epochs=1, batch=16, p_drop=1.0, keep_counts=(4,), full_image_epochs=0, shape_epochs=2,
                        shape_yesno=yesno)
    want = {"shape", "yes/no shape"} if yesno else {"shape"}
    seen = []
    encode, subset = em.encode_batch, em.subset_answer_logits

    def spy_encode(tok, items, *a, **k):
        if k.get("n_visual") is None:  # not subset_answer_logits' own call
            seen.append(("whole", [ed.question_kind(q, ans) for _, q, ans in items]))
        return encode(tok, items, *a, **k)

    def spy_subset(model, tok, items, *a, **k):
        seen.append(("subset", []))
        return subset(model, tok, items, *a, **k)

    train = ed.easyvqa_split("train")[:200]
    n_shape = sum(ed.question_kind(q, a) in want for _, q, a in train)
    monkeypatch.setattr(em, "encode_batch", spy_encode)
    monkeypatch.setattr(em, "subset_answer_logits", spy_subset)
    monkeypatch.setattr(em, "accuracy", lambda *a, **k: 0.5)
    monkeypatch.setattr(em, "correct", lambda model, tok, items, *a, **k: torch.ones(len(items), dtype=torch.bool))
    monkeypatch.setattr(em, "accuracy_by_kind", lambda *a, **k: {})
    out = em.train(cfg, tmp_path / "m", log=lambda *_: None, items=(train, ed.easyvqa_split("test")[:16]))
    per_shape_epoch = -(-n_shape // 16)
    first = seen[:2 * per_shape_epoch]
    assert 0 < n_shape < 150 and all(kind == "whole" and set(kinds) <= want for kind, kinds in first)
    assert set().union(*(kinds for _, kinds in first)) == want
    assert sum(len(kinds) for _, kinds in first) == 2 * n_shape
    assert {kind for kind, _ in seen[2 * per_shape_epoch:]} == {"subset"}  # then every batch of the full epoch
    history = json.loads((out / "easyvqa_metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == ["shape 1/2", "shape 2/2", 1]
    assert em.MLLMConfig(**em.RECIPES["patches_qf_shape"]).key() != em.MLLMConfig(**em.RECIPES["patches_qf"]).key()
    shape_aug, yesno_aug = (em.MLLMConfig(**em.RECIPES[r]).key() for r in ("patches_qf_shape_aug", "patches_qf_shape_yesno_aug"))
    assert shape_aug == "61534bf3e818" and yesno_aug != shape_aug  # the field off leaves the key where it was


def test_a_shipped_checkpoint_is_used_before_the_cache_and_local_trains_anyway(tmp_path, monkeypatch):
    cfg = em.MLLMConfig(**em.RECIPES["patches_qf"])
    shipped = tmp_path / "data" / f"easyvqa-llava-{cfg.key()}"
    shipped.mkdir(parents=True)
    (shipped / "easyvqa_metrics.json").write_text("{}")
    trained = []
    monkeypatch.setattr(em, "SHIPPED", tmp_path / "data")
    monkeypatch.setattr(em, "cache_root", lambda: tmp_path / "cache")
    monkeypatch.setattr(em, "train", lambda c, out, **k: trained.append(out) or out.mkdir(parents=True)
                        or (out / "easyvqa_metrics.json").write_text("{}"))
    assert em.trained_mllm_dir(cfg) == shipped and not trained
    assert em.shipped_mllm_dir(em.MLLMConfig(**em.RECIPES["patches"])) is None  # only the recipe shipped
    local = em.trained_mllm_dir(cfg, local=True, log=lambda *_: None)
    assert local == tmp_path / "cache" / shipped.name and trained == [local]


SHIPPED_MLLMS = sorted(p.name for p in em.SHIPPED.glob("easyvqa-llava-*") if (p / "easyvqa_metrics.json").is_file())


@pytest.mark.parametrize("name", SHIPPED_MLLMS)
def test_a_shipped_mllm_is_its_recipe_s_checkpoint_and_answers_as_recorded(name):
    """Each shipped checkpoint is found for the recipe whose key it carries, loads as the LLaVA class a user's
    checkpoint loads as, and answers TEST questions as its metrics say (300 of them, within 0.04)."""
    from transformers import LlavaForConditionalGeneration
    d = em.SHIPPED / name
    metrics = json.loads((d / "easyvqa_metrics.json").read_text())
    cfg = em.MLLMConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in metrics["config"].items()})
    assert name == f"easyvqa-llava-{cfg.key()}" and em.trained_mllm_dir(cfg, train_if_missing=False) == d
    model, tok = em.load_mllm(d)
    assert isinstance(model, LlavaForConditionalGeneration)
    items = ed.data_split(cfg.data, "test")[:300]
    got = em.accuracy(model, tok, items, cfg, ed.PixelCache(cfg.image_size))
    assert abs(got - metrics["test_accuracy"]) < 0.04 and metrics["test_accuracy"] - metrics["test_accuracy_no_image"] > 0.2
