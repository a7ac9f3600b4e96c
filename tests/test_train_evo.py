import json

import pytest

from compressors import evo_label_cli, train_evo
from compressors.evo import EvoCompressor
from tiny_llava import save_tiny_llava

pytestmark = pytest.mark.slow  # tiny LLaVA label searches and trainings: ~20-60 s on 2 cores

FAST = ["--population", "6", "--parents", "2", "--generations", "1"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-evo")
    mllm, data = save_tiny_llava(d, n_images=10)
    labels = d / "labels.jsonl"
    assert evo_label_cli.main(["--mllm", str(mllm), "--data", str(data), "--out", str(labels), *FAST]) == 0
    return mllm, labels, d


def test_training_lowers_the_loss_and_saves_a_loadable_checkpoint(labelled, tmp_path):
    mllm, labels, _ = labelled
    out = tmp_path / "ckpt"
    args = train_evo.parser().parse_args(["--mllm", str(mllm), "--labels", str(labels), "--out", str(out),
                                          "--epochs", "25", "--batch", "4", "--lr", "3e-3"])
    metrics = train_evo.train(args, log=lambda *_: None)
    hist = metrics["history"]
    assert hist[-1]["train"]["loss"] < 0.8 * hist[0]["train"]["loss"]
    model = EvoCompressor.load(out)
    assert model.config.layers == 1 and model.config.hidden == model.config.visual_dim == 32
    assert model.config.variant == "paper"  # exactly EvoCompConfig.for_variant("paper"), not a look-alike
    assert "evolutionary labels" in model.provenance and "ghm + 0.5 cosine" in model.provenance
    saved = json.loads((out / "train_metrics.json").read_text())
    assert saved["best_epoch"] == metrics["best_epoch"] and (out / "train_curves.png").stat().st_size > 1000


@pytest.mark.parametrize("variant,extra", [("compact", ["--loss", "ce", "--alpha", "0"]), ("paper", ["--random-labels", "--no-text"])])
def test_ablation_options_train(labelled, tmp_path, variant, extra):
    mllm, labels, _ = labelled
    args = train_evo.parser().parse_args(["--mllm", str(mllm), "--labels", str(labels), "--out", str(tmp_path / "c"),
                                          "--epochs", "2", "--variant", variant, *extra])
    m = train_evo.train(args, log=lambda *_: None)
    assert EvoCompressor.load(tmp_path / "c").config.layers == (2 if variant == "compact" else 1)
    assert m["text"] == ("--no-text" not in extra)


def test_labels_of_another_model_are_refused(labelled, tmp_path, capsys):
    _, labels, d = labelled
    other, _ = save_tiny_llava(tmp_path / "other", seed=3)
    code = train_evo.main(["--mllm", str(other), "--labels", str(labels), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "another model" in err and "\n" not in err and not (tmp_path / "x").exists()


def test_single_token_losses_are_the_adapters_one_token_losses(labelled):
    import torch
    from compressors.evo_label import LlavaAdapter
    mllm, labels, _ = labelled
    header, rows = train_evo.read_labels(labels, mllm)
    model, tok, processor = evo_label_cli.load_llava(mllm)
    adapter = LlavaAdapter(model)
    feats = train_evo.features(adapter, tok, processor, [(r["image"], r["question"], r["answer"]) for r in rows[:2]], 16)
    single = train_evo.single_token_losses(adapter, tok, feats, rows[:2], header["config"]["prompt"])
    n = len(rows[0]["mask"])
    assert single.shape == (2, n)
    ids, lab = evo_label_cli.encode(tok, header["config"]["prompt"], rows[1]["question"], rows[1]["answer"], n,
                                    model.config.image_token_id)
    fn = adapter.loss_fn(evo_label_cli.pixel_values(processor, rows[1]["image"]), ids, lab)
    one = torch.zeros(1, n, dtype=torch.bool)
    one[0, 3] = True
    assert torch.allclose(single[1, 3], fn(one)[0], atol=1e-6)
    assert single.std() > 0  # tokens differ: the term has something to rank


def test_rank_loss_puts_the_best_single_token_on_top():
    import torch
    single = torch.rand(5, 16) + 0.2
    logits = torch.zeros(5, 16, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=1.0)
    before = train_evo.top1_regret(logits.detach() + torch.randn(5, 16), single)
    for _ in range(200):
        opt.zero_grad()
        train_evo.rank_loss(logits, single, 0.05).backward()
        opt.step()
    assert torch.equal(logits.argmax(1), single.argmin(1)) and train_evo.top1_regret(logits.detach(), single) == 0 < before
    # the order below the top follows the losses too (a lower loss, a higher logit)
    assert all(torch.equal(logits[i].argsort(), single[i].argsort(descending=True)) for i in range(5))


def test_rank_term_trains_and_reports_top1_regret(labelled, tmp_path):
    mllm, labels, _ = labelled
    argv = ["--mllm", str(mllm), "--labels", str(labels), "--epochs", "2", "--out", str(tmp_path / "r"), "--rank-weight", "1"]
    m = train_evo.train(train_evo.parser().parse_args(argv), log=lambda *_: None)
    assert all(h[part]["top1_regret"] >= 0 for h in m["history"] for part in ("train", "val"))
    assert m["rank_weight"] == 1 and "1 rank (single-token losses" in EvoCompressor.load(tmp_path / "r").provenance


def test_negative_rank_weight_is_refused(labelled, tmp_path, capsys):
    mllm, labels, _ = labelled
    code = train_evo.main(["--mllm", str(mllm), "--labels", str(labels), "--out", str(tmp_path / "x"), "--rank-weight", "-1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--rank-weight must be >= 0" in err and not (tmp_path / "x").exists()
