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
