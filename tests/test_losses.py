import math

import pytest
import torch
import torch.nn.functional as F

from compressors.losses import cosine_separation_loss, ghm_loss, inter_class_cosine_loss

LN2 = math.log(2)
SP_M2, SP_P2 = math.log1p(math.exp(-2)), math.log1p(math.exp(2))  # BCE of logit 2 / -2 against target 1

# logits 0, 0, 2, -2 against targets 1, 0, 1, 1: g = 0.5, 0.5, 0.119, 0.881 -> bins 5, 5, 1, 8 (of 10).
LOGITS = torch.tensor([0.0, 0.0, 2.0, -2.0])
TARGETS = torch.tensor([1.0, 0.0, 1.0, 1.0])


def test_ghm_without_momentum_hand_computed():
    loss, state = ghm_loss(LOGITS, TARGETS, bins=10, momentum=0.0)
    # N = 4 examples, 3 non-empty bins: weight = 4 / (count * 3) -> 2/3, 2/3, 4/3, 4/3.
    expected = (2 / 3 * LN2 * 2 + 4 / 3 * SP_M2 + 4 / 3 * SP_P2) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert state.tolist() == [0.0] * 10  # no EMA kept without momentum


def test_ghm_momentum_follows_the_ema():
    loss1, s1 = ghm_loss(LOGITS, TARGETS, bins=10, momentum=0.75)
    # The EMA starts at zero (as the authors' code): densities 0.5, 0.25, 0.25 -> weights 4x larger.
    assert s1[[1, 5, 8]].tolist() == [0.25, 0.5, 0.25] and s1.sum().item() == 1.0
    no_mmt = (2 / 3 * LN2 * 2 + 4 / 3 * SP_M2 + 4 / 3 * SP_P2) / 4
    assert loss1.item() == pytest.approx(4 * no_mmt, rel=1e-6)
    loss2, s2 = ghm_loss(LOGITS, TARGETS, bins=10, momentum=0.75, state=s1)
    assert s2[[1, 5, 8]].tolist() == [0.75 * 0.25 + 0.25, 0.75 * 0.5 + 0.5, 0.75 * 0.25 + 0.25]
    assert s1[[1, 5, 8]].tolist() == [0.25, 0.5, 0.25]  # the caller's state is not modified
    # A bin not hit this batch keeps its density: feed only examples of bin 5.
    _, s3 = ghm_loss(torch.zeros(3), torch.ones(3), bins=10, momentum=0.75, state=s2)
    assert s3[1].item() == s2[1].item() and s3[5].item() == pytest.approx(0.75 * s2[5].item() + 0.75)


def test_ghm_is_plain_bce_when_all_examples_share_a_bin():
    logits, targets = torch.tensor([0.1, -0.1, 0.05]), torch.tensor([1.0, 0.0, 1.0])
    loss, _ = ghm_loss(logits, targets, momentum=0.0)
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(logits, targets))


def test_ghm_downweights_the_crowded_easy_bin():
    # 9 easy examples and 1 hard one: GHM weighs the hard one as much as all easy ones together.
    logits = torch.tensor([4.0] * 9 + [-4.0])
    targets = torch.ones(10)
    loss = ghm_loss(logits, targets, momentum=0.0)[0].item()
    easy, hard = math.log1p(math.exp(-4)), math.log1p(math.exp(4))
    assert loss == pytest.approx((9 * easy * 10 / 18 + hard * 10 / 2) / 10, rel=1e-6)


def test_ghm_mask_edges_gradient_and_errors():
    logits = torch.tensor([0.0, 0.0, 2.0, -2.0, 50.0], requires_grad=True)
    targets = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])  # the last: g == 1 lands in the top bin
    full, _ = ghm_loss(logits[:4], targets[:4], momentum=0.0)
    masked, _ = ghm_loss(logits, targets, momentum=0.0, mask=torch.tensor([1, 1, 1, 1, 0]))
    torch.testing.assert_close(masked, full)
    masked.backward()
    assert logits.grad[4] == 0 and logits.grad[:4].abs().min() > 0
    ghm_loss(logits.detach(), targets, bins=10)  # g == 1 does not overflow the bins
    with pytest.raises(ValueError, match="same shape"):
        ghm_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ghm_loss(torch.zeros(2), torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError, match="momentum"):
        ghm_loss(torch.zeros(2), torch.zeros(2), momentum=1.0)
    with pytest.raises(ValueError, match="state"):
        ghm_loss(torch.zeros(2), torch.zeros(2), bins=10, state=torch.zeros(5))


# ---- cosine terms --------------------------------------------------------------------------------

H = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-2.0, 0.0]])


def brute_force(h, a, b):
    pairs = [F.cosine_similarity(h[i], h[j], dim=0) for i in range(len(h)) for j in range(len(h)) if a[i] and b[j]]
    return torch.stack(pairs).mean()


def test_cosine_separation_hand_computed():
    keep = torch.tensor([True, False, False, False])
    # Pairs (0,1) cos 0, (0,2) cos 1/sqrt2, (0,3) cos -1 -> mean (1/sqrt2 - 1) / 3.
    assert cosine_separation_loss(H, keep).item() == pytest.approx((1 / math.sqrt(2) - 1) / 3, rel=1e-6)
    keep2 = torch.tensor([True, True, False, False])
    # (0,2) 1/sqrt2, (0,3) -1, (1,2) 1/sqrt2, (1,3) 0 -> mean (sqrt2 - 1) / 4.
    assert cosine_separation_loss(H, keep2).item() == pytest.approx((math.sqrt(2) - 1) / 4, rel=1e-6)


def test_cosine_separation_batch_pools_pairs_and_has_gradient():
    h = torch.randn(2, 7, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    keep = torch.tensor([[1, 0, 0, 1, 0, 1, 0], [1, 1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    loss = cosine_separation_loss(h, keep, reduction="pooled")
    pairs = [(b, i, j) for b in range(2) for i in range(7) for j in range(7) if keep[b, i] and not keep[b, j]]
    expected = torch.stack([F.cosine_similarity(h[b, i], h[b, j], dim=0) for b, i, j in pairs]).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert h.grad.abs().sum() > 0
    assert cosine_separation_loss(h.detach(), torch.ones(2, 7, dtype=torch.bool)).item() == 0.0  # no pairs


def test_cosine_separation_per_sample_is_the_papers_mean_of_sample_means():
    h = torch.randn(3, 7, 5, generator=torch.Generator().manual_seed(0))
    keep = torch.tensor([[1, 0, 0, 1, 0, 1, 0], [1, 1, 1, 1, 1, 1, 0], [1] * 7], dtype=torch.bool)
    means = [torch.stack([F.cosine_similarity(h[b, i], h[b, j], dim=0) for i in range(7) for j in range(7)
                          if keep[b, i] and not keep[b, j]]).mean() for b in range(2)]  # sample 2 has no pair
    torch.testing.assert_close(cosine_separation_loss(h, keep), torch.stack(means).mean())
    assert not torch.allclose(cosine_separation_loss(h, keep), cosine_separation_loss(h, keep, reduction="pooled"))
    with pytest.raises(ValueError, match="reduction"):
        cosine_separation_loss(h, keep, reduction="mean")


def test_inter_class_cosine_ignores_masked_and_unlabelled_tokens():
    labels = torch.tensor([1, 0, -100, 0])
    # Token 2 is unlabelled: pairs (0,1) cos 0 and (0,3) cos -1 -> -0.5.
    assert inter_class_cosine_loss(H, labels).item() == pytest.approx(-0.5, rel=1e-6)
    mask = torch.tensor([1, 1, 1, 0])
    assert inter_class_cosine_loss(H, torch.tensor([1, 0, 0, 0]), mask).item() == pytest.approx(1 / (2 * math.sqrt(2)), rel=1e-6)
    h = torch.randn(30, 8, generator=torch.Generator().manual_seed(1))
    lab = torch.randint(0, 2, (30,), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(inter_class_cosine_loss(h, lab), brute_force(h, lab == 1, lab == 0))


def test_cosine_terms_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="hidden states"):
        cosine_separation_loss(torch.zeros(4, 2), torch.ones(3, dtype=torch.bool))


def authors_ghmc(pred, target, acc_sum, bins=10, mmt=0.75):
    """The loop form of the GHM-C authors' code (edges, per-bin EMA, / number of non-empty bins)."""
    edges = [i / bins for i in range(bins + 1)]
    edges[-1] += 1e-6
    g = (torch.sigmoid(pred) - target).abs()
    weights = torch.zeros_like(pred)
    tot, n = pred.numel(), 0
    for i in range(bins):
        inds = (g >= edges[i]) & (g < edges[i + 1])
        num = int(inds.sum())
        if num > 0:
            if mmt > 0:
                acc_sum[i] = mmt * acc_sum[i] + (1 - mmt) * num
                weights[inds] = tot / acc_sum[i]
            else:
                weights[inds] = tot / num
            n += 1
    weights = weights / max(n, 1)
    return F.binary_cross_entropy_with_logits(pred, target, weights, reduction="sum") / tot


@pytest.mark.parametrize("mmt", [0.0, 0.75])
def test_ghm_matches_the_authors_loop_over_several_steps(mmt):
    gen = torch.Generator().manual_seed(3)
    acc, state = [0.0] * 10, None
    for _ in range(4):
        logits = 3 * torch.randn(200, generator=gen)
        targets = (torch.rand(200, generator=gen) < 0.2).float()
        ours, state = ghm_loss(logits, targets, bins=10, momentum=mmt, state=state)
        torch.testing.assert_close(ours, authors_ghmc(logits, targets, acc, mmt=mmt))
