"""The int8 compiler pipeline, in order. Each pass is `fn(gm, ctx) -> gm`, one per file in passes/.

    capture -> normalize -> fold_batchnorm -> match -> annotate -> observe
        ... calibration: the user runs batches; observers record ranges (calibration.py) ...
    convert -> lower -> fuse_attention -> compile

The first half runs when Dynamo hands us a graph; the second when calibration ends (or when a graph
compiled later adopts a finished calibration). Parameters are read at `capture` and quantized at
`convert`: the weights as they are when calibration ends are frozen into the program.
"""
from __future__ import annotations

import copy
import logging
from typing import Callable

from torch import fx

from .passes.annotate import annotate
from .passes.attention import fuse_attention
from .passes.capture import capture
from .passes.compile_rest import compile_rest
from .passes.context import PassContext
from .passes.convert import convert
from .passes.fold_batchnorm import fold_batchnorm
from .passes.lower import lower
from .passes.match import match
from .passes.normalize import normalize
from .passes.observe import observe

log = logging.getLogger(__name__)

BEFORE_CALIBRATION = (capture, normalize, fold_batchnorm, match, annotate, observe)
AFTER_CALIBRATION = (convert, lower, fuse_attention)
# ...and then compile_rest, which turns the graph into the callable that runs.


def prepare(gm: fx.GraphModule, ctx: PassContext) -> fx.GraphModule:
    """Dynamo's graph -> the observed float graph (runs float, records ranges while calibrating)."""
    for stage in BEFORE_CALIBRATION:
        gm = stage(gm, ctx)
        log.debug("after %s:\n%s", stage.__name__, gm.code)
    return gm


def finalize(observed: fx.GraphModule, ctx: PassContext) -> tuple[fx.GraphModule, Callable]:
    """The observed graph + ctx.scales -> (the int8 graph, the compiled callable that runs it)."""
    gm = copy.deepcopy(observed)
    for stage in AFTER_CALIBRATION:
        gm = stage(gm, ctx)
        log.debug("after %s:\n%s", stage.__name__, gm.code)
    return gm, compile_rest(gm, ctx)
