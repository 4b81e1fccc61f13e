"""Shared bits of the benchmark scripts."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path


def git_commit() -> str:
    """Short hash of the checkout the benchmark runs from, and a hash of the sources themselves (the
    copy of the tree on a GPU machine may carry a stale .git: `scripts/source_hash.py` tells which
    commit a sources hash belongs to)."""
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parent)
        head = r.stdout.strip() or "unknown"
    except OSError:
        head = "unknown"
    return f"{head}, sources {source_hash()}"


def source_hash(root: Path = Path(__file__).resolve().parents[1]) -> str:
    """sha256 (10 hex digits) over the package and kernel sources: int8compile/**.py and csrc/**."""
    h = hashlib.sha256()
    files = sorted([*root.glob("int8compile/**/*.py"), *(f for f in root.glob("csrc/**/*") if f.is_file())])
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:10]
