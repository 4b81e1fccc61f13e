"""Kernel targets. Importing this package registers every target; see registry.py."""
from . import inductor, registry, reference  # noqa: F401  (each target registers itself)
from . import targets  # noqa: F401  (the compiled targets: cpu, cuda; each checks what it can do)
