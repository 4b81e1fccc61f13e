"""Per-layer int8 kernels on the CPU: the `cpu` target's conv2d / linear vs oneDNN's qconv_pointwise /
qlinear_pointwise (what PT2E's X86InductorQuantizer lowers to), on ResNet-18's convolutions (batch 8)
and the MLP's linears (batch 256).

    python benchmarks/bench_cpu_layers.py [--threads 1] [--layers stem,l1,...] [--reps 15]

oneDNN gets u8 activations with zero point 0 (PT2E's activations after a ReLU; a non-zero zero point
makes oneDNN ~5-10% slower), per-channel weight scales, fp32 bias, ReLU and u8 output; ours gets the
int8 equivalent (int32 bias, float requant, clamp [0, 127], int8 output). Both are timed interleaved
in one process, median of `reps` samples of >= 20 ms each. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from int8compile.kernels import cpu  # noqa: E402

# name: (N, C, H, O, k, stride, pad) for convs; (M, N, K) for linears
CONVS = {
    "stem": (8, 3, 224, 64, 7, 2, 3),
    "l1": (8, 64, 56, 64, 3, 1, 1),
    "l2s2": (8, 64, 56, 128, 3, 2, 1),
    "l2": (8, 128, 28, 128, 3, 1, 1),
    "l3s2": (8, 128, 28, 256, 3, 2, 1),
    "l3": (8, 256, 14, 256, 3, 1, 1),
    "l4s2": (8, 256, 14, 512, 3, 2, 1),
    "l4": (8, 512, 7, 512, 3, 1, 1),
    "down2": (8, 64, 56, 128, 1, 2, 0),
}
LINEARS = {"fc1": (256, 4096, 1024), "fc2": (256, 4096, 4096), "fc3": (256, 1000, 4096)}


def timed(fn, inner):
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def conv_fns(n, c, h, o, k, s, p):
    x = torch.randint(-128, 128, (n, c, h, h), dtype=torch.int8).contiguous(memory_format=torch.channels_last)
    w = torch.randint(-127, 128, (o, k, k, c), dtype=torch.int8)
    bias = torch.randint(-1000, 1000, (o,), dtype=torch.int32)
    scale = torch.rand(o) * 1e-3
    xu = (x.to(torch.int16) + 128).to(torch.uint8).contiguous(memory_format=torch.channels_last)
    ws = torch.rand(o, dtype=torch.float64) * 1e-3 + 1e-4
    wz = torch.zeros(o, dtype=torch.int64)
    pw = torch.ops.onednn.qconv_prepack(w.permute(0, 3, 1, 2).contiguous(), ws, 0.02, 0, [s, s], [p, p], [1, 1], 1,
                                        list(xu.shape))
    bf = torch.randn(o)
    ours = lambda: cpu.conv2d(x, w, bias, scale, None, None, None, None, 0.0, 0.0, 127.0, torch.int8,  # noqa: E731
                              [s, s], [p, p, p, p], [1, 1], 1)
    dnn = lambda: torch.ops.onednn.qconv_pointwise(xu, 0.02, 0, pw, ws, wz, bf, [s, s], [p, p], [1, 1], 1,  # noqa: E731
                                                   0.05, 0, None, "relu", [], "")
    oh = (h + 2 * p - k) // s + 1
    return ours, dnn, 2.0 * n * oh * oh * o * k * k * c, f"{n}x{c}x{h}x{h} -> {o}, {k}x{k}/{s}"


def linear_fns(m, n, k):
    x = torch.randint(-128, 128, (m, k), dtype=torch.int8)
    w = torch.randint(-127, 128, (n, k), dtype=torch.int8)
    bias = torch.randint(-1000, 1000, (n,), dtype=torch.int32)
    scale = torch.rand(n) * 1e-3
    xu = (x.to(torch.int16) + 128).to(torch.uint8)
    ws = torch.rand(n) * 1e-3 + 1e-4
    wz = torch.zeros(n, dtype=torch.int64)
    pw = torch.ops.onednn.qlinear_prepack(w, [m, k])
    bf = torch.randn(n)
    ours = lambda: cpu.linear(x, w, bias, scale, None, None, None, None, 0.0, 0.0, 127.0, torch.int8)  # noqa: E731
    dnn = lambda: torch.ops.onednn.qlinear_pointwise(xu, 0.02, 0, pw, ws, wz, bf, 0.05, 0, None, "relu",  # noqa: E731
                                                     [], "")
    return ours, dnn, 2.0 * m * n * k, f"{m}x{n}x{k}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--layers", default=",".join([*CONVS, *LINEARS]))
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(cpu.prebuild())
    print(f"threads {args.threads}, load average {os.getloadavg()[0]:.2f}\n")
    print("| layer | shape | ours ms | oneDNN ms | ours GOPS | oneDNN GOPS | oneDNN / ours |")
    print("|---|---|---|---|---|---|---|")
    for name in args.layers.split(","):
        ours, dnn, ops, shape = conv_fns(*CONVS[name]) if name in CONVS else linear_fns(*LINEARS[name])
        fns = {"ours": ours, "dnn": dnn}
        inner = {}
        for c, f in fns.items():
            for _ in range(3):
                f()
            inner[c] = max(1, int(0.02 / timed(f, 1)))
        samples = {c: [] for c in fns}
        for _ in range(args.reps):
            for c, f in fns.items():
                samples[c].append(timed(f, inner[c]))
        t = {c: statistics.median(v) for c, v in samples.items()}
        print(f"| {name} | {shape} | {t['ours'] * 1e3:.3f} | {t['dnn'] * 1e3:.3f} | {ops / t['ours'] / 1e9:.0f} | "
              f"{ops / t['dnn'] / 1e9:.0f} | {t['dnn'] / t['ours']:.2f} |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
