// Shared pieces of the int8compile CUDA target: the fused epilogue (docs/numerics.md sections 4-6)
// and the problem descriptions. Every float operation is one binary32 operation rounded on its own
// (__fmul_rn / __fadd_rn, never a fused multiply-add), rounding to int is __float2int_rn (rne).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include "types.h"

namespace i8c {

// fp32(a + b) for int32 a, b: the exact int64 sum rounded once (the reference adds bias in int64).
// Branch-free on purpose: the epilogue is latency bound, and straight-line code lets the compiler
// interleave the many independent elements a thread holds.
__device__ __forceinline__ float acc_to_float(int32_t a, int32_t b) {
  return __ll2float_rn((long long)a + (long long)b);
}

struct ChanP {
  int32_t b; float s; int32_t m; int32_t sh; int32_t rm;
  long long c;  // fast fixed-point path: bias * mult + 2^(shift-1)
};

template <int MODE, bool RES>
__device__ __forceinline__ ChanP load_chan(const EpiParams& p, int c) {
  ChanP q;
  q.b = p.bias ? __ldg(p.bias + c) : 0;
  q.s = 0.f; q.m = 0; q.sh = 0; q.rm = 0;
  if (MODE == INT8_FIXED) {
    q.m = __ldg(p.mult + c);
    q.sh = __ldg(p.shift + c);
    if (RES) q.rm = __ldg(p.res_mult + c);
  } else {
    q.s = __ldg(p.scale + c);
  }
  return q;
}

// int8 result of one accumulator (modes INT8_FLOAT / INT8_FIXED).
// Fast paths (FAST = true), for tiles where chan_store found every channel eligible; they give
// the same results with fewer and cheaper instructions (the int8 epilogue bounds memory-bound layers):
//  * fixed point, every shift >= 32: (acc + bias) * mult + 2^(shift-1) is one 32x32+64 multiply-add
//    (the bias term is folded into c per channel; nothing here can leave int64), and the result of
//    the shift fits in 32 bits, so y = clamp(hi32(v) >> (shift - 32)) in 32-bit integers;
//  * float, |bias| <= 2^31 - 1 - 2^14 * K: acc + bias stays in int32 (|acc| <= 2^14 * K), so the
//    exact sum converts with a 32-bit I2F; rounding of the clamped value in [-128, 127] to nearest even
//    is the add of 1.5 * 2^23 (whose low mantissa bits then hold the result) instead of an F2I.
template <int MODE, bool RES, bool FAST = false>
__device__ __forceinline__ int epi_int8(const EpiParams& p, const ChanP& q, int32_t a, int r) {
  if (MODE == INT8_FLOAT) {
    float v = __fmul_rn(FAST ? __int2float_rn(a + q.b) : acc_to_float(a, q.b), q.s);
    if (RES) v = __fadd_rn(v, __fmul_rn(__int2float_rn(r), p.res_scale));
    v = fminf(fmaxf(v, p.lo), p.hi);
    if (FAST) return __float_as_int(__fadd_rn(v, 12582912.0f)) - 0x4B400000;
    return __float2int_rn(v);
  } else if (FAST) {
    unsigned long long v = (unsigned long long)((long long)a * q.m) + (unsigned long long)q.c;  // wraps
    if (RES) v += (unsigned long long)((long long)r * q.rm);
    int y = (int)((long long)v >> 32) >> (q.sh - 32);
    return min(max(y, p.lo_i), p.hi_i);
  } else {
    // ((acc + bias) * mult [+ r * res_mult] + 2^(shift-1)) >> shift in int64, wrapping like torch;
    // branch-free (see acc_to_float). (1 << shift) >> 1 is the rounding term, 0 for shift == 0.
    long long acc = (long long)a + (long long)q.b;
    unsigned long long v = (unsigned long long)acc * (unsigned long long)(long long)q.m;
    if (RES) v += (unsigned long long)((long long)r * (long long)q.rm);
    v += (1ull << q.sh) >> 1;
    long long y = (long long)v >> q.sh;
    long long lo = (long long)p.lo, hi = (long long)p.hi;
    y = y < lo ? lo : (y > hi ? hi : y);
    return (int)y;
  }
}

template <bool FAST = false>
__device__ __forceinline__ float epi_float(const EpiParams& p, const ChanP& q, int32_t a) {
  float v = __fmul_rn(FAST ? __int2float_rn(a + q.b) : acc_to_float(a, q.b), q.s);
  return fminf(fmaxf(v, p.lo), p.hi);
}

__device__ __forceinline__ void store_float(const EpiParams& p, long long idx, float v) {
  switch (p.out_kind) {
    case OUT_F32: reinterpret_cast<float*>(p.out)[idx] = v; break;
    case OUT_F16: reinterpret_cast<__half*>(p.out)[idx] = __float2half_rn(v); break;
    default: reinterpret_cast<__nv_bfloat16*>(p.out)[idx] = __float2bfloat16_rn(v); break;
  }
}

// Per-channel parameters staged in shared memory before an epilogue (global stores to `out` could
// alias the parameter arrays for the compiler, which would then serialise every load behind the
// previous store). Layout: ep[0] bias, ep[1] scale bits (float modes) or mult, ep[2] shift,
// ep[3] res_mult; `stride` elements apart.
__device__ __forceinline__ void stage_chan(const EpiParams& p, int32_t* ep, int stride, int n0, int count,
                                           int limit, int tid, int nthreads) {
  for (int i = tid; i < count; i += nthreads) {
    int ch = n0 + i;
    if (ch < limit) {
      ep[i] = p.bias ? __ldg(p.bias + ch) : 0;
      if (p.mode == INT8_FIXED) {
        ep[stride + i] = __ldg(p.mult + ch);
        ep[2 * stride + i] = __ldg(p.shift + ch);
        ep[3 * stride + i] = p.residual ? __ldg(p.res_mult + ch) : 0;
      } else {
        ep[stride + i] = __float_as_int(__ldg(p.scale + ch));
      }
    }
  }
}

__device__ __forceinline__ ChanP chan_from(const int32_t* ep, int stride, int i) {
  ChanP q;
  q.b = ep[i];
  q.m = ep[stride + i];
  q.s = __int_as_float(q.m);
  q.sh = ep[2 * stride + i];
  q.rm = ep[3 * stride + i];
  q.c = 0;
  return q;
}

// One tile's per-channel epilogue parameters in registers (PER channels per thread): loaded before
// the tile's main loop so the global-memory latency hides behind it (chan_load), then written to the
// shared layout of stage_chan plus one 16-byte record per channel at ep[4 * stride] for the fast
// epilogues (fast_i8, chan_from_fast): fixed point {mult, shift - 32, c lo, c hi} with
// c = bias * mult + 2^(shift-1), float {bias, scale bits, 0, 0}. ep needs 8 * stride ints, 16-byte aligned.
template <int PER>
struct ChanRegs {
  int32_t b[PER], m[PER], sh[PER], rm[PER];  // m: mult (fixed) or the scale's bits (float modes)
};

template <int PER>
__device__ __forceinline__ ChanRegs<PER> chan_load(const EpiParams& p, int n0, int count, int limit, int tid,
                                                   int nthreads) {
  ChanRegs<PER> r;
#pragma unroll
  for (int k = 0; k < PER; ++k) {
    int i = tid + k * nthreads, ch = n0 + i;
    bool ok = i < count && ch < limit;  // missing channels get neutral values (never stored out)
    r.b[k] = (ok && p.bias) ? __ldg(p.bias + ch) : 0;
    if (p.mode == INT8_FIXED) {
      r.m[k] = ok ? __ldg(p.mult + ch) : 0;
      r.sh[k] = ok ? __ldg(p.shift + ch) : 32;
      r.rm[k] = (ok && p.residual) ? __ldg(p.res_mult + ch) : 0;
    } else {
      r.m[k] = ok ? __float_as_int(__ldg(p.scale + ch)) : 0;
      r.sh[k] = 0;
      r.rm[k] = 0;
    }
  }
  return r;
}

// The channel-permuted float kernels' bias quads: {b[c], b[c + 1], b[c], b[c + 1]} for each even channel
// c, so one 16-byte load fills the four accumulators of a row pair and column pair (bias_init).
__device__ __forceinline__ void bias_quad_store(int32_t* quads, int i, int32_t b) {
  int32_t* q = quads + 2 * (i & ~1) + (i & 1);
  q[0] = b;
  q[2] = b;
}

// Returns whether this thread's channels allow the fast epilogue (the caller AND-reduces it over the
// threads sharing the tile). K: the reduction length (bounds |acc| for the float fast path).
// QUADS (float requant only): bias quads at ep[4 * stride] in place of the fast records.
template <int PER, bool QUADS = false>
__device__ __forceinline__ bool chan_store(const EpiParams& p, const ChanRegs<PER>& r, int32_t* ep, int stride,
                                           int count, int K, int tid, int nthreads) {
  int4* rec = reinterpret_cast<int4*>(ep + 4 * stride);
  const long long bias_room = 2147483647ll - 16384ll * K;
  bool fast = true;
#pragma unroll
  for (int k = 0; k < PER; ++k) {
    int i = tid + k * nthreads;
    if (i >= count) continue;
    ep[i] = r.b[k];
    ep[stride + i] = r.m[k];
    ep[2 * stride + i] = r.sh[k];
    ep[3 * stride + i] = r.rm[k];
    long long b = r.b[k];
    if (p.mode == INT8_FIXED) {
      fast = fast && r.sh[k] >= 32 && r.sh[k] <= 62;
      const long long c = b * (long long)r.m[k] + ((1ll << (r.sh[k] & 63)) >> 1);
      rec[i] = make_int4(r.m[k], r.sh[k] - 32, (int)(unsigned)c, (int)(c >> 32));
    } else {
      fast = fast && b <= bias_room && -b <= bias_room;
      if constexpr (QUADS) bias_quad_store(ep + 4 * stride, i, r.b[k]);
      else rec[i] = make_int4(r.b[k], r.m[k], 0, 0);
    }
  }
  return fast;
}

// Only the bias quads of chan_store<PER, true>'s layout (ep[4 * stride ..]).
template <int PER>
__device__ __forceinline__ void stage_bias_quads(const ChanRegs<PER>& r, int32_t* ep, int stride, int count, int tid,
                                                 int nthreads) {
#pragma unroll
  for (int k = 0; k < PER; ++k)
    if (tid + k * nthreads < count) bias_quad_store(ep + 4 * stride, tid + k * nthreads, r.b[k]);
}

__device__ __forceinline__ ChanP chan_from_fast(const int32_t* ep, int stride, int i) {
  ChanP q = chan_from(ep, stride, i);
  const int4 r = reinterpret_cast<const int4*>(ep + 4 * stride)[i];
  q.c = ((long long)r.w << 32) | (unsigned)r.z;
  return q;
}

// The fast epilogue of one element from its channel's 16-byte record (chan_store): fixed point
// {mult, shift - 32, c lo, c hi}, float {bias, scale bits}. Same results as epi_int8<MODE, RES, true>,
// in fewer instructions: one 32x32+64 mad.wide, and the float path leaves the int8 in the low byte of
// the result (the 1.5 * 2^23 add; 0x4B400000 has a zero low byte, so its subtraction is skipped).
// Only the low byte of the result is meaningful.
__device__ __forceinline__ long long mad_wide(int a, int b, long long c) {
  long long d;
  asm("mad.wide.s32 %0, %1, %2, %3;" : "=l"(d) : "r"(a), "r"(b), "l"(c));
  return d;
}

// The fast float paths' value before clamping and rounding: fp32(acc) * scale [+ fp32(r) * res_scale],
// acc already holding the bias (docs/numerics.md).
template <bool RES>
__device__ __forceinline__ float fast_float_value(const EpiParams& p, int32_t acc, int32_t scale_bits, int r) {
  float v = __fmul_rn(__int2float_rn(acc), __int_as_float(scale_bits));
  if (RES) v = __fadd_rn(v, __fmul_rn(__int2float_rn(r), p.res_scale));
  return v;
}

template <int MODE, bool RES>
__device__ __forceinline__ int fast_i8(const EpiParams& p, const int4& q, int32_t a, int r, int rm) {
  if constexpr (MODE == INT8_FLOAT) {
    float v = fast_float_value<RES>(p, a + q.x, q.y, r);
    v = fminf(fmaxf(v, p.lo), p.hi);
    return __float_as_int(__fadd_rn(v, 12582912.0f));
  } else {
    long long v = mad_wide(a, q.x, ((long long)q.w << 32) | (unsigned)q.z);  // wraps like epi_int8
    if (RES) v = mad_wide(r, rm, v);
    int y = (int)(v >> 32) >> q.y;
    return min(max(y, p.lo_i), p.hi_i);
  }
}

// The activation clamp of a fast int8 tile, uniform over a launch. ACT_NONE (lo = -128, hi = 127) and
// ACT_RELU (lo = 0, hi = 127) saturate in the packing instruction (fast_pair) instead of two min / max
// per element; ACT_CLAMP is any other [lo, hi] (relu6, clamp) through fast_i8.
enum Act : int { ACT_CLAMP = 0, ACT_NONE = 1, ACT_RELU = 2 };

__host__ __device__ inline int act_of(int lo, int hi) {
  return hi != 127 ? ACT_CLAMP : lo == -128 ? ACT_NONE : lo == 0 ? ACT_RELU : ACT_CLAMP;
}

// Two int32 saturated to int8 (SIGNED) or uint8 and packed, y0 into byte 0 and y1 into byte 1.
template <bool SIGNED>
__device__ __forceinline__ uint32_t pack_sat2(int32_t y0, int32_t y1) {
  uint32_t d;
  if constexpr (SIGNED) asm("cvt.pack.sat.s8.s32.b32 %0, %1, %2, 0;" : "=r"(d) : "r"(y1), "r"(y0));
  else asm("cvt.pack.sat.u8.s32.b32 %0, %1, %2, 0;" : "=r"(d) : "r"(y1), "r"(y0));
  return d;
}

// Four int32 saturated and packed, y0 into byte 0 .. y3 into byte 3: two packs, the second taking the
// first's two bytes as its upper half (cvt.pack's c operand).
template <bool SIGNED>
__device__ __forceinline__ uint32_t pack_sat4(int32_t y0, int32_t y1, int32_t y2, int32_t y3) {
  const uint32_t hi = pack_sat2<SIGNED>(y2, y3);
  uint32_t d;
  if constexpr (SIGNED) asm("cvt.pack.sat.s8.s32.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(y1), "r"(y0), "r"(hi));
  else asm("cvt.pack.sat.u8.s32.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(y1), "r"(y0), "r"(hi));
  return d;
}

// Float requant without clamp instructions: for an even integer c, fma(v, 2^-149, c * 2^-149) rounds
// v + c to the nearest even integer multiple of 2^-149 (the subnormal spacing, also that of the
// smallest normal binade), so its bits, read as int32, are rne(v) + c while |v + c| < 2^24; a bigger
// positive v + c gives bigger positive bits, a negative one (or -0) the sign bit, i.e. a negative
// int32. One saturating pack then gives the clamped result: ACT_NONE packs rne(v) + 128 as uint8
// (clamp to [0, 255]) and flips bit 7 of each byte (-128), ACT_RELU packs rne(v) as int8 (clamp to
// [-128, 127]; every v < 0, -0 included, gives 0x80) and clears bit 7 (0x80 -> 0, 0..127 unchanged).
// Same results as fast_i8 / epi_int8 (docs/numerics.md: rne(clamp(v, lo, hi)), integer lo and hi).
template <int ACT>
__device__ __forceinline__ int32_t rne_offset_bits(float v) {
  const float sub = __int_as_float(1);  // 2^-149
  return __float_as_int(ACT == ACT_NONE ? __fmaf_rn(v, sub, __int_as_float(128)) : __fmul_rn(v, sub));
}

// The fast epilogue of two adjacent outputs (channels c, c + 1 of one row) as the int8 pair in the low
// 16 bits, channel c in byte 0.
template <int MODE, bool RES, int ACT>
__device__ __forceinline__ uint32_t fast_pair(const EpiParams& p, const int4& q0, const int4& q1, int32_t a0,
                                              int32_t a1, int r0, int r1, int rm0, int rm1) {
  if constexpr (ACT == ACT_CLAMP) {
    return __byte_perm(fast_i8<MODE, RES>(p, q0, a0, r0, rm0), fast_i8<MODE, RES>(p, q1, a1, r1, rm1), 0x0040);
  } else if constexpr (MODE == INT8_FLOAT) {
    const float v0 = fast_float_value<RES>(p, a0 + q0.x, q0.y, r0), v1 = fast_float_value<RES>(p, a1 + q1.x, q1.y, r1);
    const uint32_t d = pack_sat2<ACT == ACT_RELU>(rne_offset_bits<ACT>(v0), rne_offset_bits<ACT>(v1));
    return ACT == ACT_NONE ? d ^ 0x8080u : d & 0x7F7Fu;
  } else {
    long long v0 = mad_wide(a0, q0.x, ((long long)q0.w << 32) | (unsigned)q0.z);  // as fast_i8
    long long v1 = mad_wide(a1, q1.x, ((long long)q1.w << 32) | (unsigned)q1.z);
    if (RES) v0 = mad_wide(r0, rm0, v0), v1 = mad_wide(r1, rm1, v1);
    int y0 = (int)(v0 >> 32) >> q0.y, y1 = (int)(v1 >> 32) >> q1.y;
    if (ACT == ACT_RELU) y0 = max(y0, 0), y1 = max(y1, 0);
    return pack_sat2<true>(y0, y1);
  }
}

// The fast float epilogue of four contiguous channels of one row whose accumulators already hold the
// bias (a[q]: channel q; scale bits in sc.x .. sc.w), as the four int8 in one word, channel 0 in byte 0:
// fast_pair's arithmetic, with one saturating pack chain and one LOP per four outputs.
template <bool RES, int ACT>
__device__ __forceinline__ uint32_t fast_quad(const EpiParams& p, const int4& sc, const int32_t (&a)[4],
                                              const int32_t (&r)[4]) {
  const int32_t s[4] = {sc.x, sc.y, sc.z, sc.w};
  if constexpr (ACT == ACT_CLAMP) {
    int32_t y[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) y[q] = fast_i8<INT8_FLOAT, RES>(p, make_int4(0, s[q], 0, 0), a[q], r[q], 0);
    return __byte_perm(__byte_perm(y[0], y[1], 0x0040), __byte_perm(y[2], y[3], 0x0040), 0x5410);
  } else {
    int32_t b[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) b[q] = rne_offset_bits<ACT>(fast_float_value<RES>(p, a[q], s[q], r[q]));
    const uint32_t d = pack_sat4<ACT == ACT_RELU>(b[0], b[1], b[2], b[3]);
    return ACT == ACT_NONE ? d ^ 0x80808080u : d & 0x7F7F7F7Fu;
  }
}

// One output element: row `row`, channel `c` (global channel index, also the column in out).
template <int MODE, bool RES, bool FAST = false>
__device__ __forceinline__ void epi_store1q(const EpiParams& p, long long row, int c, int32_t a, const ChanP& q) {
  long long idx = row * p.ldo + c;
  if (MODE == FLOAT_OUT) {
    store_float(p, idx, epi_float<FAST>(p, q, a));
  } else {
    int r = RES ? (int)p.residual[idx] : 0;
    reinterpret_cast<int8_t*>(p.out)[idx] = (int8_t)epi_int8<MODE, RES, FAST>(p, q, a, r);
  }
}

template <int MODE, bool RES>
__device__ __forceinline__ void epi_store1(const EpiParams& p, long long row, int c, int32_t a) {
  epi_store1q<MODE, RES>(p, row, c, a, load_chan<MODE, RES>(p, c));
}

// Two adjacent channels c, c+1 of one row; v0 / v1 say which of them exist.
template <int MODE, bool RES, bool FAST = false>
__device__ __forceinline__ void epi_store2q(const EpiParams& p, long long row, int c, int32_t a0, int32_t a1,
                                            bool v0, bool v1, const ChanP& q0, const ChanP& q1) {
  long long idx = row * p.ldo + c;
  bool pair = v0 && v1 && ((idx & 1) == 0);
  if (!pair) {
    if (v0) epi_store1q<MODE, RES, FAST>(p, row, c, a0, q0);
    if (v1) epi_store1q<MODE, RES, FAST>(p, row, c + 1, a1, q1);
    return;
  }
  if (MODE == FLOAT_OUT) {
    float f0 = epi_float<FAST>(p, q0, a0), f1 = epi_float<FAST>(p, q1, a1);
    switch (p.out_kind) {
      case OUT_F32: *reinterpret_cast<float2*>(reinterpret_cast<float*>(p.out) + idx) = make_float2(f0, f1); break;
      case OUT_F16: *reinterpret_cast<__half2*>(reinterpret_cast<__half*>(p.out) + idx) =
                        __halves2half2(__float2half_rn(f0), __float2half_rn(f1)); break;
      default: {
        __nv_bfloat162 h; h.x = __float2bfloat16_rn(f0); h.y = __float2bfloat16_rn(f1);
        *reinterpret_cast<__nv_bfloat162*>(reinterpret_cast<__nv_bfloat16*>(p.out) + idx) = h;
      }
    }
  } else {
    int r0 = 0, r1 = 0;
    if (RES) {
      char2 rr = *reinterpret_cast<const char2*>(p.residual + idx);
      r0 = rr.x; r1 = rr.y;
    }
    int y0 = epi_int8<MODE, RES, FAST>(p, q0, a0, r0), y1 = epi_int8<MODE, RES, FAST>(p, q1, a1, r1);
    char2 o; o.x = (signed char)y0; o.y = (signed char)y1;
    *reinterpret_cast<char2*>(reinterpret_cast<int8_t*>(p.out) + idx) = o;
  }
}

template <int MODE, bool RES>
__device__ __forceinline__ void epi_store2(const EpiParams& p, long long row, int c, int32_t a0,
                                           int32_t a1, bool v0, bool v1) {
  ChanP q0 = load_chan<MODE, RES>(p, c);
  ChanP q1 = v1 ? load_chan<MODE, RES>(p, c + 1) : q0;
  epi_store2q<MODE, RES>(p, row, c, a0, a1, v0, v1, q0, q1);
}


// int8 results of channels c, c+1 of one row (for staging through shared memory); invalid
// channels give 0 and read no residual.
template <int MODE, bool RES, bool FAST = false>
__device__ __forceinline__ char2 epi_pair_i8(const EpiParams& p, long long row, int c, int32_t a0, int32_t a1,
                                             bool v0, bool v1, const ChanP& q0, const ChanP& q1) {
  int r0 = 0, r1 = 0;
  if (RES) {
    long long idx = row * p.ldo + c;
    if (v0 && v1 && ((idx & 1) == 0)) {
      char2 rr = *reinterpret_cast<const char2*>(p.residual + idx);
      r0 = rr.x; r1 = rr.y;
    } else {
      if (v0) r0 = p.residual[idx];
      if (v1) r1 = p.residual[idx + 1];
    }
  }
  char2 o;
  o.x = v0 ? (signed char)epi_int8<MODE, RES, FAST>(p, q0, a0, r0) : 0;
  o.y = v1 ? (signed char)epi_int8<MODE, RES, FAST>(p, q1, a1, r1) : 0;
  return o;
}

// Copy a staged int8 tile (rows x cols, row stride `ostride`, 16-byte aligned rows) to out with
// 16-byte stores where the destination allows it. Rows >= M and columns >= climit are skipped.
__device__ __forceinline__ void copy_out_i8(const EpiParams& p, const int8_t* otile, int ostride, int rows,
                                            int cols, long long grow0, int gcol0, int M, int climit, int tid,
                                            int nthr) {
  const int ch = cols / 16;
  const bool vec_ld = (p.ldo % 16) == 0 && ((uintptr_t)p.out % 16) == 0;
  for (int i = tid; i < rows * ch; i += nthr) {
    int rr = i / ch, cc = (i - rr * ch) * 16;
    long long grow = grow0 + rr;
    int gcol = gcol0 + cc;
    if (grow >= M || gcol >= climit) continue;
    int8_t* dst = reinterpret_cast<int8_t*>(p.out) + grow * p.ldo + gcol;
    const int8_t* src = otile + rr * ostride + cc;
    if (vec_ld && (gcol & 15) == 0 && gcol + 16 <= climit) {
      *reinterpret_cast<int4*>(dst) = *reinterpret_cast<const int4*>(src);
    } else {
#pragma unroll
      for (int e = 0; e < 16; ++e)
        if (gcol + e < climit) dst[e] = src[e];
    }
  }
}

// Dispatch a runtime (mode, residual) pair to a templated functor call: f.template run<MODE,RES>().
// A kernel's compile-time epilogue: one int8 (mode, residual) pair, so only that path's code and
// registers are in the kernel, or EPI_ANY (every mode, dispatched at run time per call).
constexpr int EPI_ANY = -1;
__host__ __device__ constexpr int epi_code(int mode, bool residual) { return 2 * mode + (residual ? 1 : 0); }
__host__ __device__ constexpr int epi_mode(int epi) { return epi / 2; }
__host__ __device__ constexpr bool epi_residual(int epi) { return epi % 2 != 0; }

#define I8C_EPI_DISPATCH(p, ...)                                                   \
  do {                                                                             \
    if ((p).mode == ::i8c::FLOAT_OUT) { __VA_ARGS__(::i8c::FLOAT_OUT, false); }    \
    else if ((p).mode == ::i8c::INT8_FLOAT) {                                      \
      if ((p).residual) { __VA_ARGS__(::i8c::INT8_FLOAT, true); }                  \
      else { __VA_ARGS__(::i8c::INT8_FLOAT, false); } }                            \
    else {                                                                         \
      if ((p).residual) { __VA_ARGS__(::i8c::INT8_FIXED, true); }                  \
      else { __VA_ARGS__(::i8c::INT8_FIXED, false); } }                            \
  } while (0)

}  // namespace i8c
