"""One runtime_cpp test case folder, written in a subprocess by tests/test_runtime_cpp.py:

    python tests/runtime_cpp_case.py {bert,xlmr,xlmr-spm,default} OUT_DIR [--pte BUCKET] [--sentences N]

OUT_DIR gets moos_tokenizer/ (the compressor's tokenizer, saved as export.build saves it), vectors.json
from compressors.vectors.write_vectors, and with --pte an fp32 XNNPACK .pte of the scorer at that bucket plus a
tiny EvoComp .pte (evo.pte) whose inputs and logits are in the vectors. One torch thread: several cases
run side by side on two cores, and oversubscribed threads made a tiny model 8x slower here.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from checkpoints import make_bert, make_xlmr  # noqa: E402
from compressors.evo import EvoCompConfig, EvoCompressor  # noqa: E402
from compressors.moos import MOOSCompressor  # noqa: E402
from compressors.moos_scorer import INPUT_NAMES, example_inputs  # noqa: E402
from compressors.vectors import write_vectors  # noqa: E402

TINY_EVO = dict(visual_dim=32, text_dim=24, hidden=32, layers=1, heads=2, ffn=64, max_visual_tokens=36,
                max_text_tokens=8, grid=(6, 6))


def tiny_evo() -> EvoCompressor:
    evo = EvoCompressor(EvoCompConfig(**TINY_EVO))
    with torch.no_grad():  # spread the logits so that top-k has no near-ties at fp32 noise level
        evo.head.weight.mul_(100.0)
    return evo.eval()


def use_sentencepiece_normalizer(checkpoint: str) -> None:
    """Give a tiny XLM-R the normalizer layout of the public XLM-R tokenizer.json: a SentencePiece
    nmt_nfkc charsmap (Precompiled) then Replace(" {2,}", " "). The charsmap comes from a SentencePiece
    model trained here with that rule, as the public one was."""
    import tempfile

    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import Regex, Tokenizer, normalizers

    from checkpoints import corpus_texts

    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "corpus.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(corpus_texts()))
        spm.SentencePieceTrainer.train(input=os.path.join(d, "corpus.txt"), model_prefix=os.path.join(d, "sp"),
                                       vocab_size=500, normalization_rule_name="nmt_nfkc", minloglevel=2)
        proto = sentencepiece_model_pb2.ModelProto()
        with open(os.path.join(d, "sp.model"), "rb") as f:
            proto.ParseFromString(f.read())
    path = os.path.join(checkpoint, "tokenizer.json")
    tok = Tokenizer.from_file(path)
    tok.normalizer = normalizers.Sequence([normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.save(path)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["bert", "xlmr", "xlmr-spm", "default"])
    p.add_argument("out")
    p.add_argument("--pte", type=int, default=0, help="also export the scorer at this bucket, and a tiny EvoComp")
    p.add_argument("--sentences", type=int, default=150)
    args = p.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    if args.kind == "default":
        c = MOOSCompressor.from_default()
    else:
        make = make_bert if args.kind == "bert" else make_xlmr
        name = "ckpt-bert-base-multilingual-cased" if args.kind == "bert" else "ckpt-xlm-roberta-large"
        checkpoint = make(os.path.join(args.out, name))
        if args.kind == "xlmr-spm":
            use_sentencepiece_normalizer(checkpoint)
        c = MOOSCompressor.from_pretrained(checkpoint)
    c.tokenizer.save_pretrained(os.path.join(args.out, "moos_tokenizer"))
    evo = tiny_evo() if args.pte else None
    write_vectors(c, evo, os.path.join(args.out, "vectors.json"), max_sentences=args.sentences)
    if args.pte:
        from export import executorch_xnnpack

        ids, mask = example_inputs(args.pte, vocab_size=len(c.tokenizer))
        executorch_xnnpack.export(c.torch_module, (ids, mask), INPUT_NAMES, c.torch_module.output_names, "fp32",
                                  os.path.join(args.out, f"moos_xnnpack_fp32_{args.pte}.pte"))
        executorch_xnnpack.export(evo, evo.example_inputs(), EvoCompressor.INPUT_NAMES, EvoCompressor.OUTPUT_NAMES,
                                  "fp32", os.path.join(args.out, "evo.pte"))


if __name__ == "__main__":
    main()
