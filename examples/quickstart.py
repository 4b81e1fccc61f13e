"""Quickstart: compile a small CNN with backend="int8", calibrate, inspect, save and reload.

    python examples/quickstart.py            (CPU; add --cuda on a GPU machine)
"""
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

import int8compile


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(32, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(),
                                   nn.Conv2d(32, 32, 3, 1, 1), nn.BatchNorm2d(32))
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(self.block(x) + x)                  # residual add, fused into the conv
        return self.head(x.mean((2, 3)))


def main():
    device = "cuda" if "--cuda" in sys.argv else "cpu"
    model = SmallCNN().eval().to(device)
    batches = [torch.randn(16, 3, 64, 64, device=device) for _ in range(8)]

    cm = torch.compile(model, backend="int8", options={"requant": "fixed"})
    with torch.no_grad(), int8compile.calibrate(cm):
        for x in batches:
            cm(x)

    rep = int8compile.report(cm)
    print(rep)
    print(rep.code)
    out = Path(tempfile.mkdtemp())
    rep.to_dot(out / "graph.dot")
    path = int8compile.save_calibration(cm, out / "calibration.json")
    print(f"graph: {out / 'graph.dot'}  calibration: {path}")

    # A fresh compile (a new process in production) loads the scales instead of recalibrating.
    torch._dynamo.reset()
    cm2 = torch.compile(model, backend="int8", options={"requant": "fixed"})
    int8compile.load_calibration(cm2, path)
    with torch.no_grad():
        x = torch.randn(16, 3, 64, 64, device=device)
        y, y2, ref = cm(x), cm2(x), model(x)
    print(f"reloaded program identical: {torch.equal(y, y2)}; "
          f"relative error vs float: {float((y - ref).norm() / ref.norm()):.4f}")


if __name__ == "__main__":
    main()
