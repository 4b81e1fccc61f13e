"""Builds a C++/CUDA extension on first use (torch.utils.cpp_extension + ninja) and caches it.

The cache lives under $INT8COMPILE_CACHE (default ~/.cache/int8compile/<torch version>); a second
process loads the built library in well under a second. A target whose build fails is reported once
and its kernels decline every call, so the registry falls back to the reference target.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Sequence

import torch

log = logging.getLogger(__name__)

CSRC = Path(__file__).resolve().parents[2] / "csrc"


def cache_dir() -> Path:
    root = os.environ.get("INT8COMPILE_CACHE", str(Path.home() / ".cache" / "int8compile"))
    path = Path(root) / f"torch-{torch.__version__.replace('+', '_')}"
    path.mkdir(parents=True, exist_ok=True)
    return path


class BuildError(RuntimeError):
    pass


@functools.cache
def load_extension(name: str, sources: Sequence[str], *, cflags: Sequence[str] = (),
                   cuda_cflags: Sequence[str] = (), ldflags: Sequence[str] = ()) -> ModuleType:
    """Compile (or load from cache) the extension `name` from csrc-relative `sources`."""
    from torch.utils import cpp_extension

    paths = [CSRC / s for s in sources]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise BuildError(f"kernel sources not found: {missing} (install with `pip install -e .` "
                         f"from a checkout so csrc/ is next to the package)")
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        raise BuildError("no C++ compiler on PATH (set CXX or install g++)")
    build_dir = cache_dir() / name
    build_dir.mkdir(parents=True, exist_ok=True)
    log.info("building int8 kernels %r in %s (first use only; cached afterwards)", name, build_dir)
    try:
        with _progress(f"int8: building {name} (first use; cached after)", build_dir):
            return cpp_extension.load(
                name=name, sources=[str(p) for p in paths], build_directory=str(build_dir),
                extra_cflags=list(cflags), extra_cuda_cflags=list(cuda_cflags),
                extra_ldflags=list(ldflags), verbose=log.isEnabledFor(logging.DEBUG))
    except Exception as e:  # compiler missing, compile error, ninja missing: all mean "no target"
        raise BuildError(f"building {name!r} failed: {e}") from e


@contextlib.contextmanager
def _progress(desc: str, build_dir: Path):
    """A ticking progress bar (seconds) while a build runs; silent when the build is cached."""
    from tqdm.auto import tqdm

    done = threading.Event()

    def tick():
        if done.wait(1.0):                        # a cached load finishes within a second
            return
        with tqdm(desc=desc, unit="s", bar_format="{desc}: {elapsed}") as bar:
            while not done.wait(1.0):
                bar.update(1)
    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@functools.cache
def warn_once(target: str, reason: str) -> None:
    warnings.warn(f"int8compile: the {target!r} kernels are unavailable ({reason}); "
                  f"falling back to the reference kernels", RuntimeWarning, stacklevel=3)
