"""MOOSComp's spec (compressors/spec.py): how export, parity and the runtime take the text compressor."""
from __future__ import annotations

import os

from compkit.files import atomic_path, sha256_path

from .spec import CheckpointRefused, CompressorSpec, Loaded, OptionRefused, ReferenceUnavailable, register

MOOS_RATES = (0.25, 0.33, 0.5)
CALIBRATION_WINDOWS = 16  # per bucket, from the shipped corpus (compressors/calibration.py)


def load(path: str | None, options: dict) -> Loaded:
    from .moos import CheckpointError, MOOSCompressor

    seq_lens = sorted(options.get("seq_lens") or (128, 256, 512))
    try:
        comp = MOOSCompressor.from_pretrained(path) if path else MOOSCompressor.from_default()
    except CheckpointError as e:
        raise CheckpointRefused(str(e)) from None
    return loaded(comp, seq_lens, checkpoint_sha256=sha256_path(path) if path else None)


def loaded(comp, seq_lens, checkpoint_sha256=None, module=None) -> Loaded:
    """A MOOSCompressor as export takes it; `module` replaces its scorer module (the e2e benchmark's
    random-weight scorers of other shapes, with this compressor's tokenizer and calibration text)."""
    from . import moos_scorer
    from .calibration import moos_calibration

    module = comp.torch_module if module is None else module
    if hasattr(module, "for_export"):  # eager softmax(QK^T)V attention: SDPA decomposes into undelegated ops
        module = module.for_export()
    max_pos = getattr(module.model.config, "max_position_embeddings", 512)
    if seq_lens[-1] > max_pos:
        raise OptionRefused(f"bucket {seq_lens[-1]} exceeds the MOOSComp model's {max_pos} positions: "
                                f"use --seq-lens <= {max_pos}")
    vocab = len(comp.tokenizer)
    info = {"provenance": comp.provenance, "checkpoint_sha256": checkpoint_sha256,
            "tokenizer_dir": "moos_tokenizer", "family": comp.family,
            "outlier": "representation" if module.with_outlier else None, "special_tokens": "llmlingua",
            "buckets": list(seq_lens)}
    return Loaded(module, list(module.output_names), info,
                  example=lambda b: moos_scorer.example_inputs(b, vocab_size=vocab),
                  calibration=lambda b: moos_calibration(comp, b, count=CALIBRATION_WINDOWS), source=comp,
                  write_files=write_files)


def write_files(job: Loaded, out_dir: str, sources: dict) -> None:
    """The tokenizer folder the apps load, and vectors.json: the Python reference's token ids, probabilities
    and compressed texts (plus EvoComp's selection vectors), which the native core (runtime_cpp) and the demo
    apps' device tests must reproduce (docs/RUNTIME_CPP.md)."""
    import torch

    from .vectors import write_vectors

    with atomic_path(os.path.join(out_dir, job.info["tokenizer_dir"]), directory=True) as tmp:
        job.source.tokenizer.save_pretrained(tmp)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # windows run one at a time; more threads only contend (measured 8x slower loaded)
    try:
        evo = sources["evo"].source if "evo" in sources else None
        write_vectors(job.source, evo, os.path.join(out_dir, "vectors.json"), max_sentences=120)
    finally:
        torch.set_num_threads(threads)
    print("wrote vectors.json (shared test vectors for runtime_cpp and the demo apps)", flush=True)


def _checkpoint(provenance) -> str | None:
    from . import evo
    from .moos import DEMO_PROVENANCE as DEFAULT

    if provenance == DEFAULT:
        return None
    if provenance == evo.DEMO_PROVENANCE:
        raise ReferenceUnavailable("moos: the build was made with the former untrained MOOSComp default, which is gone: "
                         "rebuild it (python -m export.build)")
    if isinstance(provenance, str) and provenance.startswith("checkpoint "):
        path = provenance[len("checkpoint "):]
        if not os.path.isdir(path):
            raise ReferenceUnavailable(f"moos: the build was made from checkpoint {path}, which is not here; "
                             "the eager reference needs it (copy it back or rebuild)")
        return path
    raise ReferenceUnavailable(f"moos: unknown provenance {provenance!r} (expected {DEFAULT!r} or 'checkpoint PATH')")


def reference(info: dict, build_dir: str):
    """The eager reference compressor, with the build's tokenizer, at the build's largest bucket."""
    from transformers import AutoTokenizer

    from .moos import EagerScorer, MOOSCompressor

    outlier = info.get("outlier") or "representation"
    kwargs = {"outlier": outlier, "special_tokens": info.get("special_tokens", "llmlingua")}
    path = _checkpoint(info.get("provenance"))
    ref = MOOSCompressor.from_default(**kwargs) if path is None else MOOSCompressor.from_pretrained(path, **kwargs)
    tok_dir = os.path.join(build_dir, info.get("tokenizer_dir", "moos_tokenizer"))
    if not os.path.isdir(tok_dir):
        raise ReferenceUnavailable(f"moos: tokenizer folder {tok_dir} is missing from the build; rebuild it")
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    if tokenizer.get_vocab() != ref.tokenizer.get_vocab():
        raise ReferenceUnavailable(f"moos: the build's tokenizer ({len(tokenizer)} tokens) differs from the checkpoint's "
                         f"({len(ref.tokenizer)}): the build is inconsistent, rebuild it")
    buckets = info.get("buckets") or [512]
    return MOOSCompressor(tokenizer, EagerScorer(ref.torch_module), outlier=outlier, outlier_weight=ref.outlier_weight,
                          rarity_table=ref.rarity_table, max_seq_len=min(512, max(buckets)),
                          special_tokens=kwargs["special_tokens"], provenance=ref.provenance, torch_module=ref.torch_module)


def corpus_stats(reference, prompts: list[str]) -> dict:
    long = sum(len(reference.tokenizer(p, add_special_tokens=False)["input_ids"]) > 510 for p in prompts)
    stats = {"prompts_longer_than_512_pieces": int(long)}
    if prompts and (len(prompts) < 20 or not long):
        stats["warning"] = (f"{len(prompts)} prompts, {long} longer than one 512 window: MOOSComp parity wants >= 20 "
                            "with some longer than 512 pieces, so that multi-window chunking is checked")
    return stats


def report(decisions: dict) -> tuple[str, str]:
    return (" / ".join(f"{v * 100:.2f}%" for v in decisions["word_agreement"].values()),
            " / ".join(f"{v * 100:.0f}%" for v in decisions["exact_text"].values()))


MOOS = register(CompressorSpec(
    name="moos", title="MOOSComp", input_names=("input_ids", "attention_mask"), load=load, reference=reference,
    parity="runtime_py.parity_moos:check",
    # word_agreement: kept-word agreement through the full compress_prompt, minimum over the rates;
    # exact_text only where every decision must be identical
    thresholds={"fp32": {"word_agreement": 1.0, "exact_text": 1.0}, "fp16": {"word_agreement": 0.98},
                "int8": {"word_agreement": 0.98}, "4bit": {"word_agreement": 0.98}},
    report=report, decision_label="MOOSComp: kept-word agreement at rate 0.25 / 0.33 / 0.5",
    checkpoint_help="Hugging Face token-classification checkpoint (default: the embedded MiniLM-L6 trained on GSM8K train)",
    bucketed=True, mask_inputs=("attention_mask",), smoothquant=True, rank=0, corpus_stats=corpus_stats))
