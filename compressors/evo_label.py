"""EvoComp's labels: semantic grouping and the evolutionary mask search against the MLLM's own loss.

For one training sample the label is the 0/1 mask over its visual tokens that minimises the LLM's
cross-entropy on the ground-truth answer given only the kept visual tokens and the whole text.
Visual tokens are grouped by their nearest LLM vocabulary embedding (cosine); a mask keeps exactly one
token per group; an evolutionary search (population 48, 12 parents, crossover 0.9, mutation 0.2 per
group, 10 generations: the paper's constants, ../shared/papers.md) finds the best one with forwards
only. `LlavaAdapter` turns a transformers LlavaForConditionalGeneration into that loss. The label CLI
lives in compressors/evo_label_cli.py (`python -m compressors.evo_label` runs it).
"""
import torch
import torch.nn.functional as F


def semantic_groups(visual, vocab):
    """Group id of each visual token [N, D]: the index of its nearest row of vocab [V, D] by cosine."""
    if visual.dim() != 2 or vocab.dim() != 2 or visual.shape[1] != vocab.shape[1]:
        raise ValueError(f"visual [N, D] and vocab [V, D] must share D, got {tuple(visual.shape)} and {tuple(vocab.shape)}")
    v = F.normalize(visual.float(), dim=-1, eps=1e-12)
    e = F.normalize(vocab.float(), dim=-1, eps=1e-12)
    # chunked over the vocabulary so a 32k x 4096 table never makes an N x V matrix at once
    best, arg = None, None
    for s in range(0, e.shape[0], 8192):
        sim = v @ e[s:s + 8192].T
        m, a = sim.max(dim=-1)
        if best is None:
            best, arg = m, a
        else:
            better = m > best
            best, arg = torch.where(better, m, best), torch.where(better, a + s, arg)
    return arg


def _members(groups):
    """(group index of each token 0..G-1, list of member index tensors per group)."""
    if groups.dim() != 1 or groups.numel() == 0:
        raise ValueError(f"groups must be a non-empty LongTensor[N], got shape {tuple(groups.shape)}")
    _, inverse = torch.unique(groups, return_inverse=True)
    return inverse, [torch.nonzero(inverse == g).flatten() for g in range(int(inverse.max()) + 1)]


def _masks(choice, members, n):
    """[P, G] chosen member position per group -> BoolTensor [P, N]."""
    masks = torch.zeros(choice.shape[0], n, dtype=torch.bool)
    for g, mem in enumerate(members):
        masks[torch.arange(choice.shape[0]), mem[choice[:, g]]] = True
    return masks


def evolve_mask(loss_fn, groups, *, population=48, parents=12, generations=10, crossover=0.9, mutation=0.2, seed=0):
    """The lowest-loss one-token-per-group mask found: (BoolTensor[N], loss as float).

    loss_fn(masks: BoolTensor[P, N]) -> Tensor[P] scores one whole population in one call.
    Each generation: the `parents` best of everything seen so far breed `population` children;
    with probability `crossover` a child takes each group's sub-mask from one of two random parents
    (uniform crossover), else it copies the first; then each group's kept token moves to another
    member with probability `mutation`. population * (generations + 1) forwards in all.
    """
    if not (1 <= parents <= population) or generations < 0 or not (0 <= crossover <= 1) or not (0 <= mutation <= 1):
        raise ValueError(f"need 1 <= parents <= population, generations >= 0, probabilities in [0, 1]; got "
                         f"population={population}, parents={parents}, generations={generations}, crossover={crossover}, mutation={mutation}")
    _, members = _members(groups)
    n, sizes = groups.numel(), torch.tensor([len(m) for m in members])
    g = torch.Generator().manual_seed(seed)

    def random_choice(p):
        return (torch.rand(p, len(members), generator=g) * sizes).long()

    def evaluate(choice):
        losses = torch.as_tensor(loss_fn(_masks(choice, members, n)), dtype=torch.float64).flatten()
        if losses.shape != (choice.shape[0],):
            raise ValueError(f"loss_fn must return one loss per mask ({choice.shape[0]}), got shape {tuple(losses.shape)}")
        return losses

    pool = random_choice(population)
    pool_loss = evaluate(pool)
    for _ in range(generations):
        best = torch.argsort(pool_loss, stable=True)[:parents]
        pool, pool_loss = pool[best], pool_loss[best]
        a = pool[torch.randint(parents, (population,), generator=g)]
        b = pool[torch.randint(parents, (population,), generator=g)]
        cross = (torch.rand(population, 1, generator=g) < crossover) & (torch.rand(population, len(members), generator=g) < 0.5)
        child = torch.where(cross, b, a)
        # mutation: shift to another member (offset 1..size-1, so a group of one never changes)
        mutate = (torch.rand(population, len(members), generator=g) < mutation) & (sizes > 1)
        offset = 1 + (torch.rand(population, len(members), generator=g) * (sizes - 1).clamp(min=1)).long()
        child = torch.where(mutate, (child + offset) % sizes, child)
        pool = torch.cat([pool, child])
        pool_loss = torch.cat([pool_loss, evaluate(child)])
    i = int(torch.argmin(pool_loss))
    return _masks(pool[i:i + 1], members, n)[0], float(pool_loss[i])


class LlavaAdapter:
    """The MLLM loss EvoComp's labels minimise, for any transformers LlavaForConditionalGeneration.

    image -> vision tower (the checkpoint's vision_feature_layer / vision_feature_select_strategy)
    -> projector -> only the kept visual tokens + the whole text -> the LLM -> cross-entropy on the
    answer tokens. prune_layer=0 drops visual tokens before the LLM; prune_layer=l > 0 runs the first l
    decoder layers on all tokens (once, shared by a whole population) and drops the visual positions
    from their output, keeping the survivors' original positions (RoPE), as FastV prunes.
    """

    def __init__(self, model, prune_layer=0, batch_size=48):
        from transformers import LlavaForConditionalGeneration
        if not isinstance(model, LlavaForConditionalGeneration):
            raise TypeError(f"expected a transformers LlavaForConditionalGeneration, got {type(model).__name__}: "
                            "EvoComp labels need a LLaVA-shaped model (vision tower + projector + causal LM)")
        self.model, self.cfg = model.eval(), model.config
        self.lm = model.model.language_model
        self.prune_layer, self.batch_size = int(prune_layer), int(batch_size)
        if self.prune_layer and not all(hasattr(self.lm, a) for a in ("layers", "norm", "rotary_emb")):
            raise TypeError(f"prune_layer > 0 needs a decoder with layers / norm / rotary_emb (Llama, Mistral, Qwen2); "
                            f"{type(self.lm).__name__} has not: use prune_layer=0")
        if not 0 <= self.prune_layer <= len(getattr(self.lm, "layers", [])):
            raise ValueError(f"prune_layer must be in [0, {len(self.lm.layers)}], got {prune_layer}")

    @property
    def vocab(self):
        return self.model.get_input_embeddings().weight

    @torch.no_grad()
    def visual_tokens(self, pixel_values):
        """The projector's output for one image [1, 3, H, W] -> [N, D] (what the LLM would see)."""
        feats = self.model.model.get_image_features(
            pixel_values=pixel_values, vision_feature_layer=self.cfg.vision_feature_layer,
            vision_feature_select_strategy=self.cfg.vision_feature_select_strategy).pooler_output
        return feats[0]

    def _split(self, input_ids, n_visual):
        pos = torch.nonzero(input_ids == self.cfg.image_token_id).flatten()
        if len(pos) != n_visual or (len(pos) and int(pos[-1] - pos[0]) + 1 != n_visual):
            raise ValueError(f"input_ids must hold the {n_visual} image tokens (id {self.cfg.image_token_id}) in one run, "
                             f"found {len(pos)}: expand the <image> placeholder as LLaVA's processor does")
        return int(pos[0]) if len(pos) else len(input_ids)

    @torch.no_grad()
    def answer_loss(self, visual, input_ids, labels, masks):
        """Mean answer cross-entropy for each mask [P, N] (True = kept) -> [P]."""
        if masks.dim() != 2 or masks.shape[1] != visual.shape[0]:
            raise ValueError(f"masks must be [P, {visual.shape[0]}], got {tuple(masks.shape)}")
        out = [self._losses(visual, input_ids, labels, masks[s:s + self.batch_size])
               for s in range(0, masks.shape[0], self.batch_size)]
        return torch.cat(out)

    def loss_fn(self, pixel_values, input_ids, labels):
        """loss_fn(masks) for evolve_mask: the vision tower runs once, here."""
        visual = self.visual_tokens(pixel_values)
        self._split(input_ids, visual.shape[0])
        return lambda masks: self.answer_loss(visual, input_ids, labels, masks)

    def _losses(self, visual, ids, labels, masks):
        n = visual.shape[0]
        start = self._split(ids, n)
        emb = self.model.get_input_embeddings()(ids)
        emb = torch.cat([emb[:start], visual.to(emb.dtype), emb[start + n:]])
        keep = torch.ones(masks.shape[0], len(ids), dtype=torch.bool)
        keep[:, start:start + n] = masks
        if self.prune_layer == 0:
            return self._score(*self._gather(emb[None].expand(len(masks), -1, -1), keep, labels), early=None)
        # layers before the cut see every token, once for the whole population
        pos = torch.arange(len(ids))[None]
        h = self._layers(emb[None], pos, torch.ones(1, len(ids), dtype=torch.long), self.lm.layers[:self.prune_layer])
        return self._score(*self._gather(h.expand(len(masks), -1, -1), keep, labels), early=True)

    @staticmethod
    def _gather(seq, keep, labels):
        """Right-padded kept rows: (embeddings [P, L', D], labels [P, L'], mask [P, L'], positions [P, L'])."""
        length = int(keep.sum(1).max())
        p, d = keep.shape[0], seq.shape[-1]
        out = seq.new_zeros(p, length, d)
        lab = torch.full((p, length), -100, dtype=torch.long)
        att = torch.zeros(p, length, dtype=torch.long)
        pos = torch.zeros(p, length, dtype=torch.long)
        for i in range(p):
            idx = torch.nonzero(keep[i]).flatten()
            out[i, :len(idx)], lab[i, :len(idx)], att[i, :len(idx)], pos[i, :len(idx)] = seq[i, idx], labels[idx], 1, idx
        return out, lab, att, pos

    def _layers(self, h, pos, att, layers):
        """Run decoder layers with a causal + key-padding additive 4D mask (returned as-is by transformers)."""
        length = h.shape[1]
        allowed = torch.ones(length, length, dtype=torch.bool).tril()[None] & att.bool()[:, None, :]
        mask = torch.zeros(allowed.shape, dtype=h.dtype).masked_fill(~allowed, torch.finfo(h.dtype).min)[:, None]
        pe = self.lm.rotary_emb(h, position_ids=pos)
        for layer in layers:
            h = layer(h, attention_mask=mask, position_embeddings=pe, position_ids=pos)
        return h

    def _score(self, h, lab, att, pos, early):
        if early:
            h = self.lm.norm(self._layers(h, pos, att, self.lm.layers[self.prune_layer:]))
        else:
            h = self.lm(inputs_embeds=h, attention_mask=att).last_hidden_state
        # logits only where they predict an answer token (labels shifted by one, as HF's causal LM loss)
        target = lab[:, 1:]
        where = target != -100
        logits = self.model.lm_head(h[:, :-1][where]).float()
        ce = F.cross_entropy(logits, target[where], reduction="none")
        per = torch.zeros(h.shape[0]).index_add(0, torch.nonzero(where)[:, 0], ce)
        return per / where.sum(1).clamp(min=1)


if __name__ == "__main__":
    import sys
    from compressors.evo_label_cli import main
    sys.exit(main())
