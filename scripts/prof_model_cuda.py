"""Where a whole model's time goes on the GPU: int8compile vs fp16 inductor, kernel by kernel.

    python scripts/prof_model_cuda.py [--model resnet50] [--batch 64] [--iters 10]

Prints, per contender, the wall time per call (host-synchronised), the summed GPU kernel time per
call, the top kernels by GPU time and the top host ops by self CPU time (torch.profiler).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import bench_cuda_models as bm  # noqa: E402


def profile(name, fn, args, iters):
    for _ in range(3):
        fn(*args)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn(*args)
    torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / iters * 1e3
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(iters):
            fn(*args)
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    gpu = sum(e.self_device_time_total for e in events) / iters / 1e3
    print(f"\n=== {name}: wall {wall:.3f} ms/call, GPU kernels {gpu:.3f} ms/call, "
          f"{sum(e.count for e in events) / iters:.0f} kernels/call")
    for e in sorted(events, key=lambda e: -e.self_device_time_total)[:22]:
        print(f"  {e.self_device_time_total / iters / 1e3:7.3f} ms  x{e.count // iters:3d}  {e.key[:110]}")
    host = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CPU]
    print(f"  host: top ops by self CPU time per call (of {wall:.3f} ms wall)")
    for e in sorted(host, key=lambda e: -e.self_cpu_time_total)[:15]:
        print(f"  {e.self_cpu_time_total / iters / 1e3:7.3f} ms  x{e.count // iters:3d}  {e.key[:110]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--contenders", default="int8compile,fp16 inductor")
    ap.add_argument("--mode", default=None, help="torch.compile mode, e.g. reduce-overhead")
    a = ap.parse_args()
    bm.MODE = a.mode
    model, example, calib = bm.MODELS[a.model](a.batch)
    with torch.no_grad():
        for cname in a.contenders.split(","):
            fn, args = bm.CONTENDERS[cname](model, example, calib)
            profile(cname, fn, args, a.iters)


if __name__ == "__main__":
    main()
