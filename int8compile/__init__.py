"""int8compile: torch.compile(model, backend="int8") for static int8 inference.

    cm = torch.compile(model, backend="int8")
    with int8compile.calibrate(cm):
        for x in batches: cm(x)
    y = cm(x)
    print(int8compile.report(cm))
"""
from . import ops  # noqa: F401  (registers the int8 op schemas)
from .backend import int8_backend, register as _register
from .calibration import CalibrationError, calibrate, calibrate_batches
from .calibration import load as load_calibration
from .calibration import save as save_calibration
from .numerics import RequantMode
from .observers import RangeError
from .options import Options
from .passes.match import counters
from .program import NotCalibratedError
from .report import report

_register()

__all__ = ["calibrate", "calibrate_batches", "report", "save_calibration", "load_calibration",
           "Options", "RequantMode", "int8_backend", "CalibrationError", "RangeError",
           "NotCalibratedError", "counters"]
__version__ = "0.1.0"
