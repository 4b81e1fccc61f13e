"""int8 GEMM on the CPU: the `cpu` target's linear (fused epilogue: int32 bias, per-channel requant,
clamp, int8 output) vs torch._int_mm (oneDNN/MKL, int32 output, no epilogue) vs fp32 torch.mm.

    python benchmarks/bench_cpu_gemm.py [--reps 30] [--isa avx512vnni] [--mode float] [--no-write]

One process, the three contenders interleaved round-robin, median of `reps` timed runs each.
Writes benchmarks/results/cpu_gemm_<date>.md (CPU model, date, command, table).
"""
from __future__ import annotations

import argparse
import os
import datetime as dt
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import int8compile  # noqa: E402,F401
from int8compile import numerics  # noqa: E402
from int8compile.kernels import cpu  # noqa: E402
from bench_common import git_commit  # noqa: E402

SHAPES = [(256, 4096, 4096), (1024, 1024, 1024), (64, 4096, 1024), (1, 4096, 4096)]  # M, N, K


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed(fn, n_inner):
    t0 = time.perf_counter()
    for _ in range(n_inner):
        fn()
    return (time.perf_counter() - t0) / n_inner


def bench_shape(m, n, k, reps, mode):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-128, 128, (m, k), generator=g, dtype=torch.int8)
    w = torch.randint(-127, 128, (n, k), generator=g, dtype=torch.int8)
    bias = torch.randint(-10000, 10000, (n,), generator=g, dtype=torch.int32)
    mult_real = (60.0 / (k ** 0.5 * 5460)) * (0.5 + torch.rand(n, generator=g, dtype=torch.float64))
    rq = numerics.requant_params(numerics.RequantMode(mode), mult_real)
    wt = w.t()                                    # torch._int_mm wants [K, N]; a transposed view is
    xf, wf = x.float(), w.float().t()             # what a linear layer gives it (NT GEMM)
    if m < 17:                                    # torch._int_mm on CPU requires M > 16
        xi = torch.cat([x, x.new_zeros(17 - m, k)])
    else:
        xi = x
    fns = {
        "ours": lambda: cpu.linear(x, w, bias, rq.scale, rq.mult, rq.shift, None, None, 0.0, -128.0, 127.0,
                                   torch.int8),
        "_int_mm": lambda: torch._int_mm(xi, wt),
        "fp32 mm": lambda: torch.mm(xf, wf),
    }
    ops = 2.0 * m * n * k
    # warm up; inner repetitions so each sample takes >= ~20 ms
    inner = {}
    for name, fn in fns.items():
        for _ in range(3):
            fn()
        t = timed(fn, 1)
        inner[name] = max(1, int(0.02 / max(t, 1e-6)))
    samples = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            samples[name].append(timed(fn, inner[name]))
    med = {name: statistics.median(s) for name, s in samples.items()}
    return {name: (t * 1e3, ops / t / 1e9) for name, t in med.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--isa", default=None)
    ap.add_argument("--mode", default="float", choices=("float", "fixed", "pot"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    print(cpu.prebuild())
    if args.isa:
        cpu.set_isa(args.isa)
    isa = cpu.active_isa()
    load0 = os.getloadavg()[0]
    rows = []
    header = (f"| M x N x K | ours ({isa}, {args.mode} requant, int8 out) GOPS | torch._int_mm GOPS | fp32 mm GFLOPS "
              f"| ours / _int_mm | ours / fp32 |")
    sep = "|---|---|---|---|---|---|"
    print(header)
    print(sep)
    for m, n, k in SHAPES:
        r = bench_shape(m, n, k, args.reps, args.mode)
        ours, im, f = r["ours"][1], r["_int_mm"][1], r["fp32 mm"][1]
        note = " (M padded to 17)" if m < 17 else ""
        line = (f"| {m}x{n}x{k} | {ours:.0f} ({r['ours'][0]:.3f} ms) | {im:.0f} ({r['_int_mm'][0]:.3f} ms){note} "
                f"| {f:.0f} ({r['fp32 mm'][0]:.3f} ms) | {ours / im:.2f}x | {ours / f:.2f}x |")
        print(line, flush=True)
        rows.append(line)
    if not args.no_write:
        out_dir = Path(__file__).resolve().parent / "results"
        out_dir.mkdir(parents=True, exist_ok=True)
        date = dt.datetime.now(dt.timezone.utc)
        path = out_dir / f"cpu_gemm_{date:%Y-%m-%d}.md"
        commit = git_commit()
        text = "\n".join([
            f"# cpu int8 GEMM benchmark, {date:%Y-%m-%d %H:%M} UTC",
            "",
            f"- CPU: {cpu_model()} ({torch.get_num_threads()} threads), torch {torch.__version__}, commit {commit}",
            f"- command: `python {' '.join(sys.argv)}`",
            f"- load average before/after (1 min; other processes share these {os.cpu_count()} cores): "
            f"{load0:.2f} / {os.getloadavg()[0]:.2f}",
            f"- median of {args.reps} interleaved samples per contender; GOPS = 2*M*N*K / time",
            "- ours: int8 x int8 -> int32 with bias, per-channel requant, clamp and int8 output fused;",
            "  torch._int_mm: int32 output, no epilogue; fp32: torch.mm on float32 copies",
            "",
            header, sep, *rows, ""])
        path.write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
