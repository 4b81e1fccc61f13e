// Torch-facing drivers of the `cpu` target: argument plumbing, weight packing, task partitioning over
// at::parallel_for (so torch.set_num_threads governs it), implicit-im2col gather for convolutions,
// the depthwise driver, quantize (with the NCHW -> NHWC layout change) and dequantize.
// The arithmetic lives in the ISA files; see common.h.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <atomic>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "common.h"

namespace i8c {
namespace {

using at::Tensor;
using c10::optional;

bool cpu_supports(const std::string& name) {
  __builtin_cpu_init();
  if (name == "scalar") return true;
  if (name == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                             __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
  if (name == "avx512vnni")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vnni") && cpu_supports("avx2");
  return false;
}

std::string best_isa() {
  if (cpu_supports("avx512vnni")) return "avx512vnni";
  if (cpu_supports("avx2")) return "avx2";
  return "scalar";
}

const IsaKernels* isa_for(const std::string& name) {
  TORCH_CHECK(cpu_supports(name), "int8compile cpu: ISA '", name, "' is not supported by this CPU");
  if (name == "avx512vnni") return isa_avx512vnni();
  if (name == "avx2") return isa_avx2();
  return isa_scalar();
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> out;
  for (const char* n : {"avx512vnni", "avx2", "scalar"})
    if (cpu_supports(n)) out.push_back(n);
  return out;
}

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// ---- weights ---------------------------------------------------------------------------------
// w2d: [O, K] int8 contiguous (OHWI flattened), groups: the O rows split into `groups` matrices.
std::tuple<Tensor, Tensor> pack_weight(const Tensor& w2d, int64_t groups, const std::string& isa) {
  TORCH_CHECK(w2d.dim() == 2 && w2d.scalar_type() == at::kChar, "pack_weight: int8 [O, K] expected");
  const IsaKernels* k = isa_for(isa);
  Tensor w = w2d.contiguous();
  const int64_t O = w.size(0), K = w.size(1), Og = O / groups;
  TORCH_CHECK(Og * groups == O, "pack_weight: O not divisible by groups");
  const int64_t bytes = k->packed_bytes(Og, K);
  Tensor packed = at::empty({groups * bytes + 64}, w.options().dtype(at::kByte));
  const int8_t* src = w.data_ptr<int8_t>();
  uint8_t* dst = packed.data_ptr<uint8_t>();
  at::parallel_for(0, groups, 1, [&](int64_t b, int64_t e) {
    for (int64_t g = b; g < e; ++g) k->pack(src + g * Og * K, Og, K, dst + g * bytes);
  });
  Tensor colsum = w.to(at::kInt).sum(1).to(at::kInt);
  return {packed, colsum};
}

// depthwise weights [C, KH, KW, 1] -> int32 taps [KH*KW][Cpad], Cpad = C rounded up to 32, zero padded
Tensor pack_depthwise(const Tensor& weight) {
  TORCH_CHECK(weight.dim() == 4 && weight.size(3) == 1 && weight.scalar_type() == at::kChar,
              "pack_depthwise: int8 [C, KH, KW, 1] expected");
  Tensor w = weight.contiguous();
  const int64_t C = w.size(0), T = w.size(1) * w.size(2), Cpad = round_up(C, 32);
  Tensor taps = at::zeros({T, Cpad}, w.options().dtype(at::kInt));
  const int8_t* src = w.data_ptr<int8_t>();
  int32_t* dst = taps.data_ptr<int32_t>();
  for (int64_t c = 0; c < C; ++c)
    for (int64_t t = 0; t < T; ++t) dst[t * Cpad + c] = src[c * T + t];
  return taps;
}

// ---- epilogue arguments ------------------------------------------------------------------------
struct EpiHold {                           // keeps contiguous copies alive for the call
  Tensor scale, mult, shift, res_mult, res;
};

Epi make_epi(EpiHold& h, int64_t n_channels, bool has_residual, const Tensor& scale,
             const optional<Tensor>& mult, const optional<Tensor>& shift, const optional<Tensor>& res_mult,
             double res_scale, double lo, double hi, int64_t out_kind) {
  TORCH_CHECK(!has_residual || out_kind == 0, "a residual add needs int8 output");
  Epi e;
  TORCH_CHECK(scale.numel() >= n_channels, "epilogue: scale has ", scale.numel(), " entries, need ", n_channels);
  h.scale = scale.to(at::kFloat).contiguous();
  e.scale = h.scale.data_ptr<float>();
  if (out_kind == 0) {
    if (mult.has_value()) {
      TORCH_CHECK(shift.has_value(), "fixed-point requant needs shift");
      e.kind = OUT_I8_FIXED;
      h.mult = mult->to(at::kInt).contiguous();
      h.shift = shift->to(at::kInt).contiguous();
      e.mult = h.mult.data_ptr<int32_t>();
      e.shift = h.shift.data_ptr<int32_t>();
      TORCH_CHECK(h.mult.numel() >= n_channels && h.shift.numel() >= n_channels, "epilogue: mult/shift too short");
      TORCH_CHECK(!has_residual || res_mult.has_value(), "fixed-point requant with a residual needs res_mult");
      if (has_residual) {
        TORCH_CHECK(res_mult->numel() >= n_channels, "epilogue: res_mult too short");
        h.res_mult = res_mult->to(at::kInt).contiguous();
        e.res_mult = h.res_mult.data_ptr<int32_t>();
      }
    } else {
      e.kind = OUT_I8_FLOAT;
    }
  } else {
    e.kind = (int)out_kind + 1;            // 1 fp32, 2 bf16, 3 fp16 -> OUT_F32, OUT_BF16, OUT_F16
  }
  e.res_scale = (float)res_scale;
  e.lo_f = (float)lo;
  e.hi_f = (float)hi;
  auto to_i = [](double v) -> int32_t {
    if (!(v > -2147483648.0)) return INT32_MIN;
    if (!(v < 2147483647.0)) return INT32_MAX;
    return (int32_t)v;                     // truncation, as Python int()
  };
  e.lo_i = to_i(lo);
  e.hi_i = to_i(hi);
  return e;
}

at::ScalarType out_dtype(int64_t out_kind) {
  switch (out_kind) {
    case 0: return at::kChar;
    case 1: return at::kFloat;
    case 2: return at::kBFloat16;
    default: return at::kHalf;
  }
}

// bias + comp * colsum (wrapping), zero padded to a multiple of PANEL
Tensor bias_eff(const optional<Tensor>& bias, const Tensor& colsum, int64_t off, int64_t n, int comp) {
  Tensor out = at::zeros({round_up(n, PANEL)}, colsum.options().dtype(at::kInt));
  int32_t* o = out.data_ptr<int32_t>();
  Tensor b;
  TORCH_CHECK(!bias.has_value() || bias->numel() >= off + n, "bias has ", bias.has_value() ? bias->numel() : 0,
              " entries, need ", off + n);
  TORCH_CHECK(colsum.numel() >= off + n, "packed weight column sums do not match the weight");
  if (bias.has_value()) b = bias->to(at::kInt).contiguous();
  const int32_t* bp = bias.has_value() ? b.data_ptr<int32_t>() + off : nullptr;
  const int32_t* cs = colsum.data_ptr<int32_t>() + off;
  for (int64_t i = 0; i < n; ++i)
    o[i] = (int32_t)((bp ? (uint32_t)bp[i] : 0u) + (uint32_t)comp * (uint32_t)cs[i]);
  return out;
}

// Tasks (MC rows x NC columns) are handed out dynamically from an atomic counter: one worker per
// thread of at::parallel_for, so a core that is busy with something else simply takes fewer tasks.
// Task order is column-block major: consecutive tasks share a weight block.
struct Blocking {
  int64_t mc = MC, nc = NC, kc = KC;
  Blocking() {
    if (const char* env = std::getenv("INT8COMPILE_CPU_BLOCKING")) {
      long a = 0, b = 0, c = 0;
      if (std::sscanf(env, "%ld,%ld,%ld", &a, &b, &c) == 3 && a > 0 && b > 0 && c > 0) {
        mc = a;
        nc = (b + PANEL - 1) / PANEL * PANEL;
        kc = (c + 3) / 4 * 4;
      }
    }
  }
};

void run_gemm(const IsaKernels* k, GemmProblem& p) {
  static const Blocking blocking;
  p.mc = blocking.mc;
  p.nc = blocking.nc;
  p.kc = blocking.kc;
  const int64_t MCb = p.mc, NCb = p.nc;
  const int64_t nmb = (p.M + MCb - 1) / MCb, nnb = (p.N + NCb - 1) / NCb, total = nmb * nnb;
  Tensor apacked;
  if (k->pack_a && !p.gather && !p.conv && nnb > 1 && p.M > 1) {
    // several column blocks would each re-pack the same A rows: pack A once, in parallel
    const int64_t Kp = round_up(p.K, 4);
    apacked = at::empty({p.M * Kp + 64}, at::TensorOptions().dtype(at::kByte));
    uint8_t* ap = apacked.data_ptr<uint8_t>();
    const int64_t chunk = 64;
    at::parallel_for(0, (p.M + chunk - 1) / chunk, 1, [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) k->pack_a(p, c * chunk, std::min(p.M, (c + 1) * chunk), ap);
    });
    p.apacked = ap;
  }
  auto task = p.conv ? k->conv_task : k->gemm_task;
  auto run = [&](int64_t t) {
    const int64_t nb = t / nmb, mb = t % nmb;
    task(p, mb * MCb, std::min(p.M, (mb + 1) * MCb), nb * NCb, std::min(p.N, (nb + 1) * NCb));
  };
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), total);
  if (workers <= 1 || at::in_parallel_region()) {
    for (int64_t t = 0; t < total; ++t) run(t);
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, workers, 1, [&](int64_t b, int64_t e) {
    for (int64_t w = b; w < e; ++w)
      for (int64_t t = next.fetch_add(1); t < total; t = next.fetch_add(1)) run(t);
  });
}

// ---- linear ------------------------------------------------------------------------------------
// gelu_inv > 0: the GELU epilogue (OUT_I8_GELU): float value (scale), GELU, int8 at 1 / gelu_inv
Tensor linear_impl(const Tensor& x, const Tensor& packed, const Tensor& colsum, int64_t N,
                   const optional<Tensor>& bias, const Tensor& scale, const optional<Tensor>& mult,
                   const optional<Tensor>& shift, const optional<Tensor>& residual,
                   const optional<Tensor>& res_mult, double res_scale, double lo, double hi,
                   int64_t out_kind, const std::string& isa, double gelu_inv) {
  TORCH_CHECK(x.scalar_type() == at::kChar, "linear: int8 input expected");
  const IsaKernels* k = isa_for(isa);
  const int64_t K = x.size(-1);
  Tensor x2 = x.reshape({-1, K}).contiguous();
  const int64_t M = x2.size(0);
  std::vector<int64_t> oshape(x.sizes().begin(), x.sizes().end());
  oshape.back() = N;
  Tensor out = at::empty({M, N}, x.options().dtype(out_dtype(out_kind)));
  EpiHold h;
  GemmProblem p;
  p.M = M; p.N = N; p.K = K;
  p.a = x2.data_ptr<int8_t>(); p.lda = K;
  p.bpack = packed.data_ptr<uint8_t>();
  Tensor be = bias_eff(bias, colsum, 0, N, k->compensation);
  p.bias = be.data_ptr<int32_t>();
  p.epi = make_epi(h, N, residual.has_value(), scale, mult, shift, res_mult, res_scale, lo, hi, out_kind);
  if (gelu_inv > 0) {
    TORCH_CHECK(out_kind == 0 && !residual.has_value() && !mult.has_value(),
                "linear_gelu: int8 output, no residual, float scale only");
    p.epi.kind = OUT_I8_GELU;
    p.epi.out_inv = (float)gelu_inv;
  }
  p.epi.out = out.data_ptr(); p.epi.ldo = N;
  if (residual.has_value()) {
    h.res = residual->reshape({-1, N}).contiguous();
    TORCH_CHECK(h.res.scalar_type() == at::kChar && h.res.size(0) == M, "linear: residual must be int8 like the output");
    p.epi.res = h.res.data_ptr<int8_t>(); p.epi.ldr = N;
  }
  // AVX512: the direct kernel reads x's rows in place (a 1x1 convolution of [M, 1, 1, K])
  ConvGeom geom;
  if (k->conv_task && K % 4 == 0 && std::getenv("INT8COMPILE_CPU_NO_DIRECT_CONV") == nullptr) {
    geom.x = p.a; geom.zeros = p.a;
    geom.H = geom.W = geom.OH = geom.OW = 1;
    geom.C = geom.Cg = K;
    p.conv = &geom;
  }
  if (M > 0 && N > 0) run_gemm(k, p);
  return out.view(oshape);
}

Tensor linear(const Tensor& x, const Tensor& packed, const Tensor& colsum, int64_t N,
              const optional<Tensor>& bias, const Tensor& scale, const optional<Tensor>& mult,
              const optional<Tensor>& shift, const optional<Tensor>& residual,
              const optional<Tensor>& res_mult, double res_scale, double lo, double hi,
              int64_t out_kind, const std::string& isa) {
  return linear_impl(x, packed, colsum, N, bias, scale, mult, shift, residual, res_mult, res_scale,
                     lo, hi, out_kind, isa, 0.0);
}

// int8 y = quantize(gelu(fp32(acc) * scale[n]), inv_out) (docs/numerics.md section 6.1)
Tensor linear_gelu(const Tensor& x, const Tensor& packed, const Tensor& colsum, int64_t N,
                   const optional<Tensor>& bias, const Tensor& scale, double inv_out, const std::string& isa) {
  TORCH_CHECK(inv_out > 0, "linear_gelu: inv_out must be positive");
  return linear_impl(x, packed, colsum, N, bias, scale, {}, {}, {}, {}, 0.0, -INFINITY, INFINITY, 0, isa,
                     inv_out);
}

// ---- int8 max pooling, NHWC (exact: max commutes with the monotone quantization) -------------------
// x [N, C, H, W] int8 (any strides; made channels-last); padding taps are skipped (aten's -inf).
// AVX512: per output pixel and 64-channel chunk the taps are folded in a register, one store per chunk.
__attribute__((target("avx512f,avx512bw"))) void pool_pixel_avx512(int8_t* o, const int8_t* const* taps, int nt,
                                                                    int64_t C) {
  for (int64_t c = 0; c < C; c += 64) {
    const __mmask64 m = C - c >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (C - c)) - 1);
    __m512i acc = _mm512_set1_epi8((char)-128);
    for (int t = 0; t < nt; ++t) acc = _mm512_max_epi8(acc, _mm512_maskz_loadu_epi8(m, taps[t] + c));
    if (C - c >= 64) _mm512_storeu_si512(o + c, acc);
    else _mm512_mask_storeu_epi8(o + c, m, acc);
  }
}

void pool_pixel_scalar(int8_t* o, const int8_t* const* taps, int nt, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    int8_t v = -128;
    for (int t = 0; t < nt; ++t) v = taps[t][c] > v ? taps[t][c] : v;
    o[c] = v;
  }
}

Tensor max_pool2d(const Tensor& x, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                  int64_t dh, int64_t dw, int64_t OH, int64_t OW) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kChar, "max_pool2d: 4-D int8 expected");
  Tensor xc = x.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  Tensor out = at::empty({N, C, OH, OW}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const int8_t* src = xc.data_ptr<int8_t>();
  int8_t* dst = out.data_ptr<int8_t>();
  static const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  void (*pool_pixel)(int8_t*, const int8_t* const*, int, int64_t) = avx512 ? pool_pixel_avx512 : pool_pixel_scalar;
  at::parallel_for(0, N * OH, 1, [&](int64_t r0, int64_t r1) {
    std::vector<const int8_t*> taps((size_t)(kh * kw));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / OH, oh = r % OH;
      for (int64_t ow = 0; ow < OW; ++ow) {
        int nt = 0;
        for (int64_t i = 0; i < kh; ++i) {
          const int64_t ih = oh * sh - ph + i * dh;
          if (ih < 0 || ih >= H) continue;
          for (int64_t j = 0; j < kw; ++j) {
            const int64_t iw = ow * sw - pw + j * dw;
            if (iw < 0 || iw >= W) continue;
            taps[(size_t)nt++] = src + ((n * H + ih) * W + iw) * C;
          }
        }
        pool_pixel(dst + ((r * OW) + ow) * C, taps.data(), nt, C);   // no valid tap: -128 (as before)
      }
    }
  });
  return out;
}

// ---- fp32 attention (not an int8 op) -------------------------------------------------------------
// q [B,H,Sq,D], k [B,H,Sk,D], v [B,H,Sk,Dv] fp32 with unit stride along D; mask: additive fp32,
// broadcastable to [B,H,Sq,Sk]. Returns [B,H,Sq,Dv] laid out as [B,Sq,H,Dv] (aten's SDPA layout).
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const optional<Tensor>& mask, double scale) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "attention: 4-D q, k, v expected");
  TORCH_CHECK(q.scalar_type() == at::kFloat && k.scalar_type() == at::kFloat && v.scalar_type() == at::kFloat,
              "attention: fp32 expected");
  const int64_t B = q.size(0), H = q.size(1), Sq = q.size(2), D = q.size(3), Sk = k.size(2), Dv = v.size(3);
  TORCH_CHECK(k.size(0) == B && k.size(1) == H && k.size(3) == D && v.size(0) == B && v.size(1) == H &&
              v.size(2) == Sk, "attention: shapes do not match");
  TORCH_CHECK(Dv % 16 == 0 && Dv >= 16 && Dv <= 64, "attention: Dv must be 16, 32, 48 or 64");
  Tensor qc = q.stride(3) == 1 ? q : q.contiguous();
  Tensor kc = k.stride(3) == 1 ? k : k.contiguous();
  Tensor vc = v.stride(3) == 1 ? v : v.contiguous();
  Tensor out = at::empty({B, Sq, H, Dv}, q.options()).transpose(1, 2);
  AttnProblem a;
  a.B = B; a.H = H; a.Sq = Sq; a.Sk = Sk; a.D = D; a.Dv = Dv; a.scale = (float)scale;
  a.q = qc.data_ptr<float>(); a.qb = qc.stride(0); a.qh = qc.stride(1); a.qs = qc.stride(2);
  a.k = kc.data_ptr<float>(); a.kb = kc.stride(0); a.kh = kc.stride(1); a.ks = kc.stride(2);
  a.v = vc.data_ptr<float>(); a.vb = vc.stride(0); a.vh = vc.stride(1); a.vs = vc.stride(2);
  a.out = out.data_ptr<float>(); a.ob = out.stride(0); a.oh = out.stride(1); a.os = out.stride(2);
  Tensor m;
  if (mask.has_value()) {
    TORCH_CHECK(mask->scalar_type() == at::kFloat, "attention: fp32 additive mask expected");
    m = mask->dim() == 4 ? *mask : mask->reshape({1, 1, mask->size(-2), mask->size(-1)});
    if (m.size(3) != 1 && m.stride(3) != 1) m = m.contiguous();
    m = m.expand({B, H, Sq, Sk});
    if (m.stride(3) != 1) m = m.contiguous();              // a mask broadcast along the keys
    a.mask = m.data_ptr<float>(); a.mb = m.stride(0); a.mh = m.stride(1); a.ms = m.stride(2);
  }
  const int64_t scratch = (D + 4) * ((Sk + 15) / 16 * 16) + 16;
  at::parallel_for(0, B * H, 1, [&](int64_t b0, int64_t e0) {
    Tensor buf = at::empty({scratch}, q.options());
    attention_avx512(a, b0, e0, buf.data_ptr<float>());
  });
  return out;
}

// ---- conv2d ------------------------------------------------------------------------------------
struct ConvCtx {
  const int8_t* x;
  const int8_t* x_end;                     // one past the last input byte
  int64_t H, W, C, OH, OW, Cg, c0;
  int KH, KW, sh, sw, pt, pl, dh, dw;
};

// Byte moves of the gather; flip = 0x80 stores x ^ 0x80 (see GatherFn).
inline void fill_bytes(int8_t* d, int64_t len, uint8_t flip) { std::memset(d, flip, (size_t)len); }

// With flip (only the VNNI path asks for it, so AVX512BW is there): masked 64-byte moves.
__attribute__((target("avx512f,avx512bw"))) void copy_flip_avx512(int8_t* d, const int8_t* s, int64_t len,
                                                                    uint8_t flip) {
  const __m512i f = _mm512_set1_epi8((char)flip);
  int64_t i = 0;
  for (; i + 64 <= len; i += 64)
    _mm512_storeu_si512(d + i, _mm512_xor_si512(_mm512_loadu_si512(s + i), f));
  if (i < len) {
    const __mmask64 m = ((__mmask64)1 << (len - i)) - 1;
    _mm512_mask_storeu_epi8(d + i, m, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, s + i), f));
  }
}

inline void copy_bytes(int8_t* d, const int8_t* s, int64_t len, uint8_t flip, const int8_t* s_end) {
  if (flip) {
    copy_flip_avx512(d, s, len, flip);
  } else if (len <= 32 && s + 32 <= s_end) {
    // short runs (few channels): one fixed 32-byte move instead of a memcpy call; the bytes written
    // past `len` land in columns (or the next row) that are written afterwards, or in the row slack
    std::memcpy(d, s, 32);
  } else {
    std::memcpy(d, s, (size_t)len);
  }
}

inline uint64_t low_bits(int64_t k) { return k >= 64 ? ~0ULL : ((1ULL << k) - 1); }

// Whole rows when one kernel row (KW * C bytes, dilation 1 along W) fits 64 bytes, e.g. a stem conv
// with C = 3: per kernel row one masked load (padding taps and rows masked out: masked lanes do not
// fault), one XOR (masked lanes become 0 ^ flip, the padding code) and one masked store.
__attribute__((target("avx512f,avx512bw"))) void gather_short_rows_avx512(
    const ConvCtx& c, int64_t n, int64_t oh, int64_t ow, int64_t rows, int8_t* dst, int64_t ldd, uint8_t flip) {
  const int64_t KW = c.KW, C = c.C, rowlen = KW * C;
  const __m512i f = _mm512_set1_epi8((char)flip);
  const __mmask64 store = (__mmask64)low_bits(rowlen);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t ih0 = oh * c.sh - c.pt, iw0 = ow * c.sw - c.pl;
    int64_t kwlo = 0, kwhi = KW;
    while (kwlo < KW && iw0 + kwlo < 0) ++kwlo;
    while (kwhi > kwlo && iw0 + kwhi - 1 >= c.W) --kwhi;
    const __mmask64 cols = (__mmask64)(low_bits(kwhi * C) & ~low_bits(kwlo * C));
    const int8_t* xn = c.x + n * c.H * c.W * C;
    int8_t* d = dst + r * ldd;
    for (int64_t kh = 0; kh < c.KH; ++kh, d += rowlen) {
      const int64_t ih = ih0 + kh * c.dh;
      const bool inside = ih >= 0 && ih < c.H;
      const int8_t* src = inside ? xn + (ih * c.W + iw0) * C : xn;
      const __m512i v = _mm512_maskz_loadu_epi8(inside ? cols : (__mmask64)0, src);
      _mm512_mask_storeu_epi8(d, store, _mm512_xor_si512(v, f));
    }
    if (++ow == c.OW) {
      ow = 0;
      if (++oh == c.OH) { oh = 0; ++n; }
    }
  }
}

void conv_gather(const void* vctx, int64_t m0, int64_t rows, int64_t k0, int64_t k1, int8_t* dst, int64_t ldd,
                 uint8_t flip) {
  const ConvCtx& c = *(const ConvCtx*)vctx;
  const int64_t ohw = c.OH * c.OW, Cg = c.Cg, KW = c.KW;
  const bool runs = Cg == c.C && c.dw == 1;       // taps of one kernel row are contiguous in x
  // divisions once per call; rows and taps are then walked incrementally
  const int64_t t0 = k0 / Cg, ch0 = k0 % Cg, kh0 = t0 / KW, kw0 = t0 % KW;
  int64_t n = m0 / ohw, oh = (m0 % ohw) / c.OW, ow = (m0 % ohw) % c.OW;
  if (runs && k0 == 0 && k1 == c.KH * KW * Cg) {
    // whole rows (the usual case: K fits one K block): per kernel row, one copy of the valid taps
    const int64_t rowlen = KW * Cg;
    if (flip && rowlen <= 64 && c.c0 == 0) {       // flip: the VNNI path, so AVX512BW is there
      gather_short_rows_avx512(c, n, oh, ow, rows, dst, ldd, flip);
      return;
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t ih0 = oh * c.sh - c.pt, iw0 = ow * c.sw - c.pl;
      int64_t kwlo = 0, kwhi = KW;
      while (kwlo < KW && iw0 + kwlo < 0) ++kwlo;
      while (kwhi > kwlo && iw0 + kwhi - 1 >= c.W) --kwhi;
      const int8_t* xn = c.x + n * c.H * c.W * c.C;
      int8_t* d = dst + r * ldd;
      for (int64_t kh = 0; kh < c.KH; ++kh, d += rowlen) {
        const int64_t ih = ih0 + kh * c.dh;
        if (ih < 0 || ih >= c.H || kwlo >= kwhi) {
          fill_bytes(d, rowlen, flip);
          continue;
        }
        if (kwlo > 0) fill_bytes(d, kwlo * Cg, flip);
        const int8_t* src = xn + (ih * c.W + iw0 + kwlo) * c.C;
        const int64_t len = (kwhi - kwlo) * Cg;
        int8_t* dd = d + kwlo * Cg;
        copy_bytes(dd, src, len, flip, c.x_end);
        if (kwhi < KW) fill_bytes(d + kwhi * Cg, (KW - kwhi) * Cg, flip);
      }
      if (++ow == c.OW) {
        ow = 0;
        if (++oh == c.OH) { oh = 0; ++n; }
      }
    }
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t ih0 = oh * c.sh - c.pt, iw0 = ow * c.sw - c.pl;
    int64_t kwlo = 0, kwhi = KW;                  // valid kw range (iw in [0, W))
    while (kwlo < KW && iw0 + kwlo * c.dw < 0) ++kwlo;
    while (kwhi > kwlo && iw0 + (kwhi - 1) * c.dw >= c.W) --kwhi;
    const int8_t* xn = c.x + n * c.H * c.W * c.C + c.c0;
    int8_t* d = dst + r * ldd - k0;
    int64_t k = k0, kh = kh0, kw = kw0, ch = ch0;
    while (k < k1) {
      const int64_t ih = ih0 + kh * c.dh;
      int64_t len;
      if (ih < 0 || ih >= c.H) {                  // whole kernel row is padding
        len = std::min((KW - kw) * Cg - ch, k1 - k);
        fill_bytes(d + k, len, flip);
      } else if (kw < kwlo || kw >= kwhi) {       // this tap is padding
        len = std::min(Cg - ch, k1 - k);
        fill_bytes(d + k, len, flip);
      } else {
        const int8_t* src = xn + (ih * c.W + iw0 + kw * c.dw) * c.C + ch;
        len = std::min(runs ? (kwhi - kw) * Cg - ch : Cg - ch, k1 - k);
        copy_bytes(d + k, src, len, flip, c.x_end);
      }
      k += len;
      ch += len;
      while (ch >= Cg) {
        ch -= Cg;
        if (++kw == KW) { kw = 0; ++kh; }
      }
    }
    if (++ow == c.OW) {
      ow = 0;
      if (++oh == c.OH) { oh = 0; ++n; }
    }
  }
}

// groups = 1 convolutions whose channel count is not a multiple of 4 and with dilation 1 along W (a
// C = 3 stem) run on the direct kernel with whole kernel rows as taps (ConvGeom::fold): their weights
// are packed as [O, KH, round_up(KW * Cg, 4)], zero-padded. kernels/cpu.py asks conv_weight_fold too.
bool conv_fold(const IsaKernels* k, int64_t groups, int64_t Cg, int64_t dw) {
  return k->conv_task != nullptr && groups == 1 && Cg % 4 != 0 && dw == 1;
}

bool conv_weight_fold(const std::string& isa, int64_t groups, int64_t Cg, int64_t dw) {
  return conv_fold(isa_for(isa), groups, Cg, dw);
}

Tensor conv2d(const Tensor& x_in, const Tensor& weight, const optional<Tensor>& packed,
              const optional<Tensor>& colsum, const optional<Tensor>& bias, const Tensor& scale,
              const optional<Tensor>& mult, const optional<Tensor>& shift, const optional<Tensor>& residual,
              const optional<Tensor>& res_mult, double res_scale, double lo, double hi, int64_t out_kind,
              std::vector<int64_t> stride, std::vector<int64_t> padding, std::vector<int64_t> dilation,
              int64_t groups, const std::string& isa) {
  TORCH_CHECK(x_in.dim() == 4 && x_in.scalar_type() == at::kChar, "conv2d: int8 4-D input expected");
  const IsaKernels* k = isa_for(isa);
  Tensor x = x_in.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = weight.size(0), KH = weight.size(1), KW = weight.size(2), Cg = weight.size(3);
  TORCH_CHECK(Cg * groups == C && O % groups == 0, "conv2d: channels do not match groups");
  const int64_t OH = (H + padding[0] + padding[1] - dilation[0] * (KH - 1) - 1) / stride[0] + 1;
  const int64_t OW = (W + padding[2] + padding[3] - dilation[1] * (KW - 1) - 1) / stride[1] + 1;
  Tensor out = at::empty({N, O, OH, OW}, x.options().dtype(out_dtype(out_kind)).memory_format(at::MemoryFormat::ChannelsLast));
  if (N == 0 || O == 0 || OH <= 0 || OW <= 0) return out;
  EpiHold h;
  Epi epi = make_epi(h, O, residual.has_value(), scale, mult, shift, res_mult, res_scale, lo, hi, out_kind);
  epi.out = out.data_ptr();
  epi.ldo = O;
  if (residual.has_value()) {
    h.res = residual->contiguous(at::MemoryFormat::ChannelsLast);
    TORCH_CHECK(h.res.scalar_type() == at::kChar && h.res.sizes() == out.sizes(), "conv2d: residual must be int8 like the output");
    epi.res = h.res.data_ptr<int8_t>();
    epi.ldr = O;
  }
  const size_t osz = out.element_size();

  if (groups == C && Cg == 1 && O == C && KH * KW <= 128) {   // depthwise, channel multiplier 1
    DwProblem p;
    p.x = x.data_ptr<int8_t>();
    p.N = N; p.H = H; p.W = W; p.C = C; p.OH = OH; p.OW = OW;
    p.KH = (int)KH; p.KW = (int)KW; p.sh = (int)stride[0]; p.sw = (int)stride[1];
    p.pt = (int)padding[0]; p.pl = (int)padding[2]; p.dh = (int)dilation[0]; p.dw = (int)dilation[1];
    const int64_t Cpad = round_up(C, 32);
    Tensor taps = packed.has_value() ? *packed : pack_depthwise(weight);
    TORCH_CHECK(taps.scalar_type() == at::kInt && taps.numel() == KH * KW * Cpad, "conv2d: bad depthwise taps");
    Tensor b = at::empty({Cpad}, x.options().dtype(at::kInt));
    {
      int32_t* bp = b.data_ptr<int32_t>();
      Tensor bc;
      if (bias.has_value()) {
        bc = bias->to(at::kInt).contiguous();
        TORCH_CHECK(bc.numel() >= C, "conv2d: bias too short");
      }
      for (int64_t c = 0; c < Cpad; ++c) bp[c] = (bias.has_value() && c < C) ? bc.data_ptr<int32_t>()[c] : 0;
    }
    p.w = taps.data_ptr<int32_t>();
    p.bias = b.data_ptr<int32_t>();
    p.Cpad = Cpad;
    p.epi = epi;
    at::parallel_for(0, N * OH, 1, [&](int64_t b0, int64_t e0) { k->dw_rows(p, b0, e0); });
    return out;
  }

  TORCH_CHECK(packed.has_value() && colsum.has_value(), "conv2d: packed weights expected");
  // direct convolution (no im2col buffer) where the ISA has it (Cg % 4 == 0, or folded kernel rows)
  const bool fold = conv_fold(k, groups, Cg, dilation[1]);
  const bool use_direct = fold || (k->conv_task && Cg % 4 == 0 &&
                                   std::getenv("INT8COMPILE_CPU_NO_DIRECT_CONV") == nullptr);
  const int64_t Og = O / groups, M = N * OH * OW;
  const int64_t K = fold ? KH * round_up(KW * Cg, 4) : KH * KW * Cg;
  const int64_t bytes = k->packed_bytes(Og, K);
  TORCH_CHECK(packed->numel() >= groups * bytes, "conv2d: packed weights do not match the layout");
  const bool direct = KH == 1 && KW == 1 && stride[0] == 1 && stride[1] == 1 &&
                      padding[0] == 0 && padding[1] == 0 && padding[2] == 0 && padding[3] == 0;
  // per-tap column sums appended to colsum by kernels/cpu.py ([taps][O] after [O])
  const int64_t ntaps = fold ? KH : KH * KW;
  const bool tapsums = use_direct && k->compensation == -128 && colsum->numel() == O + ntaps * O &&
                       colsum->scalar_type() == at::kInt && colsum->is_contiguous();
  Tensor zeros;                            // what taps in the padding read
  if (use_direct) zeros = at::zeros({round_up(KW * Cg, 4) + 64}, x.options());
  for (int64_t g = 0; g < groups; ++g) {
    GemmProblem p;
    p.M = M; p.N = Og; p.K = K;
    ConvGeom geom;
    if (use_direct) {
      geom.x = x.data_ptr<int8_t>(); geom.zeros = zeros.data_ptr<int8_t>();
      geom.H = H; geom.W = W; geom.C = C; geom.OH = OH; geom.OW = OW; geom.Cg = Cg; geom.c0 = g * Cg;
      geom.KH = (int)KH; geom.KW = (int)KW; geom.sh = (int)stride[0]; geom.sw = (int)stride[1];
      geom.pt = (int)padding[0]; geom.pl = (int)padding[2]; geom.dh = (int)dilation[0]; geom.dw = (int)dilation[1];
      geom.fold = fold;
      geom.x_end = x.data_ptr<int8_t>() + x.numel();
      if (tapsums) {
        geom.tapsum = colsum->data_ptr<int32_t>() + O + g * Og;
        geom.ld_tapsum = O;
      }
    }
    ConvCtx ctx{x.data_ptr<int8_t>(), x.data_ptr<int8_t>() + x.numel(), H, W, C, OH, OW, Cg, g * Cg, (int)KH, (int)KW, (int)stride[0],
                (int)stride[1], (int)padding[0], (int)padding[2], (int)dilation[0], (int)dilation[1]};
    if (use_direct) {
      p.conv = &geom;
    } else if (direct) {
      p.a = x.data_ptr<int8_t>() + g * Cg;
      p.lda = C;
    } else {
      p.gather = conv_gather;
      p.gather_ctx = &ctx;
    }
    p.bpack = packed->data_ptr<uint8_t>() + g * bytes;
    Tensor be = bias_eff(bias, *colsum, g * Og, Og, k->compensation);
    p.bias = be.data_ptr<int32_t>();
    p.epi = epi;
    p.epi.out = (char*)epi.out + g * Og * osz;
    p.epi.scale = epi.scale + g * Og;
    if (epi.mult) p.epi.mult = epi.mult + g * Og;
    if (epi.shift) p.epi.shift = epi.shift + g * Og;
    if (epi.res_mult) p.epi.res_mult = epi.res_mult + g * Og;
    if (epi.res) p.epi.res = epi.res + g * Og;
    run_gemm(k, p);
  }
  return out;
}

// ---- quantize / dequantize -----------------------------------------------------------------------
int dtype_code(at::ScalarType t) {
  if (t == at::kFloat) return 0;
  if (t == at::kBFloat16) return 1;
  if (t == at::kHalf) return 2;
  TORCH_CHECK(false, "quantize: float32/bfloat16/float16 input expected, got ", t);
}

constexpr int64_t kChunk = 1 << 16;

void flat_quantize(const IsaKernels* k, const void* x, int dt, int64_t n, float inv, int8_t* out) {
  const size_t es = dt == 0 ? 4 : 2;
  at::parallel_for(0, (n + kChunk - 1) / kChunk, 1, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      const int64_t i0 = c * kChunk, len = std::min(kChunk, n - i0);
      k->quantize((const char*)x + i0 * es, dt, len, inv, out + i0);
    }
  });
}

Tensor quantize(const Tensor& x_in, double inv_scale, const std::string& isa) {
  const IsaKernels* k = isa_for(isa);
  const int dt = dtype_code(x_in.scalar_type());
  const float inv = (float)inv_scale;
  if (x_in.dim() == 4) {
    const int64_t N = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
    Tensor out = at::empty({N, C, H, W}, x_in.options().dtype(at::kChar).memory_format(at::MemoryFormat::ChannelsLast));
    if (out.numel() == 0) return out;
    if (x_in.is_contiguous() && !x_in.is_contiguous(at::MemoryFormat::ChannelsLast)) {
      // NCHW -> NHWC: quantize rows of HB pixels per channel into a tile, then transpose the tile
      const int64_t HW = H * W, HB = 256, nhb = (HW + HB - 1) / HB;
      const size_t es = dt == 0 ? 4 : 2;
      const char* xp = (const char*)x_in.data_ptr();
      int8_t* op = out.data_ptr<int8_t>();
      at::parallel_for(0, N * nhb, 1, [&](int64_t b, int64_t e) {
        std::vector<int8_t> tile((size_t)(C * HB));
        for (int64_t t = b; t < e; ++t) {
          const int64_t n = t / nhb, hw0 = (t % nhb) * HB, len = std::min(HB, HW - hw0);
          for (int64_t c = 0; c < C; ++c)
            k->quantize(xp + ((n * C + c) * HW + hw0) * es, dt, len, inv, tile.data() + c * HB);
          int8_t* o = op + (n * HW + hw0) * C;
          for (int64_t i = 0; i < len; ++i)
            for (int64_t c = 0; c < C; ++c) o[i * C + c] = tile[(size_t)(c * HB + i)];
        }
      });
      return out;
    }
    Tensor x = x_in.contiguous(at::MemoryFormat::ChannelsLast);
    flat_quantize(k, x.data_ptr(), dt, x.numel(), inv, out.data_ptr<int8_t>());
    return out;
  }
  Tensor x = x_in.contiguous();
  Tensor out = at::empty(x.sizes(), x.options().dtype(at::kChar));
  flat_quantize(k, x.data_ptr(), dt, x.numel(), inv, out.data_ptr<int8_t>());
  return out;
}

Tensor dequantize(const Tensor& q_in, double scale, int64_t out_kind, const std::string& isa) {
  TORCH_CHECK(q_in.scalar_type() == at::kChar, "dequantize: int8 input expected");
  TORCH_CHECK(out_kind >= 1 && out_kind <= 3, "dequantize: float output expected");
  const IsaKernels* k = isa_for(isa);
  Tensor q = q_in.is_non_overlapping_and_dense() ? q_in : q_in.contiguous();
  Tensor out = at::empty_like(q, q.options().dtype(out_dtype(out_kind)));
  TORCH_CHECK(out.strides() == q.strides(), "dequantize: unexpected output strides");
  const int64_t n = q.numel();
  const int8_t* qp = q.data_ptr<int8_t>();
  char* op = (char*)out.data_ptr();
  const size_t es = out.element_size();
  const float s = (float)scale;
  const int kind = (int)out_kind + 1;
  at::parallel_for(0, (n + kChunk - 1) / kChunk, 1, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      const int64_t i0 = c * kChunk, len = std::min(kChunk, n - i0);
      k->dequantize(qp + i0, len, s, kind, op + i0 * es);
    }
  });
  return out;
}

}  // namespace
}  // namespace i8c

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("cpu_supports", &i8c::cpu_supports);
  m.def("best_isa", &i8c::best_isa);
  m.def("supported_isas", &i8c::supported_isas);
  m.def("pack_weight", &i8c::pack_weight);
  m.def("pack_depthwise", &i8c::pack_depthwise);
  m.def("linear", &i8c::linear);
  m.def("linear_gelu", &i8c::linear_gelu);
  m.def("attention", &i8c::attention);
  m.def("max_pool2d", &i8c::max_pool2d);
  m.def("conv2d", &i8c::conv2d);
  m.def("conv_weight_fold", &i8c::conv_weight_fold);
  m.def("quantize", &i8c::quantize);
  m.def("dequantize", &i8c::dequantize);
  m.attr("MC") = i8c::MC;
  m.attr("NC") = i8c::NC;
  m.attr("KC") = i8c::KC;
}
