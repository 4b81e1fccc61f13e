import pytest
import torch
import torch._dynamo

import int8compile


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    int8compile.counters.clear()
    torch.manual_seed(0)
    yield


def compile_calibrated(model, make_input, batches=3, **options):
    """torch.compile(backend="int8") + calibration on `batches` fresh inputs; returns the module."""
    model = model.eval()
    cm = torch.compile(model, backend="int8", options=options or None)
    with int8compile.calibrate(cm, progress=False):
        for _ in range(batches):
            cm(make_input())
    return cm


def rel_error(a, b):
    return float((a - b).norm() / b.norm())
