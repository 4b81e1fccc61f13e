"""Shared bits of the benchmark scripts."""
from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit() -> str:
    """Short hash of the checkout the benchmark runs from (for the results header), or 'unknown'."""
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parent)
    except OSError:
        return "unknown"
    return r.stdout.strip() or "unknown"
