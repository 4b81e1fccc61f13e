"""Whole models on one CUDA GPU: int8compile (torch.compile(m, backend="int8"), `cuda` kernels) vs fp16
eager and fp16 inductor (channels-last), and torchao int8 dynamic quantization (+ torch.compile) where
torchao is installed. Same models as bench_cpu_models.py plus ResNet-50; the ones whose packages are
missing (efficientnet-lite0, MiniLM) are reported as failed, not fatal.

    python benchmarks/bench_cuda_models.py [--models resnet50,resnet18,mlp] [--batch 64] [--reps 30]
        [--burst 10] [--mode reduce-overhead] [--no-write]

One process; per model the contenders are timed round-robin (interleaved) between CUDA events, median
of `reps` samples, twice: one call (latency, host work included) and `burst` back-to-back calls
(throughput per call). --mode is torch.compile's mode for every compiled contender. Accuracy: max |out - fp32 out| / max |fp32 out| on the timed input.
Writes benchmarks/results/cuda_models_<date>_<HHMM>.md.
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import statistics
import sys
import traceback
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import int8compile  # noqa: E402
from bench_common import failure_note, git_commit, model_row  # noqa: E402
from bench_cpu_models import MODELS as CPU_MODELS, _randomize_bn  # noqa: E402
from int8compile.kernels import cuda as ck  # noqa: E402

warnings.filterwarnings("ignore")
DEV = "cuda"
MODE = None   # torch.compile's mode for every compiled contender (--mode)


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        cout = 4 * width
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + (x if self.down is None else self.down(x)))


class ResNet50(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], 64
        for width, count, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for i in range(count):
                blocks.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = 4 * width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


def resnet50(batch):
    torch.manual_seed(0)
    m = _randomize_bn(ResNet50()).eval()
    return m, (torch.randn(batch, 3, 224, 224),), [(torch.randn(batch, 3, 224, 224),) for _ in range(2)]


def from_cpu_bench(name):
    """The CPU benchmark's model at its own batch size (the image models there use batch 8)."""
    def build(batch):
        return CPU_MODELS[name]()
    return build


MODELS = {"resnet50": resnet50, **{n: from_cpu_bench(n) for n in CPU_MODELS}}


def to_dev(args, dtype=None):
    out = []
    for a in args:
        a = a.to(DEV)
        if a.is_floating_point():
            a = a.to(dtype or a.dtype)
            if a.dim() == 4:
                a = a.contiguous(memory_format=torch.channels_last)
        out.append(a)
    return tuple(out)


# ---- contenders (each returns (fn, args) for the timed input) ----------------------------------------
def fp16_model(model):
    m = copy.deepcopy(model).to(DEV).half()
    return m.to(memory_format=torch.channels_last)


def make_fp16_eager(model, example, calib):
    return fp16_model(model), to_dev(example, torch.float16)


def make_fp16_inductor(model, example, calib):
    cm = torch.compile(fp16_model(model), mode=MODE)
    args = to_dev(example, torch.float16)
    cm(*args)
    return cm, args


def make_int8(model, example, calib):
    m = copy.deepcopy(model).to(DEV).to(memory_format=torch.channels_last)
    cm = torch.compile(m, backend="int8", options={"progress": False, "inductor_mode": MODE})
    with int8compile.calibrate(cm, progress=False):
        for args in calib:
            cm(*to_dev(args))
    args = to_dev(example)
    cm(*args)
    return cm, args


def make_torchao(model, example, calib):
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    m = fp16_model(model)
    quantize_(m, Int8DynamicActivationInt8WeightConfig())
    cm = torch.compile(m, mode=MODE)
    args = to_dev(example, torch.float16)
    cm(*args)
    return cm, args


CONTENDERS = {"fp16 eager": make_fp16_eager, "fp16 inductor": make_fp16_inductor,
              "torchao int8 dynamic": make_torchao, "int8compile": make_int8}


def time_call(fn, args, calls=1):
    """ms per call over `calls` back-to-back calls between two CUDA events: with calls=1 the latency of
    one call (host work included when the host is slower than the GPU), with more the throughput."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn(*args)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / calls


def bench_model(name, batch, reps, burst):
    model, example, calib = MODELS[name](batch)
    ready, notes = {}, {}
    with torch.no_grad():
        for cname, build in CONTENDERS.items():
            try:
                ready[cname] = build(model, example, calib)
                print(f"  {name}: {cname} ready", flush=True)
            except Exception as e:  # a contender that cannot run this model is reported, not fatal
                notes[cname] = failure_note(e)
                print(f"  {name}: {cname} FAILED: {notes[cname]}", flush=True)
                traceback.print_exc()  # whole: the cause is often deep in inductor
                if MODE == "reduce-overhead":
                    # a call that raised inside a CUDA graph tree leaves the tree mid-recording, and the
                    # next contender's first call then fails too (a bare AssertionError, seen on the H100);
                    # resetting the trees shuts down the contenders already built, and Dynamo would hand
                    # their dead graphs to new copies of the same model: reset both, build those again
                    from torch._inductor.cudagraph_trees import reset_cudagraph_trees
                    reset_cudagraph_trees()
                    torch._dynamo.reset()
                    ready = {c: CONTENDERS[c](model, example, calib) for c in ready}
        ref = copy.deepcopy(model).to(DEV)(*to_dev(example)).float()
        errs = {c: float((fn(*a).float() - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
                for c, (fn, a) in ready.items()}
        for fn, a in ready.values():  # warm up
            for _ in range(3):
                fn(*a)
        samples = {(c, calls): [] for c in ready for calls in (1, burst)}
        for _ in range(reps):
            for c, (fn, a) in ready.items():
                for calls in (1, burst):
                    samples[c, calls].append(time_call(fn, a, calls))
    med = {key: statistics.median(s) for key, s in samples.items()}
    return ({c: med[c, 1] for c in ready}, {c: med[c, burst] for c in ready}), errs, notes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet50,resnet18,mlp,effnet_lite0,minilm")
    ap.add_argument("--batch", type=int, default=64, help="ResNet-50's batch (the others keep the CPU bench's)")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--burst", type=int, default=10, help="back-to-back calls per throughput sample")
    ap.add_argument("--mode", default=None,
                    help="torch.compile mode for all compiled contenders, e.g. reduce-overhead (CUDA graphs)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    global MODE
    MODE = args.mode
    print(ck.prebuild(), flush=True)
    order = list(CONTENDERS)
    header = ("| model | " + " | ".join(f"{c} ms" for c in order) +
              " | int8compile vs fp16 inductor | vs torchao | max rel. err int8compile | max rel. err fp16 inductor |")
    sep = "|" + "---|" * (len(order) + 5)
    tables = {"latency": [], "throughput": []}
    for name in args.models.split(","):
        print(f"== {name}", flush=True)
        timings, errs, notes = bench_model(name, args.batch, args.reps, args.burst)
        for kind, med in zip(tables, timings):
            line = model_row(name, med, order, ["fp16 inductor", "torchao int8 dynamic"],
                             ["int8compile", "fp16 inductor"], errs, notes, digits=3)
            print(f"{kind}: {line}", flush=True)
            tables[kind].append(line)
    titles = {"latency": "Latency: ms for one call (host work included)",
              "throughput": f"Throughput: ms per call over {args.burst} back-to-back calls"}
    text = []
    for kind, lines in tables.items():
        text += [f"### {titles[kind]}", "", header, sep, *lines, ""]
    print("\n" + "\n".join(text))
    if not args.no_write:
        date = dt.datetime.now(dt.timezone.utc)
        out = Path(__file__).resolve().parent / "results" / f"cuda_models_{date:%Y-%m-%d_%H%M}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        props = torch.cuda.get_device_properties(0)
        out.write_text("\n".join([
            f"# cuda whole-model benchmark, {date:%Y-%m-%d %H:%M} UTC", "",
            f"- GPU: {props.name}, torch {torch.__version__}, CUDA {torch.version.cuda}, commit {git_commit()}",
            f"- command: `python {' '.join(sys.argv)}`",
            f"- torch.compile mode: {MODE or 'default'} (all compiled contenders)",
            f"- median of {args.reps} interleaved runs between CUDA events; ratios are speedups of int8compile",
            f"- batch: ResNet-50 {args.batch}x3x224x224 (random weights); the others as in bench_cpu_models.py", "",
            *text]))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
