"""Every artifact used end to end from Python, exactly as a phone uses it: MOOSComp's compress_prompt with the
model call going through bucketed batch-1 artifacts, EvoComp's top-k over an artifact's keep logits, and a
build folder loaded back into both (the artifacts plus the eager fp32 references they are checked against).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from compressors import evo as evo_lib
from compressors.moos import EagerScorer, MOOSCompressor
from compressors.spec import ReferenceUnavailable, get_spec

from .manifest import ManifestError, read_manifest
from .runners import BaseRunner, RunnerUnavailable, load_runner

MOOS_INPUTS = ("input_ids", "attention_mask")
MOOS_OUTPUTS = ("keep_prob", "outlier_z")


class MoosArtifactScorer:
    """A MOOSComp scorer over fixed-length artifacts, one per bucket. The compressor pads every batch to the
    smallest bucket that holds its longest window (seq_lens); artifacts have batch 1, so rows run one by one,
    as on a phone."""

    def __init__(self, runners_by_bucket: dict[int, BaseRunner]):
        if not runners_by_bucket:
            raise ValueError("MoosArtifactScorer needs at least one bucket runner")
        self.runners = {int(b): r for b, r in runners_by_bucket.items()}
        self.seq_lens = tuple(sorted(self.runners))
        names = {tuple(r.output_names) for r in self.runners.values()}
        if len(names) != 1 or "keep_prob" not in next(iter(names)):
            raise ValueError(f"bucket runners must share outputs with keep_prob among them, got {sorted(names)}")

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        length = input_ids.shape[1]
        if length not in self.runners:
            raise ValueError(f"no artifact for length {length}: the buckets are {list(self.seq_lens)}")
        runner = self.runners[length]
        rows = [runner.run({"input_ids": input_ids[i : i + 1].astype(np.int32, copy=False),
                            "attention_mask": attention_mask[i : i + 1].astype(np.int32, copy=False)})
                for i in range(input_ids.shape[0])]
        return {k: np.concatenate([r[k] for r in rows]) for k in MOOS_OUTPUTS if k in rows[0]}


class BucketedEagerScorer(EagerScorer):
    """The eager scorer padding to the same buckets as the artifacts, so both see the very same inputs."""

    def __init__(self, module, seq_lens):
        super().__init__(module)
        self.seq_lens = tuple(sorted(seq_lens))


def evo_compress(runner: BaseRunner, visual_tokens, text_embeds, ratio: float | None = 3.0, text_mask=None, k: int | None = None):
    """Top-k visual tokens by an EvoComp artifact's keep logits: (kept tokens, kept indices in original order).

    Inputs are unbatched [N, Dv] / [T, Dt] (outputs then [k, Dv] / [k]) or batch 1. A question shorter than
    the artifact's text length is zero-padded and masked out, as an app does; N must equal the artifact's.
    """
    v, e = np.asarray(visual_tokens, dtype=np.float32), np.asarray(text_embeds, dtype=np.float32)
    single = v.ndim == 2
    if single:
        v, e = v[None], e[None]
    if v.ndim != 3 or e.ndim != 3 or v.shape[0] != 1 or e.shape[0] != 1:
        raise ValueError(f"expected visual_tokens [N, Dv] and text_embeds [T, Dt] (or batch 1), got {v.shape} and {e.shape}")
    t = e.shape[1]
    mask = np.ones((1, t), dtype=np.float32) if text_mask is None else np.asarray(text_mask, dtype=np.float32).reshape(1, t)
    (_, t_max, _), mask_dtype = runner.input_spec["text_embeds"][0], runner.input_spec["text_mask"][1]
    if t_max is not None and t < t_max:
        e = np.concatenate([e, np.zeros((1, t_max - t, e.shape[2]), dtype=np.float32)], axis=1)
        mask = np.concatenate([mask, np.zeros((1, t_max - t), dtype=np.float32)], axis=1)
    elif t_max is not None and t > t_max:
        raise ValueError(f"{runner.name}: {t} text tokens exceed the artifact's {t_max}: truncate the question")
    logits = runner.run({"visual_tokens": v, "text_embeds": e, "text_mask": mask.astype(mask_dtype)})["keep_logits"]
    idx = evo_lib.select(logits, k=k, ratio=None if k is not None else ratio)
    kept = np.take_along_axis(v, idx[..., None], axis=1)
    return (kept[0], idx[0]) if single else (kept, idx)


@dataclasses.dataclass
class Build:
    """A build folder: manifest, artifact runners, and the eager fp32 references rebuilt from its provenance."""

    dir: str
    manifest: dict
    threads: int | None = None
    _references: dict = dataclasses.field(default_factory=dict, repr=False)

    def artifacts(self, model: str | None = None) -> list[dict]:
        return [a for a in self.manifest["artifacts"] if model is None or a["model"] == model]

    def runner(self, artifact: dict) -> BaseRunner:
        return load_runner(self.dir, artifact, threads=self.threads)

    def reference(self, name: str):
        """The eager fp32 reference of compressor `name`, rebuilt by its spec from the manifest (cached); its
        known failures are a ManifestError; others propagate (runtime_py.parity.load_references names them)."""
        if name not in self._references:
            try:
                self._references[name] = get_spec(name).reference(self.manifest["models"][name], self.dir)
            except ReferenceUnavailable as e:
                raise ManifestError(str(e)) from None
        return self._references[name]

    @property
    def moos(self) -> MOOSCompressor:
        """The eager reference compressor, with the build's tokenizer, at the build's largest bucket."""
        return self.reference("moos")

    @property
    def evo(self) -> evo_lib.EvoCompressor:
        return self.reference("evo")

    def moos_compressor(self, artifacts: list[dict]) -> MOOSCompressor:
        """compress_prompt through the given bucket artifacts (one backend and quant) instead of eager."""
        return self.moos.with_scorer(MoosArtifactScorer({a["bucket"]: self.runner(a) for a in artifacts}))


def load_build(build_dir, threads: int | None = None) -> Build:
    return Build(os.fspath(build_dir), read_manifest(build_dir), threads)


__all__ = ["Build", "BucketedEagerScorer", "MoosArtifactScorer", "RunnerUnavailable", "evo_compress", "load_build"]
