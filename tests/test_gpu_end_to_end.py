"""The whole compiler on a CUDA device: runs only on the GPU machine (scripts/gpu_check.sh);
skipped on CPU-only machines, so CI does not claim it."""
import pytest
import torch
from torch import nn

import int8compile
from test_patterns import Residual

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("requant", ["float", "fixed"])
def test_resnet_block_on_cuda_uses_cuda_kernels(requant):
    torch.manual_seed(0)
    model = nn.Sequential(Residual(True), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).cuda().eval()
    cm = torch.compile(model, backend="int8", options={"requant": requant, "progress": False})
    data = [torch.randn(8, 3, 32, 32, device="cuda") for _ in range(4)]
    with torch.no_grad():
        int8compile.calibrate_batches(cm, data, progress=False)
        x = torch.randn(8, 3, 32, 32, device="cuda")
        y, ref = cm(x), model(x)
    assert float((y - ref).norm() / ref.norm()) < 0.05
    rep = int8compile.report(cm)
    rows = [r for r in rep.rows if r.status == "int8"]
    assert {r.kernel for r in rows} == {"cuda"}, str(rep)
    # CUDA inputs trace batch norm to cudnn_batch_norm: it must still fold into the convs
    fused = {r.layer: r.fused for r in rows}
    assert (fused["0.c1"], fused["0.c2"], fused["2"]) == ("batch_norm+relu", "batch_norm+add+relu", "batch_norm+relu"), \
        str(rep)


@cuda
def test_cuda_and_reference_targets_agree_bit_for_bit():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(16 * 8 * 8, 10)).cuda().eval()
    data = [torch.randn(4, 3, 16, 16, device="cuda") for _ in range(3)]
    x = torch.randn(4, 3, 16, 16, device="cuda")
    outs = {}
    for target in ("reference", "cuda"):
        torch._dynamo.reset()
        cm = torch.compile(model, backend="int8", options={"target": target, "requant": "fixed",
                                                           "progress": False})
        with torch.no_grad():
            int8compile.calibrate_batches(cm, data, progress=False)
            outs[target] = cm(x)
    torch.testing.assert_close(outs["cuda"], outs["reference"], rtol=0, atol=0)


@cuda
def test_cuda_graphs_by_default_replay_correctly_without_copying_weights():
    # on a GPU the float remainder is compiled with CUDA graphs (inductor_mode="auto"); the frozen
    # weights are graph constants, so a replay copies only the activations in (no per-weight memcpy)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 10)).cuda().eval()
    data = [torch.randn(4, 3, 16, 16, device="cuda") for _ in range(3)]
    xs = [torch.randn(4, 3, 16, 16, device="cuda") for _ in range(4)]
    outs = {}
    for mode in ("default", "auto"):
        torch._dynamo.reset()
        cm = torch.compile(model, backend="int8", options={"inductor_mode": mode, "progress": False})
        with torch.no_grad():
            int8compile.calibrate_batches(cm, data, progress=False)
            outs[mode] = [cm(x).clone() for x in xs]      # a CUDA graph's output is overwritten by the next call
            if mode == "auto":
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                    cm(xs[0])
                    torch.cuda.synchronize()
        assert int8compile.report(cm).subgraphs[0].ctx.compiled_by == (
            "inductor reduce-overhead" if mode == "auto" else "inductor")
    memcpys = [e.key for e in prof.key_averages() if "Memcpy" in e.key]
    assert not memcpys, memcpys
    for got, want in zip(outs["auto"], outs["default"]):
        assert float((got - want).norm() / want.norm()) < 1e-3
