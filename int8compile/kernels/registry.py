"""Kernel registry: (op, target) -> implementation, each with a capability check and a priority.

A target is one module that calls `register` for the ops it implements (kernels/reference.py is the
model). The lower pass asks `select` for the best capable kernel for a node; every kernel that was
rejected comes back with its reason, so the report can say why a faster target was not used.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)

OPS = ("quantize", "dequantize", "linear", "conv2d", "linear_gelu")


@dataclass(frozen=True)
class OpCall:
    """What a capability check may look at: the op, its tensor metadata and its scalar arguments."""
    op: str
    device: str                                   # "cpu" or "cuda"
    shapes: dict[str, tuple[int, ...]]            # e.g. {"x": (M, K), "weight": (N, K)}
    dtypes: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)   # stride, groups, requant mode, ...


# A capability check returns None when the kernel can run the call, else the reason it cannot.
Check = Callable[[OpCall], Optional[str]]


@dataclass(frozen=True)
class Kernel:
    op: str
    target: str
    fn: Callable
    check: Check
    priority: int
    device: Optional[str] = None                  # "cpu" / "cuda"; None: runs anywhere
    describe: Optional[Callable[[OpCall], str]] = None  # which variant will run (for the report)


_KERNELS: dict[tuple[str, str], Kernel] = {}


def register(op: str, target: str, *, priority: int, check: Check = lambda call: None,
             device: Optional[str] = None, describe: Optional[Callable[[OpCall], str]] = None):
    """Decorator: register `fn` as the `target` implementation of `op` (for one device, or any).
    describe(call), where given, names the kernel variant the target will run (e.g. its tile config)."""
    if op not in OPS:
        raise ValueError(f"unknown int8 op {op!r}; known: {OPS}")

    def wrap(fn: Callable) -> Callable:
        _KERNELS[(op, target)] = Kernel(op, target, fn, check, priority, device, describe)
        return fn
    return wrap


def lookup(op: str, target: str) -> Kernel:
    try:
        return _KERNELS[(op, target)]
    except KeyError:
        raise RuntimeError(f"no {target!r} kernel for int8 op {op!r}; registered targets: "
                           f"{sorted(t for o, t in _KERNELS if o == op)}") from None


def has_fast_kernel(op: str, device: str) -> bool:
    """Whether a target other than the reference implements `op` on `device`."""
    return any(o == op and k.target != "reference" and k.device in (None, device)
               for (o, _), k in _KERNELS.items())


def targets() -> list[str]:
    return sorted({t for _, t in _KERNELS})


def target_modules() -> dict[str, list[str]]:
    """{module that implements kernels: [its target names]}, e.g. cuda.py -> [cuda, cuda_dp4a]."""
    modules: dict[str, set[str]] = {}
    for kernel in _KERNELS.values():
        modules.setdefault(kernel.fn.__module__, set()).add(kernel.target)
    return {m: sorted(t) for m, t in sorted(modules.items())}


def select(call: OpCall, wanted: str = "auto") -> tuple[Kernel, dict[str, str]]:
    """Best capable kernel for `call` (highest priority; only `wanted` unless "auto").

    Returns (kernel, {rejected target: reason}). The reference target accepts every call, so when
    the wanted target cannot run it, the call falls back to the reference with the reason recorded.
    """
    rejected: dict[str, str] = {}
    candidates = sorted((k for (op, _), k in _KERNELS.items() if op == call.op),
                        key=lambda k: -k.priority)
    for kernel in candidates:
        if wanted not in ("auto", kernel.target) and kernel.target != "reference":
            continue
        if wanted == "auto" and kernel.device not in (None, call.device):
            continue                              # another device's target: not worth a mention
        reason = kernel.check(call)
        if reason is None:
            if wanted not in ("auto", "reference") and kernel.target == "reference":
                rejected.setdefault(wanted, f"target {wanted!r} has no {call.op} kernel")
            return kernel, rejected
        rejected[kernel.target] = reason
    raise RuntimeError(f"no kernel can run {call.op}: {rejected}")
