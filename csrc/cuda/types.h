// Plain types shared by host code (binding.cpp) and the kernels: no device code here.
#pragma once
#include <cstdint>

namespace i8c {

// Output kinds / epilogue modes. INT8_FLOAT: int8 out, float requant; INT8_FIXED: int8 out, fixed
// point (also power-of-two) requant; FLOAT_OUT: fp32/fp16/bf16 output (section 5).
enum EpiMode : int { INT8_FLOAT = 0, INT8_FIXED = 1, FLOAT_OUT = 2 };
enum OutKind : int { OUT_I8 = 0, OUT_F32 = 1, OUT_F16 = 2, OUT_BF16 = 3 };

struct EpiParams {
  const int32_t* bias;      // [C] or nullptr
  const float* scale;       // [C]
  const int32_t* mult;      // [C] (INT8_FIXED)
  const int32_t* shift;     // [C] (INT8_FIXED)
  const int8_t* residual;   // [rows, ldo] or nullptr (int8 output only)
  const int32_t* res_mult;  // [C] (INT8_FIXED with residual)
  float res_scale;          // INT8_FLOAT with residual
  float lo, hi;             // clamp: int8 codes (int8 out) or float bounds (float out)
  int lo_i, hi_i;           // the int8 clamp codes as integers (int8 out)
  int mode;                 // EpiMode
  int out_kind;             // OutKind
  void* out;                // [rows, ldo]
  long long ldo;            // row stride (elements) of out and residual
};

// Implicit-GEMM convolution (NHWC input, OHWI weight). A linear layer is the case
// H = W = KH = KW = OH = OW = 1, C = Cg = K, groups = 1.
struct ConvShape {
  int N, H, W, C;           // input, NHWC
  int KH, KW, Cg;           // filter; Cg = C / groups
  int OH, OW, O, Og;        // output NHWC; Og = O / groups
  int sh, sw, pt, pl, dh, dw;
  int M;                    // N * OH * OW
  int K;                    // KH * KW * Cg
  int groups;
};

}  // namespace i8c
