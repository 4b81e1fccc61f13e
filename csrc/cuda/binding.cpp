// torch bindings of the int8compile CUDA kernels. Python (int8compile/kernels/cuda.py) validates
// shapes, allocates outputs and picks the algorithm; this file only unpacks tensors and launches.
#include <torch/extension.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <algorithm>
#include <optional>
#include "launch.h"

namespace {

using OptT = std::optional<at::Tensor>;

int kind_of(at::ScalarType t) {
  switch (t) {
    case at::kChar: return i8c::OUT_I8;
    case at::kFloat: return i8c::OUT_F32;
    case at::kHalf: return i8c::OUT_F16;
    case at::kBFloat16: return i8c::OUT_BF16;
    default: TORCH_CHECK(false, "int8compile cuda: unsupported dtype ", t);
  }
  return -1;
}

template <typename T>
const T* ptr_or_null(const OptT& t) {
  return (t.has_value() && t->defined()) ? t->data_ptr<T>() : nullptr;
}

i8c::EpiParams make_epi(at::Tensor& out, const OptT& bias, const at::Tensor& scale, const OptT& mult,
                        const OptT& shift, const OptT& residual, const OptT& res_mult, double res_scale, double lo,
                        double hi, long long ldo) {
  i8c::EpiParams p;
  p.bias = ptr_or_null<int32_t>(bias);
  p.scale = scale.data_ptr<float>();
  p.mult = ptr_or_null<int32_t>(mult);
  p.shift = ptr_or_null<int32_t>(shift);
  p.residual = ptr_or_null<int8_t>(residual);
  p.res_mult = ptr_or_null<int32_t>(res_mult);
  p.res_scale = (float)res_scale;
  p.lo = (float)lo;
  p.hi = (float)hi;
  p.lo_i = (int)std::max(-128.0, std::min(127.0, lo));
  p.hi_i = (int)std::max(-128.0, std::min(127.0, hi));
  p.out_kind = kind_of(out.scalar_type());
  p.mode = p.out_kind != i8c::OUT_I8 ? i8c::FLOAT_OUT : (p.mult ? i8c::INT8_FIXED : i8c::INT8_FLOAT);
  TORCH_CHECK(p.mode != i8c::INT8_FIXED || p.shift, "fixed-point requant needs shift");
  TORCH_CHECK(!(p.mode == i8c::INT8_FIXED && p.residual) || p.res_mult, "fixed-point residual needs res_mult");
  p.out = out.data_ptr();
  p.ldo = ldo;
  return p;
}

int vec_width(int cg, const at::Tensor& x, const at::Tensor& w) {
  auto px = (uintptr_t)x.data_ptr(), pw = (uintptr_t)w.data_ptr();
  if (cg % 16 == 0 && px % 16 == 0 && pw % 16 == 0) return 16;
  if (cg % 4 == 0 && px % 4 == 0 && pw % 4 == 0) return 4;
  return 1;
}

void check(const char* err) { TORCH_CHECK(err == nullptr, "int8compile cuda kernel: ", err); }

// The split-K workspace: a zeroed M x N int32 plane and 2 zeroed counters per 64 x 64 block, on the device.
void check_workspace(int64_t splits, int64_t M, int64_t N, const OptT& ws, const OptT& cnt) {
  if (splits <= 1) return;
  TORCH_CHECK(ws.has_value() && cnt.has_value(), "split-K needs a workspace and counters");
  TORCH_CHECK(ws->scalar_type() == at::kInt && cnt->scalar_type() == at::kInt && ws->is_cuda() && cnt->is_cuda(),
              "split-K workspace and counters must be int32 CUDA tensors");
  TORCH_CHECK(ws->numel() >= M * N, "split-K workspace too small: ", ws->numel(), " < ", M * N);
  TORCH_CHECK(cnt->numel() >= 2 * ((M + 63) / 64) * ((N + 63) / 64), "split-K counters too few");
}

int num_sms() {
  int dev = 0, n = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
  return n;
}

// x [M, K] int8 contiguous, w [N, K] int8 contiguous, out [M, N].
// algo: 0 = sm90 wgmma (cfg = tile config), 1 = mma.sync 128x128, 2 = mma.sync 64x64, 3 = dp4a.
void linear(const at::Tensor& x, const at::Tensor& w, at::Tensor& out, const OptT& bias, const at::Tensor& scale,
            const OptT& mult, const OptT& shift, const OptT& residual, const OptT& res_mult, double res_scale,
            double lo, double hi, int64_t algo, int64_t cfg, int64_t max_ctas, int64_t splits, const OptT& ws,
            const OptT& cnt) {
  c10::cuda::CUDAGuard guard(x.device());
  const int M = (int)x.size(0), K = (int)x.size(1), N = (int)w.size(0);
  auto p = make_epi(out, bias, scale, mult, shift, residual, res_mult, res_scale, lo, hi, N);
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  if (M == 0 || N == 0) return;
  if (algo == 0) {
    check_workspace(splits, M, N, ws, cnt);
    check(i8c::gemm_sm90((int)cfg, x.data_ptr<int8_t>(), w.data_ptr<int8_t>(), M, N, K, p, num_sms(), (int)max_ctas,
                         (int)splits, ws.has_value() ? ws->data_ptr<int32_t>() : nullptr,
                         cnt.has_value() ? cnt->data_ptr<int32_t>() : nullptr, stream));
    return;
  }
  i8c::ConvShape s{};
  s.N = M; s.H = 1; s.W = 1; s.C = K;
  s.KH = 1; s.KW = 1; s.Cg = K;
  s.OH = 1; s.OW = 1; s.O = N; s.Og = N;
  s.sh = 1; s.sw = 1; s.pt = 0; s.pl = 0; s.dh = 1; s.dw = 1;
  s.M = M; s.K = K; s.groups = 1;
  int vec = vec_width(K, x, w);
  int a = algo == 1 ? 0 : (algo == 2 ? 1 : 2);
  check(i8c::igemm(a, s, x.data_ptr<int8_t>(), w.data_ptr<int8_t>(), p, vec, stream));
}

// x [N, C, H, W] channels-last int8, w [O, KH, KW, C/groups] int8, out [N, O, OH, OW] channels-last.
// algo: 0 = mma.sync 128x128, 1 = mma.sync 64x64, 2 = dp4a, 3 = depthwise, 4 = sm90 wgmma (cfg = tile;
// splits > 1: split-K through the zeroed int32 workspace ws [M, O] and counters cnt, see launch.h).
i8c::ConvShape conv_shape(const at::Tensor& x, const at::Tensor& out, int O, int KH, int KW, int Cg, int groups,
                          const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                          const std::vector<int64_t>& dilation) {
  i8c::ConvShape s{};
  s.N = (int)x.size(0); s.C = (int)x.size(1); s.H = (int)x.size(2); s.W = (int)x.size(3);
  s.O = O; s.KH = KH; s.KW = KW; s.Cg = Cg;
  s.OH = (int)out.size(2); s.OW = (int)out.size(3);
  s.groups = groups; s.Og = s.O / s.groups;
  s.sh = (int)stride[0]; s.sw = (int)stride[1];
  s.pt = (int)padding[0]; s.pl = (int)padding[2];
  s.dh = (int)dilation[0]; s.dw = (int)dilation[1];
  s.M = s.N * s.OH * s.OW;
  s.K = s.KH * s.KW * s.Cg;
  return s;
}

void conv2d(const at::Tensor& x, const at::Tensor& w, at::Tensor& out, const OptT& bias, const at::Tensor& scale,
            const OptT& mult, const OptT& shift, const OptT& residual, const OptT& res_mult, double res_scale,
            double lo, double hi, std::vector<int64_t> stride, std::vector<int64_t> padding,
            std::vector<int64_t> dilation, int64_t groups, int64_t algo, int64_t cfg, int64_t splits, const OptT& ws,
            const OptT& cnt) {
  c10::cuda::CUDAGuard guard(x.device());
  auto s = conv_shape(x, out, (int)w.size(0), (int)w.size(1), (int)w.size(2), (int)w.size(3), (int)groups, stride,
                      padding, dilation);
  auto p = make_epi(out, bias, scale, mult, shift, residual, res_mult, res_scale, lo, hi, s.O);
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  if (s.M == 0 || s.O == 0) return;
  if (algo == 3) {
    check(i8c::depthwise(s, x.data_ptr<int8_t>(), w.data_ptr<int8_t>(), p, stream));
    return;
  }
  if (algo == 4) {
    check_workspace(splits, s.M, s.O, ws, cnt);
    check(i8c::conv_sm90((int)cfg, s, x.data_ptr<int8_t>(), w.data_ptr<int8_t>(), p, num_sms(), (int)splits,
                         ws.has_value() ? ws->data_ptr<int32_t>() : nullptr,
                         cnt.has_value() ? cnt->data_ptr<int32_t>() : nullptr, stream));
    return;
  }
  int vec = vec_width(s.Cg, x, w);
  check(i8c::igemm((int)algo, s, x.data_ptr<int8_t>(), w.data_ptr<int8_t>(), p, vec, stream));
}

// The stem on Hopper: x [N, C, H, W] channels-last int8 with KW * C <= 32, wf [O, KH, 32] int8 (each
// filter row's KW * C bytes, zero-padded), out [N, O, OH, OW] channels-last; see conv_sm90_built.
void conv2d_stem(const at::Tensor& x, const at::Tensor& wf, at::Tensor& out, const OptT& bias, const at::Tensor& scale,
                 const OptT& mult, const OptT& shift, const OptT& residual, const OptT& res_mult, double res_scale,
                 double lo, double hi, int64_t KW, std::vector<int64_t> stride, std::vector<int64_t> padding,
                 std::vector<int64_t> dilation) {
  c10::cuda::CUDAGuard guard(x.device());
  TORCH_CHECK(wf.dim() == 3 && wf.size(2) == 32 && wf.is_contiguous(), "conv2d_stem: wf must be [O, KH, 32]");
  auto s = conv_shape(x, out, (int)wf.size(0), (int)wf.size(1), (int)KW, (int)x.size(1), 1, stride, padding,
                      dilation);
  auto p = make_epi(out, bias, scale, mult, shift, residual, res_mult, res_scale, lo, hi, s.O);
  if (s.M == 0 || s.O == 0) return;
  check(i8c::conv_sm90_built(s, x.data_ptr<int8_t>(), wf.data_ptr<int8_t>(), p, num_sms(),
                             c10::cuda::getCurrentCUDAStream().stream()));
}

// layout 0: same memory order (x dense), layout 1: x NCHW contiguous -> q channels-last.
void quantize(const at::Tensor& x, at::Tensor& q, double inv_scale, int64_t layout, int64_t N, int64_t C,
              int64_t HW) {
  c10::cuda::CUDAGuard guard(x.device());
  check(i8c::quantize(x.data_ptr(), kind_of(x.scalar_type()), q.data_ptr<int8_t>(), x.numel(), (int)layout, (int)N,
                      (int)C, HW, (float)inv_scale, c10::cuda::getCurrentCUDAStream().stream()));
}

void dequantize(const at::Tensor& q, at::Tensor& y, double scale) {
  c10::cuda::CUDAGuard guard(q.device());
  check(i8c::dequantize(q.data_ptr<int8_t>(), y.data_ptr(), kind_of(y.scalar_type()), q.numel(), (float)scale,
                        c10::cuda::getCurrentCUDAStream().stream()));
}

// x [N, C, H, W] channels-last int8 -> y [N, Cp, I, OW] channels-last int8 (see launch.h).
void fold_window(const at::Tensor& x, at::Tensor& y, int64_t KW, int64_t sw, int64_t dw, int64_t pl, int64_t R,
                 int64_t row_step, int64_t row_off) {
  c10::cuda::CUDAGuard guard(x.device());
  check(i8c::fold_window(x.data_ptr<int8_t>(), y.data_ptr<int8_t>(), (int)x.size(0), (int)x.size(2), (int)x.size(3),
                         (int)x.size(1), (int)y.size(2), (int)y.size(3), (int)KW, (int)sw, (int)dw, (int)pl, (int)R,
                         (int)row_step, (int)row_off, (int)y.size(1), c10::cuda::getCurrentCUDAStream().stream()));
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("linear", &linear);
  m.def("conv2d", &conv2d);
  m.def("quantize", &quantize);
  m.def("dequantize", &dequantize);
  m.def("fold_window", &fold_window);
  m.def("conv2d_stem", &conv2d_stem);
}
