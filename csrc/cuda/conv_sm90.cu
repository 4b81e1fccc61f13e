// The wgmma implicit-GEMM conv2d: its entry point, and the tile configs with every epilogue compiled
// in (float outputs and split-K take these). conv_sm90_<mode>.cu hold the epilogue-specialised ones.
#include <cstdlib>

#include "conv_sm90.cuh"

namespace i8c {

I8C_CONV_SM90_INSTANCE(, EPI_ANY);

const char* conv_sm90(int cfg, const ConvShape& s, const int8_t* x, const int8_t* w, const EpiParams& p,
                      int num_sms, int splits, int32_t* ws, int* cnt, cudaStream_t stream) {
  if (s.groups != 1) return "conv_sm90: groups must be 1";
  if (cfg < 0 || cfg >= kConvConfigs) return "unknown conv_sm90 tile config";
  if (s.C % kConvBK[cfg]) return "conv_sm90: channels must be a multiple of the k-block";
  // INT8COMPILE_SM90_CONV_GENERIC=1: the kernels with every epilogue only (A/B of the specialised ones)
  const char* generic = std::getenv("INT8COMPILE_SM90_CONV_GENERIC");
  const bool generic_only = generic && generic[0] == '1';
  // the float-requant int8 kernels take their weights channel-permuted in groups of 16 (make_perm16_map):
  // other channel counts run the kernels with every epilogue
  const bool specialised = splits <= 1 && p.mode != FLOAT_OUT && !generic_only && (p.mode != INT8_FLOAT || s.O % 16 == 0);
  if (specialised) {
    const bool res = p.residual != nullptr;
    if (p.mode == INT8_FLOAT)
      return res ? conv_sm90_cfg<epi_code(INT8_FLOAT, true)>(cfg, s, x, w, p, num_sms, 1, ws, cnt, stream)
                 : conv_sm90_cfg<epi_code(INT8_FLOAT, false)>(cfg, s, x, w, p, num_sms, 1, ws, cnt, stream);
    return res ? conv_sm90_cfg<epi_code(INT8_FIXED, true)>(cfg, s, x, w, p, num_sms, 1, ws, cnt, stream)
               : conv_sm90_cfg<epi_code(INT8_FIXED, false)>(cfg, s, x, w, p, num_sms, 1, ws, cnt, stream);
  }
  return conv_sm90_cfg<EPI_ANY>(cfg, s, x, w, p, num_sms, splits, ws, cnt, stream);
}

const char* conv_sm90_built(const ConvShape& s, const int8_t* x, const int8_t* wf, const EpiParams& p, int num_sms,
                            cudaStream_t stream) {
  if (s.groups != 1 || s.dw != 1) return "conv_sm90_built: needs groups == 1 and no column dilation";
  if (s.KW * s.C > 32) return "conv_sm90_built: a filter row must fit 32 bytes (KW * C <= 32)";
  if ((s.W * s.C) % 4 || (uintptr_t)x % 4 || (uintptr_t)wf % 16)
    return "conv_sm90_built: needs 4-byte input rows and aligned x / weights";
  ConvShape f = s;
  f.K = s.KH * 32;  // the weights' (and A's) k layout: one zero-padded 32-byte block per filter row
  return sm90::launch<128, 64, 32, 12, false, 1, true, EPI_ANY, true>(x, wf, f.M, f.O, f.K, p, num_sms, 0, 1,
                                                                      nullptr, nullptr, stream, &f);
}

}  // namespace i8c
