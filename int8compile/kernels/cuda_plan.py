"""Which CUDA kernel runs a conv or a linear, with which tile config: pure decisions from shapes, operand
alignment, the compute capability and the INT8COMPILE_* overrides. No CUDA calls, so the routing is
tested on any machine (tests/test_cuda_plan.py) and the report can show it; cuda.py executes the plan.

The tile tables and pickers come from H100 sweeps (benchmarks/results/cuda_2026-11-25*.md).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from typing import Optional

# wgmma GEMM tiles (gemm_sm90.cu): cfg -> (BM, BN)
SM90_TILES = {0: (128, 256), 1: (128, 128), 2: (64, 128), 4: (128, 128), 7: (64, 64), 9: (64, 128)}
# wgmma conv tiles (conv_sm90.cuh): cfg -> (BM, BN, BK); 7 and up run several CTAs per SM
SM90_CONV_TILES = {0: (128, 128, 128), 1: (128, 128, 64), 2: (128, 64, 128), 3: (128, 64, 64),
                   4: (128, 256, 128), 5: (64, 128, 64), 6: (128, 64, 32), 7: (128, 64, 64),
                   8: (128, 64, 128), 10: (64, 64, 128), 11: (64, 128, 64),
                   12: (64, 64, 32), 13: (128, 64, 32), 14: (128, 64, 64),
                   15: (128, 128, 64), 16: (64, 128, 64),  # 15, 16: ping-pong consumers
                   17: (128, 64, 64),  # 7 with nine weight slots (a 64-channel 3x3's weights stay resident)
                   18: (128, 64, 64), 19: (128, 64, 64),  # 16 x 8-pixel tiles fed by halo boxes (HALO_CONFIGS)
                   20: (64, 128, 128)}  # 11 with 128-byte k-blocks and two stages
# the halo-fed convs: cfg -> (filter taps it keeps resident, bytes of its A stage). H100, batch 256
# (benchmarks/results/cuda_2026-11-26_session4.md): 64 -> 64 3x3 at 56x56 80.9 us on 19 vs 110.1 on 17;
# the row-folded stem (fold pass + 4x1 conv) 340.0 on 18 vs 380.7 on 7
HALO_CONFIGS = {18: (4, 10 * 1024), 19: (9, 27 * 1024)}
HALO_CFG = 18               # the folded stem's 4x1
HALO_TILE = (16, 8)         # output rows x columns of a halo conv's tile
FOLD_CHANNELS = 32          # the folded stem's channels (KW * C zero-padded), a 32-byte k-block
FOLD_ROW_CHANNELS = 64      # ... with the rows of a row stride folded too (R * KW * C), a 64-byte k-block
FOLD_MIN_ROWS = 128 * 132   # fold only when the conv has at least a wave of 128-row tiles
FOLD_MAX_ROW_BYTES = 32000  # fold_window's byte offsets into its staged input rows are int16
FOLD_MAX_SMEM = 48 * 1024   # ... which it stages with the folded row in shared memory
# the direct stem beats fold pass + folded conv on small convs, loses on large ones. ResNet-50 stem, us,
# direct vs the row fold (H100, 2026-11-26 third session): batch 1 11.9 vs 14.6, 2: 15.2 vs 15.6,
# 4: 18.9 vs 19.1, 8: 29.8 vs 24.9, 256: 714 vs 366 (benchmarks/results/cuda_2026-11-26_session3.md)
STEM_MAX_ROWS = 4 * 112 * 112
SM90 = (9, 0)
MMA_MIN_CC = (7, 5)         # mma.sync m16n8k32 (four m8n8k16 on sm75)


@dataclass(frozen=True)
class RouteEnv:
    """The routing overrides from the environment (read once per call by route_env)."""
    algo: str = "auto"                 # INT8COMPILE_CUDA_ALGO: one kernel family for every conv / linear
    conv_cfg: Optional[int] = None     # INT8COMPILE_SM90_CONV_CFG: the wgmma conv tile config
    conv_splits: int = 1               # INT8COMPILE_SM90_CONV_SPLITS: its split-K factor
    fold_rows: int = 0                 # INT8COMPILE_FOLD_ROWS=1: fold filter columns only (0: also rows)


def env_int(name: str, default: Optional[int], allowed=None, minimum: Optional[int] = None) -> Optional[int]:
    """An integer INT8COMPILE_* knob (default when unset), with an error naming the knob when it is not one
    of `allowed` (or below `minimum`)."""
    value = os.environ.get(name, "")
    if value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r}: expected an integer (unset it for the default)") from None
    if (allowed is not None and n not in allowed) or (minimum is not None and n < minimum):
        expected = f"one of {sorted(allowed)}" if allowed is not None else f"an integer >= {minimum}"
        raise ValueError(f"{name}={value!r}: expected {expected}")
    return n


def forced_algo() -> str:
    return os.environ.get("INT8COMPILE_CUDA_ALGO", "auto").lower()


def route_env() -> RouteEnv:
    return RouteEnv(forced_algo(), env_int("INT8COMPILE_SM90_CONV_CFG", None, SM90_CONV_TILES), sm90_conv_splits(),
                    env_int("INT8COMPILE_FOLD_ROWS", 0, (0, 1)))


def sm90_config(M: int, N: int, K: int, sms: int = 132) -> tuple[int, int]:
    """(tile config, split-K factor) for the wgmma GEMM (configs in gemm_sm90.cu)."""
    forced = env_int("INT8COMPILE_SM90_CFG", None, SM90_TILES)

    def tiles(cfg):
        bm, bn = SM90_TILES[cfg]
        return -(-M // bm) * -(-N // bn)
    # Measured on H100: the cooperative 128x128 tile is best once it gives ~a wave of CTAs; 64x128
    # below that; 64x64 for M <= 64. The ping-pong config (4) and split-K (atomic int32 reduction)
    # were slower everywhere measured, so they are opt-in only.
    if forced is not None:
        cfg = forced
    elif M <= 64:
        cfg = 7
    elif tiles(1) >= (3 * sms) // 4:
        cfg = 1
    else:
        cfg = 2
    return cfg, env_int("INT8COMPILE_SM90_SPLITS", 1, minimum=1)


def sm90_conv_config(M: int, O: int, C: int, K: int, sms: int = 132) -> int:
    """Tile config of the wgmma implicit-GEMM conv (K = KH * KW * C, the reduction length):
      * C not a multiple of 64 (the folded stem, C = 32): 128x64 tiles, 32-byte k-blocks, two CTAs
        per SM (13);
      * 128x128 tiles would leave most SMs idle (batch 1): 128x64 tiles (2, or 7 for C = 64);
      * short reductions into >= 128 channels (the output-heavy 1x1 expansions): 64x128 tiles at
        three CTAs per SM, so epilogues overlap other CTAs' loads and MMAs, with 128-byte k-blocks in
        two stages where C % 128 == 0 (20: half the k-blocks, so half the per-k-block waits and
        arrivals; H100, batch 256, same process: 128 -> 512 at 28x28 57.7 vs 61.7 us, 256 -> 1024 at
        14x14 37.9 vs 40.3, 256 -> 512 stride 2 73.0 vs 79.2), else 64-byte k-blocks in four (11);
        with at least twice as many input as output channels (256 -> 128) 64x64 tiles with 128-byte
        k-blocks at three CTAs per SM (10: 256 -> 128 1x1 at 56x56, 107.7 vs 118.5 us for 11);
      * C = 64: 128x64 at two CTAs per SM, 64-byte k-blocks (7); when its k-blocks are 5-9 (the
        3x3), the same with nine weight slots (17), so the weights stay resident (H200, 64 -> 64 3x3
        at 56x56, batch 256: 113.5 vs 129.0 us); O <= 64 like 7 with 128-byte k-blocks (8);
        otherwise 128x128 tiles with 128-byte k-blocks (0)."""
    if C % 64:
        return 13
    if -(-M // 128) * -(-O // 128) < sms // 2:
        return 7 if C % 128 else 2
    if K <= 256 and O >= 128:
        if C >= 2 * O:
            return 10
        return 20 if C % 128 == 0 else 11
    if C % 128:
        return 17 if 4 * 64 < K <= 9 * 64 else 7
    return 8 if O <= 64 else 0


def sm90_conv_splits() -> int:
    """Split-K factor of the wgmma conv: 1 unless INT8COMPILE_SM90_CONV_SPLITS asks for more. Split-K is
    exact but measured slower on every ResNet-50 layer at batch 1 on H100 (each extra slice added a
    near-constant 3-6 us, with the reduction through atomics and through per-slice planes alike;
    benchmarks/results/cuda_2026-11-25_session3.md), so it is opt-in until that is understood."""
    return env_int("INT8COMPILE_SM90_CONV_SPLITS", 1, minimum=1)


def alignment(address: int) -> int:
    """The largest of 16, 4 and 1 that divides `address` (what the kernels' loads need)."""
    return 16 if address % 16 == 0 else 4 if address % 4 == 0 else 1


@dataclass(frozen=True)
class ConvQuery:
    """A conv as the router sees it: x [N, C, H, W] channels-last, weight [O, KH, KW, Cg]."""
    N: int
    C: int
    H: int
    W: int
    O: int
    KH: int
    KW: int
    Cg: int
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    dilation: tuple[int, int]
    groups: int
    x_align: int        # alignment() of x's and the weight's addresses
    w_align: int
    cc: tuple[int, int]
    sms: int = 132
    int8_out: bool = False  # int8 output without residual, 16-byte aligned (the halo convs' epilogue)

    @property
    def out_hw(self) -> tuple[int, int]:
        from ..ops import conv2d_output_size  # here: ops imports the kernel targets, which import this module
        return conv2d_output_size((self.H, self.W), (self.KH, self.KW), self.stride, self.padding, self.dilation)

    @property
    def rows(self) -> int:
        """GEMM rows: output pixels."""
        oh, ow = self.out_hw
        return self.N * oh * ow


@dataclass(frozen=True)
class ConvPlan:
    """algo: sm90 (TMA im2col + wgmma) | stem (wgmma, A tiles built from x) | fold (fold pass, then the
    sm90 conv over the folded channels) | mma / mma64 (mma.sync implicit GEMM, 128x128 / 64x64 tiles) |
    dp4a | depthwise. cfg: the sm90 tile config (None for the others, and for fold, whose folded conv
    plans its own); pad_channels: zero-pad C to this first (few-channel convs on mma.sync);
    fold_rows: input rows per folded pixel (fold_rows_for)."""
    algo: str
    cfg: Optional[int] = None
    splits: int = 1
    pad_channels: int = 0
    fold_rows: int = 1

    def __str__(self) -> str:
        if self.algo == "sm90" and self.cfg in HALO_CONFIGS:
            return f"sm90 halo {HALO_TILE[0]}x{HALO_TILE[1]} px x {SM90_CONV_TILES[self.cfg][1]} (cfg {self.cfg})"
        if self.algo == "sm90":
            bm, bn, bk = SM90_CONV_TILES[self.cfg]
            return f"sm90 {bm}x{bn}x{bk} (cfg {self.cfg})" + (f" split-K {self.splits}" if self.splits > 1 else "")
        if self.algo == "fold":
            rows = f"{self.fold_rows} rows x " if self.fold_rows > 1 else ""
            return f"fold pass + sm90 over {rows}KW x C folded channels"
        if self.algo == "stem":
            return "stem (A tiles built from x)"
        if self.pad_channels:
            return f"{self.algo} (C zero-padded to {self.pad_channels})"
        return self.algo


def im2col_unfit(q: ConvQuery) -> Optional[str]:
    """Why the TMA im2col conv cannot take this conv (None: it can). Limits of cuTensorMapEncodeIm2col
    for 4-D tensors: window corners in [-128, 127], traversal strides <= 8, 16-byte aligned rows."""
    if q.groups != 1:
        return "grouped"
    if q.C % 32:
        return "channels not a multiple of 32"
    if q.x_align < 16 or q.w_align < 16:
        return "operands not 16-byte aligned"
    if max(q.stride) > 8:
        return "stride > 8"
    if (q.KH - 1) * q.dilation[0] >= 1 << 16 or (q.KW - 1) * q.dilation[1] >= 1 << 16:
        return "filter window too large"
    oh, ow = q.out_hw
    corners = (-q.padding[0], -q.padding[2], (oh - 1) * q.stride[0] - q.padding[0] - (q.H - 1),
               (ow - 1) * q.stride[1] - q.padding[2] - (q.W - 1))
    if any(not -128 <= c <= 127 for c in corners):
        return "padding / window corners outside [-128, 127]"
    return None


def halo_unfit(q: ConvQuery, cfg: int = HALO_CFG) -> Optional[str]:
    """Why halo-fed conv config cfg (HALO_CONFIGS) cannot take conv q, None if it can (the kernel's launch
    checks the same, plus int8 output without residual or split-K): 16 x 8-pixel tiles, each stage KW
    halo boxes of (16 + KH - 1) x 8 pixels, one 64-byte k-block per filter tap, the taps resident."""
    taps, stage_bytes = HALO_CONFIGS[cfg]
    if q.cc != SM90 or q.groups != 1 or q.C != 64 or q.x_align != 16:
        return "needs sm90, groups 1, C = 64 and 16-byte aligned x"
    if q.stride != (1, 1) or q.dilation != (1, 1):
        return "needs stride 1 and no dilation"
    if q.O % 16:
        return "needs O % 16 == 0 (its output leaves through a 4-d TMA map: 16-byte rows)"
    if q.KH * q.KW > taps or q.KW * (HALO_TILE[0] + q.KH - 1) * HALO_TILE[1] * q.C > stage_bytes:
        return f"config {cfg} keeps at most {taps} taps and {stage_bytes} bytes of halo per tile"
    return None


def halo_config(q: ConvQuery) -> Optional[int]:
    """The halo-fed config for conv q (18 for up to 4 filter taps, else 19), None where none applies: a
    1x1 (no halo to share), an epilogue other than int8 out (q.int8_out), less than a wave of spatial
    tiles (small batches keep the 128-pixel row tiles), or what halo_unfit rules out."""
    taps = q.KH * q.KW
    if not q.int8_out or taps == 1:
        return None
    oh, ow = q.out_hw
    if q.N * -(-oh // HALO_TILE[0]) * -(-ow // HALO_TILE[1]) < q.sms:
        return None
    cfg = 18 if taps <= HALO_CONFIGS[18][0] else 19
    return cfg if halo_unfit(q, cfg) is None else None


def _fold_span(q: ConvQuery) -> int:
    """Bytes of one input row that fold_window stages: the window range of the output columns, after a
    lead that puts the row's start on 16 bytes, rounded up to 16."""
    lead = -(-q.padding[2] * q.C // 16) * 16
    window = ((q.out_hw[1] - 1) * q.stride[1] + (q.KW - 1) * q.dilation[1] + 1) * q.C
    return -(-(lead - q.padding[2] * q.C + window) // 16) * 16


def _fold_fits(q: ConvQuery, rows: int) -> bool:
    """fold_window can stage `rows` input rows' window range and the folded row (plus its byte and word
    tables and 16 bytes its word loads may read past the rows) in shared memory."""
    cp = fold_channels(rows, q.KW, q.C)
    span = rows * _fold_span(q)
    return span <= FOLD_MAX_ROW_BYTES and 3 * cp + q.out_hw[1] * cp + span + 16 <= FOLD_MAX_SMEM


def _can_fold(q: ConvQuery) -> bool:
    return (q.groups == 1 and 1 < q.KW and q.KW * q.C <= FOLD_CHANNELS and q.x_align == 16 and q.cc == SM90
            and _fold_fits(q, 1))


def fold_rows_for(q: ConvQuery, env: RouteEnv = RouteEnv()) -> int:
    """Input rows per folded pixel: the row stride where R * KW * C fits 64 channels (the folded conv then
    has stride 1, no padding and 64-byte k-blocks: measured faster than 32-byte ones), else 1."""
    R = q.stride[0]
    if (env.fold_rows == 1 or R == 1 or q.dilation[0] != 1 or R * q.KW * q.C > FOLD_ROW_CHANNELS
            or not _fold_fits(q, R)):
        return 1
    return R


def fold_channels(rows: int, KW: int, C: int) -> int:
    """The folded tensor's channels: rows * KW * C zero-padded to one 32- or 64-byte k-block."""
    return FOLD_CHANNELS if rows * KW * C <= FOLD_CHANNELS else FOLD_ROW_CHANNELS


def fold_row_layout(rows: int, KH: int, H: int, OH: int, pad_top: int) -> tuple[int, int, int]:
    """(folded rows, row_step, row_off) of fold_window: folded row i starts at input row
    i * row_step - row_off. rows = 1: every input row, the row stride and padding left to the conv;
    rows = the row stride: OH + ceil(KH / rows) - 1 folded rows, the conv then has stride 1, no padding."""
    if rows == 1:
        return H, 1, 0
    return OH + -(-KH // rows) - 1, rows, pad_top


def folded_query(q: ConvQuery, rows: int) -> ConvQuery:
    """The conv that runs over fold_window's output for conv q folded by `rows` input rows (the geometry
    cuda._conv2d_folded gives it): fold_channels(rows, KW, C) channels, one filter column; KH rows with the
    row stride and padding (rows = 1) or ceil(KH / rows) rows with stride 1 and no padding."""
    oh, ow = q.out_hw
    cp = fold_channels(rows, q.KW, q.C)
    folded = replace(q, C=cp, H=fold_row_layout(rows, q.KH, q.H, oh, q.padding[0])[0], W=ow, KW=1, Cg=cp,
                     x_align=16, w_align=16)
    if rows == 1:
        return replace(folded, stride=(q.stride[0], 1), padding=(q.padding[0], q.padding[1], 0, 0),
                       dilation=(q.dilation[0], 1))
    return replace(folded, KH=-(-q.KH // rows), stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1))


def describe_plan(q: ConvQuery, plan: ConvPlan, env: RouteEnv = RouteEnv()) -> str:
    """str(plan), and for a fold the folded conv's own plan: what the report and the benchmark show."""
    if plan.algo != "fold":
        return str(plan)
    return f"{plan}: {plan_conv(folded_query(q, plan.fold_rows), 'sm90', plan.cfg, env=env)}"


def _can_stem(q: ConvQuery) -> bool:
    return (q.groups == 1 and q.KW * q.C <= FOLD_CHANNELS and q.dilation[1] == 1 and (q.W * q.C) % 4 == 0
            and q.x_align >= 4 and q.cc == SM90)


@functools.lru_cache(maxsize=4096)
def plan_conv(q: ConvQuery, algo: str = "auto", cfg: Optional[int] = None, splits: Optional[int] = None,
              env: RouteEnv = RouteEnv()) -> ConvPlan:
    """The kernel for conv `q`. algo: auto, or one family to force (falls back to mma.sync where that
    family cannot take the conv); cfg / splits override the sm90 tile config / split-K factor; env: the
    INT8COMPILE_* overrides (an argument, so the cache sees them)."""
    asked_auto = algo == "auto"
    choose = asked_auto and env.algo == "auto"      # the stem and fold rules apply only then
    depthwise = q.groups == q.C == q.O and q.Cg == 1 and q.x_align >= 4
    im2col = q.cc == SM90 and im2col_unfit(q) is None
    if asked_auto:
        algo = env.algo
        if algo in ("sm90", "auto"):
            if depthwise:
                algo = "depthwise"
            elif im2col:
                algo = "sm90"
            elif q.cc >= MMA_MIN_CC:
                algo = "mma64" if (q.rows <= 64 * 132 or q.O // q.groups <= 64) else "mma"
            else:
                algo = "dp4a"
    fold, stem = _can_fold(q), _can_stem(q)
    if algo == "stem" or (choose and stem and 1 < q.KW and not (fold and q.rows > STEM_MAX_ROWS)):
        if stem:
            return ConvPlan("stem")
        algo = "mma"
    if algo == "fold" or (choose and fold and q.rows >= FOLD_MIN_ROWS):
        if fold:
            return ConvPlan("fold", cfg=cfg, fold_rows=fold_rows_for(q, env))
        algo = "mma"
    if algo == "sm90" and not im2col:
        algo = "mma"
    if algo == "sm90":
        c = cfg if cfg is not None else env.conv_cfg if env.conv_cfg is not None else halo_config(q)
        if c is None:
            c = sm90_conv_config(q.rows, q.O, q.C, q.KH * q.KW * q.C, q.sms)
        return ConvPlan("sm90", cfg=c, splits=splits if splits is not None else env.conv_splits)
    if algo == "depthwise" and not depthwise:
        algo = "mma"
    if algo in ("mma", "mma64") and q.groups == 1 and q.C % 4 and q.C < 16 and asked_auto:
        # few input channels (the RGB stem): zero-pad C to a multiple of 4 so the loader can use
        # 4-byte gathers instead of byte gathers; zero channels add nothing to the sums (exact)
        return ConvPlan(algo, pad_channels=-(-q.C // 4) * 4)
    return ConvPlan(algo)


@dataclass(frozen=True)
class LinearPlan:
    """algo: sm90 (TMA + wgmma, cfg = SM90_TILES key) | mma / mma64 (mma.sync 128x128 / 64x64) | dp4a."""
    algo: str
    cfg: Optional[int] = None
    splits: int = 1

    def __str__(self) -> str:
        if self.algo == "sm90":
            bm, bn = SM90_TILES[self.cfg]
            return f"sm90 {bm}x{bn} (cfg {self.cfg})" + (f" split-K {self.splits}" if self.splits > 1 else "")
        return self.algo


def plan_linear(M: int, N: int, K: int, aligned16: bool, cc: tuple[int, int], sms: int = 132, algo: str = "auto",
                cfg: Optional[int] = None, splits: Optional[int] = None, forced: str = "auto") -> LinearPlan:
    """The kernel for y[M, N] = x[M, K] w[N, K]^T. aligned16: x and w 16-byte aligned (TMA);
    forced: INT8COMPILE_CUDA_ALGO. The wgmma path needs K % 16 == 0 (TMA row stride)."""
    sm90_fit = cc == SM90 and K % 16 == 0 and aligned16
    if algo == "auto":
        algo = forced
    if algo == "auto":
        algo = "sm90" if sm90_fit else ("mma64" if M <= 64 else "mma") if cc >= MMA_MIN_CC else "dp4a"
    if algo == "sm90":
        if not sm90_fit:
            return LinearPlan("mma")
        c, sp = sm90_config(M, N, K, sms)
        return LinearPlan("sm90", cfg if cfg is not None else c, splits if splits is not None else sp)
    return LinearPlan(algo)
