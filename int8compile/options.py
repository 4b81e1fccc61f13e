"""Backend options: `torch.compile(m, backend="int8", mode=..., options={...})` arrives here."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from .numerics import RequantMode

CALIBRATORS = ("minmax", "percentile", "mse")   # observers.CALIBRATORS; entropy: not yet
TARGETS = ("auto", "reference", "cpu", "cuda")
REST = ("inductor", "eager")
BEFORE_CALIBRATION = ("float", "error")
INDUCTOR_MODES = ("auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", None)
OP_KINDS = ("conv", "linear")


@dataclass(frozen=True)
class Options:
    calibrator: str = "minmax"            # how activation ranges are chosen from calibration data
    percentile: float = 99.99             # for calibrator="percentile": percentile of |x|
    requant: str = "float"                # float | fixed | pot  (docs/numerics.md section 4)
    target: str = "auto"                  # kernel target; auto = fastest capable for each node
    quantize: tuple[str, ...] = OP_KINDS  # which layer kinds to quantize
    skip: tuple[str, ...] = ()            # layer names (fnmatch patterns) to keep in float
    rest: str = "inductor"                # who compiles what stays float: inductor | eager
    before_calibration: str = "float"     # float (one warning) | error
    inductor_mode: Optional[str] = "auto"  # torch.compile's `mode` for inductor; auto: CUDA graphs on a GPU
    progress: bool = True                 # tqdm progress bars

    def __post_init__(self):
        _one_of("calibrator", self.calibrator, CALIBRATORS)
        _one_of("requant", self.requant, tuple(m.value for m in RequantMode))
        _one_of("target", self.target, TARGETS)
        _one_of("rest", self.rest, REST)
        _one_of("before_calibration", self.before_calibration, BEFORE_CALIBRATION)
        _one_of("inductor_mode", self.inductor_mode, INDUCTOR_MODES)
        for kind in self.quantize:
            _one_of("quantize", kind, OP_KINDS)
        if not 50.0 < self.percentile <= 100.0:
            raise ValueError(f"int8 option 'percentile' must be in (50, 100], got {self.percentile}")

    @property
    def requant_mode(self) -> RequantMode:
        return RequantMode(self.requant)

    @classmethod
    def from_compile_args(cls, mode: Optional[str] = None,
                          options: Optional[dict[str, Any]] = None) -> "Options":
        """Options from torch.compile's `mode` and `options` (unknown keys are an error)."""
        options = dict(options or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown int8 backend option(s) {unknown}; valid options: {sorted(known)}")
        for key in ("quantize", "skip"):
            if isinstance(options.get(key), str):
                options[key] = (options[key],)
            elif key in options:
                options[key] = tuple(options[key])
        if mode is not None:
            options.setdefault("inductor_mode", mode)
        return cls(**options)

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _one_of(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"int8 option {name!r} must be one of {allowed}, got {value!r}")
