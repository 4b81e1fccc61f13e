// The wgmma implicit-GEMM conv2d's tile configs (the kernel is in gemm_sm90.cuh). conv_sm90_cfg<EPI> is
// instantiated once per compile-time epilogue, each in its own translation unit so they build in
// parallel: conv_sm90.cu (EPI_ANY, and the entry point conv_sm90 of launch.h) and conv_sm90_<mode>.cu.
#pragma once
#include "gemm_sm90.cuh"

namespace i8c {

// cfg -> BM x BN tile, BK-byte k-block, ring stages, CTAs per SM:
//   0 = 128x128 BK 128 (6 stages), 1 = 128x128 BK 64 (8), 2 = 128x64 BK 128 (8), 3 = 128x64 BK 64 (10),
//   4 = 128x256 BK 128 (4), 5 = 64x128 BK 64 (8), 6 = 128x64 BK 32 (12; the folded stem, C = 32);
// several CTAs per SM, so one's epilogue overlaps the others' loads and MMAs (output-heavy, small-K layers):
//   7 = 128x64 BK 64 (4 stages, 2 CTAs), 8 = 128x64 BK 128 (3, 2 CTAs), 10 = 64x64 BK 128 (3, 3 CTAs),
//   11 = 64x128 BK 64 (4, 3 CTAs), 12 = 64x64 BK 32 (8, 4 CTAs), 13 = 128x64 BK 32 (6, 2 CTAs) (the
//   last two for the folded stem), 20 = 64x128 BK 128 (2, 3 CTAs: 11 with half the k-blocks, for
//   C % 128 == 0), 14 = 128x64 BK 64 (3, 3 CTAs; fits its registers only in the
//   epilogue-specialised kernels without a residual). (9 = 64x64 BK 64 at 4 CTAs per SM was slower
//   everywhere measured and is gone; the numbers stay stable. 64x128 at 4 CTAs spilled 10-270 bytes.)
// ping-pong (the two consumer warpgroups take alternate tiles, so one's epilogue overlaps the other's
// MMAs within the CTA): 15 = 128x128 BK 64 (4 stages), 16 = 64x128 BK 64 (6).
// 17 = 7 with nine weight slots: a 64-channel 3x3 keeps its weights resident (9 x 4 KB) at two CTAs
// per SM, so each stage loads only the im2col A tile (a third less L2 traffic for that layer).
// HALO (cuda_plan.halo_config routes to them): 128-pixel spatial tiles (16 rows x 8 columns) whose stage
// holds the tile's input halo as KW boxes of (16 + KH - 1) x 8 pixels (box q shifted by q columns), read
// by every filter tap at a fixed offset; int8 out only, C = 64, stride 1 (launch's halo_unfit), weights
// resident, two CTAs per SM. 18 = KH * KW <= 4 (the folded stem's 4x1: 9.5 KB per tile against 4 x 8 KB
// of im2col A), 4 stages of 10 KB; 19 = KH * KW <= 9 with KW <= 3 (the 3x3: 27 KB per tile against
// 9 x 8 KB), 2 stages of 27 KB.
// (128x128 spills at two CTAs per SM.) Needs groups == 1, C % BK == 0, 16-byte aligned x and w.
static constexpr int kConvBK[] = {128, 64, 128, 64, 128, 64, 32, 64, 128, 64, 128, 64, 32, 32, 64, 64, 64, 64,
                                  64, 64, 128};
static constexpr int kConvConfigs = sizeof(kConvBK) / sizeof(int);

template <int EPI>
const char* conv_sm90_cfg(int cfg, const ConvShape& s, const int8_t* x, const int8_t* w, const EpiParams& p,
                          int num_sms, int splits, int32_t* ws, int* cnt, cudaStream_t stream) {
  using namespace sm90;
  const int M = s.M, N = s.O, K = s.K;
#define I8C_CONV(BM_, BN_, BK_, ST_, CPS_) \
  launch<BM_, BN_, BK_, ST_, false, CPS_, true, EPI>(x, w, M, N, K, p, num_sms, 0, splits, ws, cnt, stream, &s)
#define I8C_CONV_RB(BM_, BN_, BK_, ST_, CPS_, BSLOTS_) \
  launch<BM_, BN_, BK_, ST_, false, CPS_, true, EPI, false, BSLOTS_>(x, w, M, N, K, p, num_sms, 0, splits, ws, cnt, \
                                                                     stream, &s)
#define I8C_CONV_HALO(BM_, BN_, BK_, ST_, CPS_, BSLOTS_, AKB_)                                                 \
  launch<BM_, BN_, BK_, ST_, false, CPS_, true, EPI, false, BSLOTS_, AKB_>(x, w, M, N, K, p, num_sms, 0, splits, ws, \
                                                                          cnt, stream, &s)
#define I8C_CONV_PP(BM_, BN_, BK_, ST_) \
  launch<BM_, BN_, BK_, ST_, true, 1, true, EPI>(x, w, M, N, K, p, num_sms, 0, splits, ws, cnt, stream, &s)
  switch (cfg) {
    case 0: return I8C_CONV(128, 128, 128, 6, 1);
    case 1: return I8C_CONV(128, 128, 64, 8, 1);
    case 2: return I8C_CONV(128, 64, 128, 8, 1);
    case 3: return I8C_CONV(128, 64, 64, 10, 1);
    case 4: return I8C_CONV(128, 256, 128, 4, 1);
    case 5: return I8C_CONV(64, 128, 64, 8, 1);
    case 6: return I8C_CONV(128, 64, 32, 12, 1);
    case 7: return I8C_CONV(128, 64, 64, 4, 2);
    case 8: return I8C_CONV(128, 64, 128, 3, 2);
    case 10: return I8C_CONV(64, 64, 128, 3, 3);
    case 11: return I8C_CONV(64, 128, 64, 4, 3);
    case 12: return I8C_CONV(64, 64, 32, 8, 4);
    case 13: return I8C_CONV(128, 64, 32, 6, 2);
    case 14: return I8C_CONV(128, 64, 64, 3, 3);
    case 15: return I8C_CONV_PP(128, 128, 64, 4);
    case 16: return I8C_CONV_PP(64, 128, 64, 6);
    case 17: return I8C_CONV_RB(128, 64, 64, 4, 2, 9);
    case 18:
      if constexpr (EPI == EPI_ANY) return "halo conv (config 18): needs int8 out, O % 16 == 0, no split-K";
      else return I8C_CONV_HALO(128, 64, 64, 4, 2, 4, 10);
    case 19:
      if constexpr (EPI == EPI_ANY) return "halo conv (config 19): needs int8 out, O % 16 == 0, no split-K";
      else return I8C_CONV_HALO(128, 64, 64, 2, 2, 9, 27);
    case 20: return I8C_CONV(64, 128, 128, 2, 3);
    default: return "unknown conv_sm90 tile config";
  }
#undef I8C_CONV
#undef I8C_CONV_PP
#undef I8C_CONV_RB
#undef I8C_CONV_HALO
}

#define I8C_CONV_SM90_INSTANCE(SPEC, EPI_)                                                                   \
  SPEC template const char* conv_sm90_cfg<EPI_>(int, const ConvShape&, const int8_t*, const int8_t*,        \
                                                 const EpiParams&, int, int, int32_t*, int*, cudaStream_t)
I8C_CONV_SM90_INSTANCE(extern, EPI_ANY);
I8C_CONV_SM90_INSTANCE(extern, epi_code(INT8_FLOAT, false));
I8C_CONV_SM90_INSTANCE(extern, epi_code(INT8_FLOAT, true));
I8C_CONV_SM90_INSTANCE(extern, epi_code(INT8_FIXED, false));
I8C_CONV_SM90_INSTANCE(extern, epi_code(INT8_FIXED, true));

}  // namespace i8c
