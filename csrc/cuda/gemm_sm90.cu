// The wgmma GEMM for linear layers: tile configs of the kernel in gemm_sm90.cuh.
#include "gemm_sm90.cuh"

namespace i8c {

// cfg: 0 = 128x256 (4 stages), 1 = 128x128 (6 stages), 2 = 64x128 (8 stages),
//      4 = ping-pong 128x128 per consumer (6 stages), 7 = 64x64 (8 stages, small M),
//      9 = 64x128 (3 stages, 2 CTAs/SM). All with BK = 128. (3 = 128x192, 5 / 6 = ping-pong 64x256 /
//      64x128 and 8 = 64x32 were slower everywhere measured and are gone; the numbers stay stable.)
const char* gemm_sm90(int cfg, const int8_t* A, const int8_t* B, int M, int N, int K, const EpiParams& p,
                      int num_sms, int max_ctas, int splits, int32_t* ws, int* cnt, cudaStream_t stream) {
  using namespace sm90;
  switch (cfg) {
    case 0: return launch<128, 256, 128, 4, false>(A, B, M, N, K, p, num_sms, max_ctas, splits, ws, cnt, stream);
    case 1: return launch<128, 128, 128, 6, false>(A, B, M, N, K, p, num_sms, max_ctas, splits, ws, cnt, stream);
    case 2: return launch<64, 128, 128, 8, false>(A, B, M, N, K, p, num_sms, max_ctas, splits, ws, cnt, stream);
    case 4: return launch<128, 128, 128, 6, true>(A, B, M, N, K, p, num_sms, max_ctas, splits, ws, cnt, stream);
    case 7: return launch<64, 64, 128, 8, false>(A, B, M, N, K, p, num_sms, max_ctas, splits, ws, cnt, stream);
    case 9: return launch<64, 128, 128, 3, false, 2>(A, B, M, N, K, p, num_sms, max_ctas, splits, ws, cnt, stream);
    default: return "unknown sm90 tile config";
  }
}

}  // namespace i8c
