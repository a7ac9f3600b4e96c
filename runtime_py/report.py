"""The parity results as one markdown table (printed, and written to parity.md)."""
from __future__ import annotations

HEADER = ("| artifact | precision | max-abs | mean-abs | PSNR dB | decisions (MOOSComp: kept-word agreement at rate "
          "0.25 / 0.33 / 0.5; EvoComp: top-k IoU at 2x / 3x / 4x) | exact text | latency ms (eager) | status |")


def _num(x, fmt):
    return "-" if x is None else format(x, fmt)


def _row(r: dict) -> str:
    num = r.get("numeric") or {}
    d = r.get("decisions") or {}
    if "word_agreement" in d:
        dec = " / ".join(f"{v * 100:.2f}%" for v in d["word_agreement"].values())
        exact = " / ".join(f"{v * 100:.0f}%" for v in d["exact_text"].values())
    elif "iou" in d:
        dec = " / ".join(f"{v:.4f}" for v in d["iou"].values())
        exact = "-"
    else:
        dec = exact = "-"
    psnr = "-" if not num else ("inf" if num.get("psnr_db") is None and num.get("max_abs") == 0 else _num(num.get("psnr_db"), ".1f"))
    lat = "-" if r.get("latency_ms") is None else f"{r['latency_ms']:.1f} ({r.get('eager_latency_ms', 0):.1f})"
    status = r["status"] if not r.get("reasons") else f"{r['status']}: {'; '.join(r['reasons'])}"
    return (f"| {r['file']} | {r['precision']} | {_num(num.get('max_abs'), '.2e')} | {_num(num.get('mean_abs'), '.2e')} "
            f"| {psnr} | {dec} | {exact} | {lat} | {status.replace('|', '/')} |")


def markdown_table(results: list[dict]) -> str:
    lines = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    lines += [_row(r) for r in results]
    return "\n".join(lines)
