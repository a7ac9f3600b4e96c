"""Markdown table and speedup plot of a bench_device.e2e result."""
from __future__ import annotations

import os

from compkit.files import atomic_path

PAPER_POINTS = {"MOOSComp paper (text, 4x)": (4.0, 3.3), "EvoComp paper (vision, 3x)": (3.0, 1.6)}


def fx(x) -> str:
    return "-" if x is None else f"{x:.2f}x"


def llm_label(llm: dict) -> str:
    label = f"{llm.get('name', 'custom')} {llm.get('quant', '')}".strip()
    return label + (" (EAGER PyTorch fallback)" if llm.get("runtime") == "eager PyTorch fallback" else "")


def markdown(r: dict, png_name: str) -> str:
    info, llm, text, vis = r["device_info"], r["llm"], r["text"], r["vision"]
    llm_name = llm_label(llm)
    out = [f"# End-to-end speedup: {r['device']} ({info.get('model')}, {info.get('soc')}, {info.get('cores')} cores), "
           f"LLM {llm_name}", "",
           f"Preset `{r['preset']}`; median of {r['repeats']} timed calls per figure; prompt from {r['prompt_source']}; "
           f"load average before {r['machine_load']['before']}, after {r['machine_load']['after']}.", "",
           "Timed where: " + "; ".join(f"{k}: {v}" for k, v in r["timed_where"].items()) + ".", "",
           f"## Text: {text['tokens']}-token prompt, full prefill {text['full_prefill_ms']:.0f} ms", "",
           "| compressor | target ratio | tokens out | achieved ratio | compress ms | prefill ms | total ms | "
           "speedup | prefill-only speedup | speedup by CPU time |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in text["rows"]:
        out.append(f"| {row['compressor']} | {row['target_ratio']:g}x | {row['tokens_out']} | {row['achieved_ratio']:.2f}x | "
                   f"{row['compress_ms']:.0f} | {row['prefill_ms']:.0f} | {row['total_ms']:.0f} | "
                   f"**{row['speedup']:.2f}x** | {row['prefill_only_speedup']:.2f}x | {fx(row['cpu']['speedup'])} |")
    out += ["", "Compressors (" + r.get("compressor_quant", "fp32") + " XNNPACK .pte): "
            + "; ".join(f"{k}: {v}" for k, v in r["compressors"].items()) + ".", "",
            "Where the compression time goes (runner pipeline mode, median ms per stage):", "",
            "| compressor | target ratio | windows | tokenize | forward | post-process | total | not forward |",
            "|---|---|---|---|---|---|---|---|"]
    for row in text["rows"]:
        st = row["stages_ms"]
        out.append(f"| {row['compressor']} | {row['target_ratio']:g}x | {row['windows']} | {st['tokenize']:.1f} | "
                   f"{st['forward']:.1f} | {st['postprocess']:.1f} | {st['total']:.1f} | "
                   f"{100 * st['non_forward_share']:.1f}% |")
    out += ["",
            f"## Vision: {vis['visual_tokens']} visual + {vis['text_tokens']} text tokens, full prefill "
            f"{vis['full_prefill_ms']:.0f} ms; ViT ({vis['vit_patches']} patches) {vis['vit_ms']:.0f} ms", "",
            "| target ratio | visual kept | EvoComp ms | prefill ms | prefill speedup | TTFT full ms | TTFT ms | TTFT speedup "
            "| by CPU time: prefill / TTFT |", "|---|---|---|---|---|---|---|---|---|"]
    for row in vis["rows"]:
        out.append(f"| {row['target_ratio']:g}x | {row['visual_kept']} | {row['evo_ms']:.1f} | {row['prefill_ms']:.0f} | "
                   f"**{row['prefill_speedup']:.2f}x** | {row['ttft_full_ms']:.0f} | {row['ttft_ms']:.0f} | "
                   f"{row['ttft_speedup']:.2f}x | {fx(row['cpu']['prefill_speedup'])} / {fx(row['cpu']['ttft_speedup'])} |")
    out += ["", *[f"- {n}" for n in r["notes"]], "", f"![speedup against ratio]({png_name})", ""]
    return "\n".join(out)


def plot(r: dict, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    xs = sorted({row["target_ratio"] for row in r["text"]["rows"]} | {row["target_ratio"] for row in r["vision"]["rows"]})
    ax.plot([1, max(xs)], [1, max(xs)], "k--", lw=1, label="ideal (speedup = ratio)")
    for name in dict.fromkeys(row["compressor"] for row in r["text"]["rows"]):
        rows = [row for row in r["text"]["rows"] if row["compressor"] == name]
        ax.plot([x["target_ratio"] for x in rows], [x["speedup"] for x in rows], "o-", label=f"text, {name} + prefill")
    vrows = r["vision"]["rows"]
    ax.plot([x["target_ratio"] for x in vrows], [x["prefill_speedup"] for x in vrows], "s-", label="vision, EvoComp + prefill")
    ax.plot([x["target_ratio"] for x in vrows], [x["ttft_speedup"] for x in vrows], "s:", label="vision TTFT (ViT in front)")
    for label, (x, y) in PAPER_POINTS.items():
        ax.plot([x], [y], "*", ms=13, label=label)
    ax.set_title(f"{r['device']}: LLM {llm_label(r['llm'])}, "
                 f"{r['text']['tokens']}-token prompt", fontsize=10)
    ax.set_xlabel("compression ratio (tokens in / tokens kept)")
    ax.set_ylabel("end-to-end speedup")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left")
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path
