"""int8compile: torch.compile(model, backend="int8") for static int8 inference."""
from . import ops  # noqa: F401  (registers the int8 op schemas)
