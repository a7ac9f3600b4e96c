import pytest
import torch

from compressors import evo_eval, evo_label_cli, train_evo
from compressors.evo import EvoCompressor
from compressors.evo_label import LlavaAdapter
from tiny_llava import save_tiny_llava

pytestmark = pytest.mark.slow  # tiny LLaVA label searches and trainings: ~20-60 s on 2 cores


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-eval")
    mllm, data = save_tiny_llava(d, n_images=6)
    labels = d / "labels.jsonl"
    assert evo_label_cli.main(["--mllm", str(mllm), "--data", str(data), "--out", str(labels),
                               "--population", "6", "--parents", "2", "--generations", "1"]) == 0
    train_evo.train(train_evo.parser().parse_args(["--mllm", str(mllm), "--labels", str(labels), "--out", str(d / "evo"),
                                                   "--epochs", "2"]), log=lambda *_: None)
    model, tok, processor = evo_label_cli.load_llava(mllm)
    adapter = LlavaAdapter(model)
    items = evo_label_cli.read_data(str(data))
    return adapter, evo_eval.prepare(adapter, tok, processor, items, 16), EvoCompressor.load(d / "evo"), labels


def test_pruning_paths_agree_when_everything_is_kept(setup):
    adapter, samples, _, _ = setup
    full = evo_eval.accuracy(adapter, samples)
    every = [torch.arange(s.visual.shape[0]) for s in samples]
    assert evo_eval.accuracy(adapter, samples, visual=[s.visual for s in samples]) == full
    assert evo_eval.accuracy(adapter, samples, keep=every, prune_layer=1) == full
    # the LLM really answers from the kept tokens: logits differ when one token is left
    one = [s.visual[:1] for s in samples]
    emb_full = evo_eval.sequences(adapter, samples, [s.visual for s in samples])[0]
    emb_one = evo_eval.sequences(adapter, samples, one)[0]
    assert emb_full.shape[1] - emb_one.shape[1] == samples[0].visual.shape[0] - 1


def test_table_covers_every_method_and_ratio(setup):
    adapter, samples, evo, labels = setup
    rows = evo_eval.table(adapter, samples, {"evocomp": (evo, True)}, (4, 4), log=lambda *_: None)
    assert set(rows) == {"all_tokens", "evocomp", "evocomp_l1", *evo_eval.BASELINES}
    for name, acc in rows.items():
        assert all(0.0 <= acc[str(r)] <= 1.0 for r in [2, 3, 4, 8, 16]), name  # 16 = N: keep one
    assert samples[0].cls_attn.shape == (16,) and samples[0].keys.shape[0] == 16 and samples[0].fastv.shape == (16,)
    figs = evo_eval.search_figures(labels)
    assert figs["samples"] == 6 and figs["forwards_per_sample"] == 12
