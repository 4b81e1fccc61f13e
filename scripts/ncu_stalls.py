"""Where a kernel's warps stall, from Nsight Compute's per-instruction source page.

On the GPU machine (see scripts/prof_conv_layer.py for the launcher):
    ncu -k regex:gemm --launch-count 1 --section WarpStateStats --section SourceCounters -o rep \\
        python scripts/prof_conv_layer.py 128:512:1:1:28:256 11 float
    ncu -i rep.ncu-rep --page source --csv --print-source sass > source.csv
Then anywhere:
    python scripts/ncu_stalls.py source.csv [--top 25] [--window 100]

Prints the stall samples by reason, by window of SASS instructions (where in the kernel: prologue,
main loop, epilogue, producer), and the instructions with the most samples with their top reasons.
"""
from __future__ import annotations

import argparse
import collections
import csv


def read_source_page(path: str) -> list[dict]:
    """One dict per SASS instruction: index, source text, samples, executed, {stall reason: samples}."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    start = next(i for i, r in enumerate(rows) if "Source" in r and "Address" in r)
    header = rows[start]
    col = {name: i for i, name in enumerate(header)}
    reasons = [h for h in header if h.startswith("stall_") and "Not Issued" not in h]
    out = []
    for r in rows[start + 1:]:
        if len(r) != len(header):
            continue
        out.append({"index": len(out), "source": r[col["Source"]].strip(),
                    "samples": int(r[col["Warp Stall Sampling (All Samples)"]] or 0),
                    "executed": int(r[col["Instructions Executed"]] or 0),
                    "stalls": {h[len("stall_"):]: int(r[col[h]] or 0) for h in reasons}})
    return out


def summarize(instrs: list[dict], top: int = 25, window: int = 100) -> str:
    total = sum(i["samples"] for i in instrs) or 1
    by_reason = collections.Counter()
    for i in instrs:
        by_reason.update(i["stalls"])
    lines = [f"{len(instrs)} instructions, {total} stall samples", "", "by reason:"]
    lines += [f"  {name:18s} {n:7d}  {100 * n / total:5.1f}%" for name, n in by_reason.most_common() if n]
    lines += ["", f"by window of {window} instructions (first instruction shown):"]
    windows = collections.defaultdict(lambda: [0, 0])
    for i in instrs:
        w = windows[i["index"] // window]
        w[0] += i["samples"]
        w[1] += i["executed"]
    for w, (samples, executed) in sorted(windows.items()):
        if samples >= 0.01 * total:
            lines.append(f"  {w * window:6d}  {samples:7d} ({100 * samples / total:4.1f}%)  executed {executed:10d}  "
                         f"{instrs[w * window]['source'][:50]}")
    lines += ["", f"top {top} instructions:"]
    for i in sorted(instrs, key=lambda i: -i["samples"])[:top]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(i["stalls"].items(), key=lambda kv: -kv[1])[:3] if v)
        lines.append(f"  {i['index']:6d}  {i['samples']:6d}  x{i['executed']:<9d} {i['source'][:56]:56s} {reasons}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--window", type=int, default=100)
    a = ap.parse_args()
    print(summarize(read_source_page(a.csv), a.top, a.window))


if __name__ == "__main__":
    main()
