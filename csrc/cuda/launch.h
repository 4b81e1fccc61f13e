// Host-side entry points of the int8compile CUDA kernels (raw pointers, no torch). Each returns
// nullptr on success or a static error string.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>
#include "types.h"

namespace i8c {

// Hopper wgmma GEMM (linear). cfg selects the tile shape (see gemm_sm90.cu). K % 16 == 0.
// splits > 1: split-K over CTAs, partial sums reduced in the zero-initialised int32 workspace ws [M, N]
// with per-slice counters cnt (>= tiles * 2 ints); both are left zeroed.
const char* gemm_sm90(int cfg, const int8_t* A, const int8_t* B, int M, int N, int K, const EpiParams& p,
                      int num_sms, int max_ctas, int splits, int32_t* ws, int* cnt, cudaStream_t stream);

// Hopper wgmma implicit-GEMM conv2d (TMA im2col loads). cfg selects tile / k-block (see conv_sm90.cu).
// groups == 1, C a multiple of the config's k-block, 16-byte aligned x / w. splits > 1: split-K over the
// (filter tap, channel block) k-blocks, reduced like gemm_sm90's (ws [M, O], cnt as there).
const char* conv_sm90(int cfg, const ConvShape& s, const int8_t* x, const int8_t* w, const EpiParams& p,
                      int num_sms, int splits, int32_t* ws, int* cnt, cudaStream_t stream);

// Hopper wgmma conv with few input channels (the RGB stem: KW * C <= 32, dw == 1, W * C % 4 == 0): the
// A tiles are written by the producer warpgroup straight from x (no fold pass, no TMA im2col); wf is
// [O, KH, 32], each filter row's KW * C bytes zero-padded. Declines (returns why) what it cannot take.
const char* conv_sm90_built(const ConvShape& s, const int8_t* x, const int8_t* wf, const EpiParams& p, int num_sms,
                            cudaStream_t stream);

// mma.sync (sm75+) / dp4a (sm61+) implicit GEMM for conv2d and linear.
// algo: 0 = mma.sync 128x128 tile, 1 = mma.sync 64x64 tile (small M), 2 = dp4a 128x128.
// vec: gather width in bytes: 16 (Cg % 16 == 0, 16-byte aligned pointers), 4 (Cg % 4 == 0, 4-byte
// aligned) or 1.
const char* igemm(int algo, const ConvShape& s, const int8_t* x, const int8_t* w, const EpiParams& p,
                  int vec, cudaStream_t stream);

// Depthwise conv (groups == C == O).
const char* depthwise(const ConvShape& s, const int8_t* x, const int8_t* w, const EpiParams& p,
                      cudaStream_t stream);

// quantize: in_kind 1 f32, 2 f16, 3 bf16. layout 0: elementwise over n elements (same memory order);
// layout 1: NCHW contiguous input [N, C, HW] -> NHWC output.
const char* quantize(const void* x, int in_kind, int8_t* q, long long n, int layout, int N, int C, long long HW,
                     float inv_scale, cudaStream_t stream);
// A conv window folded into channels for few-channel convs (the stem): x NHWC [N, H, W, C] ->
// y [N, I, OW, Cp] with y[n, i, ow, (r * KW + kw) * C + c] = x[n, i * row_step - row_off + r, ow * sw + kw * dw - pl, c]
// for r < R, zero outside the image and past R * KW * C.
const char* fold_window(const int8_t* x, int8_t* y, int N, int H, int W, int C, int I, int OW, int KW, int sw,
                        int dw, int pl, int R, int row_step, int row_off, int Cp, cudaStream_t stream);
// dequantize elementwise: out_kind 1 f32, 2 f16, 3 bf16.
const char* dequantize(const int8_t* q, void* y, int out_kind, long long n, float scale, cudaStream_t stream);

}  // namespace i8c
