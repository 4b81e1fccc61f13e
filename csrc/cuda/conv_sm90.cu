// The wgmma implicit-GEMM conv2d: tile configs of the kernel in gemm_sm90.cuh (a separate translation
// unit so the GEMM and conv instantiations compile in parallel).
#include "gemm_sm90.cuh"

namespace i8c {

// Implicit-GEMM conv2d on wgmma. cfg -> BM x BN tile, BK-byte k-block, ring stages, CTAs per SM:
//   0 = 128x128 BK 128 (6 stages), 1 = 128x128 BK 64 (8), 2 = 128x64 BK 128 (8), 3 = 128x64 BK 64 (10),
//   4 = 128x256 BK 128 (4), 5 = 64x128 BK 64 (8), 6 = 128x64 BK 32 (12; the folded stem, C = 32);
// several CTAs per SM, so one's epilogue overlaps the others' loads and MMAs (output-heavy, small-K layers):
//   7 = 128x64 BK 64 (4 stages, 2 CTAs), 8 = 128x64 BK 128 (3, 2 CTAs), 10 = 64x64 BK 128 (3, 3 CTAs),
//   11 = 64x128 BK 64 (4, 3 CTAs), 12 = 64x64 BK 32 (8, 4 CTAs), 13 = 128x64 BK 32 (6, 2 CTAs) (the
//   last two for the folded stem). (9 = 64x64 BK 64 at 4 CTAs per SM was slower everywhere measured
//   and is gone; the numbers stay stable.)
// (128x128 spills at two CTAs per SM.) Needs groups == 1, C % BK == 0, 16-byte aligned x and w.
static constexpr int kConvBK[] = {128, 64, 128, 64, 128, 64, 32, 64, 128, 64, 128, 64, 32, 32};

const char* conv_sm90(int cfg, const ConvShape& s, const int8_t* x, const int8_t* w, const EpiParams& p,
                      int num_sms, int splits, int32_t* ws, int* cnt, cudaStream_t stream) {
  using namespace sm90;
  if (s.groups != 1) return "conv_sm90: groups must be 1";
  if (cfg < 0 || cfg >= (int)(sizeof(kConvBK) / sizeof(int))) return "unknown conv_sm90 tile config";
  if (s.C % kConvBK[cfg]) return "conv_sm90: channels must be a multiple of the k-block";
  const int M = s.M, N = s.O, K = s.K;
#define I8C_CONV(BM_, BN_, BK_, ST_, CPS_) \
  launch<BM_, BN_, BK_, ST_, false, CPS_, true>(x, w, M, N, K, p, num_sms, 0, splits, ws, cnt, stream, &s)
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
    default: return "unknown conv_sm90 tile config";
  }
#undef I8C_CONV
}

}  // namespace i8c
