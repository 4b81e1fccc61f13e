// Implicit-GEMM int8 convolution / linear for sm75+ (mma.sync s8, IMMA: m16n8k32 on sm80+, four
// m8n8k16 on sm75, where the cp.async pipeline also becomes plain loads) and sm61+ (dp4a),
// plus a dedicated depthwise kernel. No im2col is materialised: the A-tile loader gathers NHWC input
// rows on the fly (GEMM row m = (n, oh, ow), GEMM k = (kh, kw, c) matching the OHWI weight).
// Linear is the 1x1 case (H = W = OH = OW = 1). Groups run on blockIdx.z.
// cp.async 4-stage pipeline, 64-byte K slices, XOR-swizzled shared memory (conflict-free ldmatrix).
#include "common.cuh"
#include "launch.h"

namespace i8c {
namespace ig {

constexpr int BK = 64;
constexpr int STAGES = 4;

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_u32(dst)), "l"(src), "r"(src_bytes)
               : "memory");
#else
  int4 v = make_int4(0, 0, 0, 0);
  if (src_bytes) v = *reinterpret_cast<const int4*>(src);
  *reinterpret_cast<int4*>(dst) = v;
#endif
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src, int src_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(smem_u32(dst)), "l"(src), "r"(src_bytes)
               : "memory");
#else
  uint32_t v = 0;
  if (src_bytes) v = *reinterpret_cast<const uint32_t*>(src);
  *reinterpret_cast<uint32_t*>(dst) = v;
#endif
}
__device__ __forceinline__ void cp_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void cp_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
#endif
}

__device__ __forceinline__ void ldsm_x4(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3, const void* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(smem_u32(p)));
#endif
}
__device__ __forceinline__ void mma_s8_8816(int32_t& c0, int32_t& c1, uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
  asm volatile("mma.sync.aligned.m8n8k16.row.col.s32.s8.s8.s32 {%0, %1}, {%2}, {%3}, {%0, %1};"
               : "+r"(c0), "+r"(c1)
               : "r"(a), "r"(b));
#endif
}
// c[16x8] += a[16x32] . b[32x8] in the m16n8k32 fragment layout (a: rows g / g+8 x k 0-15 / 16-31,
// b: k 0-15 / 16-31, c: rows g / g+8). sm75 has no m16n8k32: there it is four m8n8k16, whose fragments
// are exactly those registers (integer sums, so the same result).
__device__ __forceinline__ void mma_s8(int32_t* c, const uint32_t* a, const uint32_t* b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  mma_s8_8816(c[0], c[1], a[0], b[0]);
  mma_s8_8816(c[0], c[1], a[2], b[1]);
  mma_s8_8816(c[2], c[3], a[1], b[0]);
  mma_s8_8816(c[2], c[3], a[3], b[1]);
#endif
}

// byte offset of 16-byte chunk kc of row `row` inside a [rows][64] swizzled tile
__device__ __forceinline__ int swz(int row, int kc) { return row * BK + ((kc ^ ((row >> 1) & 3)) << 4); }

// input offset of element k of GEMM row described by (base, ih0, iw0); -1 when padding / out of range
template <bool CONV>
__device__ __forceinline__ long long a_offset(const ConvShape& s, long long base, int ih0, int iw0, int k) {
  if (!CONV) return base + k;
  int t = k / s.Cg;
  int c = k - t * s.Cg;
  int kh = t / s.KW;
  int kw = t - kh * s.KW;
  int ih = ih0 + kh * s.dh, iw = iw0 + kw * s.dw;
  if ((unsigned)ih >= (unsigned)s.H || (unsigned)iw >= (unsigned)s.W) return -1;
  return base + ((long long)ih * s.W + iw) * s.C + c;
}

// VEC: 16 = 16-byte gathers (Cg % 16 == 0), 4 = 4-byte gathers (Cg % 4 == 0), 1 = byte gathers.
template <int BM, int BN, int WARPS_M, int WARPS_N, bool CONV, int VEC, bool DP4A>
__global__ void __launch_bounds__(WARPS_M* WARPS_N * 32)
    igemm_kernel(ConvShape s, const int8_t* __restrict__ x, const int8_t* __restrict__ w, EpiParams p) {
  constexpr int NT = WARPS_M * WARPS_N * 32;
  constexpr int A_IT = BM * (BK / 16) / NT;
  constexpr int B_IT = BN * (BK / 16) / NT;
  static_assert(A_IT >= 1 && B_IT >= 1, "tile too small for the thread count");
  extern __shared__ __align__(128) int8_t smem[];
  int8_t* sA = smem;
  int8_t* sB = smem + STAGES * BM * BK;

  const int tid = threadIdx.x;
  const int g = blockIdx.z;
  const int m0 = blockIdx.x * BM;
  const int n0 = blockIdx.y * BN;
  const int ktiles = (s.K + BK - 1) / BK;

  long long a_base[A_IT];
  int a_ih0[A_IT], a_iw0[A_IT];
  bool a_ok[A_IT];
#pragma unroll
  for (int i = 0; i < A_IT; ++i) {
    int row = (tid + i * NT) >> 2;
    int m = m0 + row;
    a_ok[i] = m < s.M;
    int mm = a_ok[i] ? m : 0;
    if (CONV) {
      int ohw = s.OH * s.OW;
      int n = mm / ohw;
      int r = mm - n * ohw;
      int oh = r / s.OW, ow = r - (r / s.OW) * s.OW;
      a_base[i] = (long long)n * s.H * s.W * s.C + (long long)g * s.Cg;
      a_ih0[i] = oh * s.sh - s.pt;
      a_iw0[i] = ow * s.sw - s.pl;
    } else {
      a_base[i] = (long long)mm * s.C;
      a_ih0[i] = 0;
      a_iw0[i] = 0;
    }
  }
  long long b_base[B_IT];
  bool b_ok[B_IT];
#pragma unroll
  for (int i = 0; i < B_IT; ++i) {
    int n = n0 + ((tid + i * NT) >> 2);
    b_ok[i] = n < s.Og;
    b_base[i] = (long long)(g * s.Og + (b_ok[i] ? n : 0)) * s.K;
  }

  auto load_tile = [&](int kt, int st) {
    int8_t* dA = sA + st * BM * BK;
    int8_t* dB = sB + st * BN * BK;
#pragma unroll
    for (int i = 0; i < A_IT; ++i) {
      int q = tid + i * NT, row = q >> 2, kc = q & 3;
      int k = kt * BK + kc * 16;
      int8_t* dst = dA + swz(row, kc);
      if constexpr (VEC == 16) {
        long long off = (a_ok[i] && k < s.K) ? a_offset<CONV>(s, a_base[i], a_ih0[i], a_iw0[i], k) : -1;
        cp_async16(dst, off >= 0 ? x + off : x, off >= 0 ? 16 : 0);
      } else if constexpr (VEC == 4) {
        if (CONV) {
          int t = k / s.Cg;
          int c = k - t * s.Cg;
          int kh = t / s.KW;
          int kw = t - kh * s.KW;
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            long long off = -1;
            if (a_ok[i] && k + 4 * e < s.K) {
              int ih = a_ih0[i] + kh * s.dh, iw = a_iw0[i] + kw * s.dw;
              if ((unsigned)ih < (unsigned)s.H && (unsigned)iw < (unsigned)s.W)
                off = a_base[i] + ((long long)ih * s.W + iw) * s.C + c;
            }
            cp_async4(dst + 4 * e, off >= 0 ? x + off : x, off >= 0 ? 4 : 0);
            c += 4;
            if (c == s.Cg) {
              c = 0;
              if (++kw == s.KW) { kw = 0; ++kh; }
            }
          }
        } else {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            bool ok = a_ok[i] && k + 4 * e < s.K;
            cp_async4(dst + 4 * e, ok ? x + a_base[i] + k + 4 * e : x, ok ? 4 : 0);
          }
        }
      } else {  // byte gathers (Cg % 16 != 0): (kh, kw, c) stepped incrementally, one division per chunk
        uint32_t wv[4] = {0, 0, 0, 0};
        if (a_ok[i] && k < s.K) {
          if (CONV) {
            int t = k / s.Cg;
            int c = k - t * s.Cg;
            int kh = t / s.KW;
            int kw = t - kh * s.KW;
#pragma unroll
            for (int e = 0; e < 16; ++e) {
              if (k + e < s.K) {
                int ih = a_ih0[i] + kh * s.dh, iw = a_iw0[i] + kw * s.dw;
                if ((unsigned)ih < (unsigned)s.H && (unsigned)iw < (unsigned)s.W)
                  wv[e >> 2] |= (uint32_t)(uint8_t)__ldg(x + a_base[i] + ((long long)ih * s.W + iw) * s.C + c)
                                << ((e & 3) * 8);
              }
              if (++c == s.Cg) {
                c = 0;
                if (++kw == s.KW) { kw = 0; ++kh; }
              }
            }
          } else {
#pragma unroll
            for (int e = 0; e < 16; ++e)
              if (k + e < s.K) wv[e >> 2] |= (uint32_t)(uint8_t)__ldg(x + a_base[i] + k + e) << ((e & 3) * 8);
          }
        }
        *reinterpret_cast<uint4*>(dst) = make_uint4(wv[0], wv[1], wv[2], wv[3]);
      }
    }
#pragma unroll
    for (int i = 0; i < B_IT; ++i) {
      int q = tid + i * NT, row = q >> 2, kc = q & 3;
      int k = kt * BK + kc * 16;
      int8_t* dst = dB + swz(row, kc);
      if constexpr (VEC == 16) {
        bool ok = b_ok[i] && k < s.K;
        cp_async16(dst, ok ? w + b_base[i] + k : w, ok ? 16 : 0);
      } else if constexpr (VEC == 4) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          bool ok = b_ok[i] && k + 4 * e < s.K;
          cp_async4(dst + 4 * e, ok ? w + b_base[i] + k + 4 * e : w, ok ? 4 : 0);
        }
      } else {
        uint32_t wv[4] = {0, 0, 0, 0};
#pragma unroll
        for (int e = 0; e < 16; ++e) {
          int kk = k + e;
          uint32_t v = (b_ok[i] && kk < s.K) ? (uint32_t)(uint8_t)w[b_base[i] + kk] : 0u;
          wv[e >> 2] |= v << ((e & 3) * 8);
        }
        *reinterpret_cast<uint4*>(dst) = make_uint4(wv[0], wv[1], wv[2], wv[3]);
      }
    }
  };

  // ---- accumulators ----
  constexpr int WTM = BM / WARPS_M, WTN = BN / WARPS_N;
  constexpr int MI = WTM / 16, NI = WTN / 8;
  const int warp = tid >> 5, lane = tid & 31;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  // dp4a mapping: 16 x (NT/16) threads, each TM x TN outputs strided by the thread grid
  constexpr int DTX = 16, DTY = NT / 16;
  constexpr int TM = BM / DTY, TN = BN / DTX;
  constexpr int ACC = DP4A ? TM * TN : MI * NI * 4;
  int32_t acc[ACC];
#pragma unroll
  for (int i = 0; i < ACC; ++i) acc[i] = 0;

#pragma unroll
  for (int st = 0; st < STAGES - 1; ++st) {
    if (st < ktiles) load_tile(st, st);
    cp_commit();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    cp_wait<STAGES - 2>();
    __syncthreads();
    {
      int nk = kt + STAGES - 1;
      if (nk < ktiles) load_tile(nk, nk % STAGES);
      cp_commit();
    }
    const int st = kt % STAGES;
    const int8_t* tA = sA + st * BM * BK;
    const int8_t* tB = sB + st * BN * BK;
    if constexpr (!DP4A) {
#pragma unroll
      for (int ks = 0; ks < BK / 32; ++ks) {
        uint32_t af[MI][4], bf[NI][2];
#pragma unroll
        for (int mi = 0; mi < MI; ++mi) {
          int row = wm * WTM + mi * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
          int kc = ks * 2 + (lane >> 4);
          ldsm_x4(af[mi][0], af[mi][1], af[mi][2], af[mi][3], tA + swz(row, kc));
        }
#pragma unroll
        for (int nj = 0; nj < NI / 2; ++nj) {
          int row = wn * WTN + nj * 16 + (lane & 7) + (lane >> 4) * 8;
          int kc = ks * 2 + ((lane >> 3) & 1);
          ldsm_x4(bf[2 * nj][0], bf[2 * nj][1], bf[2 * nj + 1][0], bf[2 * nj + 1][1], tB + swz(row, kc));
        }
#pragma unroll
        for (int mi = 0; mi < MI; ++mi)
#pragma unroll
          for (int ni = 0; ni < NI; ++ni) mma_s8(&acc[(mi * NI + ni) * 4], af[mi], bf[ni]);
      }
    } else {
      const int ty = tid / DTX, tx = tid % DTX;
#pragma unroll 4
      for (int kw = 0; kw < BK / 4; ++kw) {
        int av[TM], bv[TN];
#pragma unroll
        for (int i = 0; i < TM; ++i) {
          int row = ty + DTY * i;
          av[i] = *reinterpret_cast<const int*>(tA + swz(row, kw >> 2) + (kw & 3) * 4);
        }
#pragma unroll
        for (int j = 0; j < TN; ++j) {
          int row = tx + DTX * j;
          bv[j] = *reinterpret_cast<const int*>(tB + swz(row, kw >> 2) + (kw & 3) * 4);
        }
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i * TN + j] = __dp4a(av[i], bv[j], acc[i * TN + j]);
      }
    }
  }
  cp_wait<0>();
  __syncthreads();  // pipeline smem is free: stage the tile's channel parameters there
  int32_t* ep = reinterpret_cast<int32_t*>(smem);
  stage_chan(p, ep, BN, g * s.Og + n0, min(BN, s.Og - n0), (g + 1) * s.Og, tid, NT);
  __syncthreads();

  // ---- fused epilogue ----
  if constexpr (!DP4A) {
    if (p.mode != FLOAT_OUT) {  // int8 out: stage the tile in smem, then 16-byte coalesced stores
      constexpr int OS = BN + 16;
      int8_t* otile = smem + 16 * BN;
#define I8C_IG_STAGE(MODE_, RES_)                                                                    \
  _Pragma("unroll") for (int mi = 0; mi < MI; ++mi) {                                                \
    int lr = wm * WTM + mi * 16 + (lane >> 2);                                                       \
    int r0 = m0 + lr;                                                                                \
    _Pragma("unroll") for (int ni = 0; ni < NI; ++ni) {                                              \
      int cl = wn * WTN + ni * 8 + 2 * (lane & 3);                                                   \
      int col = n0 + cl;                                                                             \
      bool v0 = col < s.Og, v1 = col + 1 < s.Og;                                                     \
      int ch = g * s.Og + col;                                                                       \
      const int32_t* a = &acc[(mi * NI + ni) * 4];                                                   \
      ChanP q0 = chan_from(ep, BN, cl), q1 = chan_from(ep, BN, cl + 1);                              \
      *reinterpret_cast<char2*>(otile + lr * OS + cl) = epi_pair_i8<MODE_, RES_>(                    \
          p, r0, ch, a[0], a[1], v0 && r0 < s.M, v1 && r0 < s.M, q0, q1);                            \
      *reinterpret_cast<char2*>(otile + (lr + 8) * OS + cl) = epi_pair_i8<MODE_, RES_>(              \
          p, r0 + 8, ch, a[2], a[3], v0 && r0 + 8 < s.M, v1 && r0 + 8 < s.M, q0, q1);                \
    }                                                                                                \
  }
      if (p.mode == INT8_FLOAT) {
        if (p.residual) { I8C_IG_STAGE(INT8_FLOAT, true) } else { I8C_IG_STAGE(INT8_FLOAT, false) }
      } else {
        if (p.residual) { I8C_IG_STAGE(INT8_FIXED, true) } else { I8C_IG_STAGE(INT8_FIXED, false) }
      }
#undef I8C_IG_STAGE
      __syncthreads();
      copy_out_i8(p, otile, OS, BM, BN, m0, g * s.Og + n0, s.M, g * s.Og + s.Og, tid, NT);
      return;
    }
#define I8C_IG_EPI(MODE_, RES_)                                                              \
  _Pragma("unroll") for (int mi = 0; mi < MI; ++mi) {                                        \
    int r0 = m0 + wm * WTM + mi * 16 + (lane >> 2);                                          \
    _Pragma("unroll") for (int ni = 0; ni < NI; ++ni) {                                      \
      int col = n0 + wn * WTN + ni * 8 + 2 * (lane & 3);                                     \
      bool v0 = col < s.Og, v1 = col + 1 < s.Og;                                             \
      int ch = g * s.Og + col;                                                               \
      const int32_t* a = &acc[(mi * NI + ni) * 4];                                           \
      int cl = col - n0;                                                                     \
      ChanP q0 = chan_from(ep, BN, cl), q1 = chan_from(ep, BN, cl + 1);                      \
      if (r0 < s.M) epi_store2q<MODE_, RES_>(p, r0, ch, a[0], a[1], v0, v1, q0, q1);         \
      if (r0 + 8 < s.M) epi_store2q<MODE_, RES_>(p, r0 + 8, ch, a[2], a[3], v0, v1, q0, q1); \
    }                                                                                        \
  }
    I8C_EPI_DISPATCH(p, I8C_IG_EPI);
#undef I8C_IG_EPI
  } else {
    const int ty = tid / DTX, tx = tid % DTX;
#define I8C_DP_EPI(MODE_, RES_)                                                              \
  _Pragma("unroll") for (int i = 0; i < TM; ++i) {                                           \
    int r = m0 + ty + DTY * i;                                                               \
    if (r < s.M) {                                                                           \
      _Pragma("unroll") for (int j = 0; j < TN; ++j) {                                       \
        int col = n0 + tx + DTX * j;                                                         \
        if (col < s.Og) epi_store1q<MODE_, RES_>(p, r, g * s.Og + col, acc[i * TN + j],      \
                                                 chan_from(ep, BN, col - n0));               \
      }                                                                                      \
    }                                                                                        \
  }
    I8C_EPI_DISPATCH(p, I8C_DP_EPI);
#undef I8C_DP_EPI
  }
}

template <int BM, int BN, int WARPS_M, int WARPS_N, bool DP4A>
static const char* launch(const ConvShape& s, const int8_t* x, const int8_t* w, const EpiParams& p, bool conv,
                          int vec, cudaStream_t stream) {
  dim3 grid((s.M + BM - 1) / BM, (s.Og + BN - 1) / BN, s.groups);
  if (grid.y > 65535 || grid.z > 65535) return "grid too large";
  int threads = WARPS_M * WARPS_N * 32;
  size_t smem = (size_t)STAGES * (BM + BN) * BK;
#define I8C_L(C_, V_)                                                                                   \
  {                                                                                                     \
    auto k = igemm_kernel<BM, BN, WARPS_M, WARPS_N, C_, V_, DP4A>;                                     \
    if (smem > 48 * 1024 &&                                                                             \
        cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess) \
      return "cudaFuncSetAttribute failed";                                                             \
    k<<<grid, threads, smem, stream>>>(s, x, w, p);                                                     \
  }
  if (conv) {
    if (vec == 16) I8C_L(true, 16) else if (vec == 4) I8C_L(true, 4) else I8C_L(true, 1)
  } else {
    if (vec == 16) I8C_L(false, 16) else if (vec == 4) I8C_L(false, 4) else I8C_L(false, 1)
  }
#undef I8C_L
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

// ---------------- depthwise ----------------
template <int V>
__global__ void __launch_bounds__(256) dw_kernel(ConvShape s, const int8_t* __restrict__ x,
                                                 const int8_t* __restrict__ w, EpiParams p) {
  const int CV = s.C / V;
  long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (long long)s.M * CV) return;
  int c = (int)(idx % CV) * V;
  int m = (int)(idx / CV);
  int ohw = s.OH * s.OW;
  int n = m / ohw, r = m - n * ohw;
  int oh = r / s.OW, ow = r - oh * s.OW;
  int ih0 = oh * s.sh - s.pt, iw0 = ow * s.sw - s.pl;
  const int8_t* xb = x + (long long)n * s.H * s.W * s.C + c;
  const int khw = s.KH * s.KW;
  int32_t acc[V];
#pragma unroll
  for (int v = 0; v < V; ++v) acc[v] = 0;
  for (int kh = 0; kh < s.KH; ++kh) {
    int ih = ih0 + kh * s.dh;
    if ((unsigned)ih >= (unsigned)s.H) continue;
    for (int kw = 0; kw < s.KW; ++kw) {
      int iw = iw0 + kw * s.dw;
      if ((unsigned)iw >= (unsigned)s.W) continue;
      const int8_t* xp = xb + ((long long)ih * s.W + iw) * s.C;
      int8_t xv[V];
      if constexpr (V == 4) {
        char4 t = *reinterpret_cast<const char4*>(xp);
        xv[0] = t.x; xv[1] = t.y; xv[2] = t.z; xv[3] = t.w;
      } else {
#pragma unroll
        for (int v = 0; v < V; ++v) xv[v] = xp[v];
      }
      int t = kh * s.KW + kw;
#pragma unroll
      for (int v = 0; v < V; ++v) acc[v] += (int)xv[v] * (int)__ldg(w + (long long)(c + v) * khw + t);
    }
  }
#define I8C_DW_EPI(MODE_, RES_)                                                                   \
  if constexpr (V % 2 == 0) {                                                                     \
    _Pragma("unroll") for (int v = 0; v < V; v += 2)                                              \
        epi_store2<MODE_, RES_>(p, m, c + v, acc[v], acc[(v + 1) % V], true, true);               \
  } else {                                                                                        \
    _Pragma("unroll") for (int v = 0; v < V; ++v) epi_store1<MODE_, RES_>(p, m, c + v, acc[v]);   \
  }
  I8C_EPI_DISPATCH(p, I8C_DW_EPI);
#undef I8C_DW_EPI
}

}  // namespace ig

const char* igemm(int algo, const ConvShape& s, const int8_t* x, const int8_t* w, const EpiParams& p, int vec16,
                  cudaStream_t stream) {
  bool conv = !(s.KH == 1 && s.KW == 1 && s.H == 1 && s.W == 1 && s.OH == 1 && s.OW == 1 && s.groups == 1 &&
                s.pt == 0 && s.pl == 0);
  switch (algo) {
    case 0: return ig::launch<128, 128, 2, 4, false>(s, x, w, p, conv, vec16, stream);
    case 1: return ig::launch<64, 64, 2, 2, false>(s, x, w, p, conv, vec16, stream);
    case 2: return ig::launch<128, 128, 2, 4, true>(s, x, w, p, conv, vec16, stream);
    default: return "unknown igemm algo";
  }
}

const char* depthwise(const ConvShape& s, const int8_t* x, const int8_t* w, const EpiParams& p,
                      cudaStream_t stream) {
  int V = (s.C % 4 == 0) ? 4 : 1;
  long long total = (long long)s.M * (s.C / V);
  long long blocks = (total + 255) / 256;
  if (blocks > 0x7fffffffLL) return "depthwise grid too large";
  if (V == 4) ig::dw_kernel<4><<<(unsigned)blocks, 256, 0, stream>>>(s, x, w, p);
  else ig::dw_kernel<1><<<(unsigned)blocks, 256, 0, stream>>>(s, x, w, p);
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace i8c
