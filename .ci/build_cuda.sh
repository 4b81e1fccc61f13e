#!/usr/bin/env bash
# Compile-only check of the CUDA kernel sources (no GPU needed): catches build breaks in csrc/cuda on
# the CPU CI machine. Builds every .cu file for sm_90a (wgmma/TMA path), sm_80 (mma.sync path) and
# sm_75 (m8n8k16 mma.sync) with the same numerics flags the extension uses. Skips (exit 0) when nvcc is not installed.
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
rc=0
for j in "${jobs[@]}"; do wait "$j" || rc=1; done
[ $rc -eq 0 ] && echo "build_cuda: ok" || echo "build_cuda: FAILED"
exit $rc
