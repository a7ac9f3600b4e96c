import pytest
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from compressors.evo_label import LlavaAdapter, evolve_mask, semantic_groups
from tiny_llava import IMAGE_ID, N_VISUAL, sample, tiny_llava


def test_semantic_groups_finds_constructed_groups():
    g = torch.Generator().manual_seed(0)
    vocab = torch.randn(50, 16, generator=g)
    truth = torch.randint(0, 50, (40,), generator=g)
    # scaled and slightly perturbed copies of their vocabulary row: cosine picks that row
    visual = vocab[truth] * (0.5 + torch.rand(40, 1, generator=g)) + 0.01 * torch.randn(40, 16, generator=g)
    assert torch.equal(semantic_groups(visual, vocab), truth)
    with pytest.raises(ValueError, match="share D"):
        semantic_groups(visual, vocab[:, :8])


def oracle(groups, seed=5):
    """A separable loss whose optimum keeps one known token per group; returns (loss_fn, optimum mask, calls)."""
    g = torch.Generator().manual_seed(seed)
    cost = torch.rand(len(groups), generator=g)
    best = torch.zeros(len(groups), dtype=torch.bool)
    for gid in groups.unique():
        mem = torch.nonzero(groups == gid).flatten()
        best[mem[torch.argmin(cost[mem])]] = True
    calls = []

    def loss_fn(masks):
        calls.append(masks.shape[0])
        return (masks.float() * cost).sum(1)
    return loss_fn, best, float((best.float() * cost).sum()), calls


def random_group_masks(groups, count, seed=1):
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(count, len(groups), dtype=torch.bool)
    for gid in groups.unique():
        mem = torch.nonzero(groups == gid).flatten()
        masks[torch.arange(count), mem[torch.randint(len(mem), (count,), generator=g)]] = True
    return masks


def test_evolve_mask_beats_random_masks_on_an_oracle_and_is_seeded():
    groups = torch.randint(0, 12, (96,), generator=torch.Generator().manual_seed(3))
    loss_fn, best, best_loss, calls = oracle(groups)
    mask, loss = evolve_mask(loss_fn, groups, seed=0)
    # one kept token per group, always
    for gid in groups.unique():
        assert int(mask[groups == gid].sum()) == 1
    assert int(mask.sum()) == len(groups.unique())
    assert calls == [48] * 11  # one batched call per population: q x (L + 1) forwards
    rand_losses = loss_fn(random_group_masks(groups, 528))
    gap_search, gap_random = loss - best_loss, float(rand_losses.mean()) - best_loss
    assert gap_search < 0.1 * gap_random  # far closer to the optimum than random same-size masks
    assert loss <= float(rand_losses.min())
    assert loss == pytest.approx(float(loss_fn(mask[None])[0]))
    again, again_loss = evolve_mask(oracle(groups)[0], groups, seed=0)
    assert torch.equal(again, mask) and again_loss == loss
    with pytest.raises(ValueError, match="parents"):
        evolve_mask(loss_fn, groups, population=4, parents=8)


def test_evolve_mask_keeps_singleton_groups():
    groups = torch.arange(7)  # every group has one member: the only mask keeps everything
    mask, _ = evolve_mask(lambda m: m.float().sum(1), groups, population=6, parents=2, generations=3)
    assert mask.all()


@pytest.fixture(scope="module")
def tiny():
    return tiny_llava()


def test_adapter_all_tokens_equals_a_direct_model_call(tiny):
    pixels, ids, labels = sample()
    with torch.no_grad():
        direct = tiny(input_ids=ids[None], pixel_values=pixels, labels=labels[None]).loss
    for layer in (0, 2):
        fn = LlavaAdapter(tiny, prune_layer=layer).loss_fn(pixels, ids, labels)
        assert float(fn(torch.ones(2, N_VISUAL, dtype=torch.bool))[0]) == pytest.approx(float(direct), abs=1e-5)


def test_adapter_kept_tokens_equal_a_direct_call_with_those_features(tiny):
    pixels, ids, labels = sample(seed=1)
    adapter = LlavaAdapter(tiny)
    visual = adapter.visual_tokens(pixels)
    masks = torch.zeros(3, N_VISUAL, dtype=torch.bool)
    masks[0, [0, 5, 9]] = True
    masks[1, ::2] = True
    masks[2, 15] = True
    got = adapter.loss_fn(pixels, ids, labels)(masks)
    for m, loss in zip(masks, got):
        k = int(m.sum())
        short = torch.cat([ids[:1], torch.full((k,), IMAGE_ID), ids[1 + N_VISUAL:]])
        lab = torch.cat([labels[:1], torch.full((k,), -100), labels[1 + N_VISUAL:]])
        feats = BaseModelOutputWithPooling(pooler_output=[visual[m]])
        with torch.no_grad():
            direct = tiny(input_ids=short[None], labels=lab[None], mm_encoder_outputs={"image": feats}).loss
        assert float(loss) == pytest.approx(float(direct), abs=1e-5)
    assert len(set(round(float(x), 5) for x in got)) == 3


def test_adapter_prune_after_layer_2_differs_from_before_the_llm(tiny):
    pixels, ids, labels = sample(seed=2)
    masks = torch.zeros(1, N_VISUAL, dtype=torch.bool)
    masks[0, :4] = True
    l0 = LlavaAdapter(tiny, prune_layer=0).loss_fn(pixels, ids, labels)(masks)
    l2 = LlavaAdapter(tiny, prune_layer=2).loss_fn(pixels, ids, labels)(masks)
    l3 = LlavaAdapter(tiny, prune_layer=3).loss_fn(pixels, ids, labels)(masks)
    full = LlavaAdapter(tiny).loss_fn(pixels, ids, labels)(torch.ones(1, N_VISUAL, dtype=torch.bool))
    # pruning after every layer leaves the answer's hidden states as with all tokens
    assert float(l3) == pytest.approx(float(full), abs=1e-5)
    assert abs(float(l2) - float(l0)) > 1e-4


def test_adapter_rejects_what_is_not_llava(tiny):
    with pytest.raises(TypeError, match="LlavaForConditionalGeneration"):
        LlavaAdapter(tiny.model.language_model)
    pixels, ids, labels = sample()
    with pytest.raises(ValueError, match="image tokens"):
        LlavaAdapter(tiny).loss_fn(pixels, ids[:10], labels[:10])
