import json
import os

import numpy as np
import pytest
import torch
from safetensors import safe_open

from compressors.evo import (DEMO_PROVENANCE, EvoCompConfig, EvoCompressor, default_evo, keep_count, seeded_evo, select)

SMALL = EvoCompConfig(visual_dim=24, text_dim=16, hidden=32, layers=2, heads=4, ffn=64,
                      max_visual_tokens=36, max_text_tokens=8, grid=(6, 6))


def small_model(seed=1):
    m = EvoCompressor(SMALL)
    m.init_weights(torch.Generator().manual_seed(seed))
    return m.eval()


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def one_line(excinfo):
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


# ---- config and model -------------------------------------------------------------------------

def test_default_config_is_the_papers_design_at_the_documented_phone_size():
    c = EvoCompConfig()
    assert (c.visual_dim, c.text_dim, c.hidden, c.layers, c.heads, c.ffn) == (896, 896, 896, 1, 14, 3584)
    assert (c.input_proj, c.use_text, c.variant) == (False, True, "paper")
    assert (c.max_visual_tokens, c.max_text_tokens, c.grid, c.dropout) == (576, 64, (24, 24), 0.0)
    assert c == EvoCompConfig.for_variant("paper")


def test_variants_at_given_widths_and_the_recorded_name():
    paper = EvoCompConfig.for_variant("paper", visual_dim=4096, text_dim=4096)  # LLaVA-1.5-7B's width
    assert (paper.hidden, paper.layers, paper.heads, paper.ffn, paper.variant) == (4096, 1, 64, 16384, "paper")
    compact = EvoCompConfig.for_variant("compact", visual_dim=24, text_dim=16, max_visual_tokens=36, grid=(6, 6))
    assert (compact.hidden, compact.layers, compact.heads, compact.ffn, compact.input_proj) == (256, 2, 4, 1024, True)
    assert compact.variant == "compact" and SMALL.variant == "custom"
    # the name is derived from the fields, however the config was spelled
    assert EvoCompConfig(hidden=256, layers=2, heads=4, ffn=1024, input_proj=True).variant == "compact"
    assert EvoCompConfig(visual_dim=128, text_dim=128).heads == 2  # 64-wide heads
    assert EvoCompConfig(visual_dim=96, text_dim=96).heads == 1  # no multiple of 64: one head
    for bad, fragment in [(lambda: EvoCompConfig(layers=2, variant="paper"), "does not describe"),
                          (lambda: EvoCompConfig.for_variant("big"), "unknown EvoComp variant"),
                          (lambda: EvoCompConfig.for_variant("paper", hidden=128), "custom design"),
                          (lambda: EvoCompConfig(use_text=1), "true or false")]:
        with pytest.raises(ValueError) as e:
            bad()
        assert fragment in one_line(e)


def test_paper_variant_reads_the_aligned_embeddings_through_its_skip_connection():
    cfg = EvoCompConfig.for_variant("paper", visual_dim=64, text_dim=64, max_visual_tokens=36, max_text_tokens=8,
                                    grid=(6, 6))
    m = EvoCompressor(cfg).eval()
    names = set(m.state_dict())
    assert not any(n.startswith(("visual_proj", "text_proj")) for n in names) and len(m.blocks) == 1
    v, t = rand(1, 36, 64, seed=1), rand(1, 8, 64, seed=2)
    with torch.no_grad():
        for p in (m.blocks[0].out.weight, m.blocks[0].out.bias, m.blocks[0].fc2.weight, m.blocks[0].fc2.bias):
            p.zero_()  # the layer adds nothing: what the head reads is the embeddings themselves, normalised
        expected = torch.nn.functional.layer_norm(v + m.visual_type + m.visual_pos, (64,))
        torch.testing.assert_close(m.hidden_states(v, t), expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(m(v, t), m.head(expected).reshape(1, -1), rtol=0, atol=1e-5)
    assert sum(p.numel() for p in EvoCompressor(EvoCompConfig()).parameters()) == 10_223_361
    assert sum(p.numel() for p in EvoCompressor(EvoCompConfig.for_variant("compact")).parameters()) == 2_203_905


def test_without_text_ignores_text_but_keeps_the_signature():
    cfg = EvoCompConfig(**{**{k: getattr(SMALL, k) for k in ("visual_dim", "text_dim", "hidden", "layers", "heads", "ffn",
                                                                "max_visual_tokens", "max_text_tokens", "grid")},
                           "use_text": False})
    m = EvoCompressor(cfg).eval()
    assert not any("text" in n for n in m.state_dict())
    v = rand(2, 36, 24, seed=1)
    with torch.no_grad():
        base = m(v, rand(2, 8, 16, seed=2), torch.ones(2, 8))
        torch.testing.assert_close(m(v, rand(2, 8, 16, seed=3), torch.zeros(2, 8)), base, rtol=0, atol=0)
        assert m(*m.example_inputs(batch=2)).shape == (2, 36)
    with pytest.raises(ValueError) as e:
        m(v, rand(2, 8, 15))
    assert "text width 16" in one_line(e)


@pytest.mark.parametrize("bad", [dict(hidden=30, heads=4), dict(grid=(20, 24)), dict(layers=0), dict(dropout=1.0)])
def test_bad_config_is_rejected(bad):
    with pytest.raises(ValueError) as e:
        EvoCompConfig(**bad)
    one_line(e)


def test_forward_shapes_and_batch_independence():
    m = small_model()
    v, t = rand(3, 20, 24, seed=1), rand(3, 5, 16, seed=2)
    with torch.no_grad():
        out = m(v, t)
        assert out.shape == (3, 20) and out.dtype == torch.float32
        single = torch.cat([m(v[i:i + 1], t[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(out, single, rtol=1e-5, atol=1e-6)


def test_text_conditions_scores_and_padded_text_is_ignored():
    m = small_model()
    v, t = rand(1, 36, 24, seed=1), rand(1, 8, 16, seed=2)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]], dtype=torch.float32)
    with torch.no_grad():
        base = m(v, t, mask)
        assert not torch.allclose(base, m(v, rand(1, 8, 16, seed=3), mask), atol=1e-4)  # text matters
        t2 = t.clone()
        t2[:, 5:] = 100.0 * rand(1, 3, 16, seed=4)  # change only the padded positions
        torch.testing.assert_close(m(v, t2, mask), base, rtol=0, atol=1e-6)
        # An all-ones mask is the same as no mask.
        torch.testing.assert_close(m(v, t, torch.ones(1, 8)), m(v, t), rtol=0, atol=1e-6)


def test_forward_rejects_wrong_widths_and_too_many_tokens():
    m = small_model()
    with pytest.raises(ValueError) as e:
        m(rand(1, 10, 23), rand(1, 4, 16))
    assert "visual width 24" in one_line(e)
    with pytest.raises(ValueError) as e:
        m(rand(1, 37, 24), rand(1, 4, 16))
    assert "exceed" in one_line(e)


def test_input_spec_and_example_inputs_drive_forward():
    m = small_model()
    spec = m.input_spec(batch=2, visual_tokens=30)
    assert list(spec) == m.INPUT_NAMES
    assert spec["visual_tokens"] == ((2, 30, 24), torch.float32)
    assert spec["text_embeds"] == ((2, 8, 16), torch.float32)
    assert spec["text_mask"] == ((2, 8), torch.float32)
    inputs = m.example_inputs(batch=2, visual_tokens=30)
    assert [tuple(x.shape) for x in inputs] == [s for s, _ in spec.values()]
    assert m(*inputs).shape == (2, 30) and m.OUTPUT_NAMES == ["keep_logits"]


def test_seeded_evo_is_seeded_labelled_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = seeded_evo(EvoCompConfig(), 0), seeded_evo(EvoCompConfig(), 0), seeded_evo(EvoCompConfig(), 1)
    assert torch.equal(torch.get_rng_state(), before)
    assert a.provenance == DEMO_PROVENANCE == "untrained demo weights"
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.head.weight, c.head.weight)


def test_default_evo_is_the_shipped_trained_paper_compressor():
    m = default_evo()
    cfg = m.config
    assert cfg.layers == 1 and cfg.hidden == cfg.visual_dim  # the paper's single layer on the MLLM's width
    assert "easy-VQA" in m.provenance and "evolutionary labels" in m.provenance and "untrained" not in m.provenance
    v, t, mask = m.example_inputs()
    assert torch.isfinite(m(v, t, mask)).all()
    # trained weights, not an init: the head has moved away from normal(0, 0.02)
    assert float(m.head.weight.detach().std()) > 0.03 or float(m.head.bias.detach().abs().max()) > 0.01


# ---- select -------------------------------------------------------------------------------------

def reference_topk(scores, k):
    return sorted(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k])


def test_select_matches_reference_with_many_ties():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        s = rng.integers(0, 4, size=n).astype(np.float32)  # heavy ties
        k = int(rng.integers(1, n + 1))
        assert select(torch.from_numpy(s), k=k).tolist() == reference_topk(s.tolist(), k)


def test_select_tie_rule_lower_index_wins_and_output_sorted():
    assert select(torch.tensor([1.0, 3, 3, 2, 3]), k=2).tolist() == [1, 2]
    assert select(torch.zeros(10), k=4).tolist() == [0, 1, 2, 3]
    idx = select(torch.tensor([0.1, 0.9, 0.5, 0.8]), k=3)
    assert idx.tolist() == [1, 2, 3] and idx.dtype == torch.int64


def test_select_batch_and_numpy_in_numpy_out():
    s = np.array([[0.0, 5, 1, 5], [9, 1, 1, 0]], dtype=np.float32)
    out = select(s, ratio=2)
    assert isinstance(out, np.ndarray) and out.tolist() == [[1, 3], [0, 1]]
    assert select(torch.from_numpy(s), k=1).tolist() == [[1], [0]]


@pytest.mark.parametrize("n,ratio,k", [(576, 3.0, 192), (576, 4, 144), (5, 2, 3), (7, 2, 4), (10, 1, 10), (10, 1e9, 1)])
def test_ratio_gives_rounded_count(n, ratio, k):
    assert keep_count(n, ratio=ratio) == k
    assert len(select(torch.rand(n), ratio=ratio)) == k


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(k=0), "k must be"), (dict(k=11), "k must be"), (dict(k=2.5), "k must be"), (dict(k=True), "k must be"),
    (dict(ratio=0.5), "ratio must be"), (dict(ratio=float("inf")), "ratio must be"),
    (dict(k=2, ratio=2.0), "exactly one"), (dict(), "exactly one"),
])
def test_select_bad_k_or_ratio(kwargs, fragment):
    with pytest.raises(ValueError) as e:
        select(torch.rand(10), **kwargs)
    assert fragment in one_line(e)


def test_select_rejects_nan_and_bad_shapes():
    with pytest.raises(ValueError):
        select(torch.tensor([1.0, float("nan")]), k=1)
    with pytest.raises(ValueError):
        select(torch.rand(2, 3, 4), k=1)
    with pytest.raises(TypeError):
        select([1.0, 2.0], k=1)


# ---- compress --------------------------------------------------------------------------------------

def test_compress_keeps_the_top_scored_tokens_in_order():
    m = small_model()
    v, t = rand(2, 36, 24, seed=5), rand(2, 8, 16, seed=6)
    kept, idx = m.compress(v, t, ratio=3.0)
    assert kept.shape == (2, 12, 24) and idx.shape == (2, 12)
    with torch.no_grad():
        logits = m(v, t)
    for b in range(2):
        assert idx[b].tolist() == reference_topk(logits[b].tolist(), 12)
        assert torch.equal(kept[b], v[b, idx[b]])
    kept1, idx1 = m.compress(v[0], t[0], k=5)  # unbatched in, unbatched out
    assert kept1.shape == (5, 24) and idx1.shape == (5,)


# ---- save / load ------------------------------------------------------------------------------------

def test_save_load_round_trip_is_bit_exact_and_keeps_provenance(tmp_path):
    m = seeded_evo(EvoCompConfig(), seed=3)
    path = m.save(tmp_path / "ckpt")
    assert sorted(os.listdir(path)) == ["config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temp dir left behind
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["provenance"] == "untrained demo weights" and cfg["grid"] == [24, 24]
    with safe_open(path / "model.safetensors", "pt") as f:
        assert f.metadata()["provenance"] == "untrained demo weights"
    loaded = EvoCompressor.load(path)
    assert loaded.provenance == "untrained demo weights" and loaded.config == m.config
    for (ka, a), (kb, b) in zip(m.state_dict().items(), loaded.state_dict().items()):
        assert ka == kb and torch.equal(a, b)
    x = m.example_inputs(visual_tokens=50, text_tokens=6)
    with torch.no_grad():
        assert torch.equal(m(*x), loaded(*x))


def test_save_into_existing_dir_replaces_our_files_only(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "notes.txt").write_text("mine")
    small_model(seed=1).save(tmp_path / "ckpt")
    second = small_model(seed=2)
    second.provenance = "fine-tuned"
    second.save(tmp_path / "ckpt")
    loaded = EvoCompressor.load(tmp_path / "ckpt")
    assert torch.equal(loaded.head.weight, second.head.weight) and loaded.provenance == "fine-tuned"
    assert (tmp_path / "ckpt" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_checkpoint_saved_before_variants_loads_with_its_explicit_fields(tmp_path):
    """A config.json written before variants existed (no variant / input_proj / use_text) is the compact design:
    its fields are honoured, including the projections that a hidden == visual_dim config would now drop."""
    tiny = dict(visual_dim=32, text_dim=24, hidden=32, layers=1, heads=2, ffn=64, max_visual_tokens=36,
                max_text_tokens=8, grid=(6, 6))
    phone = dict(hidden=256, layers=2, heads=4, ffn=1024)  # the old defaults
    for old_fields, variant in [(tiny, "custom"), (phone, "compact")]:
        m = EvoCompressor(EvoCompConfig(**old_fields, input_proj=True))
        m.init_weights(torch.Generator().manual_seed(5))
        d = m.save(tmp_path / f"old-{variant}")
        raw = json.loads((d / "config.json").read_text())
        old = {k: v for k, v in raw.items() if k not in ("variant", "input_proj", "use_text")}
        (d / "config.json").write_text(json.dumps(old))
        loaded = EvoCompressor.load(d)
        assert loaded.config == m.config and loaded.config.variant == variant and loaded.config.input_proj
        assert isinstance(loaded.visual_proj, torch.nn.Linear)
        x = m.example_inputs(visual_tokens=20, text_tokens=5)
        with torch.no_grad():
            assert torch.equal(loaded(*x), m(*x))


def test_recorded_variant_must_describe_the_saved_fields(tmp_path):
    d = small_model().save(tmp_path / "ckpt")
    assert json.loads((d / "config.json").read_text())["variant"] == "custom"
    raw = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**raw, "variant": "paper"}))
    with pytest.raises(ValueError) as e:
        EvoCompressor.load(d)
    assert "bad EvoComp config" in one_line(e) and "does not describe" in one_line(e)


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        EvoCompressor.load(tmp_path / "nope")
    assert "not found" in one_line(e)
    good = small_model().save(tmp_path / "good")

    def variant(name, edit):
        d = tmp_path / name
        small_model().save(d)
        edit(d)
        return d

    cases = [
        (variant("nocfg", lambda d: (d / "config.json").unlink()), FileNotFoundError, "no config.json"),
        (variant("noweights", lambda d: (d / "model.safetensors").unlink()), FileNotFoundError, "no model.safetensors"),
        (variant("badjson", lambda d: (d / "config.json").write_text("{oops")), ValueError, "bad EvoComp config"),
        (variant("badheads", lambda d: (d / "config.json").write_text(
            (good / "config.json").read_text().replace('"heads": 4', '"heads": 5'))), ValueError, "divisible"),
        (variant("unknownkey", lambda d: (d / "config.json").write_text(
            json.dumps({**json.loads((good / "config.json").read_text()), "depth": 3}))), ValueError, "unknown keys"),
        (variant("wrongtype", lambda d: (d / "config.json").write_text(
            json.dumps({**json.loads((good / "config.json").read_text()), "model_type": "bert"}))), ValueError, "model_type"),
        (variant("mismatch", lambda d: (d / "config.json").write_text(
            (good / "config.json").read_text().replace('"ffn": 64', '"ffn": 48'))), ValueError, "do not match"),
        (variant("corrupt", lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 20)), ValueError, "unreadable weights"),
    ]
    for path, exc, fragment in cases:
        with pytest.raises(exc) as e:
            EvoCompressor.load(path)
        assert fragment in one_line(e), (path.name, str(e.value))


# ---- export --------------------------------------------------------------------------------------

def test_torch_export_of_default_config_matches_eager():
    m = seeded_evo(EvoCompConfig())
    v, t, _ = m.example_inputs()
    mask = torch.cat([torch.ones(1, 40), torch.zeros(1, 24)], dim=1)  # padded question
    ep = torch.export.export(m, (v, t, mask))
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(v, t, mask), m(v, t, mask), rtol=1e-5, atol=1e-5)
    ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    # The export guards: hand-written attention, no SDPA / fused MHA in the graph.
    assert not any("scaled_dot_product" in o or "_native_multi_head" in o for o in ops)
