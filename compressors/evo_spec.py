"""EvoComp's spec (compressors/spec.py): how export, parity and the runtime take the visual-token compressor."""
from __future__ import annotations

import dataclasses
import os

from compkit.files import sha256_path

from .spec import CheckpointRefused, CompressorSpec, Loaded, OptionRefused, ReferenceUnavailable, register

EVO_RATIOS = (2.0, 3.0, 4.0)


def load(path: str | None, options: dict) -> Loaded:
    from .calibration import evo_calibration, evo_token_set
    from .evo import EvoCompressor, default_evo

    try:
        model = EvoCompressor.load(path) if path else default_evo()
    except (FileNotFoundError, ValueError) as e:
        raise CheckpointRefused(str(e)) from None
    cfg = model.config
    visual_tokens = options.get("visual_tokens") or cfg.max_visual_tokens
    if visual_tokens > cfg.max_visual_tokens:
        raise OptionRefused(f"--visual-tokens {visual_tokens} exceeds the EvoComp config's max_visual_tokens "
                                f"({cfg.max_visual_tokens})")
    provenance = f"checkpoint {os.path.abspath(path)}" if path else model.provenance
    info = {"provenance": provenance, "checkpoint_sha256": sha256_path(path) if path else None,
            "checkpoint_provenance": model.provenance if path else None,
            "config": dataclasses.asdict(cfg), "visual_tokens": visual_tokens, "text_tokens": cfg.max_text_tokens}
    grid = tuple(cfg.grid) if visual_tokens == cfg.max_visual_tokens else None
    return Loaded(model.eval(), list(EvoCompressor.OUTPUT_NAMES), info,
                  example=lambda b: evo_token_set(visual_tokens, cfg.visual_dim, cfg.max_text_tokens, cfg.text_dim, 0, grid),
                  calibration=lambda b: evo_calibration(cfg, visual_tokens), source=model)


def reference(info: dict, build_dir: str):
    """The checkpoint, the shipped trained default, or the seeded untrained weights of the recorded config."""
    from . import evo

    provenance = info.get("provenance")
    if provenance == evo.DEMO_PROVENANCE:
        config = evo.EvoCompConfig.from_dict(info["config"]) if info.get("config") else evo.EvoCompConfig()
        return evo.seeded_evo(config, int(info.get("seed", 0)))
    if isinstance(provenance, str) and provenance.startswith("checkpoint "):
        path = provenance[len("checkpoint "):]
        if not os.path.isdir(path):
            raise ReferenceUnavailable(f"evo: the build was made from checkpoint {path}, which is not here; "
                             "the eager reference needs it (copy it back or rebuild)")
        return evo.EvoCompressor.load(path)
    default = evo.default_evo()
    if provenance != default.provenance:
        raise ReferenceUnavailable(f"evo: unknown provenance {provenance!r} (expected {default.provenance!r} or 'checkpoint PATH')")
    return default


def report(decisions: dict) -> tuple[str, str]:
    return " / ".join(f"{v:.4f}" for v in decisions["iou"].values()), "-"


EVO = register(CompressorSpec(
    name="evo", title="EvoComp", input_names=("visual_tokens", "text_embeds", "text_mask"), load=load,
    reference=reference, parity="runtime_py.parity_evo:check",
    # iou: top-k IoU, mean over token sets, minimum over the ratios; fp32 must agree beyond fp32 ties
    thresholds={"fp32": {"iou_beyond_ties": 1.0}, "fp16": {"iou": 0.95}, "int8": {"iou": 0.95}, "4bit": {"iou": 0.95}},
    report=report, decision_label="EvoComp: top-k IoU at 2x / 3x / 4x",
    checkpoint_help="EvoCompressor.save() folder (default: the shipped trained default_evo())",
    mask_inputs=("text_mask",), rank=1))
