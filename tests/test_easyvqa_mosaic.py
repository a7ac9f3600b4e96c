"""compressors/easyvqa_mosaic.py: 2 x 2 mosaics of real easy-VQA images, each question about one named tile."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from compressors import easyvqa_data as ed
from compressors import easyvqa_mllm as em
from compressors import easyvqa_mosaic as mo


def test_layout_places_every_image_once_per_shuffle_at_varied_tiles():
    mosaics, where = mo.layout(40, shuffles=4, seed=0)
    assert mosaics.shape == (4, 10, 4)
    for s in range(4):
        assert sorted(mosaics[s].ravel()) == list(range(40))
        for i in range(40):
            j, t = where[s, i]
            assert mosaics[s, j, t] == i
    assert len({tuple(where[:, i, 1]) for i in range(40)}) > 1  # tiles differ between shuffles
    again, _ = mo.layout(40, shuffles=4, seed=0)
    assert (again == mosaics).all() and not (mo.layout(40, shuffles=4, seed=1)[0] == mosaics).all()
    short, where = mo.layout(10, shuffles=1, seed=0)  # 10 images fill 3 mosaics, two of them repeated
    assert short.shape == (1, 3, 4) and set(short.ravel()) == set(range(10))


def test_build_writes_real_tiles_and_names_the_tile_in_each_question(tmp_path):
    """Twelve real easy-VQA TRAIN images and their questions: every question appears once, prefixed with the
    position of its image, and that quarter of its mosaic is the image's own pixels."""
    import easy_vqa
    q, a, ids = easy_vqa.get_train_questions()
    paths = easy_vqa.get_train_image_paths()
    images = [paths[i] for i in range(12)]
    questions = [(qq, aa, i) for qq, aa, i in zip(q, a, ids) if i < 12]
    items = mo.build(questions, images, tmp_path, shuffles=2, seed=0, tile=64)
    assert len(items) == len(questions)
    rows = [json.loads(line) for line in (tmp_path / "questions.jsonl").read_text().splitlines()]
    assert len(rows) == len(questions) and len(list(tmp_path.glob("*.png"))) == 2 * 3
    for (png, question, answer), row, (orig_q, orig_a, image) in zip(items, rows, questions):
        t = row["tile"]
        assert question == f"{mo.POSITIONS[t]} {orig_q}" and answer == orig_a and row["source_image"] == image
        mosaic = np.asarray(Image.open(png).convert("RGB"))
        assert mosaic.shape == (128, 128, 3)
        r, c = (t // 2) * 64, (t % 2) * 64
        tile = np.asarray(Image.open(images[image]).convert("RGB"))
        assert (mosaic[r:r + 64, c:c + 64] == tile).all()
    assert {row["tile"] for row in rows} == {0, 1, 2, 3}
    small = np.asarray(mo.compose(images[:4]))  # the default: 32 px tiles on the MLLM's 64 px canvas
    assert small.shape == (64, 64, 3)
    assert (small[32:, :32] == np.asarray(Image.open(images[2]).convert("RGB").resize((32, 32), Image.BILINEAR))).all()


def test_mosaic_recipe_has_its_own_cache_key_and_position_words():
    cfg = em.MLLMConfig(**em.RECIPES["mosaic"])
    assert (cfg.n_visual, cfg.grid, cfg.data, cfg.init_from) == (64, (8, 8), "easy-vqa-mosaic", "v4")
    assert cfg.key() not in {em.MLLMConfig(**em.RECIPES[r]).key() for r in ("v1", "v2", "v3", "v4")}
    small = dict(english_words=0)
    tok = em.build_tokenizer(em.MLLMConfig(**em.RECIPES["mosaic"], **small))
    plain = em.build_tokenizer(em.MLLMConfig(**small))
    assert all(tok.convert_tokens_to_ids(w) != em.UNK_ID for w in mo.POSITION_WORDS)
    assert plain.convert_tokens_to_ids("top") == em.UNK_ID  # easy-VQA's own vocabulary is unchanged
    full, mosaic = em.build_tokenizer(em.MLLMConfig()), em.build_tokenizer(cfg)
    assert full.get_vocab() == mosaic.get_vocab()  # v4's 4,000 English words hold them: v4's weights fit


def test_init_from_starts_at_that_recipes_trained_weights(tmp_path, monkeypatch):
    """A tiny base recipe trained into the cache, then a tiny mosaic model with init_from = that recipe and a
    zero learning rate: it saves exactly the base's weights (4,000 English words hold the position words, so the
    vocabularies match). A base of other shapes is refused."""
    import torch
    from safetensors.torch import load_file
    monkeypatch.setenv("COMPKIT_CACHE", str(tmp_path / "cache"))
    tiny = dict(vision_hidden=16, vision_heads=2, text_hidden=16, text_heads=2, text_ffn=32, english_words=4000,
                epochs=1, batch=16, p_drop=0.0, keep_counts=(), full_image_epochs=0)
    monkeypatch.setitem(em.RECIPES, "tiny", tiny)
    monkeypatch.setitem(em.RECIPES, "tinier", dict(tiny, text_ffn=16))
    plain = (ed.easyvqa_split("train")[:32], ed.easyvqa_split("test")[:16])
    base = em.train(em.MLLMConfig(**tiny), em.cache_root() / f"easyvqa-llava-{em.MLLMConfig(**tiny).key()}",
                    log=lambda *_: None, items=plain)
    import easy_vqa
    q, a, ids = easy_vqa.get_train_questions()
    paths = easy_vqa.get_train_image_paths()
    mosaic = mo.build([(qq, aa, i) for qq, aa, i in zip(q, a, ids) if i < 8], [paths[i] for i in range(8)],
                      tmp_path / "mosaic", shuffles=1)[:32]
    cfg = em.MLLMConfig(**dict(tiny, data="easy-vqa-mosaic", init_from="tiny", lr=0.0))
    out = em.train(cfg, tmp_path / "m", log=lambda *_: None, items=(mosaic, mosaic[:8]))
    a_state, b_state = load_file(str(base / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a_state.keys() == b_state.keys() and all(torch.equal(a_state[k], b_state[k]) for k in a_state)
    tinier = em.MLLMConfig(**em.RECIPES["tinier"])
    em.train(tinier, em.cache_root() / f"easyvqa-llava-{tinier.key()}", log=lambda *_: None, items=plain)
    with pytest.raises(ValueError, match="does not have this config's shapes"):
        em.train(em.MLLMConfig(**dict(tiny, init_from="tinier")), tmp_path / "x", log=lambda *_: None, items=plain)
    assert not (tmp_path / "x").exists()


def test_unknown_data_set_and_split_are_refused():
    with pytest.raises(ValueError, match="unknown data set"):
        ed.data_split("coco", "train")
    with pytest.raises(ValueError, match="'train' or 'test'"):
        mo.mosaic_split("validation")


def test_label_cli_reads_the_mosaic_split_built_once_into_the_cache(tmp_path, monkeypatch):
    from compressors.evo_label_cli import read_data
    monkeypatch.setenv("COMPKIT_CACHE", str(tmp_path))
    first = read_data("easy-vqa-mosaic:test")
    assert len(first) == 9673 and all(q.startswith(mo.POSITIONS) for _, q, _ in first[:50])
    assert len(list(mo.mosaic_root("test").glob("*.png"))) == 1000  # 4 shuffles x 1,000 images / 4 tiles
    assert read_data("easy-vqa-mosaic:test") == first  # read back from questions.jsonl
    assert read_data("easy-vqa-mosaic:test", limit=3, subset_seed=0) == read_data("easy-vqa-mosaic:test", limit=3, subset_seed=0)


@pytest.mark.parametrize("line,says", [("{not json", "is not a mosaic question"),
                                       ('{"image": "m0.png", "question": "top left what ?"}', "is not a mosaic question"),
                                       ('{"image": "gone.png", "question": "q", "answer": "a"}', "gone.png, which is missing"),
                                       ("", "holds no questions")])
def test_a_corrupt_built_split_is_one_clear_error(tmp_path, monkeypatch, capsys, line, says):
    """A questions.jsonl edited or cut by hand: the label CLI says which line and how to rebuild, exit 2."""
    from compressors import evo_label_cli
    monkeypatch.setenv("COMPKIT_CACHE", str(tmp_path))
    root = mo.mosaic_root("test")
    root.mkdir(parents=True)
    (root / "m0.png").write_bytes(b"")  # only the missing-image line is about the file itself
    (root / "questions.jsonl").write_text(line + "\n")
    with pytest.raises(mo.MosaicCacheError, match=says):
        mo.mosaic_split("test")
    code = evo_label_cli.main(["--mllm", str(tmp_path / "none"), "--data", "easy-vqa-mosaic:test", "--out", str(tmp_path / "l.jsonl")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and says in err and f"delete {root}" in err and "\n" not in err and not (tmp_path / "l.jsonl").exists()
