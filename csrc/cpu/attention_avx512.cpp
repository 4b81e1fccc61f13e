// fp32 attention for the `cpu` target: out = softmax(q k^T * scale + mask) v, one (batch, head) at a
// time, AVX512F with FMA.  This is float code, not an int8 op: it is not bound by docs/numerics.md
// (results differ from aten's SDPA by float rounding, ~1e-6 relative), see docs/kernels_cpu.md.
//
// Per (b, h): K is transposed once into scratch (Kt [D][Skp], Skp = Sk rounded up to 16, zero
// columns), then rows of q are processed 4 at a time: scores (4 x 64 keys per register block, 16
// accumulators), scale, mask, row max, exp, row sum, and P v (4 rows x Dv/16 vectors of accumulators),
// divided by the row sum at the end.  A row whose scores are all -inf gives zeros (as aten).
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <immintrin.h>

#include "common.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")

namespace i8c {
namespace {

// exp(x) (Cephes expf polynomial, ~1 ulp); x below -87.3 (and -inf) gives exactly 0
inline __m512 exp512(__m512 x) {
  const __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.33654f), _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.33654f)), _mm512_set1_ps(88.72283f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_maskz_mov_ps((__mmask16)~under, _mm512_scalef_ps(p, n));
}

inline __mmask16 tail16(int64_t n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1); }

// scores of rows [i0, i0 + R) (R <= 4) into s (4 rows of Skp floats): (q k^T) * scale + mask
template <int R>
void scores(const AttnProblem& a, const float* q, const float* kt, const float* mask, int64_t i0,
            float* s) {
  const int64_t Skp = (a.Sk + 15) / 16 * 16;
  const __m512 sc = _mm512_set1_ps(a.scale);
  for (int64_t j0 = 0; j0 < Skp; j0 += 64) {
    const int nv = (int)((Skp - j0) >= 64 ? 4 : (Skp - j0) / 16);
    __m512 acc[R][4];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < 4; ++v) acc[r][v] = _mm512_setzero_ps();
    const float* kd = kt + j0;
    if (nv == 4) {
      for (int64_t d = 0; d < a.D; ++d, kd += Skp) {
        const __m512 k0 = _mm512_loadu_ps(kd), k1 = _mm512_loadu_ps(kd + 16),
                     k2 = _mm512_loadu_ps(kd + 32), k3 = _mm512_loadu_ps(kd + 48);
        for (int r = 0; r < R; ++r) {
          const __m512 qb = _mm512_set1_ps(q[(i0 + r) * a.qs + d]);
          acc[r][0] = _mm512_fmadd_ps(qb, k0, acc[r][0]);
          acc[r][1] = _mm512_fmadd_ps(qb, k1, acc[r][1]);
          acc[r][2] = _mm512_fmadd_ps(qb, k2, acc[r][2]);
          acc[r][3] = _mm512_fmadd_ps(qb, k3, acc[r][3]);
        }
      }
    } else {
      for (int64_t d = 0; d < a.D; ++d, kd += Skp)
        for (int v = 0; v < nv; ++v) {
          const __m512 kv = _mm512_loadu_ps(kd + 16 * v);
          for (int r = 0; r < R; ++r)
            acc[r][v] = _mm512_fmadd_ps(_mm512_set1_ps(q[(i0 + r) * a.qs + d]), kv, acc[r][v]);
        }
    }
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < nv; ++v) {
        const int64_t j = j0 + 16 * v;
        const __mmask16 valid = tail16(a.Sk - j);
        __m512 x = _mm512_mul_ps(acc[r][v], sc);
        if (mask) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(valid, mask + (i0 + r) * a.ms + j));
        x = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), valid, x);      // padding keys: -inf
        _mm512_storeu_ps(s + r * Skp + j, x);
      }
  }
}

template <int R, int NVD>
void rows(const AttnProblem& a, const float* q, const float* kt, const float* v, const float* mask,
          float* out, int64_t i0, float* s) {
  const int64_t Skp = (a.Sk + 15) / 16 * 16;
  scores<R>(a, q, kt, mask, i0, s);
  float inv[R];
  bool empty[R];
  for (int r = 0; r < R; ++r) {                      // softmax numerator in place, row sums
    float* sr = s + r * Skp;
    __m512 m = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < Skp; j += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(sr + j));
    const float mx = _mm512_reduce_max_ps(m);
    empty[r] = mx == -INFINITY;
    const __m512 mv = _mm512_set1_ps(empty[r] ? 0.f : mx);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < Skp; j += 16) {
      const __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(sr + j), mv));
      _mm512_storeu_ps(sr + j, e);
      sum = _mm512_add_ps(sum, e);
    }
    const float total = _mm512_reduce_add_ps(sum);
    inv[r] = empty[r] ? 0.f : 1.f / total;
  }
  __m512 acc[R][NVD];                                // Dv / 16 vectors per row, all in registers
  for (int r = 0; r < R; ++r)
    for (int d = 0; d < NVD; ++d) acc[r][d] = _mm512_setzero_ps();
  const float* vj = v;
  for (int64_t j = 0; j < a.Sk; ++j, vj += a.vs) {
    __m512 vv[NVD];
    for (int d = 0; d < NVD; ++d) vv[d] = _mm512_loadu_ps(vj + 16 * d);
    for (int r = 0; r < R; ++r) {
      const __m512 p = _mm512_set1_ps(s[r * Skp + j]);
      for (int d = 0; d < NVD; ++d) acc[r][d] = _mm512_fmadd_ps(p, vv[d], acc[r][d]);
    }
  }
  for (int r = 0; r < R; ++r) {
    const __m512 iv = _mm512_set1_ps(inv[r]);
    for (int d = 0; d < NVD; ++d) _mm512_storeu_ps(out + (i0 + r) * a.os + 16 * d, _mm512_mul_ps(acc[r][d], iv));
  }
}

template <int NVD>
void run_rows(const AttnProblem& a, const float* q, const float* kt, const float* v, const float* mask,
              float* out, float* s) {
  int64_t i = 0;
  for (; i + 4 <= a.Sq; i += 4) rows<4, NVD>(a, q, kt, v, mask, out, i, s);
  for (; i < a.Sq; ++i) rows<1, NVD>(a, q, kt, v, mask, out, i, s);
}

void attention_bh(const AttnProblem& a, int64_t b, int64_t h, float* scratch) {
  const int64_t Skp = (a.Sk + 15) / 16 * 16;
  const float* q = a.q + b * a.qb + h * a.qh;
  const float* k = a.k + b * a.kb + h * a.kh;
  const float* v = a.v + b * a.vb + h * a.vh;
  const float* mask = a.mask ? a.mask + b * a.mb + h * a.mh : nullptr;
  float* out = a.out + b * a.ob + h * a.oh;
  float* kt = scratch;                               // [D][Skp]
  float* s = scratch + a.D * Skp;                    // [4][Skp]
  for (int64_t j = 0; j < a.Sk; ++j) {               // read rows of k, write columns of kt
    const float* kj = k + j * a.ks;
    for (int64_t d = 0; d < a.D; ++d) kt[d * Skp + j] = kj[d];
  }
  for (int64_t d = 0; d < a.D; ++d)
    for (int64_t j = a.Sk; j < Skp; ++j) kt[d * Skp + j] = 0.f;
  switch (a.Dv / 16) {
    case 1: run_rows<1>(a, q, kt, v, mask, out, s); break;
    case 2: run_rows<2>(a, q, kt, v, mask, out, s); break;
    case 3: run_rows<3>(a, q, kt, v, mask, out, s); break;
    default: run_rows<4>(a, q, kt, v, mask, out, s); break;
  }
}

}  // namespace

void attention_avx512(const AttnProblem& a, int64_t bh0, int64_t bh1, float* scratch) {
  for (int64_t t = bh0; t < bh1; ++t) attention_bh(a, t / a.H, t % a.H, scratch);
}

}  // namespace i8c

#pragma GCC pop_options
