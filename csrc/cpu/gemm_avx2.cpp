// AVX2 path: int16 x int16 -> int32 pairs (vpmaddwd), exact for any int8 operands.  Weights are packed
// as sign-extended int16 in panels of 16 columns: [panel][K/2][16][2]; activations are sign-extended
// to int16 while packing an A block.  Microkernel: up to 6 rows x 16 columns (12 ymm accumulators).
// The epilogue, depthwise and quantize loops are the portable ones, auto-vectorized for AVX2 here.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <immintrin.h>

#include "common.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi2")

#include "generic.h"

namespace i8c {
namespace {

constexpr int W2 = 16;    // panel width (columns)

int64_t packed_bytes(int64_t N, int64_t K) {
  const int64_t NP = (N + W2 - 1) / W2, KP = (K + 1) / 2;
  return NP * KP * W2 * 2 * (int64_t)sizeof(int16_t);
}

void pack(const int8_t* w, int64_t N, int64_t K, uint8_t* out) {
  const int64_t NP = (N + W2 - 1) / W2, KP = (K + 1) / 2;
  int16_t* o = (int16_t*)out;
  std::memset(out, 0, (size_t)packed_bytes(N, K));
  for (int64_t n = 0; n < N; ++n) {
    const int64_t pnl = n / W2, c = n % W2;
    int16_t* base = o + pnl * KP * W2 * 2 + c * 2;
    for (int64_t k = 0; k < K; ++k) base[(k / 2) * W2 * 2 + (k & 1)] = w[n * K + k];
  }
  (void)NP;
}

template <int MR>
inline void ukr(const int16_t* a, int64_t lda, const int16_t* b, int64_t kps, int32_t* c, int64_t ldc,
                bool init, const int32_t* bias) {
  __m256i acc[MR][2];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < 2; ++v)
      acc[r][v] = init ? _mm256_loadu_si256((const __m256i*)(bias + 8 * v))
                       : _mm256_loadu_si256((const __m256i*)(c + r * ldc + 8 * v));
  for (int64_t kp = 0; kp < kps; ++kp) {
    const __m256i b0 = _mm256_loadu_si256((const __m256i*)(b + kp * 32));
    const __m256i b1 = _mm256_loadu_si256((const __m256i*)(b + kp * 32 + 16));
    for (int r = 0; r < MR; ++r) {
      int32_t av;
      std::memcpy(&av, a + r * lda + 2 * kp, 4);
      const __m256i va = _mm256_set1_epi32(av);
      acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(va, b0));
      acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(va, b1));
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < 2; ++v) _mm256_storeu_si256((__m256i*)(c + r * ldc + 8 * v), acc[r][v]);
}

void gemm_task(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  static thread_local Scratch s_a, s_g, s_c;
  const int64_t K = p.K, KP = (K + 1) / 2, Kp = 2 * KP;
  const int64_t rows = m1 - m0;
  const int64_t ncols = n1 - n0, ncols16 = (ncols + W2 - 1) / W2 * W2;
  int16_t* apack = (int16_t*)s_a.get((size_t)(p.mc * p.kc) * sizeof(int16_t));
  int32_t* cbuf = (int32_t*)s_c.get((size_t)(p.mc * p.nc) * sizeof(int32_t));
  int8_t* gbuf = p.gather ? (int8_t*)s_g.get((size_t)(p.mc * p.kc) + 64) : nullptr;
  const int16_t* bp = (const int16_t*)p.bpack;
  for (int64_t k0 = 0; k0 < Kp; k0 += p.kc) {
    const int64_t kcl = (Kp - k0) < p.kc ? (Kp - k0) : p.kc;        // even
    const int64_t kvalid = (K - k0) < kcl ? (K - k0) : kcl;
    const bool first = k0 == 0, last = k0 + kcl >= Kp;
    if (p.gather) p.gather(p.gather_ctx, m0, rows, k0, k0 + kvalid, gbuf, kcl, 0);
    for (int64_t r = 0; r < rows; ++r) {
      const int8_t* src = p.gather ? gbuf + r * kcl : p.a + (m0 + r) * p.lda + k0;
      int16_t* dst = apack + r * kcl;
      for (int64_t k = 0; k < kvalid; ++k) dst[k] = src[k];
      for (int64_t k = kvalid; k < kcl; ++k) dst[k] = 0;
    }
    for (int64_t j = 0; j < ncols16; j += W2) {
      const int64_t np0 = n0 + j;
      const int16_t* b = bp + (np0 / W2) * KP * W2 * 2 + (k0 / 2) * W2 * 2;
      for (int64_t r0 = 0; r0 < rows; r0 += 6) {
        const int64_t mr = (rows - r0) < 6 ? (rows - r0) : 6;
        int32_t* c = cbuf + r0 * p.nc + j;
        const int16_t* a = apack + r0 * kcl;
        switch (mr) {
          case 6: ukr<6>(a, kcl, b, kcl / 2, c, p.nc, first, p.bias + np0); break;
          case 5: ukr<5>(a, kcl, b, kcl / 2, c, p.nc, first, p.bias + np0); break;
          case 4: ukr<4>(a, kcl, b, kcl / 2, c, p.nc, first, p.bias + np0); break;
          case 3: ukr<3>(a, kcl, b, kcl / 2, c, p.nc, first, p.bias + np0); break;
          case 2: ukr<2>(a, kcl, b, kcl / 2, c, p.nc, first, p.bias + np0); break;
          default: ukr<1>(a, kcl, b, kcl / 2, c, p.nc, first, p.bias + np0); break;
        }
        if (last) {
          const int64_t nc = (n1 - np0) < W2 ? (n1 - np0) : W2;
          epi_rows_generic(p.epi, c, p.nc, m0 + r0, mr, np0, nc);
        }
      }
    }
  }
}

void dw_rows(const DwProblem& p, int64_t r0, int64_t r1) { dw_rows_impl(p, r0, r1, epi_rows_generic); }

}  // namespace
}  // namespace i8c

#pragma GCC pop_options

namespace i8c {
namespace {
const IsaKernels kTable = {"avx2", packed_bytes, pack, 0, gemm_task, dw_rows, quantize_generic,
                           dequantize_generic};
}
const IsaKernels* isa_avx2() { return &kTable; }
}  // namespace i8c
