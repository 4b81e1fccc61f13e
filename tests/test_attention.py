"""The cpu target's fp32 attention kernel (csrc/cpu/attention_avx512.cpp) against float64 math, and
the fuse_attention pass that puts it in place of aten's CPU flash attention."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import int8compile
from conftest import rel_error
from int8compile.kernels import cpu
from int8compile.passes import attention as attention_pass

FLASH = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default


@pytest.fixture(scope="module", autouse=True)
def avx512():
    if cpu.build_error() is not None or "avx512vnni" not in cpu.supported_isas():
        pytest.skip("the attention kernel needs the AVX512 cpu kernels")


def heads(g, b, h, s, d, strided):
    if strided:                                       # a projection's output viewed as heads
        return torch.randn(b, s, h * d, generator=g).view(b, s, h, d).transpose(1, 2)
    return torch.randn(b, h, s, d, generator=g)


def math_attention(q, k, v, mask, scale):
    s = (q.double() @ k.double().transpose(-1, -2)) * scale
    if mask is not None:
        s = s + mask.double()
    return (s.softmax(-1).nan_to_num(0.0) @ v.double()).float()


@pytest.mark.parametrize("b,h,sq,sk,d,dv,mask,strided", [
    (2, 12, 128, 128, 32, 32, "keys", True),          # BERT-like, padding mask broadcast over heads
    (2, 3, 7, 13, 20, 16, "full", False),             # tails everywhere, head sizes differ
    (1, 2, 33, 70, 64, 64, None, True),
    (2, 2, 5, 200, 32, 48, "one_row", False),         # mask broadcast over batch, heads and queries
    (3, 1, 4, 16, 8, 16, "row_masked", False),        # a query that sees no key: zeros, as aten
])
def test_attention_matches_math(b, h, sq, sk, d, dv, mask, strided):
    g = torch.Generator().manual_seed(sq * 1000 + sk)
    q, k, v = heads(g, b, h, sq, d, strided), heads(g, b, h, sk, d, strided), heads(g, b, h, sk, dv, strided)
    m = None
    if mask == "keys":
        m = torch.where(torch.rand(b, 1, 1, sk, generator=g) > 0.2, 0.0, float("-inf")).expand(b, 1, sq, sk)
    elif mask == "full":
        m = torch.randn(b, h, sq, sk, generator=g)
    elif mask == "one_row":
        m = torch.randn(1, 1, 1, sk, generator=g)
    elif mask == "row_masked":
        m = torch.zeros(b, 1, sq, sk)
        m[:, :, 1] = float("-inf")
    assert cpu.attention_unsupported(q, k, v, m) is None
    out = torch.ops.int8compile.attention(q, k, v, m, 0.3)
    ref = math_attention(q, k, v, m, 0.3)
    assert out.shape == (b, h, sq, dv)
    assert float((out - ref).abs().max()) < 1e-5
    if mask == "row_masked":
        assert torch.equal(out[:, :, 1], torch.zeros_like(out[:, :, 1]))


def test_attention_unsupported_head_size_falls_back_to_aten():
    g = torch.Generator().manual_seed(3)
    q, k, v = (heads(g, 2, 2, 9, 24, False) for _ in range(3))
    assert "head size" in cpu.attention_unsupported(q, k, v, None)
    out = torch.ops.int8compile.attention(q, k, v, None, 0.2)
    assert torch.equal(out, FLASH(q, k, v, scale=0.2)[0])
    assert out.transpose(1, 2).is_contiguous()          # the layout the fake implementation gives


class SelfAttention(nn.Module):
    def __init__(self, dim=64, heads=2, causal=False):
        super().__init__()
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.heads, self.causal = heads, causal

    def forward(self, x, mask):
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if self.causal else mask,
                                           is_causal=self.causal)
        return self.out(y.transpose(1, 2).reshape(b, s, d))


def _run(model, return_module=False, **options):
    mask = torch.zeros(2, 1, 16, 16)
    mask[1, :, :, 12:] = float("-inf")
    with torch.no_grad():
        model = model.eval()
        cm = torch.compile(model, backend="int8", options={"progress": False, **options})
        with int8compile.calibrate(cm, progress=False):
            for _ in range(3):
                cm(torch.randn(2, 16, 64), mask)
        x = torch.randn(2, 16, 64)
        out = (cm(x, mask), model(x, mask), int8compile.report(cm))
        return (*out, cm) if return_module else out


def test_pass_puts_the_kernel_in_place_of_flash_attention():
    attention_pass.counters.clear()
    y, ref, rep = _run(SelfAttention())
    assert attention_pass.counters["attention"] == 1
    assert "int8compile.attention" in rep.code and "flash_attention" not in rep.code
    assert rel_error(y, ref) < 0.05


def test_compiled_graph_still_right_when_the_kernel_declines_at_run_time():
    """The graph calls int8compile.attention; with the AVX2 path forced afterwards it runs aten's SDPA,
    returned in the layout the compiled graph was planned for."""
    model = SelfAttention()
    y, ref, rep, cm = _run(model, return_module=True)
    assert "int8compile.attention" in rep.code
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, :, :, 10:] = float("-inf")
    x = torch.randn(2, 16, 64)
    with torch.no_grad():
        fast = cm(x, mask)
        try:
            cpu.set_isa("avx2")
            slow = cm(x, mask)
        finally:
            cpu.set_isa(None)
        ref = model(x, mask)
    assert rel_error(slow, ref) < 0.05
    assert float((slow - fast).abs().max()) < 1e-3 * float(fast.abs().max())


@pytest.mark.parametrize("model,options", [(SelfAttention(causal=True), {}),
                                           (SelfAttention(), {"target": "reference"})])
def test_pass_leaves_causal_and_reference_target_alone(model, options):
    attention_pass.counters.clear()
    y, ref, rep = _run(model, **options)
    assert attention_pass.counters["attention"] == 0
    assert "int8compile.attention" not in rep.code
    assert rel_error(y, ref) < 0.05
