// AVX512-VNNI path.  vpdpbusd multiplies *unsigned* bytes (first source) by *signed* bytes (second):
// activations are made unsigned while packing an A block (x ^ 0x80 == x + 128) and the weights stay
// signed, so sum_k (x + 128) * w = sum_k x * w + 128 * colsum(w); the driver folds -128 * colsum into
// the int32 bias the accumulators start from (IsaKernels::compensation).  All int32 adds wrap, and the
// true result fits int32 (docs/numerics.md section 3), so the compensated result is exact.
//
// Packed weights: panels of 64 columns (the last one 16/32/48 wide), each [K/4][width][4] bytes.
// Microkernel: up to 6 rows x 64 columns = 24 zmm accumulators, 4 weight loads and 6 dword broadcasts
// per group of 4 k.  Epilogue, quantize and dequantize are hand-vectorized below.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <immintrin.h>

#include "common.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c,bmi2")

#include "generic.h"

namespace i8c {
namespace {

int64_t packed_bytes(int64_t N, int64_t K) {
  const int64_t N16 = (N + 15) / 16 * 16, KG = (K + 3) / 4;
  return N16 * KG * 4;
}

void pack(const int8_t* w, int64_t N, int64_t K, uint8_t* out) {
  const int64_t N16 = (N + 15) / 16 * 16, KG = (K + 3) / 4;
  int8_t* o = (int8_t*)out;
  std::memset(out, 0, (size_t)packed_bytes(N, K));
  for (int64_t n = 0; n < N; ++n) {
    const int64_t p = n / PANEL, c = n % PANEL;
    const int64_t wp = (N16 - p * PANEL) < PANEL ? (N16 - p * PANEL) : PANEL;
    int8_t* base = o + p * PANEL * KG * 4 + c * 4;
    const int8_t* src = w + n * K;
    for (int64_t k = 0; k < K; ++k) base[(k / 4) * wp * 4 + (k & 3)] = src[k];
  }
}

template <int MR, int NV>
void ukr(const uint8_t* __restrict a, int64_t lda, const int8_t* __restrict b, int64_t kgs,
         int32_t* __restrict c, int64_t ldc, bool init, const int32_t* __restrict bias) {
  __m512i acc[MR][NV];
  if (init) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __m512i bv = _mm512_loadu_si512(bias + 16 * v);
#pragma GCC unroll 6
      for (int r = 0; r < MR; ++r) acc[r][v] = bv;
    }
  } else {
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_loadu_si512(c + r * ldc + 16 * v);
  }
  const uint8_t* a0 = a;
  const uint8_t* a3 = a + 3 * lda;
#pragma GCC unroll 2
  for (int64_t kg = 0; kg < kgs; ++kg) {
    __m512i bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_si512(b + (kg * NV + v) * 64);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const uint8_t* ar = r < 3 ? a0 + r * lda : a3 + (r - 3) * lda;
      int32_t x;
      std::memcpy(&x, ar + 4 * kg, 4);
      const __m512i va = _mm512_set1_epi32(x);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], va, bv[v]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_storeu_si512(c + r * ldc + 16 * v, acc[r][v]);
}

typedef void (*UkrFn)(const uint8_t*, int64_t, const int8_t*, int64_t, int32_t*, int64_t, bool,
                      const int32_t*);
#define ROW(mr) {ukr<mr, 1>, ukr<mr, 2>, ukr<mr, 3>, ukr<mr, 4>}
const UkrFn kUkr[6][4] = {ROW(1), ROW(2), ROW(3), ROW(4), ROW(5), ROW(6)};
#undef ROW

inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1); }

// Stores: full vectors use plain stores; only tails use masked ones (masked stores and the
// memory-destination forms of vpmov* are slow on some cores, e.g. AMD Zen 4).
inline void store_i8x16(int8_t* p, __mmask16 k, __m512i y) {
  const __m128i b = _mm512_cvtepi32_epi8(y);
  if (k == (__mmask16)0xffff) _mm_storeu_si128((__m128i*)p, b);
  else _mm_mask_storeu_epi8(p, k, b);
}
inline void store_f32x16(float* p, __mmask16 k, __m512 v) {
  if (k == (__mmask16)0xffff) _mm512_storeu_ps(p, v);
  else _mm512_mask_storeu_ps(p, k, v);
}
inline void store_u16x16(uint16_t* p, __mmask16 k, __m256i h) {
  if (k == (__mmask16)0xffff) _mm256_storeu_si256((__m256i*)p, h);
  else _mm256_mask_storeu_epi16(p, k, h);
}

inline __m512i bf16_bits(__m512 v) {                   // rne to bf16, in the low half of each dword
  const __m512i b = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  return _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7fff)), lsb), 16);
}

// GELU of 16 values, the same operations in the same order as gelu_f32 (generic.h).
inline __m512 gelu16(__m512 v) {
  const __m512 z = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v, _mm512_set1_ps(GELU_RSQRT2)),
                                               _mm512_set1_ps(-4.f)), _mm512_set1_ps(4.f));
  const __m512 z2 = _mm512_mul_ps(z, z);
  const __m512 z4 = _mm512_mul_ps(z2, z2);
  const __m512 z8 = _mm512_mul_ps(z4, z4);
  // p = (A1 + A3 z2) + z4 (A5 + A7 z2) + z8 ((A9 + A11 z2) + z4 A13)
  const __m512 p01 = _mm512_add_ps(_mm512_set1_ps(GELU_A1), _mm512_mul_ps(_mm512_set1_ps(GELU_A3), z2));
  const __m512 p23 = _mm512_add_ps(_mm512_set1_ps(GELU_A5), _mm512_mul_ps(_mm512_set1_ps(GELU_A7), z2));
  const __m512 p45 = _mm512_add_ps(_mm512_set1_ps(GELU_A9), _mm512_mul_ps(_mm512_set1_ps(GELU_A11), z2));
  const __m512 p46 = _mm512_add_ps(p45, _mm512_mul_ps(z4, _mm512_set1_ps(GELU_A13)));
  const __m512 p = _mm512_add_ps(_mm512_add_ps(p01, _mm512_mul_ps(z4, p23)), _mm512_mul_ps(z8, p46));
  // q = (B0 + B2 z2) + z4 ((B4 + B6 z2) + z4 B8)
  const __m512 q01 = _mm512_add_ps(_mm512_set1_ps(GELU_B0), _mm512_mul_ps(_mm512_set1_ps(GELU_B2), z2));
  const __m512 q23 = _mm512_add_ps(_mm512_set1_ps(GELU_B4), _mm512_mul_ps(_mm512_set1_ps(GELU_B6), z2));
  const __m512 q24 = _mm512_add_ps(q23, _mm512_mul_ps(z4, _mm512_set1_ps(GELU_B8)));
  const __m512 q = _mm512_add_ps(q01, _mm512_mul_ps(z4, q24));
  const __m512 erf = _mm512_min_ps(_mm512_max_ps(_mm512_div_ps(_mm512_mul_ps(z, p), q), _mm512_set1_ps(-1.f)),
                                    _mm512_set1_ps(1.f));
  return _mm512_mul_ps(_mm512_mul_ps(v, _mm512_set1_ps(0.5f)), _mm512_add_ps(erf, _mm512_set1_ps(1.f)));
}

// The float requant of 16 columns of output row m into int8: fp32(acc) * scale [+ fp32(r) * res_scale],
// clamp, round to nearest even (docs/numerics.md). k: the valid columns.
inline void requant_float_i8x16(const Epi& e, __m512i acc, __m512 sc, __m512 rsc, __m512 lo, __m512 hi, int64_t m,
                                int64_t n, __mmask16 k) {
  __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), sc);
  if (e.res) {
    const __m512 rv = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(k, e.res + m * e.ldr + n)));
    v = _mm512_add_ps(v, _mm512_mul_ps(rv, rsc));
  }
  v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
  store_i8x16((int8_t*)e.out + m * e.ldo + n, k, _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// Column-vector outer, rows inner: the per-channel parameters of 16 columns are loaded once per
// call (a call covers up to 6 rows of a microtile, or a whole depthwise row).
void epi_rows_avx512(const Epi& e, const int32_t* acc, int64_t ldacc, int64_t row0, int64_t rows,
                     int64_t n0, int64_t ncols) {
  const __m512 lo = _mm512_set1_ps(e.lo_f), hi = _mm512_set1_ps(e.hi_f);
  const bool clamp = !(e.lo_f == -INFINITY && e.hi_f == INFINITY);
  for (int64_t j = 0; j < ncols; j += 16) {
    const __mmask16 k = tail_mask(ncols - j);
    const int64_t n = n0 + j;
    const int32_t* a = acc + j;
    if (e.kind == OUT_I8_FIXED) {
      const __m512i mu = _mm512_maskz_loadu_epi32(k, e.mult + n);
      const __m512i mu_o = _mm512_srli_epi64(mu, 32);
      const __m512i rm = e.res ? _mm512_maskz_loadu_epi32(k, e.res_mult + n) : _mm512_setzero_si512();
      const __m512i rm_o = _mm512_srli_epi64(rm, 32);
      const __m512i sh = _mm512_maskz_loadu_epi32(k, e.shift + n);
      const __m512i one = _mm512_set1_epi64(1);
      const __m512i she = _mm512_and_si512(sh, _mm512_set1_epi64(0xffffffffLL));
      const __m512i sho = _mm512_srli_epi64(sh, 32);
      const __m512i rnd_e = _mm512_sllv_epi64(one, _mm512_sub_epi64(she, one));   // 0 for shift 0
      const __m512i rnd_o = _mm512_sllv_epi64(one, _mm512_sub_epi64(sho, one));
      const __m512i lo64 = _mm512_set1_epi64(e.lo_i), hi64 = _mm512_set1_epi64(e.hi_i);
      const __m512i low32 = _mm512_set1_epi64(0xffffffffLL);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t m = row0 + r;
        const __m512i va = _mm512_maskz_loadu_epi32(k, a + r * ldacc);
        __m512i pe = _mm512_add_epi64(_mm512_mul_epi32(va, mu), rnd_e);
        __m512i po = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(va, 32), mu_o), rnd_o);
        if (e.res) {
          const __m512i r32 = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(k, e.res + m * e.ldr + n));
          pe = _mm512_add_epi64(pe, _mm512_mul_epi32(r32, rm));
          po = _mm512_add_epi64(po, _mm512_mul_epi32(_mm512_srli_epi64(r32, 32), rm_o));
        }
        pe = _mm512_min_epi64(_mm512_max_epi64(_mm512_srav_epi64(pe, she), lo64), hi64);
        po = _mm512_min_epi64(_mm512_max_epi64(_mm512_srav_epi64(po, sho), lo64), hi64);
        const __m512i y = _mm512_or_si512(_mm512_and_si512(pe, low32), _mm512_slli_epi64(po, 32));
        store_i8x16((int8_t*)e.out + m * e.ldo + n, k, y);
      }
      continue;
    }
    const __m512 sc = _mm512_maskz_loadu_ps(k, e.scale + n);
    if (e.kind == OUT_I8_GELU) {
      const __m512 inv = _mm512_set1_ps(e.out_inv);
      const __m512 qlo = _mm512_set1_ps(-128.f), qhi = _mm512_set1_ps(127.f);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t m = row0 + r;
        const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(k, a + r * ldacc)), sc);
        const __m512 g = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(gelu16(v), inv), qlo), qhi);
        store_i8x16((int8_t*)e.out + m * e.ldo + n, k,
                    _mm512_cvt_roundps_epi32(g, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      }
      continue;
    }
    if (e.kind == OUT_I8_FLOAT) {
      const __m512 rsc = _mm512_set1_ps(e.res_scale);
      for (int64_t r = 0; r < rows; ++r)
        requant_float_i8x16(e, _mm512_maskz_loadu_epi32(k, a + r * ldacc), sc, rsc, lo, hi, row0 + r, n, k);
      continue;
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t m = row0 + r;
      __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(k, a + r * ldacc)), sc);
      if (clamp) v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
      if (e.kind == OUT_F32) {
        store_f32x16((float*)e.out + m * e.ldo + n, k, v);
      } else if (e.kind == OUT_BF16) {
        store_u16x16((uint16_t*)e.out + m * e.ldo + n, k, _mm512_cvtepi32_epi16(bf16_bits(v)));
      } else {
        store_u16x16((uint16_t*)e.out + m * e.ldo + n, k,
                     _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      }
    }
  }
}

// rows [m0, m0 + rows) x columns [k0, k0 + kcl) of a strided A, XOR 0x80, zero tail -> dst (stride kcl)
inline void pack_rows(const GemmProblem& p, int64_t m0, int64_t rows, int64_t k0, int64_t kcl,
                      int64_t kvalid, uint8_t* dst0) {
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  for (int64_t r = 0; r < rows; ++r) {
    const int8_t* src = p.a + (m0 + r) * p.lda + k0;
    uint8_t* dst = dst0 + r * kcl;
    int64_t k = 0;
    for (; k + 64 <= kvalid; k += 64)
      _mm512_storeu_si512(dst + k, _mm512_xor_si512(_mm512_loadu_si512(src + k), flip));
    if (k < kcl) {
      const int64_t nv = kvalid - k;                 // 0..63 valid bytes, rest of kcl is padding
      const __mmask64 lm = nv >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << nv) - 1);
      const int64_t ns = kcl - k;
      const __mmask64 sm = ns >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << ns) - 1);
      _mm512_mask_storeu_epi8(dst + k, sm, _mm512_xor_si512(_mm512_maskz_loadu_epi8(lm, src + k), flip));
    }
  }
}

void pack_a(const GemmProblem& p, int64_t m0, int64_t m1, uint8_t* out) {
  const int64_t K = p.K, Kp = (K + 3) / 4 * 4;
  for (int64_t k0 = 0; k0 < Kp; k0 += p.kc) {
    const int64_t kcl = (Kp - k0) < p.kc ? (Kp - k0) : p.kc;
    const int64_t kvalid = (K - k0) < kcl ? (K - k0) : kcl;
    pack_rows(p, m0, m1 - m0, k0, kcl, kvalid, out + k0 * p.M + m0 * kcl);
  }
}

void gemm_task(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  static thread_local Scratch s_a, s_g, s_c;
  const int64_t K = p.K, KG = (K + 3) / 4, Kp = 4 * KG;
  const int64_t N16 = (p.N + 15) / 16 * 16;
  const int64_t rows = m1 - m0;
  uint8_t* apack = (uint8_t*)s_a.get((size_t)(p.mc * p.kc) + 64);
  int32_t* cbuf = (int32_t*)s_c.get((size_t)(p.mc * p.nc) * sizeof(int32_t));
  const int8_t* bp = (const int8_t*)p.bpack;
  const int64_t nend = n1 < N16 ? (n1 + 15) / 16 * 16 : N16;
  for (int64_t k0 = 0; k0 < Kp; k0 += p.kc) {
    const int64_t kcl = (Kp - k0) < p.kc ? (Kp - k0) : p.kc;        // multiple of 4
    const int64_t kvalid = (K - k0) < kcl ? (K - k0) : kcl;
    const bool first = k0 == 0, last = k0 + kcl >= Kp;
    // a gather (convolution) writes the packed, sign-flipped block directly; columns [kvalid, kcl)
    // stay as they are: they meet zero weights
    const uint8_t* ablk = apack;
    if (p.apacked) ablk = p.apacked + k0 * p.M + m0 * kcl;     // packed once for all column blocks
    else if (p.gather) p.gather(p.gather_ctx, m0, rows, k0, k0 + kvalid, (int8_t*)apack, kcl, 0x80);
    else pack_rows(p, m0, rows, k0, kcl, kvalid, apack);
    for (int64_t r0 = 0; r0 < rows; r0 += 6) {
      const int64_t mr = (rows - r0) < 6 ? (rows - r0) : 6;
      for (int64_t np0 = n0; np0 < nend; np0 += PANEL) {
        const int64_t wp = (N16 - np0) < PANEL ? (N16 - np0) : PANEL;
        const int nv = (int)(wp / 16);
        const int8_t* b = bp + (np0 / PANEL) * PANEL * KG * 4 + (k0 / 4) * wp * 4;
        int32_t* c = cbuf + r0 * p.nc + (np0 - n0);
        kUkr[mr - 1][nv - 1](ablk + r0 * kcl, kcl, b, kcl / 4, c, p.nc, first, p.bias + np0);
        if (last) {
          const int64_t nc = (n1 - np0) < wp ? (n1 - np0) : wp;
          epi_rows_avx512(p.epi, c, p.nc, m0 + r0, mr, np0, nc);
        }
      }
    }
  }
}

// Direct convolution microkernel: MR output pixels x NV*16 columns, all of K in registers. For tap t
// the A bytes of row r are ptr[t * 6 + r][0 .. 4 * kgt) (Cg bytes of one input pixel, or the zero
// row); the sign flip (x ^ 0x80, see the top of this file) is applied to each broadcast dword, so the
// input needs no packed copy. The weight panel is walked straight through (taps are consecutive in K).
template <int MR, int NV>
void ukr_conv(const int8_t* const* __restrict ptr, int taps, int64_t kgt, const int8_t* __restrict b,
              int32_t* __restrict c, const int32_t* __restrict bias, const Epi* fe, int64_t row0, int64_t n0) {
  __m512i acc[MR][NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const __m512i bv = _mm512_loadu_si512(bias + 16 * v);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) acc[r][v] = bv;
  }
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  for (int t = 0; t < taps; ++t) {
    const int8_t* a[MR];
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) a[r] = ptr[t * 6 + r];
#pragma GCC unroll 2
    for (int64_t kg = 0; kg < kgt; ++kg) {
      __m512i bv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_si512(b + v * 64);
#pragma GCC unroll 6
      for (int r = 0; r < MR; ++r) {
        int32_t x;
        std::memcpy(&x, a[r] + 4 * kg, 4);
        const __m512i va = _mm512_xor_si512(_mm512_set1_epi32(x), flip);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], va, bv[v]);
      }
      b += NV * 64;
    }
  }
  if (fe) {   // int8 output, float requant, all NV*16 columns valid: epi_rows_avx512's ops, from registers
    const __m512 lo = _mm512_set1_ps(fe->lo_f), hi = _mm512_set1_ps(fe->hi_f), rsc = _mm512_set1_ps(fe->res_scale);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __m512 sc = _mm512_loadu_ps(fe->scale + n0 + 16 * v);
#pragma GCC unroll 6
      for (int r = 0; r < MR; ++r)
        requant_float_i8x16(*fe, acc[r][v], sc, rsc, lo, hi, row0 + r, n0 + 16 * v, (__mmask16)0xffff);
    }
    return;
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_storeu_si512(c + r * 64 + 16 * v, acc[r][v]);
}

typedef void (*UkrConvFn)(const int8_t* const*, int, int64_t, const int8_t*, int32_t*, const int32_t*, const Epi*,
                          int64_t, int64_t);
#define ROW(mr) {ukr_conv<mr, 1>, ukr_conv<mr, 2>, ukr_conv<mr, 3>, ukr_conv<mr, 4>}
const UkrConvFn kUkrConv[6][4] = {ROW(1), ROW(2), ROW(3), ROW(4), ROW(5), ROW(6)};
#undef ROW

// Rows [m0, m1) x columns [n0, n1) of a convolution (p.conv, Cg % 4 == 0; a linear layer is a 1x1
// convolution of [M, 1, 1, K]). The (pixel, tap) pointers of every 6-row group of the task are
// computed first; then each 64-column panel (K/4 * 256 bytes, kept in L2) meets every row group in
// turn, whose A rows come from L1/L2. Rows outer (all panels per row group) would stream
// NC/64 panels from L3 per row group, which two cores sharing the L3 cannot sustain at large K.
void conv_task(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  static thread_local Scratch s_ptr, s_stage;
  const ConvGeom& g = *p.conv;
  const int KWt = g.fold ? 1 : g.KW;                      // taps per kernel row
  const int taps = g.KH * KWt;
  const int64_t tapbytes = g.fold ? (g.KW * g.Cg + 3) / 4 * 4 : (g.Cg + 3) / 4 * 4;
  const int64_t KG = (p.K + 3) / 4, kgt = tapbytes / 4;
  const int64_t N16 = (p.N + 15) / 16 * 16;
  const int64_t nend = n1 < N16 ? (n1 + 15) / 16 * 16 : N16;
  const int64_t groups = (m1 - m0 + 5) / 6;
  const int8_t** ptr = (const int8_t**)s_ptr.get((size_t)taps * (groups * 6 * sizeof(void*) + sizeof(int64_t)));
  int64_t* toff = (int64_t*)(ptr + groups * taps * 6);   // byte offset of tap t from the window's corner
  for (int kh = 0; kh < g.KH; ++kh)
    for (int kw = 0; kw < KWt; ++kw)
      toff[kh * KWt + kw] = ((int64_t)kh * g.dh * g.W + (int64_t)kw * g.dw) * g.C;
  int8_t* stage = g.fold ? (int8_t*)s_stage.get((size_t)((m1 - m0) * g.KH * tapbytes + 64)) : nullptr;
  // geometry in locals: the pointer stores below could otherwise alias it (no strict aliasing here)
  const int64_t H = g.H, W = g.W, C = g.C, OH = g.OH, OW = g.OW, sh = g.sh, sw = g.sw, pt = g.pt, pl = g.pl;
  const int64_t KH = g.KH, KW = g.KW, dh = g.dh, dw = g.dw;
  const bool fold = g.fold;
  const int8_t* const x_end = g.x_end;
  const int8_t* const zeros = g.zeros;
  const int8_t* const x0 = g.x + g.c0;
  const int64_t ohw = OH * OW, img = H * W * C;
  const int64_t ih_max = H - (KH - 1) * dh, iw_max = W - (KW - 1) * dw;
  const int64_t last_off = toff[taps - 1] + tapbytes;
  int64_t n = m0 / ohw, oh = (m0 % ohw) / OW, ow = (m0 % ohw) % OW;   // walked incrementally
  const int8_t** gp = ptr;
  int64_t r = 0;
  for (int64_t m = m0; m < m1; ++m) {
    const int8_t* xn = x0 + n * img;
    const int64_t ih0 = oh * sh - pt, iw0 = ow * sw - pl;
    const int8_t* corner = xn + (ih0 * W + iw0) * C;
    if (ih0 >= 0 && ih0 < ih_max && iw0 >= 0 && iw0 < iw_max &&        // every tap inside the image
        (!fold || corner + last_off <= x_end)) {
      for (int t = 0; t < taps; ++t) gp[t * 6 + r] = corner + toff[t];
    } else {
      for (int64_t kh = 0; kh < KH; ++kh) {
        const int64_t ih = ih0 + kh * dh;
        const bool row_ok = ih >= 0 && ih < H;
        if (fold) {
          const int8_t* src = xn + (ih * W + iw0) * C;
          if (!row_ok) {
            gp[kh * 6 + r] = zeros;
          } else if (iw0 >= 0 && iw0 + KW <= W && src + tapbytes <= x_end) {
            gp[kh * 6 + r] = src;
          } else {                                       // zero-padded copy of the kernel row
            int8_t* d = stage + ((m - m0) * KH + kh) * tapbytes;
            std::memset(d, 0, (size_t)tapbytes);
            for (int64_t kw = 0; kw < KW; ++kw)
              if (iw0 + kw >= 0 && iw0 + kw < W) std::memcpy(d + kw * C, src + kw * C, (size_t)C);
            gp[kh * 6 + r] = d;
          }
          continue;
        }
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t iw = iw0 + kw * dw;
          gp[(kh * KW + kw) * 6 + r] = (row_ok && iw >= 0 && iw < W) ? xn + (ih * W + iw) * C : zeros;
        }
      }
    }
    if (++r == 6) { r = 0; gp += taps * 6; }
    if (++ow == OW) {
      ow = 0;
      if (++oh == OH) { oh = 0; ++n; }
    }
  }
  alignas(64) int32_t cbuf[6 * 64];
  alignas(64) int32_t gbias[64];
  const int8_t* bp = (const int8_t*)p.bpack;
  // the common epilogue (int8 out, float requant, full panel) straight from the accumulators
  const bool fused = p.epi.kind == OUT_I8_FLOAT;
  for (int64_t np0 = n0; np0 < nend; np0 += PANEL) {
    const int64_t wp = (N16 - np0) < PANEL ? (N16 - np0) : PANEL;
    const int nv = (int)(wp / 16);
    const int8_t* b = bp + (np0 / PANEL) * PANEL * KG * 4;
    const int64_t nc = (n1 - np0) < wp ? (n1 - np0) : wp;
    for (int64_t gi = 0; gi < groups; ++gi) {
      const int64_t r0 = m0 + 6 * gi, mr = (m1 - r0) < 6 ? (m1 - r0) : 6;
      const int8_t* const* gptr = ptr + gi * taps * 6;
      // taps at the start / end that read the zero row for every row of the group (padding rows at
      // the top / bottom of the image) are skipped: their contribution, 128 * tap column sum, goes
      // into the starting value instead
      int t_lo = 0, t_hi = taps;
      const int32_t* bias = p.bias + np0;
      if (g.tapsum) {
        auto all_zero = [&](int t) {
          for (int64_t r = 0; r < mr; ++r)
            if (gptr[t * 6 + r] != zeros) return false;
          return true;
        };
        while (t_lo < taps && all_zero(t_lo)) ++t_lo;
        while (t_hi > t_lo && all_zero(t_hi - 1)) --t_hi;
        if (t_lo == t_hi) t_hi = t_lo = 0;              // every tap in the padding: compute as usual
        if (t_lo > 0 || t_hi < taps) {
          for (int64_t j = 0; j < wp; ++j) {
            uint32_t v = (uint32_t)p.bias[np0 + j];
            for (int t = 0; t < taps; ++t)
              if (t < t_lo || t >= t_hi) v += 128u * (uint32_t)g.tapsum[t * g.ld_tapsum + np0 + j];
            gbias[j] = (int32_t)v;
          }
          bias = gbias;
        }
      }
      const int8_t* bt = b + (int64_t)t_lo * kgt * wp * 4;
      if (fused && nc == wp) {
        kUkrConv[mr - 1][nv - 1](gptr + t_lo * 6, t_hi - t_lo, kgt, bt, cbuf, bias, &p.epi, r0, np0);
      } else {
        kUkrConv[mr - 1][nv - 1](gptr + t_lo * 6, t_hi - t_lo, kgt, bt, cbuf, bias, nullptr, 0, 0);
        epi_rows_avx512(p.epi, cbuf, 64, r0, mr, np0, nc);
      }
    }
  }
}

// Depthwise (channel multiplier 1).  Taps are processed in pairs with vpdpwssd (int16 pairs -> int32):
// for 32 channels, the sign-extended int16 inputs of taps a and b are interleaved by vpunpck{l,h}wd,
// which yields per-channel (x_a, x_b) pairs in a lane-permuted channel order; the weights were
// interleaved the same way, and the two accumulators are put back into channel order once per pixel.
// Interior pixels (every tap inside the row) load straight from the input (rows above/below the image
// read a zero row); border pixels read a zero-padded copy of just the border pixels of each input row.
void dw_rows(const DwProblem& p, int64_t r0, int64_t r1) {
  static thread_local Scratch s_buf, s_rows, s_w;
  const int64_t C = p.C, OW = p.OW, W = p.W;
  const int64_t C32 = (C + 31) / 32 * 32;                 // accumulator row stride
  const int KH = p.KH, KW = p.KW, T = KH * KW, TP = (T + 1) / 2;
  const int64_t Wp = (OW - 1) * p.sw + (int64_t)(KW - 1) * p.dw + 1;   // padded row width (pixels)
  const int64_t rowbytes = Wp * C + 64;
  int32_t* buf = (int32_t*)s_buf.get((size_t)(OW * C32) * sizeof(int32_t) + 64);
  int8_t* rows = (int8_t*)s_rows.get((size_t)((KH + 1) * rowbytes));
  int8_t* zrow = rows + KH * rowbytes;
  std::memset(zrow, 0, (size_t)rowbytes);
  // weights: per 32-channel block and tap pair, two zmm (lo, hi) of interleaved int16 pairs
  const int64_t NB = C32 / 32;
  __m512i* wz = (__m512i*)s_w.get((size_t)(NB * TP * 2) * sizeof(__m512i));
  for (int64_t cb = 0; cb < NB; ++cb) {
    for (int pi = 0; pi < TP; ++pi) {
      alignas(64) int16_t wa[32], wb[32];
      for (int j = 0; j < 32; ++j) {
        const int64_t ch = cb * 32 + j;
        const int ta = 2 * pi, tb = 2 * pi + 1;
        wa[j] = ch < C ? (int16_t)p.w[(int64_t)ta * p.Cpad + ch] : 0;
        wb[j] = (ch < C && tb < T) ? (int16_t)p.w[(int64_t)tb * p.Cpad + ch] : 0;
      }
      const __m512i va = _mm512_load_si512(wa), vb = _mm512_load_si512(wb);
      wz[(cb * TP + pi) * 2] = _mm512_unpacklo_epi16(va, vb);
      wz[(cb * TP + pi) * 2 + 1] = _mm512_unpackhi_epi16(va, vb);
    }
  }
  // lo accumulator dword i of 128-bit lane L holds channel 8L+i, hi holds 8L+4+i
  alignas(64) int32_t idx0[16], idx1[16];
  for (int ch = 0; ch < 32; ++ch) {
    const int L = ch / 8, r = ch % 8;
    const int src = r < 4 ? L * 4 + r : 16 + L * 4 + (r - 4);
    (ch < 16 ? idx0 : idx1)[ch % 16] = src;
  }
  const __m512i perm0 = _mm512_load_si512(idx0), perm1 = _mm512_load_si512(idx1);
  const int64_t step = (int64_t)p.sw * C;                  // bytes between consecutive output pixels
  // interior pixels [ow_lo, ow_hi): iw = ow*sw - pl + kw*dw in [0, W) for every kw
  int64_t ow_lo = (p.pl + p.sw - 1) / p.sw;
  const int64_t lim = W - 1 + p.pl - (int64_t)(KW - 1) * p.dw;
  int64_t ow_hi = lim < 0 ? 0 : lim / p.sw + 1;
  if (ow_hi > OW) ow_hi = OW;
  if (ow_lo > OW) ow_lo = OW;
  if (ow_hi < ow_lo) ow_hi = ow_lo;
  // padded-coordinate pixel ranges the border pixels read: [0, jl) and [jr, Wp)
  const int64_t jl = ow_lo > 0 ? ((ow_lo - 1) * p.sw + (int64_t)(KW - 1) * p.dw + 1 < Wp ? (ow_lo - 1) * p.sw + (int64_t)(KW - 1) * p.dw + 1 : Wp) : 0;
  const int64_t jr = ow_hi < OW ? ow_hi * p.sw : Wp;
  const int8_t* tap_dir[128];
  const int8_t* tap_pad[128];

  auto pixels = [&](const int8_t* const* tapbase, int64_t ob, int64_t oe) {
    for (int64_t cb = 0; cb < NB; ++cb) {
      const int64_t c0 = cb * 32;
      const __mmask32 km = (C - c0) >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (C - c0)) - 1);
      const __m512i* wb = wz + cb * TP * 2;
      const __m512i bias0 = _mm512_loadu_si512(p.bias + c0), bias1 = _mm512_loadu_si512(p.bias + c0 + 16);
      int64_t ow = ob;
      for (; ow + 2 <= oe; ow += 2) {
        __m512i l0 = _mm512_setzero_si512(), h0 = l0, l1 = l0, h1 = l0;
        const int64_t o0 = ow * step + c0, o1 = o0 + step;
        for (int pi = 0; pi < TP; ++pi) {
          const int8_t* pa = tapbase[2 * pi];
          const int8_t* pb = tapbase[2 * pi + 1];
          const __m512i wl = wb[2 * pi], wh = wb[2 * pi + 1];
          const __m512i a0 = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(km, pa + o0));
          const __m512i b0 = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(km, pb + o0));
          const __m512i a1 = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(km, pa + o1));
          const __m512i b1 = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(km, pb + o1));
          l0 = _mm512_dpwssd_epi32(l0, _mm512_unpacklo_epi16(a0, b0), wl);
          h0 = _mm512_dpwssd_epi32(h0, _mm512_unpackhi_epi16(a0, b0), wh);
          l1 = _mm512_dpwssd_epi32(l1, _mm512_unpacklo_epi16(a1, b1), wl);
          h1 = _mm512_dpwssd_epi32(h1, _mm512_unpackhi_epi16(a1, b1), wh);
        }
        int32_t* d0 = buf + ow * C32 + c0;
        int32_t* d1 = d0 + C32;
        _mm512_storeu_si512(d0, _mm512_add_epi32(_mm512_permutex2var_epi32(l0, perm0, h0), bias0));
        _mm512_storeu_si512(d0 + 16, _mm512_add_epi32(_mm512_permutex2var_epi32(l0, perm1, h0), bias1));
        _mm512_storeu_si512(d1, _mm512_add_epi32(_mm512_permutex2var_epi32(l1, perm0, h1), bias0));
        _mm512_storeu_si512(d1 + 16, _mm512_add_epi32(_mm512_permutex2var_epi32(l1, perm1, h1), bias1));
      }
      for (; ow < oe; ++ow) {
        __m512i l0 = _mm512_setzero_si512(), h0 = l0;
        const int64_t o0 = ow * step + c0;
        for (int pi = 0; pi < TP; ++pi) {
          const __m512i a0 = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(km, tapbase[2 * pi] + o0));
          const __m512i b0 = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(km, tapbase[2 * pi + 1] + o0));
          l0 = _mm512_dpwssd_epi32(l0, _mm512_unpacklo_epi16(a0, b0), wb[2 * pi]);
          h0 = _mm512_dpwssd_epi32(h0, _mm512_unpackhi_epi16(a0, b0), wb[2 * pi + 1]);
        }
        int32_t* d0 = buf + ow * C32 + c0;
        _mm512_storeu_si512(d0, _mm512_add_epi32(_mm512_permutex2var_epi32(l0, perm0, h0), bias0));
        _mm512_storeu_si512(d0 + 16, _mm512_add_epi32(_mm512_permutex2var_epi32(l0, perm1, h0), bias1));
      }
    }
  };

  for (int64_t row = r0; row < r1; ++row) {
    const int64_t n = row / p.OH, oh = row % p.OH;
    for (int kh = 0; kh < KH; ++kh) {
      const int64_t ih = oh * p.sh - p.pt + (int64_t)kh * p.dh;
      const int8_t* dir;
      const int8_t* pad;
      if (ih < 0 || ih >= p.H) {
        dir = pad = zrow;
      } else {
        const int8_t* src = p.x + ((n * p.H + ih) * W) * C;
        dir = src - (int64_t)p.pl * C;                     // padded-coordinate origin in x itself
        int8_t* prow = rows + kh * rowbytes;
        // zero-padded copy of the pixels the border outputs read
        for (int seg = 0; seg < 2; ++seg) {
          const int64_t j0 = seg == 0 ? 0 : (jr > jl ? jr : jl), j1 = seg == 0 ? jl : Wp;
          for (int64_t j = j0; j < j1; ++j) {
            const int64_t iw = j - p.pl;
            if (iw >= 0 && iw < W) std::memcpy(prow + j * C, src + iw * C, (size_t)C);
            else std::memset(prow + j * C, 0, (size_t)C);
          }
        }
        pad = prow;
      }
      for (int kw = 0; kw < KW; ++kw) {
        tap_dir[kh * KW + kw] = dir + (int64_t)kw * p.dw * C;
        tap_pad[kh * KW + kw] = pad + (int64_t)kw * p.dw * C;
      }
    }
    for (int t = T; t < 2 * TP; ++t) tap_dir[t] = tap_pad[t] = zrow;   // odd tap count: zero partner
    pixels(tap_pad, 0, ow_lo);
    pixels(tap_dir, ow_lo, ow_hi);
    pixels(tap_pad, ow_hi, OW);
    epi_rows_avx512(p.epi, buf, C32, row * OW, OW, 0, C);
  }
}

void quantize(const void* x, int dtype, int64_t n, float inv, int8_t* out) {
  const __m512 vinv = _mm512_set1_ps(inv), lo = _mm512_set1_ps(-128.f), hi = _mm512_set1_ps(127.f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    __m512 f;
    if (dtype == 0) {
      f = _mm512_maskz_loadu_ps(k, (const float*)x + i);
    } else if (dtype == 1) {
      const __m256i h = _mm256_maskz_loadu_epi16(k, (const uint16_t*)x + i);
      f = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    } else {
      f = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, (const uint16_t*)x + i));
    }
    __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(f, vinv), lo), hi);
    const __m512i q = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    store_i8x16(out + i, k, q);
  }
}

void dequantize(const int8_t* q, int64_t n, float scale, int kind, void* out) {
  const __m512 s = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(k, q + i))), s);
    if (kind == OUT_F32) {
      store_f32x16((float*)out + i, k, v);
    } else if (kind == OUT_BF16) {
      store_u16x16((uint16_t*)out + i, k, _mm512_cvtepi32_epi16(bf16_bits(v)));
    } else {
      store_u16x16((uint16_t*)out + i, k, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
  }
}

}  // namespace
}  // namespace i8c

#pragma GCC pop_options

namespace i8c {
namespace {
const IsaKernels kTable = {"avx512vnni", packed_bytes, pack, -128, gemm_task, dw_rows, quantize, dequantize,
                           pack_a, conv_task};
}
const IsaKernels* isa_avx512vnni() { return &kTable; }
}  // namespace i8c
