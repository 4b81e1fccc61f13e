// Portable building blocks shared by the ISA files: scalar epilogue, depthwise loop, quantize,
// dequantize, fp16/bf16 conversion, thread-local scratch.  Everything lives in an anonymous namespace
// and uses no std templates, so each ISA file gets its own copy compiled under its own `#pragma GCC
// target` (auto-vectorized there) and nothing can be merged across translation units.
//
// The including file must include <cmath>, <cstdint>, <cstdlib>, <cstring> and common.h *before*
// its `#pragma GCC target` and before this header.
namespace i8c {
namespace {

inline uint16_t f32_to_bf16(float f) {                 // rne, as c10::BFloat16
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

inline uint16_t f32_to_f16(float f) {                  // rne, subnormals and overflow to inf
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return (uint16_t)(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);        // >= 65520 rounds to inf
  if (ax < 0x38800000u) {                                           // |f| < 2^-14: subnormal half
    float fa;
    std::memcpy(&fa, &ax, 4);
    float t = fa + 0.5f;                                            // one rne addition: ulp 2^-24
    uint32_t tb;
    std::memcpy(&tb, &t, 4);
    return (uint16_t)(sign | (tb - 0x3f000000u));
  }
  uint32_t odd = (ax >> 13) & 1u;
  ax += 0xc8000fffu + odd;                                          // rebias exponent, round
  return (uint16_t)(sign | (ax >> 13));
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t x = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
  if (e == 0) {
    float f = (float)man * 5.9604644775390625e-8f;                  // man * 2^-24, exact
    std::memcpy(&bits, &f, 4);
    bits |= sign;
  } else if (e == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((e + 112u) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline float clampf(float v, float lo, float hi) {     // torch.clamp: min(max(v, lo), hi)
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

// GELU of the epilogue, op by op as docs/numerics.md section 6.1 (compiled with -ffp-contract=off).
inline float gelu_f32(float v) {
  const float z = clampf(v * GELU_RSQRT2, -4.f, 4.f);
  const float z2 = z * z, z4 = z2 * z2, z8 = z4 * z4;
  // Estrin's scheme (short dependency chains); the order of every operation is normative
  const float p01 = GELU_A1 + GELU_A3 * z2, p23 = GELU_A5 + GELU_A7 * z2;
  const float p46 = (GELU_A9 + GELU_A11 * z2) + z4 * GELU_A13;
  const float p = (p01 + z4 * p23) + z8 * p46;
  const float q01 = GELU_B0 + GELU_B2 * z2;
  const float q24 = (GELU_B4 + GELU_B6 * z2) + z4 * GELU_B8;
  const float q = q01 + z4 * q24;
  const float erf = clampf((z * p) / q, -1.f, 1.f);       // keeps 1 + erf >= 0
  return (v * 0.5f) * (erf + 1.f);
}

// Thread-local scratch, grown on demand, 64-byte aligned (no std containers: see top of file).
struct Scratch {
  void* p = nullptr;
  size_t cap = 0;
  ~Scratch() { std::free(p); }
  void* get(size_t bytes) {
    if (bytes > cap) {
      std::free(p);
      cap = (bytes + 4095) & ~(size_t)4095;
      p = std::aligned_alloc(64, cap);
      if (!p) { cap = 0; std::abort(); }
    }
    return p;
  }
};

// Scalar epilogue over `rows` rows x `ncols` columns; acc row r at acc + r * ldacc; output row
// row0 + r, columns n0 .. n0 + ncols of the problem.
void epi_rows_generic(const Epi& e, const int32_t* acc, int64_t ldacc, int64_t row0, int64_t rows,
                      int64_t n0, int64_t ncols) {
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t* a = acc + r * ldacc;
    const int64_t m = row0 + r;
    const int8_t* rs = e.res ? e.res + m * e.ldr + n0 : nullptr;
    switch (e.kind) {
      case OUT_I8_FLOAT: {
        int8_t* o = (int8_t*)e.out + m * e.ldo + n0;
        const float* sc = e.scale + n0;
        if (rs) {
          for (int64_t j = 0; j < ncols; ++j) {
            float v = (float)a[j] * sc[j];
            float rv = (float)rs[j] * e.res_scale;
            v = v + rv;
            o[j] = (int8_t)(int)std::nearbyint(clampf(v, e.lo_f, e.hi_f));
          }
        } else {
          for (int64_t j = 0; j < ncols; ++j) {
            float v = (float)a[j] * sc[j];
            o[j] = (int8_t)(int)std::nearbyint(clampf(v, e.lo_f, e.hi_f));
          }
        }
        break;
      }
      case OUT_I8_GELU: {
        int8_t* o = (int8_t*)e.out + m * e.ldo + n0;
        const float* sc = e.scale + n0;
        for (int64_t j = 0; j < ncols; ++j) {
          const float g = gelu_f32((float)a[j] * sc[j]) * e.out_inv;
          o[j] = (int8_t)(int)std::nearbyint(clampf(g, -128.f, 127.f));
        }
        break;
      }
      case OUT_I8_FIXED: {
        int8_t* o = (int8_t*)e.out + m * e.ldo + n0;
        const int32_t* mu = e.mult + n0;
        const int32_t* sh = e.shift + n0;
        const int32_t* rm = e.res_mult ? e.res_mult + n0 : nullptr;
        for (int64_t j = 0; j < ncols; ++j) {
          uint64_t v = (uint64_t)((int64_t)a[j] * (int64_t)mu[j]);
          if (rs) v += (uint64_t)((int64_t)rs[j] * (int64_t)rm[j]);
          int s = sh[j];
          if (s > 0) v += (uint64_t)1 << (s - 1);
          int64_t t = (int64_t)v >> s;
          t = t < e.lo_i ? e.lo_i : t;
          t = t > e.hi_i ? e.hi_i : t;
          o[j] = (int8_t)t;
        }
        break;
      }
      case OUT_F32: {
        float* o = (float*)e.out + m * e.ldo + n0;
        const float* sc = e.scale + n0;
        for (int64_t j = 0; j < ncols; ++j) o[j] = clampf((float)a[j] * sc[j], e.lo_f, e.hi_f);
        break;
      }
      case OUT_BF16: {
        uint16_t* o = (uint16_t*)e.out + m * e.ldo + n0;
        const float* sc = e.scale + n0;
        for (int64_t j = 0; j < ncols; ++j)
          o[j] = f32_to_bf16(clampf((float)a[j] * sc[j], e.lo_f, e.hi_f));
        break;
      }
      case OUT_F16: {
        uint16_t* o = (uint16_t*)e.out + m * e.ldo + n0;
        const float* sc = e.scale + n0;
        for (int64_t j = 0; j < ncols; ++j)
          o[j] = f32_to_f16(clampf((float)a[j] * sc[j], e.lo_f, e.hi_f));
        break;
      }
    }
  }
}

// Depthwise rows: accumulate one output row (all OW x C) in int32 scratch, then the epilogue.
template <class EpiF>
void dw_rows_impl(const DwProblem& p, int64_t r0, int64_t r1, EpiF epi) {
  static thread_local Scratch scratch;
  const int64_t Cp = p.Cpad;
  int32_t* buf = (int32_t*)scratch.get((size_t)(p.OW * Cp) * sizeof(int32_t));
  for (int64_t row = r0; row < r1; ++row) {
    const int64_t n = row / p.OH, oh = row % p.OH;
    for (int64_t ow = 0; ow < p.OW; ++ow) {
      int32_t* acc = buf + ow * Cp;
      for (int64_t c = 0; c < Cp; ++c) acc[c] = p.bias[c];
      for (int kh = 0; kh < p.KH; ++kh) {
        const int64_t ih = oh * p.sh - p.pt + (int64_t)kh * p.dh;
        if (ih < 0 || ih >= p.H) continue;
        for (int kw = 0; kw < p.KW; ++kw) {
          const int64_t iw = ow * p.sw - p.pl + (int64_t)kw * p.dw;
          if (iw < 0 || iw >= p.W) continue;
          const int8_t* xp = p.x + ((n * p.H + ih) * p.W + iw) * p.C;
          const int32_t* wt = p.w + (int64_t)(kh * p.KW + kw) * Cp;
          for (int64_t c = 0; c < p.C; ++c) acc[c] += (int32_t)xp[c] * wt[c];
        }
      }
    }
    epi(p.epi, buf, Cp, row * p.OW, p.OW, (int64_t)0, p.C);
  }
}

void quantize_generic(const void* x, int dtype, int64_t n, float inv, int8_t* out) {
  if (dtype == 0) {
    const float* xf = (const float*)x;
    for (int64_t i = 0; i < n; ++i)
      out[i] = (int8_t)(int)std::nearbyint(clampf(xf[i] * inv, -128.f, 127.f));
  } else {
    const uint16_t* xh = (const uint16_t*)x;
    for (int64_t i = 0; i < n; ++i) {
      float f = dtype == 1 ? bf16_to_f32(xh[i]) : f16_to_f32(xh[i]);
      out[i] = (int8_t)(int)std::nearbyint(clampf(f * inv, -128.f, 127.f));
    }
  }
}

void dequantize_generic(const int8_t* q, int64_t n, float scale, int kind, void* out) {
  if (kind == OUT_F32) {
    float* o = (float*)out;
    for (int64_t i = 0; i < n; ++i) o[i] = (float)q[i] * scale;
  } else if (kind == OUT_BF16) {
    uint16_t* o = (uint16_t*)out;
    for (int64_t i = 0; i < n; ++i) o[i] = f32_to_bf16((float)q[i] * scale);
  } else {
    uint16_t* o = (uint16_t*)out;
    for (int64_t i = 0; i < n; ++i) o[i] = f32_to_f16((float)q[i] * scale);
  }
}

}  // namespace
}  // namespace i8c
