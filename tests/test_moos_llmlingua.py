"""compkit's MOOSComp with outlier_weight=0 returns exactly what llmlingua 0.2.2's LLMLingua-2 returns.

llmlingua runs for real on local checkpoints of both tokenizer families. Its tiktoken table would need a
download, so tiktoken is patched with an offline counter, and compkit gets the very same counter.
"""
import pytest

from compressors.moos import MOOSCompressor

FORCE_MIXED = ["\n", "?", ".", "!!", "<<", "$"]  # "!!" and "<<" are several pieces: they go through [NEWi]


def _offline_counter(path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def _pair(path, monkeypatch_module):
    import tiktoken

    count = _offline_counter(path)

    class OfflineEncoding:
        def encode(self, text):
            return [0] * count(text)

    monkeypatch_module.setattr(tiktoken, "encoding_for_model", lambda name: OfflineEncoding())
    from llmlingua import PromptCompressor

    reference = PromptCompressor(model_name=path, device_map="cpu", use_llmlingua2=True)
    return reference, MOOSCompressor.from_pretrained(path, token_counter=count, outlier_weight=0.0)


@pytest.fixture(scope="module")
def mp_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module", params=["bert", "xlmr"])
def pair(request, mp_module, tmp_path_factory):
    path = request.getfixturevalue("bert_dir" if request.param == "bert" else "xlmr_dir")
    return _pair(path, mp_module)


def _same(reference, ours, context, **kw):
    expected = reference.compress_prompt(context, **kw)
    got = ours.compress_prompt(context, **kw)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == expected[key], f"{key} differs for {kw}"
    return got


def test_every_corpus_text_at_three_rates(pair, corpus):
    reference, ours = pair
    for text in corpus:
        for rate in (0.25, 0.33, 0.5):
            _same(reference, ours, text, rate=rate)


def test_long_inputs_span_several_windows(pair, corpus):
    reference, ours = pair
    long = "\n".join(corpus[:12])
    assert len(ours.tokenizer.tokenize(long)) > 1500  # several 510-piece windows
    for rate in (0.2, 0.5, 0.9):
        _same(reference, ours, long, rate=rate)
    _same(reference, ours, long, target_token=200)
    _same(reference, ours, long, rate=0.4, token_to_word="first", return_word_label=True)
    _same(reference, ours, long, rate=0.4, chunk_end_tokens=[","], return_word_label=True, word_sep="|", label_sep="=")


def test_force_tokens_digits_and_drop_consecutive(pair, corpus):
    reference, ours = pair
    long = "\n\n".join(corpus[:8]) + "\n?? !! !! << <<\n\n\n"
    _same(reference, ours, long, rate=0.33, force_tokens=FORCE_MIXED)
    _same(reference, ours, long, rate=0.33, force_tokens=FORCE_MIXED, force_reserve_digit=True, return_word_label=True)
    _same(reference, ours, long, rate=0.5, force_tokens=FORCE_MIXED, drop_consecutive=True, return_word_label=True)
    _same(reference, ours, long, rate=0.25, force_tokens=["\n", "!!"], chunk_end_tokens=[".", "\n", "!!"],
          drop_consecutive=True, force_reserve_digit=True)


def test_context_level_filter(pair, corpus):
    reference, ours = pair
    contexts = corpus[:10]
    _same(reference, ours, contexts, rate=0.5, use_context_level_filter=True, return_word_label=True)
    _same(reference, ours, contexts, rate=0.5, use_context_level_filter=True, target_context=4, force_context_ids=[9])
    _same(reference, ours, contexts, target_token=300, use_context_level_filter=True, return_word_label=True)
    _same(reference, ours, contexts, rate=0.4, use_context_level_filter=True, context_level_target_token=800)
    _same(reference, ours, contexts, rate=0.5, use_context_level_filter=True, use_token_level_filter=False)
    _same(reference, ours, contexts, rate=1.0, return_word_label=True)


def test_gsm8k_prompts(pair, gsm8k):
    reference, ours = pair
    for row in gsm8k[:40]:
        _same(reference, ours, row["question"] + "\n" + row["answer"], rate=0.33, force_tokens=["\n"],
              force_reserve_digit=True)


def test_checkpoint_without_force_slots_and_unknown_pieces(mp_module, tmp_path, corpus):
    import checkpoints

    # cased input through an uncased vocabulary: capitalised words become [UNK] and are skipped by both
    path = checkpoints.make_bert(str(tmp_path / "cased-bert-base-multilingual-cased"), lowercase=False, seed=3)
    reference, ours = _pair(path, mp_module)
    for text in corpus[:6]:
        _same(reference, ours, text, rate=0.4, force_tokens=["!!", "\n"], return_word_label=True)
    # the public checkpoints ship [NEW0]..[NEW99]: then nothing is resized
    path = checkpoints.make_bert(str(tmp_path / "new-bert-base-multilingual-cased"), with_new_tokens=True, seed=4)
    reference, ours = _pair(path, mp_module)
    _same(reference, ours, "\n".join(corpus[:5]), rate=0.3, force_tokens=["<<", "\n"], return_word_label=True)


@pytest.mark.slow
def test_trained_default_matches_llmlingua(mp_module, tmp_path, corpus):
    """The shipped trained default, saved as a folder llmlingua can read, against compkit's from_default()."""
    from compressors.moos import default_token_classifier

    path = str(tmp_path / "compkit-default-bert-base-multilingual-cased")
    model, tokenizer = default_token_classifier()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    reference, _ = _pair(path, mp_module)
    ours = MOOSCompressor.from_default(token_counter=_offline_counter(path), outlier_weight=0.0)
    long = "\n".join(corpus[:6])
    for rate in (0.25, 0.33, 0.5):
        _same(reference, ours, long, rate=rate, return_word_label=True)
    _same(reference, ours, long, rate=0.33, force_tokens=FORCE_MIXED, drop_consecutive=True)
