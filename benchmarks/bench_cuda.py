"""Benchmark of the `cuda` int8 kernels against PyTorch / cuBLAS / cuDNN, one process, CUDA events.

Every contender is captured into a CUDA graph that cycles through several input sets (so repeated
runs do not measure L2 hits), the graph is replayed many times and the median time per call is taken.
  GEMM: M in {1, 32, 256, 1024, 4096, 16384}, N = K in {4096, 8192}: ours (fused bias + requant,
        --requant fixed (default) or float, int8 out) vs torch._int_mm (int32 out) vs bf16 / fp16 torch.mm vs fp8 torch._scaled_mm.
  conv: ResNet-50's 53 conv layers (23 distinct shapes) at batch 256 and 1: ours int8 (fused requant,
        int8 out) vs cuDNN fp16 channels_last (F.conv2d, cudnn.benchmark).
Usage: python benchmarks/bench_cuda.py [--out FILE.md] [--quick] [--sweep-cfg] [--skip-gemm] [--skip-conv]
                                      [--requant fixed|float] [--batches 256,1] [--layers C:O:k:s:H,...]
                                      [--ab-env NAME=VALUE ...]   (ours again with a knob set: an A/B column)
                                      [--ab-act relu|clamp ...]   (ours again with that activation clamp)
Writes the tables (GPU name, date, commit in the header) to --out, by default
benchmarks/results/cuda_<UTC date>_<HHMM>.md.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from int8compile import numerics  # noqa: E402
from int8compile.kernels import cuda as ck  # noqa: E402
from bench_common import git_commit  # noqa: E402

DEV = "cuda"
STARTED = datetime.datetime.now(datetime.timezone.utc)
L2_BYTES = 50 * 2**20


def n_sets(bytes_per_set: int) -> int:
    return max(1, min(8, math.ceil(3 * L2_BYTES / max(bytes_per_set, 1))))


def bench_graph(fns, reps: int = 30, min_calls: int = 8) -> float:
    """Median seconds per call of fns (cycled), timed over graph replays."""
    for f in fns:           # warm up / first-use work (builds, attribute setting, cudnn autotune)
        f()
    torch.cuda.synchronize()
    inner = max(min_calls, len(fns))
    inner = (inner + len(fns) - 1) // len(fns) * len(fns)
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for f in fns:
            f()
        with torch.cuda.graph(g, stream=s):
            for i in range(inner):
                fns[i % len(fns)]()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g.replay()
    torch.cuda.synchronize()
    # choose the replay count per sample so each sample lasts >= ~1 ms
    t0 = time.perf_counter()
    g.replay()
    torch.cuda.synchronize()
    one = time.perf_counter() - t0
    per = max(1, int(1e-3 / max(one, 1e-6)))
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(per):
            g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3 / (per * inner))
    del g
    return statistics.median(times)


REQUANT = "fixed"   # --requant: the epilogue mode every "ours" figure uses
RESIDUAL = False    # --residual: ours also adds an int8 residual (as ResNet's expansion 1x1s do)
# int8 clamp bounds (lo, hi) of ours: none (the default) and relu saturate in the packing instruction,
# any other clamp (here [-127, 127]) takes the min / max epilogue: --ab-act clamp is that A/B
ACTS = {"none": (-128.0, 127.0), "relu": (0.0, 127.0), "clamp": (-127.0, 127.0)}


def _requant(N: int, K: int, m_res=None):
    g = torch.Generator().manual_seed(0)
    m = (torch.rand(N, generator=g, dtype=torch.float64) + 0.5) * (60.0 / (73 * 73 * math.sqrt(K)))
    bias = torch.randint(-2**16, 2**16, (N,), generator=g, dtype=torch.int32)
    return bias.to(DEV), numerics.requant_params(numerics.RequantMode(REQUANT), m, m_res)


def requant_fixed(N: int, K: int):
    """(bias, scale, mult, shift) of an int8-output epilogue in mode REQUANT (mult / shift None for float)."""
    bias, rq = _requant(N, K)
    if rq.mult is None:
        return bias, rq.scale.to(DEV), None, None
    return bias, rq.scale.to(DEV), rq.mult.to(DEV), rq.shift.to(DEV)


def requant_residual(N: int, K: int):
    """(res_mult, res_scale) to go with requant_fixed(N, K): a residual at 0.7 of the output's scale."""
    _, rq = _requant(N, K, 0.7)
    return (rq.res_mult.to(DEV) if rq.res_mult is not None else None), rq.res_scale


def rand_i8(*shape):
    return torch.randint(-127, 128, shape, dtype=torch.int8, device=DEV)


# ---------------------------------------------------------------------------------------- GEMM
def gemm_contenders(M, N, K, sweep_cfg=False, with_alt=False):
    ext = ck.ext()
    per_set = M * K + N * K
    ns = n_sets(per_set)
    xs = [rand_i8(M, K) for _ in range(ns)]
    bias, scale, mult, shift = requant_fixed(N, K)
    out = torch.empty(M, N, dtype=torch.int8, device=DEV)
    res = {}

    def ours(cfg=None, algo=0, splits=None):
        c, sp = ck.sm90_config(M, N, K)
        if cfg is not None:
            c, sp = cfg, 1
        if splits is not None:
            sp = splits
        ws, cnt = ck._workspace(torch.device(DEV), M, N) if sp > 1 else (None, None)
        return [lambda i=i: ext.linear(xs[i], ws_[i], out, bias, scale, mult, shift, None, None, 0.0, -128.0, 127.0,
                                       algo, c, 0, sp, ws, cnt) for i in range(ns)]

    ws_ = [rand_i8(N, K) for _ in range(ns)]
    cc = torch.cuda.get_device_capability()
    if cc == (9, 0):
        res["ours"] = bench_graph(ours())
        res["ours cfg"] = "%d/%d" % ck.sm90_config(M, N, K)
        if sweep_cfg:
            for c in ((1, 4, 9) if M >= 1024 else (1, 2, 7, 9)):
                res[f"cfg{c}"] = bench_graph(ours(c))
            if M <= 64:
                res["cfg7s4"] = bench_graph(ours(7, 0, 4))
    if with_alt or cc != (9, 0):
        res["mma.sync"] = bench_graph(ours(0, 2 if M <= 64 else 1, 1))
    if with_alt:
        res["dp4a"] = bench_graph(ours(0, 3, 1))
    wts = []
    try:
        wts = [w.t() for w in ws_]
        res["torch._int_mm"] = bench_graph([lambda i=i: torch._int_mm(xs[i], wts[i]) for i in range(ns)])
    except Exception as e:  # noqa: BLE001
        res["torch._int_mm"] = f"n/a ({type(e).__name__})"
    # free the inputs for the next contenders; clear(), not del: the timed lambdas close over these lists
    for tensors in (xs, ws_, wts):
        tensors.clear()
    for name, dt in (("bf16 mm", torch.bfloat16), ("fp16 mm", torch.float16)):
        ns2 = n_sets(2 * per_set)
        a = [torch.randn(M, K, device=DEV, dtype=dt) for _ in range(ns2)]
        b = [torch.randn(N, K, device=DEV, dtype=dt).t() for _ in range(ns2)]
        res[name] = bench_graph([lambda i=i: torch.mm(a[i], b[i]) for i in range(ns2)])
        a.clear()
        b.clear()
    try:
        a = [torch.randn(M, K, device=DEV).to(torch.float8_e4m3fn) for _ in range(ns)]
        b = [torch.randn(N, K, device=DEV).to(torch.float8_e4m3fn).t() for _ in range(ns)]
        one = torch.tensor(1.0, device=DEV)
        res["fp8 _scaled_mm"] = bench_graph([lambda i=i: torch._scaled_mm(a[i], b[i], one, one,
                                                                            out_dtype=torch.bfloat16)
                                             for i in range(ns)])
        a.clear()
        b.clear()
    except Exception as e:  # noqa: BLE001
        res["fp8 _scaled_mm"] = f"n/a ({type(e).__name__})"
    return res


# ---------------------------------------------------------------------------------------- conv
RESNET50 = [  # C, O, k, stride, pad, H_in, count
    (3, 64, 7, 2, 3, 224, 1), (64, 64, 1, 1, 0, 56, 1), (64, 64, 3, 1, 1, 56, 3), (64, 256, 1, 1, 0, 56, 4),
    (256, 64, 1, 1, 0, 56, 2), (256, 128, 1, 1, 0, 56, 1), (128, 128, 3, 2, 1, 56, 1), (128, 512, 1, 1, 0, 28, 4),
    (256, 512, 1, 2, 0, 56, 1), (512, 128, 1, 1, 0, 28, 3), (128, 128, 3, 1, 1, 28, 3), (512, 256, 1, 1, 0, 28, 1),
    (256, 256, 3, 2, 1, 28, 1), (256, 1024, 1, 1, 0, 14, 6), (512, 1024, 1, 2, 0, 28, 1),
    (1024, 256, 1, 1, 0, 14, 5), (256, 256, 3, 1, 1, 14, 5), (1024, 512, 1, 1, 0, 14, 1),
    (512, 512, 3, 2, 1, 14, 1), (512, 2048, 1, 1, 0, 7, 3), (1024, 2048, 1, 2, 0, 14, 1),
    (2048, 512, 1, 1, 0, 7, 2), (512, 512, 3, 1, 1, 7, 2),
]


@contextlib.contextmanager
def env_set(name, value):
    """An INT8COMPILE_* knob set for the calls inside (they read it when a graph is captured)."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def conv_layer(batch, C, O, k, s, p, H, sweep_cfg=False, ab_envs=(), ab_acts=()):
    """{contender: seconds per call} for one conv layer: ours (auto), the mma.sync implicit GEMM, with
    sweep_cfg every wgmma conv tile whose k-block divides C, and cuDNN fp16 channels-last."""
    from int8compile.ops import conv2d_output_size
    oh, ow = conv2d_output_size((H, H), (k, k), (s, s), (p, p, p, p), (1, 1))
    set_bytes = batch * C * H * H + O * k * k * C
    ns = n_sets(set_bytes)
    xs = [rand_i8(batch, C, H, H).contiguous(memory_format=torch.channels_last) for _ in range(ns)]
    w = rand_i8(O, k, k, C)
    bias, scale, mult, shift = requant_fixed(O, k * k * C)
    out = torch.empty(batch, O, oh, ow, dtype=torch.int8, device=DEV, memory_format=torch.channels_last)
    res, res_mult, res_scale = None, None, 0.0
    if RESIDUAL:  # one residual tensor for every input set: it is read once per call like out is written
        res = torch.empty_like(out).random_(-128, 128)
        res_mult, res_scale = requant_residual(O, k * k * C)

    def ours(lo=-128.0, hi=127.0, **kw):
        return bench_graph([lambda i=i: ck.conv2d_impl(xs[i], w, bias, scale, mult, shift, res, res_mult, res_scale,
                                                       lo, hi, torch.int8, [s, s], [p, p, p, p], [1, 1], 1,
                                                       out=out, **kw)
                            for i in range(ns)], reps=15)
    r = {"ours": ours()}
    for name, value in ab_envs:  # A/B: ours again with an INT8COMPILE_* knob set (read when the graph is captured)
        with env_set(name, value):
            r[f"ours {name}={value}"] = ours()
    for act in ab_acts:
        r[f"ours {act}"] = ours(*ACTS[act])
    q = ck._conv_query(xs[0], w, (s, s), (p, p, p, p), (1, 1), 1, int8_out=not RESIDUAL)
    env = ck.route_env()
    plan = ck.describe_plan(q, ck.plan_conv(q, env=env), env)
    if k > 1 and k * C <= ck.FOLD_CHANNELS:  # the stem: also direct, as a folded conv, and its fold pass alone
        r["direct stem"] = ours(algo="stem")
        r["folded conv"] = ours(algo="fold")
        with env_set("INT8COMPILE_FOLD_ROWS", "1"):
            r["folded conv, columns only"] = ours(algo="fold")
        rows = ck.fold_rows_for(q)
        folded_rows, row_step, row_off = ck.fold_row_layout(rows, k, H, oh, p)
        xf = torch.empty(batch, ck.fold_channels(rows, k, C), folded_rows, ow, dtype=torch.int8, device=DEV,
                         memory_format=torch.channels_last)
        r["fold pass"] = bench_graph([lambda i=i: ck.ext().fold_window(xs[i], xf, k, s, 1, p, rows, row_step, row_off)
                                      for i in range(ns)], reps=15)
        if sweep_cfg:
            for cfg, (_, _, bk) in ck.SM90_CONV_TILES.items():
                if ck.fold_channels(rows, k, C) % bk == 0 and not (cfg in ck.HALO_CONFIGS and (RESIDUAL or rows == 1)):
                    r[f"sm90 cfg{cfg}"] = ours(algo="fold", cfg=cfg)
    r["mma.sync"] = ours(algo="mma64" if O <= 64 else "mma")
    if sweep_cfg and ck.im2col_unfit(q) is None:
        for cfg, (_, _, bk) in ck.SM90_CONV_TILES.items():
            if C % bk == 0 and not (cfg in ck.HALO_CONFIGS and (RESIDUAL or ck.halo_unfit(q, cfg) is not None)):
                r[f"sm90 cfg{cfg}"] = ours(algo="sm90", cfg=cfg)
    xs.clear()
    ns2 = n_sets(2 * set_bytes)
    xh = [torch.randn(batch, C, H, H, device=DEV, dtype=torch.float16).contiguous(memory_format=torch.channels_last)
          for _ in range(ns2)]
    wh = torch.randn(O, C, k, k, device=DEV, dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    r["cuDNN fp16"] = bench_graph([lambda i=i: F.conv2d(xh[i], wh, None, s, p) for i in range(ns2)], reps=15)
    xh.clear()
    return r, 2.0 * batch * oh * ow * O * k * k * C, plan


def fmt_t(v):
    return f"{v * 1e6:.1f}" if isinstance(v, float) else v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None,
                    help="results file (default benchmarks/results/cuda_<UTC date>_<HHMM>.md)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sweep-cfg", action="store_true")
    ap.add_argument("--skip-conv", action="store_true")
    ap.add_argument("--skip-gemm", action="store_true")
    ap.add_argument("--requant", choices=("fixed", "float"), default="fixed",
                    help="epilogue mode of our kernels (float is the compiler's default)")
    ap.add_argument("--batches", default="256,1", help="conv batch sizes, comma-separated")
    ap.add_argument("--residual", action="store_true",
                    help="ours adds an int8 residual in the epilogue (cuDNN fp16 stays a plain conv)")
    ap.add_argument("--ab-env", action="append", default=[], metavar="NAME=VALUE",
                    help="also time ours with this environment knob set, in the same process (repeatable)")
    ap.add_argument("--ab-act", action="append", default=[], choices=("relu", "clamp"),
                    help="also time ours with this activation clamp, in the same process (repeatable)")
    ap.add_argument("--layers", default=None,
                    help="only these conv layers, as C:O:k:s:H comma-separated (e.g. 64:256:1:1:56)")
    args = ap.parse_args()
    ab_envs = [tuple(e.split("=", 1)) for e in args.ab_env]
    global REQUANT, RESIDUAL
    REQUANT, RESIDUAL = args.requant, args.residual
    torch.backends.cudnn.benchmark = True
    props = torch.cuda.get_device_properties(0)
    lines = ["# int8compile cuda kernels benchmark", "",
             f"- GPU: {props.name} ({props.multi_processor_count} SMs), torch {torch.__version__}, "
             f"CUDA {torch.version.cuda}",
             f"- date: {STARTED:%Y-%m-%d %H:%M} UTC, commit {git_commit()}",
             f"- command: `python {' '.join(sys.argv)}`",
             f"- our epilogue: bias + per-channel requant ({REQUANT} mode){' + int8 residual' if RESIDUAL else ''}"
             " to int8",
             "- method: CUDA graph of calls cycling through input sets (> L2), replayed; median of 15-30 samples",
             ""]
    summary = []
    if not args.skip_gemm:
        Ms = [1, 32, 256, 1024, 4096, 16384] if not args.quick else [1, 256, 4096]
        lines += ["## GEMM (TOPS; ours = wgmma/TMA kernel with fused bias + requant epilogue, int8 out)", ""]
        header = None
        for NK in (4096, 8192):
            for M in Ms:
                alt = (M in (256, 4096) and NK == 4096)
                r = gemm_contenders(M, NK, NK, sweep_cfg=args.sweep_cfg, with_alt=alt)
                ops = 2.0 * M * NK * NK
                row = {k: (ops / v / 1e12 if isinstance(v, float) else v) for k, v in r.items()}
                if header is None or set(row) - set(header):
                    header = list(dict.fromkeys((header or []) + list(row)))
                cells = [f"{row[h]:.0f}" if isinstance(row.get(h), float) else str(row.get(h, "")) for h in header]
                ratio = (row["ours"] / row["torch._int_mm"]) if isinstance(row.get("ours"), float) and \
                    isinstance(row.get("torch._int_mm"), float) else float("nan")
                lines.append(f"| {M} | {NK} | " + " | ".join(cells) + f" | {ratio:.2f} |")
                print("row:", " ".join(f"{h}={c}" for h, c in zip(header, cells)), flush=True)
                summary.append(f"GEMM M={M:5d} N=K={NK}: ours {row.get('ours', float('nan')):7.1f} TOPS, "
                               f"_int_mm {row.get('torch._int_mm') if not isinstance(row.get('torch._int_mm'), float) else round(row['torch._int_mm'], 1)}"
                               f", ratio {ratio:.2f}")
                print(summary[-1], flush=True)
        gi = lines.index("## GEMM (TOPS; ours = wgmma/TMA kernel with fused bias + requant epilogue, int8 out)")
        lines[gi + 2:gi + 2] = ["| M | N=K | " + " | ".join(header) + " | ours / _int_mm |",
                                "|---|---|" + "---|" * len(header) + "---|"]
        lines.append("")
    if not args.skip_conv:
        wanted = set(args.layers.split(",")) if args.layers else None
        for batch in (int(b) for b in args.batches.split(",")):
            rows, cols = [], []
            tot_o = tot_c = 0.0
            ab_tot = {}
            for (C, O, k, st, p, H, cnt) in RESNET50:
                if wanted and f"{C}:{O}:{k}:{st}:{H}" not in wanted:
                    continue
                r, ops, plan = conv_layer(batch, C, O, k, st, p, H, sweep_cfg=args.sweep_cfg, ab_envs=ab_envs,
                                          ab_acts=args.ab_act)
                cols = list(dict.fromkeys(cols + [c for c in r if c not in ("ours", "cuDNN fp16")]))
                tot_o += cnt * r["ours"]
                tot_c += cnt * r["cuDNN fp16"]
                for key in [f"ours {name}={value}" for name, value in ab_envs] + [f"ours {a}" for a in args.ab_act]:
                    ab_tot[key] = ab_tot.get(key, 0.0) + cnt * r[key]
                rows.append(((C, O, k, st, H, cnt), r, ops, plan))
                print(f"conv: C={C} O={O} k={k} s={st} H={H}: " + " ".join(f"{n}={v * 1e6:.1f}us" for n, v in r.items()),
                      flush=True)
            lines += [f"## ResNet-50 convs, batch {batch} (us per call; x count for the sum)", "",
                      "| C | O | k | s | H | count | ours: kernel | ours int8 us | cuDNN fp16 us | speedup | ours TOPS | "
                      + " | ".join(f"{c} us" for c in cols) + " |",
                      "|---|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(cols)]
            for (C, O, k, st, H, cnt), r, ops, plan in rows:
                lines.append(f"| {C} | {O} | {k} | {st} | {H} | {cnt} | {plan} | {r['ours'] * 1e6:.1f} | "
                             f"{r['cuDNN fp16'] * 1e6:.1f} | {r['cuDNN fp16'] / r['ours']:.2f} | "
                             f"{ops / r['ours'] / 1e12:.0f} | "
                             + " | ".join(f"{r[c] * 1e6:.1f}" if c in r else "" for c in cols) + " |")
            lines.append(f"| **sum** | | | | | {sum(r[0][5] for r in rows)} | | **{tot_o * 1e6:.0f}** | **{tot_c * 1e6:.0f}** | "
                         f"**{tot_c / tot_o:.2f}** | |" + " |" * len(cols))
            lines.append("")
            summary.append(f"ResNet-50 conv sum batch {batch}: ours {tot_o * 1e3:.3f} ms, cuDNN fp16 "
                           f"{tot_c * 1e3:.3f} ms, speedup {tot_c / tot_o:.2f}")
            print(summary[-1], flush=True)
            for key, tot in ab_tot.items():
                summary.append(f"  {key}: {tot * 1e3:.3f} ms ({tot_o / tot:.3f}x ours)")
                print(summary[-1], flush=True)
    text = "\n".join(lines) + "\n"
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"cuda_{STARTED:%Y-%m-%d_%H%M}.md")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    print(text)
    print("=== summary ===")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
