"""Every pattern the match pass knows is found (counters), and candidates it must leave alone fall
back to PyTorch with a reason."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import int8compile
from conftest import compile_calibrated, rel_error


def run(model, make_input, batches=8, **options):
    with torch.no_grad():
        cm = compile_calibrated(model, make_input, batches, **options)
        x = make_input()
        return cm, cm(x), model(x), int8compile.report(cm)


def int8_rows(rep):
    return [r for r in rep.rows if r.status == "int8"]


class ConvBnAct(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = act
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


@pytest.mark.parametrize("act,fused", [(nn.ReLU(), "relu"), (nn.ReLU6(), "clamp"),
                                       (nn.Hardtanh(-1, 1), "clamp"), (nn.Identity(), None)])
def test_conv_bn_activation(act, fused):
    cm, y, ref, rep = run(ConvBnAct(act), lambda: torch.randn(2, 3, 12, 12))
    c = int8compile.counters
    assert c["conv"] == 1 and c["batch_norm"] == 1
    assert (c[fused] == 1) if fused else (c["relu"] + c["clamp"] == 0)
    assert rel_error(y, ref) < 0.03
    assert int8_rows(rep)[0].fused.startswith("batch_norm")


@pytest.mark.parametrize("kwargs", [dict(stride=2), dict(dilation=2, padding=2), dict(groups=8, padding=1),
                                    dict(groups=2), dict(stride=(2, 1), padding=(0, 1)),
                                    dict(kernel_size=1), dict(bias=False)])
def test_conv2d_variants(kwargs):
    kw = dict(kernel_size=3) | kwargs
    conv = nn.Conv2d(8, 8, **kw)
    cm, y, ref, rep = run(conv, lambda: torch.randn(2, 8, 11, 13))
    assert int8compile.counters["conv"] == 1
    assert len(int8_rows(rep)) == 1
    assert rel_error(y, ref) < 0.03


def test_conv1d_and_asymmetric_pad():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv1d(3, 8, 5, stride=2)
            self.c2 = nn.Conv2d(3, 4, 3)

        def forward(self, x1, x2):
            return self.c1(F.pad(x1, (1, 3))), self.c2(F.pad(x2, (0, 1, 2, 0)))

    m = M().eval()
    make = lambda: (torch.randn(2, 3, 21), torch.randn(2, 3, 9, 9))
    with torch.no_grad():
        cm = torch.compile(m, backend="int8")
        with int8compile.calibrate(cm, [make() for _ in range(3)], progress=False):
            pass
        x = make()
        (y1, y2), (r1, r2) = cm(*x), m(*x)
    assert int8compile.counters["pad"] == 2 and int8compile.counters["conv"] == 2
    assert rel_error(y1, r1) < 0.03 and rel_error(y2, r2) < 0.03
    rows = {r.layer: r for r in int8compile.report(cm).rows}
    assert rows["c1"].op == "conv1d 5 s2"


class LinearForms(nn.Module):
    """nn.Linear, F.linear, x @ W.t(), torch.addmm with a constant weight."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 32)
        self.w2 = nn.Parameter(torch.randn(32, 32) / 6)
        self.w3 = nn.Parameter(torch.randn(24, 32) / 6)
        self.w4 = nn.Parameter(torch.randn(24, 24) / 5)
        self.b4 = nn.Parameter(torch.randn(24) / 10)

    def forward(self, x):
        y = torch.relu(self.fc(x))
        y = F.gelu(F.linear(y, self.w2))
        y = y @ self.w3.t()
        return torch.addmm(self.b4, y, self.w4.t())


def test_linear_forms_2d():
    cm, y, ref, rep = run(LinearForms(), lambda: torch.randn(6, 16), batches=20)
    assert int8compile.counters["linear"] == 4
    assert int8compile.counters["relu"] == 1
    assert len(int8_rows(rep)) == 4
    assert rel_error(y, ref) < 0.05


def test_linear_batched_3d_with_fused_relu():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(16, 32), nn.Linear(32, 8)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    cm, y, ref, rep = run(M(), lambda: torch.randn(2, 7, 16))
    assert int8compile.counters["linear"] == 2 and int8compile.counters["relu"] == 1
    assert y.shape == (2, 7, 8) and rel_error(y, ref) < 0.03


class ConvChain(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.c3(torch.relu(self.c2(torch.relu(self.c1(x)))))


def test_chain_keeps_int8_between_layers():
    cm, y, ref, rep = run(ConvChain(), lambda: torch.randn(2, 3, 10, 10))
    counts = rep.op_counts()
    assert counts["quantize"] == 1                           # only the network input
    assert counts["dequantize"] == 0                         # last conv emits float itself
    assert counts["conv2d"] == 3
    assert rel_error(y, ref) < 0.03


class Residual(nn.Module):
    """ResNet basic block: relu(bn(conv(relu(bn(conv(x))))) + shortcut)."""

    def __init__(self, downsample):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        stride = 2 if downsample else 1
        self.c1, self.b1 = nn.Conv2d(8, 16 if downsample else 8, 3, stride, 1), nn.BatchNorm2d(16 if downsample else 8)
        self.c2, self.b2 = nn.Conv2d(self.c1.out_channels, self.c1.out_channels, 3, 1, 1), nn.BatchNorm2d(self.c1.out_channels)
        self.down = nn.Conv2d(8, 16, 1, 2) if downsample else None

    def forward(self, x):
        x = torch.relu(self.stem(x))
        out = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
        short = self.down(x) if self.down is not None else x
        return torch.relu(out + short)


@pytest.mark.parametrize("downsample", [False, True])
def test_residual_add_of_two_quantized_branches(downsample):
    cm, y, ref, rep = run(Residual(downsample), lambda: torch.randn(2, 3, 12, 12))
    assert int8compile.counters["add"] == 1
    fused = {r.layer: r.fused for r in rep.rows}
    assert fused["c2"] == "batch_norm+add+relu"
    assert rep.op_counts()["quantize"] == 1
    assert rel_error(y, ref) < 0.05


def test_unsupported_candidates_fall_back_with_reason():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)
            self.c3 = nn.Conv3d(1, 2, 3)

        def forward(self, x, q, k, v):
            attn = (q @ k.transpose(-1, -2)).softmax(-1) @ v           # activation x activation
            return self.up(x), self.c3(x[:, :3].unsqueeze(1)), attn

    m = M().eval()
    make = lambda: (torch.randn(1, 4, 6, 6), torch.randn(5, 8), torch.randn(5, 8), torch.randn(5, 8))
    with torch.no_grad():
        cm = torch.compile(m, backend="int8")
        with int8compile.calibrate(cm, [make()], progress=False):
            pass
        x = make()
        for a, b in zip(cm(*x), m(*x)):
            torch.testing.assert_close(a, b)                             # all float: exact
    reasons = " | ".join(r.status for r in int8compile.report(cm).rows)
    assert "transposed convolution" in reasons
    assert "3-D convolution" in reasons
    assert "two activations" in reasons
    assert int8compile.counters["rejected"] >= 3


def test_skip_option_keeps_layer_float():
    cm, y, ref, rep = run(ConvChain(), lambda: torch.randn(2, 3, 10, 10), skip=["c2"])
    status = {r.layer: r.status for r in rep.rows}
    assert status["c2"].startswith("float: skipped by option")
    assert status["c1"] == status["c3"] == "int8"
    assert rel_error(y, ref) < 0.03


@pytest.mark.parametrize("requant", ["float", "fixed", "pot"])
def test_requant_modes_end_to_end(requant):
    cm, y, ref, rep = run(ConvChain(), lambda: torch.randn(2, 3, 10, 10), requant=requant)
    assert {r.requant for r in rep.rows} >= {requant}
    assert rel_error(y, ref) < (0.03 if requant != "pot" else 0.4)


def test_max_pool_and_flatten_run_on_int8():
    """conv -> maxpool -> conv -> flatten -> linear stays int8 throughout: one quantize, no dequantize."""
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3), nn.Linear(8 * 4 * 4, 5)

        def forward(self, x):
            x = F.max_pool2d(torch.relu(self.c1(x)), 3, 2, 1)
            return self.fc(torch.relu(self.c2(x)).flatten(1))

    cm, y, ref, rep = run(M(), lambda: torch.randn(2, 3, 12, 12))
    assert rep.op_counts()["quantize"] == 1
    assert rep.op_counts()["dequantize"] == 0
    assert "int8compile.max_pool2d" in rep.code            # the int8 pool, no float round trip
    assert rel_error(y, ref) < 0.03


def test_projections_of_one_tensor_share_one_quantize():
    """q/k/v-style projections read three views of one activation: it is quantized once."""
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)

        def forward(self, x):
            return self.q(x) + self.k(x) * self.v(x)

    cm, y, ref, rep = run(M(), lambda: torch.randn(2, 5, 16))
    assert rep.op_counts()["quantize"] == 1
    assert rel_error(y, ref) < 0.05


class LinearGeluLinear(nn.Module):
    def __init__(self, approximate="none"):
        super().__init__()
        self.up, self.down = nn.Linear(24, 64), nn.Linear(64, 24)
        self.approximate = approximate

    def forward(self, x):
        return self.down(F.gelu(self.up(x), approximate=self.approximate))


def test_gelu_between_linears_runs_in_the_epilogue():
    """linear -> GELU -> linear (3-D, so GELU arrives after a view): one linear_gelu with int8 output."""
    cm, y, ref, rep = run(LinearGeluLinear(), lambda: torch.randn(2, 9, 24))
    assert int8compile.counters["linear"] == 2 and int8compile.counters["gelu"] == 1
    counts = rep.op_counts()
    assert counts["linear_gelu"] == 1 and counts["linear"] == 1
    assert counts["quantize"] == 1 and counts["dequantize"] == 0
    assert "aten.gelu" not in rep.code
    assert int8_rows(rep)[0].fused == "gelu"
    assert rel_error(y, ref) < 0.03


def test_gelu_end_to_end_cpu_equals_reference():
    make = lambda: torch.randn(3, 24)
    torch.manual_seed(1)
    model = LinearGeluLinear().eval()
    batches = [make() for _ in range(4)]
    outs = {}
    for target in ("cpu", "reference"):
        torch._dynamo.reset()
        with torch.no_grad():
            cm = torch.compile(model, backend="int8", options={"target": target, "progress": False})
            with int8compile.calibrate(cm, progress=False):
                for b in batches[:3]:
                    cm(b)
            outs[target] = cm(batches[3])
            assert int8compile.report(cm).op_counts()["linear_gelu"] == 1
    assert torch.equal(outs["cpu"], outs["reference"])


def test_gelu_before_float_consumer_stays_in_pytorch():
    """The last linear's GELU feeds float code: float output, then aten.gelu exactly as before."""
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 32)

        def forward(self, x):
            return F.gelu(self.fc(x)) * 2

    cm, y, ref, rep = run(M(), lambda: torch.randn(4, 16))
    assert int8compile.counters["gelu"] == 1
    assert rep.op_counts()["linear_gelu"] == 0 and rep.op_counts()["linear"] == 1
    assert rel_error(y, ref) < 0.03


def test_tanh_gelu_is_not_fused():
    cm, y, ref, rep = run(LinearGeluLinear("tanh"), lambda: torch.randn(2, 9, 24))
    assert int8compile.counters["gelu"] == 0
    assert rep.op_counts()["linear_gelu"] == 0
    assert rel_error(y, ref) < 0.03


class ConvCudnnBn(ConvBnAct):
    """The graph CUDA inputs trace to: aten.cudnn_batch_norm (training flag at index 5)."""

    def forward(self, x):
        bn = self.bn
        y = torch.ops.aten.cudnn_batch_norm(self.conv(x), bn.weight, bn.bias, bn.running_mean, bn.running_var,
                                            False, bn.momentum, bn.eps)[0]
        return self.act(y)

    def reference(self, x):
        return super().forward(x)


def test_cudnn_batch_norm_is_folded():
    # Unfolded, this op cannot even run on a CPU: the int8 program running here shows it was folded.
    model = ConvCudnnBn(nn.ReLU()).eval()
    with torch.no_grad():
        cm = compile_calibrated(model, lambda: torch.randn(2, 3, 12, 12), 4)
        x = torch.randn(2, 3, 12, 12)
        y, ref = cm(x), model.reference(x)
    assert int8compile.counters["batch_norm"] == 1 and int8compile.counters["relu"] == 1
    assert int8_rows(int8compile.report(cm))[0].fused == "batch_norm+relu"
    assert rel_error(y, ref) < 0.03
