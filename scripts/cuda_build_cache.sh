#!/usr/bin/env bash
# Carry the CUDA extension build from one GPU machine to the next (a device call may start a fresh
# machine, and the build takes about two minutes of its time). ninja decides by mtimes (and the nvcc
# depfiles it recorded), and a copied working tree's sources are newer than any carried object, so
# `restore` backdates each source whose contents hash to what the carried build was made from: the
# changed ones (and, through the depfiles, whatever includes them) are rebuilt, so a stale object is
# never loaded.
#   INT8COMPILE_CACHE=... scripts/cuda_build_cache.sh save FILE.tgz      after a build (mtimes kept)
#   INT8COMPILE_CACHE=... scripts/cuda_build_cache.sh restore FILE.tgz   before the first kernel call
# SRC_DIR (default csrc/cuda): the sources the build hashes. An archive over 15 MB is saved as
# FILE.tgz.part-aa, -ab, ... (the device tool returns files of at most 16 MB); restore takes either.
set -euo pipefail
cmd=${1:?save or restore} tgz=${2:?archive path}
cache=${INT8COMPILE_CACHE:?set INT8COMPILE_CACHE}
src=${SRC_DIR:-csrc/cuda}
hash=$(cat "$src"/* | sha256sum | cut -d' ' -f1)
case $cmd in
  save)
    echo "$hash" > "$cache/sources.sha256"
    (cd "$src" && sha256sum -- *) > "$cache/sources.files.sha256"
    tar czf "$tgz" -C "$(dirname "$cache")" "$(basename "$cache")"
    echo "saved $cache ($(du -sh "$tgz" | cut -f1)) for $src $hash"
    if [ "$(stat -c %s "$tgz")" -gt $((15 * 1024 * 1024)) ]; then
      rm -f "$tgz".part-*
      split -b 15m "$tgz" "$tgz.part-" && rm "$tgz" && echo "split into $(ls "$tgz".part-* | xargs -n1 basename | tr '\n' ' ')"
    fi ;;
  restore)
    if [ ! -f "$tgz" ] && ls "$tgz".part-* >/dev/null 2>&1; then cat "$tgz".part-* > "$tgz"; fi
    if [ ! -f "$tgz" ]; then echo "no carried build at $tgz"; exit 0; fi
    # a warm machine's own build is newer than any carried one (extracting an older build over it once
    # left a stale object loaded): keep it, ninja rebuilds what changed since
    if [ -d "$cache" ]; then echo "build cache $cache present: kept, $tgz not restored"; exit 0; fi
    mkdir -p "$(dirname "$cache")"
    tar xzf "$tgz" -C "$(dirname "$cache")"
    if [ "$(cat "$cache/sources.sha256" 2>/dev/null)" = "$hash" ]; then
      touch -d 2000-01-01 "$src"/*
      echo "carried build matches $src: reused"
    elif [ -f "$cache/sources.files.sha256" ]; then
      same=$(cd "$src" && { sha256sum -c "$cache/sources.files.sha256" 2>/dev/null || true; } | sed -n 's/: OK$//p')
      for f in $same; do touch -d 2000-01-01 "$src/$f"; done
      echo "carried build is for other sources: unchanged files kept ($(echo $same | wc -w)), the rest rebuilt"
    else
      echo "carried build is for other sources: it will be rebuilt"
    fi ;;
  *) echo "usage: $0 save|restore FILE.tgz" >&2; exit 2 ;;
esac
