"""Imports the compiled kernel targets. Each registers its kernels with capability checks that say
why it cannot run (no compiler, no GPU, unsupported shape); importing never builds anything."""
import importlib
import logging

log = logging.getLogger(__name__)

COMPILED_TARGETS = ("cpu", "cuda")

for _name in COMPILED_TARGETS:
    try:
        importlib.import_module(f"{__package__}.{_name}")
    except ModuleNotFoundError as e:            # target not written yet in this checkout
        if e.name != f"{__package__}.{_name}":
            raise
