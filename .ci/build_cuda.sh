#!/usr/bin/env bash
# Compile-only check of the CUDA kernel sources (no GPU needed): catches build breaks in csrc/cuda on
# the CPU CI machine. Builds every .cu file for sm_90a (wgmma/TMA path), sm_80 (mma.sync path) and
# sm_75 (m8n8k16 mma.sync) with the same numerics flags the extension uses, and checks binding.cpp's
# syntax against the installed torch's headers. Skips (exit 0) when nvcc is not installed.
#   usage: .ci/build_cuda.sh            (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-nvcc}
if ! command -v "$NVCC" >/dev/null; then
  echo "build_cuda: nvcc not found, skipping"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
jobs=()
for arch in "compute_90a,code=sm_90a" "compute_80,code=sm_80" "compute_75,code=sm_75"; do
  for f in csrc/cuda/*.cu; do
    o="$tmp/$(basename "$f" .cu)_${arch##*=}.o"
    echo "nvcc -c $f ($arch)"
    "$NVCC" -c -std=c++17 -O3 --fmad=false -Werror all-warnings -gencode=arch=$arch "$f" -o "$o" &
    jobs+=($!)
  done
done
# binding.cpp against the installed torch's headers (syntax only: nothing here links against CUDA torch).
# A CPU torch wheel ships c10/cuda but not its generated cuda_cmake_macros.h, so a stub stands in.
cuda_inc=""
for d in "$(dirname "$(readlink -f "$(command -v "$NVCC")")")/../include" /usr/local/cuda/include /usr/local/cuda-*/include; do
  [ -f "$d/cuda_runtime.h" ] && { cuda_inc=$d; break; }
done
if [ -n "$cuda_inc" ] && command -v python3-config >/dev/null && inc=$(python3 -c "from torch.utils import cpp_extension as c; print(' '.join('-I' + p for p in c.include_paths()))" 2>/dev/null); then
  mkdir -p "$tmp/stub/c10/cuda/impl"
  printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$tmp/stub/c10/cuda/impl/cuda_cmake_macros.h"
  echo "c++ -fsyntax-only csrc/cuda/binding.cpp"
  ${CXX:-c++} -std=c++17 -fsyntax-only -w -I"$tmp/stub" $inc -I"$cuda_inc" $(python3-config --includes) \
    csrc/cuda/binding.cpp &
  jobs+=($!)
else
  echo "binding.cpp: torch or the CUDA headers not found, syntax check skipped"
fi
rc=0
for j in "${jobs[@]}"; do wait "$j" || rc=1; done
[ $rc -eq 0 ] && echo "build_cuda: ok" || echo "build_cuda: FAILED"
exit $rc
