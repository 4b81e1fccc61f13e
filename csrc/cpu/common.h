// Shared declarations of the int8compile `cpu` kernels (docs/kernels_cpu.md).
//
// The ISA files (gemm_scalar.cpp, gemm_avx2.cpp, gemm_avx512vnni.cpp) include only this header and
// standard C/C++ headers, never torch: each compiles its kernels under a `#pragma GCC target` region,
// so no inline function shared with other translation units can be emitted with wider instructions.
// bindings.cpp (torch, pybind, at::parallel_for) drives them through the IsaKernels table.
#pragma once
#include <cstddef>
#include <cstdint>

namespace i8c {

// Default cache blocking of the GEMM drivers (all ISAs): a task is at most mc rows x nc columns; K is
// walked in blocks of kc (multiple of 4). nc is a multiple of the widest panel (64 columns). The
// driver puts the values it uses into GemmProblem (tunable with $INT8COMPILE_CPU_BLOCKING=mc,nc,kc).
constexpr int MC = 96;
constexpr int NC = 256;
constexpr int KC = 1024;
constexpr int PANEL = 64;             // packed weight panel width (columns), VNNI and AVX2 alike

// Output kinds of the fused epilogue.
enum OutKind : int { OUT_I8_FLOAT = 0, OUT_I8_FIXED = 1, OUT_F32 = 2, OUT_BF16 = 3, OUT_F16 = 4,
                     OUT_I8_GELU = 5 };   // float output value (scale), GELU, then quantize (out_inv)

// GELU of the epilogue (docs/numerics.md section 6.1): erf as the odd/even rational function below on
// z = clamp(v * RSQRT2, -4, 4), every multiply and add rounded on its own (no FMA). The constants are
// exact binary32 values, written in hex so that C++ and Python (kernels/reference.py) agree bit for bit.
constexpr float GELU_RSQRT2 = 0x1.6a09e6p-1f;
constexpr float GELU_A1 = -0x1.07b7a8p-6f, GELU_A3 = -0x1.8343ecp-9f, GELU_A5 = -0x1.8158c6p-11f,
                GELU_A7 = -0x1.dd85a4p-15f, GELU_A9 = -0x1.19fea2p-19f, GELU_A11 = 0x1.dbffdcp-26f,
                GELU_A13 = -0x1.2bbe16p-32f;
constexpr float GELU_B0 = -0x1.d36d4ep-7f, GELU_B2 = -0x1.e337f0p-8f, GELU_B4 = -0x1.b9249cp-10f,
                GELU_B6 = -0x1.bf7a52p-13f, GELU_B8 = -0x1.e8c19ap-17f;

// Epilogue: per output channel n (indices relative to the pointers, which the driver offsets to the
// group's first channel).  acc already contains the bias (and the VNNI compensation).
struct Epi {
  int kind = OUT_I8_FLOAT;
  const float* scale = nullptr;        // [N] fp32 (float mode and float output)
  const int32_t* mult = nullptr;       // [N] (fixed / pot)
  const int32_t* shift = nullptr;      // [N]
  const int32_t* res_mult = nullptr;   // [N] (fixed / pot with residual)
  float res_scale = 0.f;               // float mode with residual
  float out_inv = 0.f;                 // OUT_I8_GELU: fp32(1 / s_y) of the int8 output
  float lo_f = 0.f, hi_f = 0.f;        // clamp (float mode / float output), fp32
  int32_t lo_i = -128, hi_i = 127;     // clamp (fixed mode), int8 codes
  void* out = nullptr;                 // element (0, 0) of this problem's output
  int64_t ldo = 0;                     // output row stride in elements
  const int8_t* res = nullptr;         // residual element (0, 0) or nullptr
  int64_t ldr = 0;
};

// A operand: either rows of a strided int8 matrix, or a gather callback (implicit im2col) that
// writes rows [m0, m0+rows) x columns [k0, k1) into dst (row stride ldd), every byte XORed with
// `flip` (0x80 gives the VNNI path its unsigned operand directly; padding becomes 0 ^ flip). It may
// write up to 32 bytes past the end of a row (the caller keeps 64 bytes of slack after the last).
typedef void (*GatherFn)(const void* ctx, int64_t m0, int64_t rows, int64_t k0, int64_t k1,
                         int8_t* dst, int64_t ldd, uint8_t flip);

// Geometry of a convolution run as a direct (implicit-GEMM) conv: row m of the GEMM is output pixel
// (n, oh, ow), column k = (kh * KW + kw) * Cg + c (OHWI); the A rows are read straight from the NHWC
// input, one pointer per (row, tap); taps in the padding read `zeros` (Cg zero bytes).
struct ConvGeom {
  const int8_t* x = nullptr;           // [N, H, W, C] int8, channels of this group start at x + c0
  const int8_t* zeros = nullptr;       // >= Cg zero bytes
  int64_t H = 0, W = 0, C = 0, OH = 0, OW = 0, Cg = 0, c0 = 0;
  int KH = 1, KW = 1, sh = 1, sw = 1, pt = 0, pl = 0, dh = 1, dw = 1;
  // fold (groups = 1, Cg % 4 != 0, dw = 1, e.g. a C = 3 stem): a tap is a whole kernel row, the KW * Cg
  // contiguous bytes at (ih, iw0), zero-padded to a multiple of 4 in the packed weights; the extra
  // bytes read belong to the next pixel and meet zero weights. Rows that reach past x_end or out of
  // the image are copied into a zero-padded staging buffer.
  bool fold = false;
  const int8_t* x_end = nullptr;
  // optional: column sums of tap t for the problem's columns at tapsum + t * ld_tapsum (VNNI: a tap
  // in the padding of every row of a group is skipped and 128 * its column sum added to the bias)
  const int32_t* tapsum = nullptr;
  int64_t ld_tapsum = 0;
};

struct GemmProblem {
  int64_t M = 0, N = 0, K = 0;
  const int8_t* a = nullptr;           // used when gather == nullptr
  int64_t lda = 0;
  GatherFn gather = nullptr;
  const void* gather_ctx = nullptr;
  const uint8_t* bpack = nullptr;      // packed weights of this problem (ISA-specific layout)
  int64_t mc = MC, nc = NC, kc = KC;   // blocking (see above)
  // optional: A already packed by IsaKernels::pack_a for all rows (VNNI layout: the K block starting
  // at k0, width kcl, begins at apacked + k0 * M; row m of it at + m * kcl)
  const uint8_t* apacked = nullptr;
  const ConvGeom* conv = nullptr;      // for IsaKernels::conv_task
  const int32_t* bias = nullptr;       // [Npad] int32, zero padded to a multiple of PANEL; includes
                                       // the ISA's compensation (see IsaKernels::compensation)
  Epi epi;
};

struct DwProblem {                     // depthwise conv, channel multiplier 1, NHWC int8
  const int8_t* x = nullptr;           // [N, H, W, C]
  int64_t N = 0, H = 0, W = 0, C = 0, OH = 0, OW = 0;
  int KH = 0, KW = 0, sh = 1, sw = 1, pt = 0, pl = 0, dh = 1, dw = 1;
  const int32_t* w = nullptr;          // [KH*KW][Cpad] int32 taps (Cpad: C rounded up to 16)
  const int32_t* bias = nullptr;       // [Cpad]
  int64_t Cpad = 0;
  Epi epi;                             // output / residual [N*OH*OW, C]
};

// fp32 attention (attention_avx512.cpp; float code, outside docs/numerics.md). Tensors are
// [B, H, S, D] with arbitrary strides in elements except a unit stride along D (and along Sk for the
// additive mask, whose batch/head strides may be 0 for broadcasting). Dv is 16, 32, 48 or 64.
struct AttnProblem {
  const float *q = nullptr, *k = nullptr, *v = nullptr, *mask = nullptr;
  float* out = nullptr;
  int64_t B = 0, H = 0, Sq = 0, Sk = 0, D = 0, Dv = 0;
  int64_t qb = 0, qh = 0, qs = 0, kb = 0, kh = 0, ks = 0, vb = 0, vh = 0, vs = 0;
  int64_t mb = 0, mh = 0, ms = 0, ob = 0, oh = 0, os = 0;
  float scale = 1.f;
};
// (b, h) pairs t in [bh0, bh1), t = b * H + h; scratch: (D + 4) * round_up(Sk, 16) floats
void attention_avx512(const AttnProblem& a, int64_t bh0, int64_t bh1, float* scratch);

struct IsaKernels {
  const char* name;
  // bytes of packed weights for an [N, K] int8 matrix
  int64_t (*packed_bytes)(int64_t N, int64_t K);
  void (*pack)(const int8_t* w, int64_t N, int64_t K, uint8_t* out);
  // per-column value c such that bias_eff[n] = bias[n] + compensation * colsum[n] (wrapping int32):
  // -128 for the u8 x s8 VNNI path, 0 otherwise
  int compensation;
  // computes rows [m0, m1) (m1 - m0 <= p.mc) x columns [n0, n1) (n0 multiple of p.nc, n1 - n0 <= p.nc)
  void (*gemm_task)(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
  // depthwise: output rows (n, oh) in [r0, r1)
  void (*dw_rows)(const DwProblem& p, int64_t r0, int64_t r1);
  // quantize n contiguous elements (dtype: 0 fp32, 1 bf16, 2 fp16)
  void (*quantize)(const void* x, int dtype, int64_t n, float inv, int8_t* out);
  // dequantize n contiguous int8 into kind OUT_F32 / OUT_BF16 / OUT_F16
  void (*dequantize)(const int8_t* q, int64_t n, float scale, int kind, void* out);
  // optional (nullptr: gemm_task packs per task): pack rows [m0, m1) of a strided A for every K block
  // into `out` (M * round_up(K, 4) bytes, layout of GemmProblem::apacked)
  void (*pack_a)(const GemmProblem& p, int64_t m0, int64_t m1, uint8_t* out);
  // optional (nullptr: gather + gemm_task): like gemm_task for a convolution given by p.conv, reading A
  // rows directly from the input (no im2col buffer), all of K at once (ConvGeom::fold: K = KH * round_up(KW * Cg, 4))
  void (*conv_task)(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
};

const IsaKernels* isa_scalar();
const IsaKernels* isa_avx2();          // nullptr when not compiled in
const IsaKernels* isa_avx512vnni();

}  // namespace i8c
