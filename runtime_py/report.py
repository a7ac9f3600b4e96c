"""The parity results as one markdown table (printed, and written to parity.md). Each compressor's spec
(compressors/spec.py) formats its own decision cell; the legend under the table says what each one shows."""
from __future__ import annotations

from compressors.spec import get_spec

HEADER = "| artifact | precision | max-abs | mean-abs | PSNR dB | decisions | exact text | latency ms (eager) | status |"


def _num(x, fmt):
    return "-" if x is None else format(x, fmt)


def _row(r: dict) -> str:
    num = r.get("numeric") or {}
    d = r.get("decisions")
    dec, exact = get_spec(r["model"]).report(d) if d else ("-", "-")
    psnr = "-" if not num else ("inf" if num.get("psnr_db") is None and num.get("max_abs") == 0 else _num(num.get("psnr_db"), ".1f"))
    lat = "-" if r.get("latency_ms") is None else f"{r['latency_ms']:.1f} ({r.get('eager_latency_ms', 0):.1f})"
    status = r["status"] if not r.get("reasons") else f"{r['status']}: {'; '.join(r['reasons'])}"
    return (f"| {r['file']} | {r['precision']} | {_num(num.get('max_abs'), '.2e')} | {_num(num.get('mean_abs'), '.2e')} "
            f"| {psnr} | {dec} | {exact} | {lat} | {status.replace('|', '/')} |")


def markdown_table(results: list[dict]) -> str:
    lines = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    lines += [_row(r) for r in results]
    legend = [get_spec(m).decision_label for m in dict.fromkeys(r["model"] for r in results)]
    return "\n".join(lines + ([""] + [f"decisions: {'; '.join(legend)}"] if legend else []))
