"""Which commit a benchmark ran: results headers carry `sources <hash>` (benchmarks/bench_common.py),
a hash of int8compile/**.py and csrc/** that does not depend on the .git of the machine it ran on.

    python scripts/source_hash.py                 # the working tree's hash
    python scripts/source_hash.py HASH [-n 50]    # the recent commits whose sources hash to HASH
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_common import source_hash  # noqa: E402


def hash_of(rev: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "archive", rev, "int8compile", "csrc"], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        Path(tmp, "src.tar").write_bytes(archive)
        with tarfile.open(Path(tmp, "src.tar")) as tar:
            tar.extractall(Path(tmp, "tree"), filter="data")
        return source_hash(Path(tmp, "tree"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hash", nargs="?")
    ap.add_argument("-n", type=int, default=50, help="how many recent commits to search")
    a = ap.parse_args()
    if a.hash is None:
        print(source_hash())
        return
    revs = subprocess.run(["git", "rev-list", f"-{a.n}", "--all"], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.split()
    hits = [r[:10] for r in revs if hash_of(r) == a.hash]
    print("\n".join(hits) if hits else f"no commit among the last {a.n} has sources {a.hash}")


if __name__ == "__main__":
    main()
