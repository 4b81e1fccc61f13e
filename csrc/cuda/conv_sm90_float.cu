// The wgmma conv tile configs (conv_sm90.cuh) with one epilogue compiled in: int8 out, float requant, no residual add.
#include "conv_sm90.cuh"

namespace i8c {
I8C_CONV_SM90_INSTANCE(, epi_code(INT8_FLOAT, false));
}  // namespace i8c
