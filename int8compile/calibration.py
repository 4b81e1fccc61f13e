"""Calibration: the state machine of a compiled model, observing -> quantized.

`with calibrate(model):` opens a Session. Every int8 subgraph that runs inside it (one per graph
break, plus recompiles) attaches itself, and its observer hooks feed one table of histograms keyed by
tensor names that are stable across subgraphs. Leaving the block computes the scales and converts
every attached subgraph. Subgraphs that Dynamo compiles later (a new input shape, a branch not taken
while calibrating) adopt the finished session's scales on their first call.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import math
import weakref
from pathlib import Path
from typing import Iterable, Optional

import torch
from tqdm.auto import tqdm

from . import numerics
from .observers import Histogram, RangeError, choose_amax

log = logging.getLogger(__name__)

FORMAT = "int8compile-calibration"
VERSION = 1

_ACTIVE: contextvars.ContextVar[Optional["Session"]] = contextvars.ContextVar("int8_session", default=None)
_SESSIONS: "weakref.WeakKeyDictionary[object, Session]" = weakref.WeakKeyDictionary()
SUBGRAPHS: "weakref.WeakSet" = weakref.WeakSet()      # every int8 subgraph the backend produced


class CalibrationError(RuntimeError):
    pass


def owner(model) -> object:
    """The object calibration state hangs on: the original module/function behind torch.compile."""
    return getattr(model, "_orig_mod", None) or getattr(model, "_torchdynamo_orig_callable", None) or model


def record(key: str, x: torch.Tensor) -> None:
    session = _ACTIVE.get()
    if session is not None:
        session.record(key, x)


def active() -> Optional["Session"]:
    return _ACTIVE.get()


class Session:
    """Calibration state of one model: histograms while observing, scales once quantized."""

    def __init__(self, model):
        self.owner = owner(model)
        self.state = "observing"
        self.histograms: dict[str, Histogram] = {}
        self.last: dict[str, torch.Tensor] = {}          # last observed value per key (for SQNR)
        self.scales: dict[str, float] = {}
        self.amax: dict[str, float] = {}
        self.subgraphs: list = []
        self.param_ids = {id(t) for t in _tensors_of(self.owner)}
        self.progress: Optional[tqdm] = None

    # -- observing --
    def attach(self, subgraph) -> None:
        if subgraph not in self.subgraphs:
            self.subgraphs.append(subgraph)
        if subgraph is self.subgraphs[0] and self.progress is not None:
            self.progress.update(1)                       # one forward pass = one batch

    def record(self, key: str, x: torch.Tensor) -> None:
        self.histograms.setdefault(key, Histogram()).add(x, key)
        self.last[key] = x.detach()

    # -- observing -> quantized --
    def finish(self) -> None:
        if not self.subgraphs:
            raise CalibrationError("calibration saw no batches: call the compiled model at least once "
                                   "inside `with int8compile.calibrate(model):`")
        for sub in self.subgraphs:
            opts = sub.ctx.options
            for key in set(sub.ctx.tensor_keys.values()):
                if key not in self.scales:
                    amax = choose_amax(self.histograms.get(key, Histogram()), opts.calibrator,
                                       opts.percentile, key)
                    self.amax[key] = amax
                    self.scales[key] = numerics.activation_scale(amax)
        subs = tqdm(self.subgraphs, desc="int8: converting", unit="graph",
                    disable=not self._show_progress() or len(self.subgraphs) < 2)
        for sub in subs:
            sub.finalize(self.scales, sub.last_args)
            sub.measure_error(self.last)
            sub.last_args = None
        self.state = "quantized"
        self.last = {}                                    # free the last batch's activations
        log.info("int8 calibration finished: %d subgraph(s), %d tensor ranges",
                 len(self.subgraphs), len(self.scales))

    def _show_progress(self) -> bool:
        return bool(self.subgraphs) and self.subgraphs[0].ctx.options.progress

    # -- adoption by subgraphs compiled after calibration --
    def owns(self, subgraph) -> bool:
        return _owns(self.param_ids, subgraph)

    def missing_keys(self, subgraph) -> list[str]:
        return sorted(set(subgraph.ctx.tensor_keys.values()) - set(self.scales))


@contextlib.contextmanager
def calibrate(model, batches: Optional[Iterable] = None, progress: bool = True):
    """Calibrate a torch.compile(..., backend="int8") model.

        with int8compile.calibrate(cm):
            for x in batches: cm(x)

    or `int8compile.calibrate(cm, batches)` to run the batches itself (tuples are unpacked as
    positional arguments). Gradients are off while calibrating.
    """
    if _ACTIVE.get() is not None:
        raise CalibrationError("int8compile.calibrate blocks cannot be nested")
    session = Session(model)
    session.progress = tqdm(desc="int8: calibrating", unit="batch", disable=not progress)
    token = _ACTIVE.set(session)
    try:
        with torch.no_grad():
            if batches is not None:
                for batch in batches:
                    model(*batch) if isinstance(batch, (tuple, list)) else model(batch)
            yield session
    finally:
        _ACTIVE.reset(token)
        session.progress.close()
    session.finish()
    _SESSIONS[session.owner] = session


def calibrate_batches(model, batches: Iterable, progress: bool = True) -> "Session":
    """Function form: run `batches` through `model` inside a calibration block."""
    with calibrate(model, batches, progress) as session:
        pass
    return session


def session_of(model) -> Optional[Session]:
    return _SESSIONS.get(owner(model))


def adopt(subgraph) -> Optional[Session]:
    """The finished session whose scales a subgraph compiled after calibration takes, if any."""
    for session in list(_SESSIONS.values()):
        if session.state != "quantized" or not session.owns(subgraph):
            continue
        missing = session.missing_keys(subgraph)
        if missing:
            subgraph.uncalibrated_reason = (f"it has tensors the calibration never saw: {missing[:3]}"
                                            f"{'...' if len(missing) > 3 else ''}; recalibrate")
            return None
        session.subgraphs.append(subgraph)
        return session
    return None


# ---- saving and loading (JSON, never pickle) ----

def fingerprint(model) -> str:
    """Hash of the names and shapes of a model's parameters and buffers."""
    obj = owner(model)
    items = []
    if isinstance(obj, torch.nn.Module):
        items = [f"{n}:{tuple(t.shape)}" for n, t in list(obj.named_parameters()) + list(obj.named_buffers())]
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


def save(model, path) -> Path:
    session = session_of(model)
    if session is None or session.state != "quantized":
        raise CalibrationError("nothing to save: this model has not been calibrated "
                               "(run `with int8compile.calibrate(model): ...` first)")
    options = session.subgraphs[0].ctx.options.to_json() if session.subgraphs else {}
    doc = {"format": FORMAT, "version": VERSION, "fingerprint": fingerprint(model),
           "options": options,
           "tensors": {k: {"amax": session.amax.get(k), "scale": s} for k, s in sorted(session.scales.items())}}
    path = Path(path)
    path.write_text(json.dumps(doc, indent=1))
    return path


def load(model, path) -> Session:
    """Load scales saved by `save`; the model's subgraphs are converted on their next call."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CalibrationError(f"cannot read calibration file {path}: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CalibrationError(f"{path} is not an int8compile calibration file")
    if doc.get("version") != VERSION:
        raise CalibrationError(f"{path} has version {doc.get('version')}, this int8compile reads {VERSION}")
    if doc.get("fingerprint") != fingerprint(model):
        raise CalibrationError(f"{path} was calibrated for a different model (parameter names/shapes "
                               f"differ); recalibrate this model or load the file made for it")
    session = Session(model)
    try:
        for key, entry in doc["tensors"].items():
            scale = float(entry["scale"])
            if not (math.isfinite(scale) and scale > 0):
                raise ValueError(f"scale of {key!r} is {scale}")
            session.scales[key] = scale
            session.amax[key] = float(entry.get("amax") or scale * numerics.QMAX)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CalibrationError(f"corrupt calibration file {path}: {e}") from None
    session.state = "quantized"
    _SESSIONS[session.owner] = session
    for sub in subgraphs_of(model):
        sub.reset()                                      # converted with these scales on next call
    return session


def subgraphs_of(model) -> list:
    """Every int8 subgraph compiled from `model` (its frozen tensors are the model's), in order."""
    param_ids = {id(t) for t in _tensors_of(owner(model))}
    return sorted((s for s in SUBGRAPHS if _owns(param_ids, s)), key=lambda s: s.index)


def _owns(param_ids: set[int], subgraph) -> bool:
    return bool(subgraph.frozen_ids) and subgraph.frozen_ids <= param_ids


def _tensors_of(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.nn.Module):
        return list(obj.parameters()) + list(obj.buffers())
    return []


__all__ = ["calibrate", "calibrate_batches", "save", "load", "CalibrationError", "RangeError"]
