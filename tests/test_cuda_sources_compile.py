"""The CUDA kernel sources compile (nvcc -c, sm_90a and sm_80) on a machine without a GPU, so CI
catches a build break; running them is scripts/gpu_check.sh's job on the GPU machine."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cuda_sources_compile():
    out = subprocess.run(["bash", str(ROOT / ".ci" / "build_cuda.sh")], capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert "build_cuda: ok" in out.stdout
