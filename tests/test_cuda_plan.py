"""The CUDA routing (kernels/cuda_plan.py) is plain Python: which kernel and tile config each conv and
linear gets, tested here on any machine. The kernels themselves are tested on the GPU
(tests/test_cuda_kernels.py through scripts/gpu_check.sh)."""
import re
from pathlib import Path

import pytest

from int8compile.kernels import cuda_plan as cp
from int8compile.kernels.registry import OpCall

H100 = (9, 0)


def conv(N, C, H, O, k, s=1, p=None, *, W=None, groups=1, dilation=(1, 1), x_align=16, cc=H100, int8_out=False):
    p = k // 2 if p is None else p
    return cp.ConvQuery(N, C, H, W or H, O, k, k, C // groups, (s, s), (p, p, p, p), dilation, groups,
                        x_align, 16, cc, 132, int8_out)


@pytest.mark.parametrize("q,expected", [
    # ResNet-50 on an H100: the RGB stem, folded at batch 256 and built directly at batch 1
    (conv(256, 3, 224, 64, 7, 2), "fold"),
    (conv(16, 3, 224, 64, 7, 2), "fold"),       # the row fold wins from batch 16 on (H200: 41.7 vs 50.0 us)
    (conv(1, 3, 224, 64, 7, 2), "stem"),
    (conv(4, 3, 224, 64, 7, 2), "stem"),
    (conv(8, 3, 224, 64, 7, 2), "fold"),        # H100: 24.9 vs 29.8 us direct
    (conv(256, 64, 56, 256, 1), "sm90:11"),     # output-heavy 1x1: 64x128 tiles, three CTAs per SM
    (conv(256, 128, 28, 512, 1), "sm90:20"),    # ... with 128-byte k-blocks where C % 128 == 0
    (conv(256, 256, 14, 1024, 1), "sm90:20"),
    (conv(256, 256, 56, 512, 1, 2, 0), "sm90:20"),
    (conv(256, 512, 7, 2048, 1), "sm90:0"),     # K = 512: 128x128 tiles
    (conv(256, 256, 56, 128, 1), "sm90:10"),    # short input-heavy 1x1: 64x64 tiles, three CTAs per SM
    (conv(256, 64, 56, 64, 3), "sm90:17"),      # C = 64, 3x3: 7 with its nine weight k-blocks resident
    (conv(256, 64, 56, 64, 1), "sm90:7"),       # C = 64, 1x1: one k-block, resident in 7's ring already
    (conv(256, 64, 56, 64, 5), "sm90:7"),       # 25 k-blocks: more than nine slots
    (conv(256, 256, 56, 64, 1), "sm90:8"),      # O <= 64
    (conv(256, 512, 7, 512, 3), "sm90:0"),
    (conv(1, 512, 7, 512, 3), "sm90:2"),        # batch 1: too few 128x128 tiles
    (conv(2, 48, 14, 64, 3), "mma64"),          # C not a multiple of 32: no TMA im2col
    (conv(256, 64, 56, 64, 3, x_align=4), "mma64"),  # misaligned x
    (conv(64, 64, 56, 256, 3, groups=2), "mma"),
    (conv(8, 32, 28, 32, 3, groups=32), "depthwise"),
    (conv(256, 64, 56, 256, 1, cc=(8, 0)), "mma"),
    (conv(1, 64, 56, 256, 1, cc=(8, 6)), "mma64"),
    (conv(256, 64, 56, 256, 1, cc=(6, 1)), "dp4a"),
])
def test_conv_routing(q, expected):
    plan = cp.plan_conv(q)
    assert (f"{plan.algo}:{plan.cfg}" if plan.algo == "sm90" else plan.algo) == expected, plan


def test_three_channel_conv_off_hopper_pads_channels_to_four():
    plan = cp.plan_conv(conv(8, 3, 224, 64, 7, 2, cc=(8, 0)))
    assert (plan.algo, plan.pad_channels) == ("mma64", 4)     # O = 64: the 64x64 tiles
    assert str(plan) == "mma64 (C zero-padded to 4)"
    assert cp.plan_conv(conv(8, 3, 224, 64, 7, 2, cc=(8, 0)), "mma").pad_channels == 0   # asked: as is


def test_stem_needs_four_byte_rows_and_falls_back():
    odd = conv(1, 3, 19, 64, 7, 2)                            # W * C = 57: no 4-byte rows
    assert cp.plan_conv(odd, "stem").algo == "mma"
    assert cp.plan_conv(odd).algo == "mma64"                 # too few rows to fold either


def test_forced_families_and_overrides():
    q = conv(256, 64, 56, 256, 1)
    assert cp.plan_conv(q, env=cp.RouteEnv(algo="mma")).algo == "mma"
    assert cp.plan_conv(q, "dp4a").algo == "dp4a"
    assert cp.plan_conv(q, "depthwise").algo == "mma"       # not a depthwise conv
    assert cp.plan_conv(q, "stem").algo == "mma"
    assert cp.plan_conv(q, env=cp.RouteEnv(conv_cfg=0)).cfg == 0
    assert cp.plan_conv(q, cfg=14, env=cp.RouteEnv(conv_cfg=0)).cfg == 14      # the argument wins
    assert cp.plan_conv(q, env=cp.RouteEnv(conv_splits=3)).splits == 3
    stem = conv(256, 3, 224, 64, 7, 2)
    assert cp.plan_conv(stem, env=cp.RouteEnv(algo="sm90")).algo == "mma64"    # forced: no stem rules
    assert cp.plan_conv(stem, "fold", cfg=6) == cp.ConvPlan("fold", cfg=6, fold_rows=2)


@pytest.mark.parametrize("name,value", [("INT8COMPILE_FOLD_ROWS", "2"), ("INT8COMPILE_FOLD_ROWS", "yes"),
                                        ("INT8COMPILE_SM90_CONV_CFG", "9"), ("INT8COMPILE_SM90_CONV_SPLITS", "0")])
def test_bad_knobs_name_themselves(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        cp.route_env()


def test_knobs_unset_or_empty_give_defaults(monkeypatch):
    monkeypatch.setenv("INT8COMPILE_FOLD_ROWS", "")
    monkeypatch.delenv("INT8COMPILE_SM90_CONV_CFG", raising=False)
    monkeypatch.delenv("INT8COMPILE_SM90_CONV_SPLITS", raising=False)
    assert cp.route_env() == cp.RouteEnv()
    monkeypatch.setenv("INT8COMPILE_SM90_CFG", "2")
    assert cp.sm90_config(4096, 4096, 4096) == (2, 1)


def test_fold_rows():
    """A stride-2 RGB stem folds 2 rows x 7 columns x 3 channels into 64; what does not fit 64 channels,
    has no row stride or a row dilation folds only its columns (into 32); INT8COMPILE_FOLD_ROWS=1 forces that."""
    stem = conv(256, 3, 224, 64, 7, 2)
    assert str(cp.plan_conv(stem)) == "fold pass + sm90 over 2 rows x KW x C folded channels"
    assert (cp.fold_rows_for(stem), cp.fold_channels(2, 7, 3)) == (2, 64)
    assert cp.fold_rows_for(stem, cp.RouteEnv(fold_rows=1)) == 1
    assert str(cp.plan_conv(stem, env=cp.RouteEnv(fold_rows=1))) == "fold pass + sm90 over KW x C folded channels"
    assert cp.fold_rows_for(conv(256, 3, 224, 64, 7, 1)) == 1                    # no row stride
    assert cp.fold_rows_for(conv(256, 3, 224, 64, 7, 2, dilation=(2, 1))) == 1   # row dilation
    assert cp.fold_rows_for(conv(256, 4, 224, 64, 7, 2)) == 2                    # 2 * 7 * 4 = 56
    assert cp.fold_rows_for(conv(256, 3, 224, 64, 7, 4)) == 1                    # 4 * 7 * 3 > 64
    assert cp.fold_channels(1, 7, 3) == 32
    # folded rows and where folded row i starts (input row i * step - off): every row, or OH + taps - 1
    assert cp.fold_row_layout(1, 7, 224, 112, 3) == (224, 1, 0)
    assert cp.fold_row_layout(2, 7, 224, 112, 3) == (112 + 4 - 1, 2, 3)
    assert cp.fold_rows_for(conv(8, 3, 2000, 64, 7, 2)) == 1                     # two rows and their fold too wide
    assert cp.plan_conv(conv(8, 3, 2000, 64, 7, 2)).algo == "fold"
    assert cp.plan_conv(conv(8, 3, 6000, 64, 7, 2)).algo != "fold"   # its folded row (3000 x 32 B) too


def test_im2col_limits():
    assert cp.im2col_unfit(conv(1, 64, 8, 64, 3)) is None
    assert "grouped" in cp.im2col_unfit(conv(1, 64, 8, 64, 3, groups=2))
    assert "32" in cp.im2col_unfit(conv(1, 48, 8, 64, 3))
    assert "aligned" in cp.im2col_unfit(conv(1, 64, 8, 64, 3, x_align=4))
    assert "stride" in cp.im2col_unfit(conv(1, 64, 8, 64, 3, 9))
    assert "corner" in cp.im2col_unfit(conv(1, 64, 8, 64, 3, 1, 200))


@pytest.mark.parametrize("M,K,aligned,cc,expected", [
    (4096, 4096, True, H100, "sm90:1"), (256, 4096, True, H100, "sm90:2"), (32, 4096, True, H100, "sm90:7"),
    (4096, 131, True, H100, "mma"), (4096, 4096, False, H100, "mma"), (32, 4096, True, (8, 0), "mma64"),
    (4096, 4096, True, (6, 1), "dp4a"),
])
def test_linear_routing(M, K, aligned, cc, expected):
    plan = cp.plan_linear(M, 4096, K, aligned, cc)
    assert (f"{plan.algo}:{plan.cfg}" if plan.algo == "sm90" else plan.algo) == expected, plan


def test_plan_names_for_the_report(monkeypatch):
    from int8compile.kernels import cuda as ck
    monkeypatch.setattr(ck, "_capability", lambda: H100)
    monkeypatch.setattr(ck, "_num_sms", lambda dev: 132)
    monkeypatch.setattr(ck.torch.cuda, "current_device", lambda: 0)
    call = OpCall("conv2d", "cuda", {"x": (256, 64, 56, 56), "weight": (256, 1, 1, 64), "out": (256, 256, 56, 56)},
                  params={"stride": (1, 1), "padding": (0, 0, 0, 0), "dilation": (1, 1), "groups": 1})
    assert ck.describe_conv(call) == "sm90 64x128x64 (cfg 11)"
    stem = OpCall("conv2d", "cuda", {"x": (1, 3, 224, 224), "weight": (64, 7, 7, 3), "out": (1, 64, 112, 112)},
                  params={"stride": (2, 2), "padding": (3, 3, 3, 3), "dilation": (1, 1), "groups": 1})
    assert ck.describe_conv(stem).startswith("stem")
    lin = OpCall("linear", "cuda", {"x": (8, 128, 4096), "weight": (4096, 4096), "out": (8, 128, 4096)})
    assert ck.describe_linear(lin) == "sm90 128x128 (cfg 1)"
    monkeypatch.setattr(ck, "_capability", lambda: None)     # no GPU: no plan to show
    assert ck.describe_conv(call) == ""


def _source(name):
    return (Path(__file__).resolve().parents[1] / "csrc" / "cuda" / name).read_text()


def _cases(name, pattern):
    return {int(m[0]): tuple(int(v) for v in m[1:]) for m in re.findall(pattern, _source(name))}


def test_tile_tables_match_the_cuda_sources():
    """The planner's tile tables describe the configs the kernels instantiate (conv_sm90.cuh,
    gemm_sm90.cu): a config added or changed on one side only fails here, not on the GPU."""
    conv = _cases("conv_sm90.cuh", r"case (\d+):(?:\s+if constexpr [^;]*;\s+else)? return I8C_CONV(?:_PP|_RB|_HALO)?\((\d+), (\d+), (\d+),")
    assert conv == cp.SM90_CONV_TILES
    bk = [int(v) for v in re.search(r"kConvBK\[\] = \{([^}]*)\}", _source("conv_sm90.cuh"))[1].split(",")]
    assert all(bk[cfg] == tile[2] for cfg, tile in cp.SM90_CONV_TILES.items())   # the binding's C % BK check
    gemm = _cases("gemm_sm90.cu", r"case (\d+): return launch<(\d+), (\d+),")
    assert gemm == cp.SM90_TILES


def test_halo_unfit():
    """The halo-fed convs (HALO_CONFIGS): C = 64, stride 1, their taps resident and their KW halo boxes
    within a stage."""
    assert cp.halo_unfit(conv(256, 64, 115, 64, 1, W=112)) is None
    folded = cp.ConvQuery(256, 64, 115, 112, 64, 4, 1, 64, (1, 1), (0, 0, 0, 0), (1, 1), 1, 16, 16, H100, 132)
    assert cp.halo_unfit(folded, 18) is None                      # the row-folded stem's 4x1 conv
    assert "stride" in cp.halo_unfit(conv(8, 64, 56, 64, 1, 2))
    assert "O % 16" in cp.halo_unfit(conv(8, 64, 56, 200, 1))
    assert "taps" in cp.halo_unfit(conv(8, 64, 56, 64, 3), 18)   # nine taps: config 19's
    assert cp.halo_unfit(conv(8, 64, 56, 64, 3), 19) is None
    assert "taps" in cp.halo_unfit(conv(8, 64, 56, 64, 5), 19)
    assert "C = 64" in cp.halo_unfit(conv(8, 128, 28, 64, 1))
    assert "C = 64" in cp.halo_unfit(conv(8, 64, 56, 64, 1, cc=(8, 0)))


def test_halo_routing():
    """int8-out convs that a halo config takes go to it when they fill a wave of 16 x 8-pixel tiles: the
    64-channel 3x3 (19) and the row-folded stem's 4x1 (18); anything else keeps its im2col config."""
    assert cp.plan_conv(conv(256, 64, 56, 64, 3, int8_out=True)) == cp.ConvPlan("sm90", cfg=19)
    assert str(cp.plan_conv(conv(256, 64, 56, 64, 3, int8_out=True))) == "sm90 halo 16x8 px x 64 (cfg 19)"
    assert cp.plan_conv(conv(256, 64, 56, 64, 3)).cfg == 17                    # a residual / float out
    assert cp.plan_conv(conv(1, 64, 56, 64, 3, int8_out=True)).cfg == 7        # 28 tiles: batch 1
    assert cp.plan_conv(conv(5, 64, 56, 64, 3, int8_out=True)).cfg == 19       # 140 tiles
    assert cp.plan_conv(conv(256, 64, 56, 64, 1, int8_out=True)).cfg == 7      # a 1x1 has no halo
    assert cp.plan_conv(conv(256, 64, 56, 64, 3, 2, int8_out=True)).cfg != 19  # stride 2
    assert cp.plan_conv(conv(256, 128, 28, 128, 3, int8_out=True)).cfg == 0    # C = 128
    folded = cp.ConvQuery(256, 64, 115, 112, 64, 4, 1, 64, (1, 1), (0, 0, 0, 0), (1, 1), 1, 16, 16, H100, 132, True)
    assert cp.plan_conv(folded, "sm90") == cp.ConvPlan("sm90", cfg=18)
    assert cp.plan_conv(conv(256, 64, 56, 64, 3, int8_out=True), cfg=17).cfg == 17   # a forced config wins


def test_describe_plan_names_the_folded_convs_kernel():
    stem = conv(256, 3, 224, 64, 7, 2, int8_out=True)
    assert cp.folded_query(stem, 2) == cp.ConvQuery(256, 64, 115, 112, 64, 4, 1, 64, (1, 1), (0, 0, 0, 0), (1, 1), 1,
                                                    16, 16, H100, 132, True)
    assert cp.folded_query(stem, 1) == cp.ConvQuery(256, 32, 224, 112, 64, 7, 1, 32, (2, 1), (3, 3, 0, 0), (1, 1), 1,
                                                    16, 16, H100, 132, True)
    fold = "fold pass + sm90 over 2 rows x KW x C folded channels"
    assert cp.describe_plan(stem, cp.plan_conv(stem)) == f"{fold}: sm90 halo 16x8 px x 64 (cfg 18)"
    residual = conv(256, 3, 224, 64, 7, 2)
    assert cp.describe_plan(residual, cp.plan_conv(residual)) == f"{fold}: sm90 128x64x64 (cfg 7)"
    columns = cp.RouteEnv(fold_rows=1)
    assert cp.describe_plan(stem, cp.plan_conv(stem, env=columns), columns) == \
        "fold pass + sm90 over KW x C folded channels: sm90 128x64x32 (cfg 13)"
    q = conv(256, 64, 56, 64, 3, int8_out=True)
    assert cp.describe_plan(q, cp.plan_conv(q)) == str(cp.plan_conv(q))


@pytest.mark.parametrize("rows", [1, 2])
def test_folded_query_is_the_geometry_the_fold_runs(rows, monkeypatch):
    """cuda._conv2d_folded (with the extension faked: only its arguments are looked at, so this runs on a
    CPU) allocates the folded tensor and hands the folded conv the shapes and geometry folded_query
    describes."""
    import torch
    from int8compile.kernels import cuda as ck
    calls = {}

    class FakeExt:
        def fold_window(self, x, y, *args):
            calls["folded"] = tuple(y.shape)

        def conv2d(self, x, w, out, *args):
            calls["conv"] = (tuple(x.shape), tuple(w.shape), *(tuple(a) for a in args[9:12]))

    monkeypatch.setattr(ck, "ext", lambda: FakeExt())
    N, C, H, W, O, k, s, p = 2, 3, 30, 26, 64, 7, 2, 3
    x = torch.zeros((N, C, H, W), dtype=torch.int8).contiguous(memory_format=torch.channels_last)
    w = torch.zeros((O, k, k, C), dtype=torch.int8)
    q = ck._conv_query(x, w, (s, s), (p, p, p, p), (1, 1), 1)
    oh, ow = q.out_hw
    out = torch.empty((N, O, oh, ow), dtype=torch.int8).contiguous(memory_format=torch.channels_last)
    epi = (None, torch.ones(O), None, None, None, None, 0.0, -128.0, 127.0)
    ck._conv2d_folded(x, w, q, epi, torch.int8, out, None, rows)
    f = cp.folded_query(q, rows)
    assert calls["folded"] == (f.N, f.C, f.H, f.W)
    assert calls["conv"] == ((f.N, f.C, f.H, f.W), (f.O, f.KH, f.KW, f.Cg), f.stride, f.padding, f.dilation)
