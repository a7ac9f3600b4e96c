"""How many target-LLM tokens a piece of text costs.

LLMLingua-2 counts with tiktoken's gpt-3.5-turbo encoding, whose table is downloaded at first use; nothing
here may download. compkit's offline default counts the compressor's own tokenizer pieces; pass a callable
or the directory of the target LLM's Hugging Face tokenizer to count what the LLM will really see.
"""
from __future__ import annotations

import os
from typing import Callable, Iterable

TokenCounter = Callable[[str], int]


class HFTokenCounter:
    """Counts tokens with a Hugging Face tokenizer; batches and caches per-word counts for the threshold."""

    def __init__(self, tokenizer, name: str = ""):
        self.tokenizer = tokenizer
        self.name = name or getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        self._cache: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_many(self, words: Iterable[str]) -> list[int]:
        words = list(words)
        missing = [w for w in dict.fromkeys(words) if w not in self._cache]
        if missing:
            ids = self.tokenizer(missing, add_special_tokens=False)["input_ids"]
            self._cache.update(zip(missing, map(len, ids)))
            if len(self._cache) > 200_000:  # bound memory on huge vocabularies of words
                self._cache.clear()
                self._cache.update(zip(missing, map(len, ids)))
        return [self._cache[w] for w in words]


class CallableTokenCounter:
    def __init__(self, fn: TokenCounter, name: str = ""):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "callable")

    def __call__(self, text: str) -> int:
        return int(self.fn(text))

    def count_many(self, words: Iterable[str]) -> list[int]:
        cache: dict[str, int] = {}
        return [cache[w] if w in cache else cache.setdefault(w, int(self.fn(w))) for w in words]


def make_token_counter(spec, default_tokenizer) -> HFTokenCounter | CallableTokenCounter:
    """spec: None (the compressor's own tokenizer), a callable str -> int, a tokenizer, or a tokenizer dir."""
    if spec is None:
        return HFTokenCounter(default_tokenizer, name="compressor tokenizer (offline default)")
    if isinstance(spec, (HFTokenCounter, CallableTokenCounter)):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        from transformers import AutoTokenizer

        if not os.path.isdir(spec):
            raise ValueError(f"token_counter directory not found: {spec}; pass a Hugging Face tokenizer directory or a callable")
        try:
            return HFTokenCounter(AutoTokenizer.from_pretrained(os.fspath(spec)), name=os.fspath(spec))
        except Exception as e:  # transformers raises many kinds here; the user needs one line
            raise ValueError(f"cannot load a tokenizer from {spec} for token_counter: {type(e).__name__}: {e}") from None
    if hasattr(spec, "__call__") and hasattr(spec, "convert_tokens_to_ids"):
        return HFTokenCounter(spec)
    if callable(spec):
        return CallableTokenCounter(spec)
    raise TypeError(f"token_counter must be None, a callable str -> int, a tokenizer or a directory, not {type(spec).__name__}")
