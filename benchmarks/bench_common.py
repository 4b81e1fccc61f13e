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


def failure_note(e: Exception) -> str:
    """One line for a contender that failed: the exception type and the first line of its message (a bare
    AssertionError has none)."""
    lines = str(e).splitlines()
    return f"{type(e).__name__}: {lines[0][:160] if lines else ''}"


def model_row(name: str, med: dict, order: list, ratio_to: list, err_of: list, errs: dict, notes: dict,
              digits: int) -> str:
    """One markdown row of a whole-model table: ms per contender in `order` ("failed" where it could not
    run), int8compile's speedup over each of `ratio_to`, the max rel. errors of `err_of`, then why the
    failed contenders failed."""
    ours = med.get("int8compile")
    cells = [f"{med[c]:.{digits}f}" if c in med else "failed" for c in order]
    cells += [f"{med[c] / ours:.2f}x" if ours and c in med else "n/a" for c in ratio_to]
    cells += [f"{errs.get(c, float('nan')):.3g}" for c in err_of]
    return "| " + " | ".join([name, *cells]) + " |" + "".join(f" {c} failed: {n}" for c, n in notes.items())
