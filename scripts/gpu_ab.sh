#!/usr/bin/env bash
# A/B of two versions of the CUDA kernels on one GPU machine: A = the csrc/cuda of a tarball (e.g. main),
# B = this tree's. Each builds into its own cache (the two builds run side by side), then
# benchmarks/bench_cuda.py runs A, B, A (ROUNDS=n: n B runs, each between two A runs; A's spread shows the
# machine's drift) in separate processes with the same arguments; per-layer "ours" times and the summary
# lines print last. Python (planner, benchmark) is this tree's for both.
#   git archive <rev> csrc/cuda | gzip > out/a_csrc.tgz        (here, before the device call; add
#   int8compile to the archive when the routing changed too: it replaces A's copy of this tree's)
#   A_CSRC=out/a_csrc.tgz BENCH_ARGS="--skip-gemm --requant float --batches 256" bash scripts/gpu_ab.sh
#   A_BUILD_TGZ / B_BUILD_TGZ: builds carried from an earlier call (scripts/cuda_build_cache.sh restore: reused
#   where the sources match); TESTS=1: the kernel tests of B first. Logs under $OUT (default ./out/gpu_ab).
set -uo pipefail
: "${A_CSRC:?A_CSRC=<tarball of csrc/cuda (git archive)>}"
OUT=${OUT:-$PWD/out/gpu_ab}
BENCH_ARGS=${BENCH_ARGS:-"--skip-gemm --requant float --batches 256"}
PY=${PY:-python3}
export MAX_JOBS=${MAX_JOBS:-16} PYTHONUNBUFFERED=1
mkdir -p "$OUT"
root=$PWD a_tree=/tmp/gpu_ab_a a_cache=/tmp/gpu_ab_cache_a b_cache=${INT8COMPILE_CACHE:-/tmp/int8compile_cache}

rm -rf "$a_tree" && mkdir -p "$a_tree" && cp -r int8compile benchmarks scripts "$a_tree"/ && tar xzf "$A_CSRC" -C "$a_tree"
[ -d "$a_tree/csrc/cuda" ] || { echo "gpu_ab: $A_CSRC has no csrc/cuda"; exit 2; }
build() {  # tree cache carried-build log
  (cd "$1" && export INT8COMPILE_CACHE="$2" &&
    { [ -z "$3" ] || bash scripts/cuda_build_cache.sh restore "$3"; } &&
    $PY -c "from int8compile.kernels import cuda; cuda.ext(); print('built')") > "$4" 2>&1
}
build "$a_tree" "$a_cache" "${A_BUILD_TGZ:+$root/$A_BUILD_TGZ}" "$OUT/build_a.log" &
build "$root" "$b_cache" "${B_BUILD_TGZ:-}" "$OUT/build_b.log"
rc_b=$?
wait $!
rc_a=$?
[ $rc_a -eq 0 ] && [ $rc_b -eq 0 ] || { echo "gpu_ab: build failed (A rc=$rc_a, B rc=$rc_b)"; tail -5 "$OUT"/build_*.log; exit 1; }

if [ "${TESTS:-0}" = 1 ]; then
  INT8COMPILE_CACHE=$b_cache timeout 300 $PY -m pytest -q -p no:cacheprovider tests/test_cuda_kernels.py -rf \
    > "$OUT/tests_b.log" 2>&1
  echo "B kernel tests: $(grep -E 'passed|failed' "$OUT/tests_b.log" | tail -1)"
fi
bench() {  # label tree cache
  (cd "$2" && INT8COMPILE_CACHE="$3" timeout 300 $PY benchmarks/bench_cuda.py $BENCH_ARGS --out "/tmp/gpu_ab_$1.md") \
    > "$OUT/bench_$1.log" 2>&1
}
runs="a1"
bench a1 "$a_tree" "$a_cache"
for ((i = 1; i <= ${ROUNDS:-1}; i++)); do
  bench "b$i" "$root" "$b_cache"
  bench "a$((i + 1))" "$a_tree" "$a_cache"
  runs="$runs b$i a$((i + 1))"
done
for run in $runs; do
  echo "== $run ($(grep -oE 'sources [0-9a-f]+' "$OUT/bench_$run.log" | head -1))"
  sed -n '/^=== summary ===/,$p' "$OUT/bench_$run.log" | tail -n +2
done
echo "ours, us per call, by run:"
for run in $runs; do
  grep -E '^conv:' "$OUT/bench_$run.log" | sed -E 's/^conv: ([^:]*): ours=([0-9.]+)us.*/\2/' > "$OUT/ours_$run.txt"
done
{ echo "layer $runs"
  paste -d' ' <(grep -E '^conv:' "$OUT/bench_a1.log" | sed -E 's/^conv: C=([0-9]+) O=([0-9]+) k=([0-9]+) s=([0-9]+) H=([0-9]+):.*/\1:\2:\3:\4:\5/') \
    $(for run in $runs; do echo "$OUT/ours_$run.txt"; done); } |
  awk '{ printf "%-16s", $1; for (i = 2; i <= NF; i++) printf " %7s", $i; print "" }'
