// Portable scalar C++ path: plain [N, K] weights, one int32 dot product per output.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "common.h"
#include "generic.h"

namespace i8c {
namespace {

int64_t packed_bytes(int64_t N, int64_t K) { return N * K; }

void pack(const int8_t* w, int64_t N, int64_t K, uint8_t* out) { std::memcpy(out, w, (size_t)(N * K)); }

void gemm_task(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  static thread_local Scratch sa, sc;
  const int64_t K = p.K;
  int8_t* row = p.gather ? (int8_t*)sa.get((size_t)K + 64) : nullptr;
  int32_t* acc = (int32_t*)sc.get((size_t)(n1 - n0) * sizeof(int32_t) + 64);
  const int8_t* w = (const int8_t*)p.bpack;
  for (int64_t m = m0; m < m1; ++m) {
    const int8_t* a;
    if (p.gather) {
      p.gather(p.gather_ctx, m, 1, 0, K, row, K, 0);
      a = row;
    } else {
      a = p.a + m * p.lda;
    }
    for (int64_t n = n0; n < n1; ++n) {
      const int8_t* wr = w + n * K;
      int32_t s = 0;
      for (int64_t k = 0; k < K; ++k) s += (int32_t)a[k] * (int32_t)wr[k];   // |s| < 2^31 for K < 132104
      acc[n - n0] = (int32_t)((uint32_t)s + (uint32_t)p.bias[n]);
    }
    epi_rows_generic(p.epi, acc, 0, m, 1, n0, n1 - n0);
  }
}

void dw_rows(const DwProblem& p, int64_t r0, int64_t r1) { dw_rows_impl(p, r0, r1, epi_rows_generic); }

const IsaKernels kTable = {"scalar", packed_bytes, pack, 0, gemm_task, dw_rows, quantize_generic,
                           dequantize_generic};

}  // namespace

const IsaKernels* isa_scalar() { return &kTable; }

}  // namespace i8c
