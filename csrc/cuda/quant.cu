// Fused quantize (fp32/fp16/bf16 -> int8, NCHW or NHWC input -> channels-last output) and
// dequantize (int8 -> fp32/fp16/bf16). docs/numerics.md section 2:
//   q = sat8(rne(fp32(x) * inv)),  y = rne_out(fp32(q) * s).
#include <algorithm>
#include "common.cuh"
#include "launch.h"

namespace i8c {
namespace qk {

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }

__device__ __forceinline__ int8_t q1(float v, float inv) {
  int r = __float2int_rn(__fmul_rn(v, inv));
  r = r < -128 ? -128 : (r > 127 ? 127 : r);
  return (int8_t)r;
}

// 8 elements per thread, vector loads; requires n % 8 == 0 and 16-byte aligned input, 8-byte output.
template <typename T>
__global__ void quant_vec8(const T* __restrict__ x, int8_t* __restrict__ q, long long n8, float inv) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n8; i += (long long)gridDim.x * blockDim.x) {
    float f[8];
    if constexpr (sizeof(T) == 4) {
      float4 a = reinterpret_cast<const float4*>(x)[2 * i];
      float4 b = reinterpret_cast<const float4*>(x)[2 * i + 1];
      f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w; f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
    } else {
      uint4 a = reinterpret_cast<const uint4*>(x)[i];
      const T* h = reinterpret_cast<const T*>(&a);
#pragma unroll
      for (int e = 0; e < 8; ++e) f[e] = to_f(h[e]);
    }
    uint32_t lo = 0, hi = 0;
#pragma unroll
    for (int e = 0; e < 4; ++e) lo |= (uint32_t)(uint8_t)q1(f[e], inv) << (8 * e);
#pragma unroll
    for (int e = 0; e < 4; ++e) hi |= (uint32_t)(uint8_t)q1(f[4 + e], inv) << (8 * e);
    reinterpret_cast<uint2*>(q)[i] = make_uint2(lo, hi);
  }
}

template <typename T>
__global__ void quant_scalar(const T* __restrict__ x, int8_t* __restrict__ q, long long n, float inv) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    q[i] = q1(to_f(x[i]), inv);
}

// [N, C, HW] -> [N, HW, C], 32x32 tiles
template <typename T>
__global__ void quant_nchw(const T* __restrict__ x, int8_t* __restrict__ q, int C, long long HW, float inv) {
  __shared__ int8_t tile[32][33];
  int n = blockIdx.z;
  long long hw0 = (long long)blockIdx.x * 32;
  int c0 = blockIdx.y * 32;
  const T* xb = x + (long long)n * C * HW;
  int8_t* qb = q + (long long)n * C * HW;
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    int c = c0 + i;
    long long hw = hw0 + threadIdx.x;
    if (c < C && hw < HW) tile[i][threadIdx.x] = q1(to_f(xb[(long long)c * HW + hw]), inv);
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    long long hw = hw0 + i;
    int c = c0 + threadIdx.x;
    if (c < C && hw < HW) qb[hw * C + c] = tile[threadIdx.x][i];
  }
}

template <typename T>
__device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <typename T>
__global__ void dequant(const int8_t* __restrict__ q, T* __restrict__ y, long long n, float s, bool vec) {
  long long stride = (long long)gridDim.x * blockDim.x;
  if (vec) {  // n % 8 == 0, aligned
    long long n8 = n / 8;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n8; i += stride) {
      uint2 v = reinterpret_cast<const uint2*>(q)[i];
      const int8_t* b = reinterpret_cast<const int8_t*>(&v);
      T out[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) out[e] = from_f<T>(__fmul_rn(__int2float_rn(b[e]), s));
      if constexpr (sizeof(T) == 4) {
        reinterpret_cast<float4*>(y)[2 * i] = *reinterpret_cast<float4*>(&out[0]);
        reinterpret_cast<float4*>(y)[2 * i + 1] = *reinterpret_cast<float4*>(&out[4]);
      } else {
        reinterpret_cast<uint4*>(y)[i] = *reinterpret_cast<uint4*>(&out[0]);
      }
    }
  } else {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
      y[i] = from_f<T>(__fmul_rn(__int2float_rn(q[i]), s));
  }
}

static int grid_for(long long work) {
  long long b = (work + 255) / 256;
  if (b > 132 * 32) b = 132 * 32;
  return b < 1 ? 1 : (int)b;
}

template <typename T>
static void quant_t(const T* x, int8_t* q, long long n, int layout, int N, int C, long long HW, float inv,
                    cudaStream_t st) {
  if (layout == 1) {
    dim3 grid((unsigned)((HW + 31) / 32), (C + 31) / 32, N);
    quant_nchw<T><<<grid, dim3(32, 8), 0, st>>>(x, q, C, HW, inv);
    return;
  }
  bool vec = (n % 8 == 0) && ((uintptr_t)x % 16 == 0) && ((uintptr_t)q % 8 == 0);
  if (vec) quant_vec8<T><<<grid_for(n / 8), 256, 0, st>>>(x, q, n / 8, inv);
  else quant_scalar<T><<<grid_for(n), 256, 0, st>>>(x, q, n, inv);
}

// Fold a conv window of few input channels into channels (the RGB stem): R input rows, KW filter
// columns and C channels become the Cp channels of one pixel,
//   y[n, i, ow, (r * KW + kw) * C + c] = x[n, i * row_step - row_off + r, ow * sw + kw * dw - pl, c]
// (0 outside the image, and for channels >= R * KW * C up to Cp). With R = 1 (row_step 1, row_off 0) a
// KH x KW conv on x is a KH x 1 conv on y; with R = the row stride (row_step = R, row_off = the top
// padding) a ceil(KH / R) x 1 conv with stride 1 and no padding, over twice the channels for a
// stride-2 stem: 64-byte k-blocks instead of 32-byte ones, the same folded size.
// One block per folded row (n, i) at a time: its R input rows, zero-padded to the window range
// [-pl, (OW-1)*sw + (KW-1)*dw - pl], are staged in shared memory (16-byte loads where the row allows:
// staged row r holds input byte src at r * span + lead + src, lead = pl * C rounded up to 16), then the
// folded pixels are gathered from them through a per-channel offset table (j -> r * span + kw*dw*C + c
// from the pixel's window start, or a zero byte for j >= R*KW*C): no divisions in the inner loop.
// Each warp builds one 16-byte chunk (4 words) of 32 pixels, so its words' kinds are warp-uniform and
// kept in registers: a word whose 4 bytes are consecutive in the staged rows (within one filter row's
// KW * C run when dw = 1: most of them) is two aligned 4-byte shared loads and a funnel shift, a word of
// padding channels is zero, and only words straddling two runs gather bytes. (Byte loads everywhere
// made the pass latency- and load-instruction-bound: 135 us for the ResNet-50 stem at batch 256 on an
// H100.) The row is assembled in shared memory and leaves in consecutive 16-byte stores.
constexpr int FOLD_ZERO_WORD = -1, FOLD_MIXED_WORD = -2;
__global__ void fold_window(const int8_t* __restrict__ x, int8_t* __restrict__ y, int N, int H, int I, int W,
                            int C, int OW, int KW, int sw, int dw, int pl, int R, int row_step, int row_off,
                            int Cp, int span, int lead, bool vec) {
  extern __shared__ __align__(16) int8_t sm[];
  int16_t* off = reinterpret_cast<int16_t*>(sm);               // [Cp]
  int* woff = reinterpret_cast<int*>(sm + 2 * Cp);             // [Cp / 4]: word -> first byte's offset, or a kind
  int4* obuf = reinterpret_cast<int4*>(sm + 3 * Cp);           // [OW * Cp / 16]: the folded row
  int8_t* srows = sm + 3 * Cp + OW * Cp;                       // [R][span] (+ 8 bytes read past by word loads)
  const int zero = R * span;                                   // offset of "a zero byte"
  for (int j = threadIdx.x; j < Cp; j += blockDim.x) {
    int r = j / (KW * C), kw = (j - r * KW * C) / C, c = j - r * KW * C - kw * C;
    off[j] = (int16_t)(r < R ? r * span + kw * dw * C + c : zero);
  }
  __syncthreads();
  for (int w = threadIdx.x; w < Cp / 4; w += blockDim.x) {
    const int16_t* o = off + 4 * w;
    const bool consecutive = o[0] != zero && o[1] == o[0] + 1 && o[2] == o[0] + 2 && o[3] == o[0] + 3;
    const bool zeros = o[0] == zero && o[1] == zero && o[2] == zero && o[3] == zero;
    woff[w] = consecutive ? o[0] : zeros ? FOLD_ZERO_WORD : FOLD_MIXED_WORD;
  }
  __syncthreads();
  const int chunks = Cp / 16, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int chunk = warp % chunks, pix_step = 32 * (blockDim.x / 32 / chunks);
  const int16_t* boff = off + chunk * 16;  // this thread's chunk: its bytes' offsets, and its words' kinds
  int kind[4];
#pragma unroll
  for (int w = 0; w < 4; ++w) kind[w] = woff[chunk * 4 + w];
  const int segs = span / 16, row_bytes = W * C, first = lead - pl * C;
  for (int row = blockIdx.x; row < N * I; row += gridDim.x) {
    const int n = row / I, i = row - n * I;
    __syncthreads();  // the previous row's gathers and stores are done
    for (int u = threadIdx.x; u < R * segs; u += blockDim.x) {
      const int r = u / segs, t = (u - r * segs) * 16, src = t - lead;
      const int h = i * row_step - row_off + r;
      int4 v = make_int4(0, 0, 0, 0);
      if (h >= 0 && h < H && src < row_bytes && src + 16 > 0) {
        const int8_t* xr = x + ((long long)n * H + h) * row_bytes;
        if (vec && src >= 0 && src + 16 <= row_bytes) {
          v = *reinterpret_cast<const int4*>(xr + src);
        } else {  // the row's ends (or rows that are not 16-byte aligned)
          uint32_t b[4] = {0, 0, 0, 0};
#pragma unroll
          for (int e = 0; e < 16; ++e)
            if (src + e >= 0 && src + e < row_bytes) b[e >> 2] |= (uint32_t)(uint8_t)xr[src + e] << (8 * (e & 3));
          v = make_int4((int)b[0], (int)b[1], (int)b[2], (int)b[3]);
        }
      }
      *reinterpret_cast<int4*>(srows + r * span + t) = v;
    }
    __syncthreads();
    for (int ow = (warp / chunks) * 32 + lane; ow < OW; ow += pix_step) {
      const int base = first + ow * sw * C;
      uint32_t w4[4];
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        if (kind[w] >= 0) {  // 4 consecutive bytes at base + kind[w]
          const int a = base + kind[w];
          const uint32_t* p = reinterpret_cast<const uint32_t*>(srows + (a & ~3));
          w4[w] = __funnelshift_r(p[0], p[1], (a & 3) * 8);
        } else if (kind[w] == FOLD_ZERO_WORD) {
          w4[w] = 0;
        } else {
          uint32_t v = 0;
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int o = boff[4 * w + e];
            v |= (o == zero ? 0u : (uint32_t)(uint8_t)srows[base + o]) << (8 * e);
          }
          w4[w] = v;
        }
      }
      obuf[ow * chunks + chunk] = make_int4((int)w4[0], (int)w4[1], (int)w4[2], (int)w4[3]);
    }
    __syncthreads();  // a warp's own chunks are 64 B apart: the row leaves in consecutive 16-byte stores
    int4* yr = reinterpret_cast<int4*>(y + (long long)row * OW * Cp);
    for (int q = threadIdx.x; q < OW * chunks; q += blockDim.x) yr[q] = obuf[q];
  }
}

}  // namespace qk

const char* fold_window(const int8_t* x, int8_t* y, int N, int H, int W, int C, int I, int OW, int KW, int sw,
                        int dw, int pl, int R, int row_step, int row_off, int Cp, cudaStream_t stream) {
  if (Cp % 16 || Cp < R * KW * C || Cp > 512)
    return "fold_window: Cp must be a multiple of 16, >= R * KW * C and <= 512";
  if ((uintptr_t)y % 16) return "fold_window: output must be 16-byte aligned";
  // staged row bytes: the window range of the output columns, from a 16-byte aligned lead
  const long long lead = (pl * C + 15) / 16 * 16;
  const long long span = (lead - pl * C + ((long long)(OW - 1) * sw + (long long)(KW - 1) * dw + 1) * C + 15) / 16 * 16;
  // the byte and word tables, the folded row, then the input rows (offset R * span: a zero byte; word
  // loads read up to 7 past it)
  const size_t smem = 3 * Cp + (size_t)OW * Cp + R * span + 16;
  if (R * span > 32767 || smem > 48 * 1024) return "fold_window: input rows too wide to stage in shared memory";
  const int rows = N * I;
  if (rows == 0 || OW == 0) return nullptr;
  const int blocks = std::min(rows, 132 * 16);  // 16 rows in flight per SM hide the row loads' latency
  const int chunks = Cp / 16, threads = 32 * chunks * std::max(1, 4 / chunks);  // one chunk per warp
  const bool vec = (W * C) % 16 == 0 && (uintptr_t)x % 16 == 0;
  static bool carveout = false;  // 16 blocks of ~9 KB per SM
  if (!carveout)
    carveout = cudaFuncSetAttribute(qk::fold_window, cudaFuncAttributePreferredSharedMemoryCarveout,
                                    cudaSharedmemCarveoutMaxShared) == cudaSuccess;
  qk::fold_window<<<blocks, threads, smem, stream>>>(x, y, N, H, I, W, C, OW, KW, sw, dw, pl, R, row_step, row_off,
                                                     Cp, (int)span, (int)lead, vec);
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

const char* quantize(const void* x, int in_kind, int8_t* q, long long n, int layout, int N, int C, long long HW,
                     float inv_scale, cudaStream_t stream) {
  if (n == 0) return nullptr;
  if (layout == 1 && (N > 65535 || (C + 31) / 32 > 65535)) return "quantize grid too large";
  switch (in_kind) {
    case OUT_F32: qk::quant_t(reinterpret_cast<const float*>(x), q, n, layout, N, C, HW, inv_scale, stream); break;
    case OUT_F16: qk::quant_t(reinterpret_cast<const __half*>(x), q, n, layout, N, C, HW, inv_scale, stream); break;
    case OUT_BF16: qk::quant_t(reinterpret_cast<const __nv_bfloat16*>(x), q, n, layout, N, C, HW, inv_scale, stream); break;
    default: return "quantize: bad input kind";
  }
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

const char* dequantize(const int8_t* q, void* y, int out_kind, long long n, float scale, cudaStream_t stream) {
  if (n == 0) return nullptr;
  bool vec = (n % 8 == 0) && ((uintptr_t)q % 8 == 0) && ((uintptr_t)y % 16 == 0);
  int grid = qk::grid_for(vec ? n / 8 : n);
  switch (out_kind) {
    case OUT_F32: qk::dequant<float><<<grid, 256, 0, stream>>>(q, reinterpret_cast<float*>(y), n, scale, vec); break;
    case OUT_F16: qk::dequant<__half><<<grid, 256, 0, stream>>>(q, reinterpret_cast<__half*>(y), n, scale, vec); break;
    case OUT_BF16: qk::dequant<__nv_bfloat16><<<grid, 256, 0, stream>>>(q, reinterpret_cast<__nv_bfloat16*>(y), n, scale, vec); break;
    default: return "dequantize: bad output kind";
  }
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace i8c
