#!/usr/bin/env bash
# GPU check for the `cuda` kernel target: build, bit-exact tests, compute-sanitizer memcheck over a small
# kernel test, benchmark; prints a short table last. Run from the repository root on a CUDA machine.
#   OUT=<log dir> (default ./out/gpu_check)   STAGES="build test sanitize resident_b sm75 bench" (default all)
#   sm75: the kernel tests again with INT8COMPILE_CUDA_EMULATE_CC=75 (the sm75 build as PTX, JIT-compiled
#   onto this GPU: four m8n8k16 per m16n8k32 and plain loads instead of cp.async)
#   BENCH_ARGS="..." extra arguments for benchmarks/bench_cuda.py
#   resident_b: the kernel tests with INT8COMPILE_SM90_RESIDENT_B=1 (weights tile loaded once per CTA
#   wherever possible; by default only where a CTA runs >= 4 tiles, which the small test shapes rarely reach)
#   models: benchmarks/bench_cuda_models.py (whole models vs fp16 eager / inductor / torchao), MODELS_ARGS="..."
#   CUDA_BUILD_TGZ=out/cuda_build.tgz: reuse a build carried from an earlier machine for the files of
#   csrc/cuda it was made from (scripts/cuda_build_cache.sh; a warm machine keeps its own); the build is
#   saved to $OUT/cuda_build.tgz for the next call,
#   as $OUT/cuda_build.tgz.part-aa, -ab, ... when over 15 MB (copy the parts into out/, carry them)
set -uo pipefail
OUT=${OUT:-$PWD/out/gpu_check}
STAGES=${STAGES:-"build test sanitize resident_b sm75 bench"}
BENCH_ARGS=${BENCH_ARGS:-""}
MODELS_ARGS=${MODELS_ARGS:-""}
PY=${PY:-python3}
mkdir -p "$OUT"
export INT8COMPILE_CACHE=${INT8COMPILE_CACHE:-/tmp/int8compile_cache}
export MAX_JOBS=${MAX_JOBS:-16}
export PYTHONUNBUFFERED=1
declare -A RESULT
has() { [[ " $STAGES " == *" $1 "* ]]; }

{
  date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  nvcc --version | tail -1
  $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
} 2>&1 | tee "$OUT/env.txt"

if has build; then
  [ -n "${CUDA_BUILD_TGZ:-}" ] && bash scripts/cuda_build_cache.sh restore "$CUDA_BUILD_TGZ"
  t0=$(date +%s)
  if $PY -c "
import logging, sys
from int8compile.kernels import cuda
m = cuda.ext()
print('built', m.__file__)
" >"$OUT/build.log" 2>&1; then
    RESULT[build]="ok ($(( $(date +%s) - t0 )) s)"
    bash scripts/cuda_build_cache.sh save "$OUT/cuda_build.tgz" >> "$OUT/build.log"
    so=$(find "$INT8COMPILE_CACHE" -name 'int8compile_cuda*.so' | head -1)
    if command -v cuobjdump >/dev/null && [ -n "$so" ]; then
      cuobjdump -sass "$so" > "$OUT/sass.txt" 2>&1 || true
      echo "SASS instruction counts (IGMMA = wgmma int8, IMMA = mma.sync, IDP = dp4a, UTMALDG = TMA):" >> "$OUT/build.log"
      grep -oE "\b(IGMMA|IMMA|IDP|UTMALDG|LDSM|HGMMA)\b" "$OUT/sass.txt" | sort | uniq -c >> "$OUT/build.log"
      grep -cE "\b(LDL|STL)\b" "$OUT/sass.txt" | sed 's/^/local-memory instructions: /' >> "$OUT/build.log"
      rm -f "$OUT/sass.txt"
    fi
  else
    RESULT[build]="FAILED"
  fi
  tail -30 "$OUT/build.log"
fi

if has test && [ "${RESULT[build]:-ok}" != "FAILED" ]; then
  timeout ${TEST_TIMEOUT:-400} $PY -m pytest -q -p no:cacheprovider tests/test_cuda_kernels.py tests/test_gpu_end_to_end.py -rf --timeout=120 2>&1 | tee "$OUT/tests.log" | tail -40
  RESULT[test]=$(grep -E "passed|failed|error" "$OUT/tests.log" | tail -1)
fi

if has sanitize && [ "${RESULT[build]:-ok}" != "FAILED" ]; then
  if command -v compute-sanitizer >/dev/null; then
    I8C_SANITIZER=1 timeout ${SAN_TIMEOUT:-240} compute-sanitizer --tool memcheck --error-exitcode 3 --print-limit 20 \
      $PY -m pytest -q -p no:cacheprovider tests/test_cuda_kernels.py -k sanitizer_small >"$OUT/sanitizer.log" 2>&1
    rc=$?
    RESULT[sanitize]="rc=$rc; $(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1); $(grep -E 'passed|failed' "$OUT/sanitizer.log" | tail -1)"
    tail -15 "$OUT/sanitizer.log"
  else
    RESULT[sanitize]="compute-sanitizer not found"
  fi
fi

if has resident_b && [ "${RESULT[build]:-ok}" != "FAILED" ]; then
  # the kernel tests again with the weights tile kept resident per CTA wherever possible
  INT8COMPILE_SM90_RESIDENT_B=1 timeout ${TEST_TIMEOUT:-400} $PY -m pytest -q -p no:cacheprovider tests/test_cuda_kernels.py \
    -rf --timeout=120 2>&1 | tee "$OUT/tests_resident_b.log" | tail -5
  RESULT[resident_b]=$(grep -E "passed|failed|error" "$OUT/tests_resident_b.log" | tail -1)
fi

if has sm75; then
  INT8COMPILE_CUDA_EMULATE_CC=75 timeout ${TEST_TIMEOUT:-400} $PY -m pytest -q -p no:cacheprovider tests/test_cuda_kernels.py \
    -rf --timeout=300 2>&1 | tee "$OUT/tests_sm75.log" | tail -15
  RESULT[sm75]=$(grep -E "passed|failed|error" "$OUT/tests_sm75.log" | tail -1)
fi

if has bench && [ "${RESULT[build]:-ok}" != "FAILED" ]; then
  timeout ${BENCH_TIMEOUT:-480} $PY benchmarks/bench_cuda.py --out "$OUT/cuda_bench.md" $BENCH_ARGS 2>&1 | tee "$OUT/bench.log" | grep -vE '^(\||row:|conv:)' | tail -5
  RESULT[bench]="see $OUT/cuda_bench.md"
fi

if has models && [ "${RESULT[build]:-ok}" != "FAILED" ]; then
  timeout ${MODELS_TIMEOUT:-480} $PY benchmarks/bench_cuda_models.py --no-write $MODELS_ARGS 2>&1 | tee "$OUT/models.log" | grep -E '^(==|latency|throughput|\|)' | tail -12
  RESULT[models]="see $OUT/models.log"
fi

echo
echo "================ gpu_check summary ================"
for k in build test sanitize resident_b sm75 bench models; do
  [ -n "${RESULT[$k]:-}" ] && printf "%-9s %s\n" "$k" "${RESULT[$k]}"
done
if [ -f "$OUT/bench.log" ]; then sed -n '/=== summary ===/,$p' "$OUT/bench.log"; fi
if [ -f "$OUT/models.log" ]; then sed -n '/^### Latency/,$p' "$OUT/models.log" | grep -E '^(###|\|)'; fi
