"""Calibration state machine, graph breaks, recompiles, save/load and the errors users meet."""
import json
import warnings

import pytest
import torch
from torch import nn

import int8compile
from conftest import compile_calibrated, rel_error


class Net(nn.Module):
    def __init__(self, graph_break=False):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)
        self.graph_break = graph_break

    def forward(self, x):
        x = torch.relu(self.c1(x))
        if self.graph_break:
            torch._dynamo.graph_break()
        x = torch.relu(self.c2(x)).mean((2, 3))
        return self.fc(x)


def batch(n=4):
    return torch.randn(n, 3, 10, 10)


@torch.no_grad()
def test_before_calibration_runs_float_with_one_warning():
    m = Net().eval()
    cm = torch.compile(m, backend="int8")
    x = batch()
    with pytest.warns(RuntimeWarning, match="not been calibrated"):
        y = cm(x)
    torch.testing.assert_close(y, m(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cm(x)                                                  # second call: no new warning
    assert int8compile.report(cm).state == "not calibrated"


@torch.no_grad()
def test_before_calibration_error_option():
    cm = torch.compile(Net().eval(), backend="int8", options={"before_calibration": "error"})
    with pytest.raises(int8compile.NotCalibratedError, match="calibrate"):
        cm(batch())


@torch.no_grad()
def test_graph_breaks_calibrate_together():
    m = Net(graph_break=True).eval()
    cm = compile_calibrated(m, batch)
    rep = int8compile.report(cm)
    assert len(rep.subgraphs) == 2
    assert sum(r.status == "int8" for r in rep.rows) == 3
    x = batch()
    assert rel_error(cm(x), m(x)) < 0.03


@torch.no_grad()
def test_new_shape_after_calibration_adopts_scales():
    m = Net().eval()
    cm = compile_calibrated(m, batch)
    x = batch(7)                                              # recompiles (dynamic batch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # adoption, no float fallback
        y = cm(x)
    assert rel_error(y, m(x)) < 0.03
    assert all(s.compiled is not None for s in int8compile.report(cm).subgraphs)


@torch.no_grad()
def test_nan_in_calibration_data_is_a_clear_error():
    cm = torch.compile(Net().eval(), backend="int8")
    x = batch()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(int8compile.RangeError, match="NaN/Inf"):
        with int8compile.calibrate(cm, progress=False):
            cm(x)


@torch.no_grad()
def test_empty_calibration_is_a_clear_error():
    cm = torch.compile(Net().eval(), backend="int8")
    with pytest.raises(int8compile.CalibrationError, match="no batches"):
        with int8compile.calibrate(cm, progress=False):
            pass


def test_unknown_option_is_a_clear_error():
    cm = torch.compile(Net().eval(), backend="int8", options={"calibratr": "minmax"})
    with pytest.raises(Exception, match="unknown int8 backend option.*calibratr"):
        cm(batch())


def test_bad_option_value_is_a_clear_error():
    with pytest.raises(ValueError, match="requant.*one of"):
        int8compile.Options(requant="int4")


@torch.no_grad()
def test_percentile_calibrator_clips_outliers():
    m = Net().eval()
    data = [batch() for _ in range(4)]
    data[0][0, 0, 0, 0] = 1000.0                              # one outlier
    scales = {}
    for calibrator in ("minmax", "percentile"):
        torch._dynamo.reset()
        cm = torch.compile(m, backend="int8", options={"calibrator": calibrator, "percentile": 99.9})
        with int8compile.calibrate(cm, data, progress=False):
            pass
        scales[calibrator] = int8compile.report(cm).rows[0].s_in
    assert float(scales["percentile"]) < float(scales["minmax"]) / 10


def _quant_mse(x, amax):
    s = amax / 127
    return float((((x / s).round().clamp(-127, 127) * s - x) ** 2).mean())


def test_mse_calibrator_minimises_quantization_error():
    """mse picks the clip point whose int8 round trip has the least squared error: as good as a
    brute-force search on the real values, and never worse than the full range (minmax)."""
    from int8compile.observers import Histogram, mse_amax
    g = torch.Generator().manual_seed(0)
    heavy = torch.distributions.StudentT(2.0).sample((50_000,))        # long tails
    for x in (torch.randn(50_000, generator=g), heavy, torch.rand(50_000, generator=g) * 2 - 1):
        h = Histogram()
        h.add(x, "x")
        a = mse_amax(h, 0.0)
        assert 0 < a <= h.amax
        grid = torch.linspace(h.amax / 64, h.amax, 64)
        best = min(_quant_mse(x, float(c)) for c in grid)
        assert _quant_mse(x, a) <= best * 1.05                       # as good as the best candidate
        assert _quant_mse(x, a) <= _quant_mse(x, h.amax) * 1.001


@torch.no_grad()
def test_mse_calibrator_through_the_backend():
    m = Net().eval()
    data = [batch() for _ in range(4)]
    scales = {}
    for calibrator in ("minmax", "mse"):
        torch._dynamo.reset()
        cm = torch.compile(m, backend="int8", options={"calibrator": calibrator})
        with int8compile.calibrate(cm, data, progress=False):
            pass
        scales[calibrator] = [float(r.s_in) for r in int8compile.report(cm).rows if r.s_in is not None]
        assert torch.isfinite(cm(batch())).all()
    assert all(a <= b for a, b in zip(scales["mse"], scales["minmax"]))
    assert any(a < 0.99 * b for a, b in zip(scales["mse"], scales["minmax"]))   # some range is clipped


@torch.no_grad()
def test_save_and_load_roundtrip(tmp_path):
    m = Net().eval()
    cm = compile_calibrated(m, batch)
    x = batch()
    y = cm(x)
    path = int8compile.save_calibration(cm, tmp_path / "calib.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "int8compile-calibration" and doc["tensors"]

    torch._dynamo.reset()
    cm2 = torch.compile(m, backend="int8")
    int8compile.load_calibration(cm2, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(cm2(x), y, rtol=0, atol=0)  # same scales, same int8 program


def test_save_before_calibration_is_an_error(tmp_path):
    cm = torch.compile(Net().eval(), backend="int8")
    with pytest.raises(int8compile.CalibrationError, match="not been calibrated"):
        int8compile.save_calibration(cm, tmp_path / "c.json")


@torch.no_grad()
def test_load_rejects_other_model_and_corrupt_files(tmp_path):
    cm = compile_calibrated(Net().eval(), batch)
    path = int8compile.save_calibration(cm, tmp_path / "calib.json")

    other = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(int8compile.CalibrationError, match="different model"):
        int8compile.load_calibration(torch.compile(other, backend="int8"), path)

    bad = tmp_path / "bad.json"
    bad.write_text(path.read_text()[:50])
    with pytest.raises(int8compile.CalibrationError, match="cannot read"):
        int8compile.load_calibration(cm, bad)

    doc = json.loads(path.read_text())
    first = next(iter(doc["tensors"]))
    doc["tensors"][first]["scale"] = -1
    bad.write_text(json.dumps(doc))
    with pytest.raises(int8compile.CalibrationError, match="corrupt"):
        int8compile.load_calibration(cm, bad)

    bad.write_bytes(b"\x80\x04\x95pickle")
    with pytest.raises(int8compile.CalibrationError):
        int8compile.load_calibration(cm, bad)


@torch.no_grad()
def test_recalibration_replaces_scales():
    m = Net().eval()
    cm = compile_calibrated(m, batch)
    s1 = int8compile.report(cm).rows[0].s_in
    with int8compile.calibrate(cm, [batch() * 10 for _ in range(3)], progress=False):
        pass
    s2 = int8compile.report(cm).rows[0].s_in
    assert float(s2) > 5 * float(s1)


def test_report_table_and_graph_exports(tmp_path):
    with torch.no_grad():
        cm = compile_calibrated(Net().eval(), batch)
    rep = int8compile.report(cm)
    text = str(rep)
    for column in ("layer", "op", "s_in", "s_out", "requant", "kernel", "SQNR dB"):
        assert column in text
    assert all(r.sqnr is not None and r.sqnr > 20 for r in rep.rows)
    assert "torch.ops.int8compile.conv2d" in rep.code
    dot = rep.to_dot(tmp_path / "g.dot").read_text()
    assert dot.startswith("digraph") and "int8compile" in dot
    g = rep.to_networkx()
    assert g.number_of_nodes() > 3 and g.number_of_edges() > 3
    png = rep.plot_error(tmp_path / "sqnr.png")
    assert png.stat().st_size > 1000


@torch.no_grad()
def test_kernel_that_cannot_take_a_call_falls_back_with_reason():
    """A float64 model: the cpu kernels decline float64 outputs, the reference runs them, and
    the report says which target was passed over and why."""
    m = Net().double().eval()
    cm = compile_calibrated(m, lambda: batch().double(), target="cpu")
    x = batch().double()
    assert rel_error(cm(x), m(x)) < 0.03
    rep = int8compile.report(cm)
    fc = next(r for r in rep.rows if r.layer == "fc")
    assert fc.kernel == "reference" and "cpu" in fc.passed_over
    assert "kernel targets passed over" in str(rep)


@torch.no_grad()
def test_report_names_the_kernel_variant_a_target_plans(monkeypatch):
    """lower asks a target's describe(call) which variant it will run; the report's kernel column
    shows it (the cuda target names its tile config this way, tests/test_cuda_plan.py)."""
    import dataclasses
    from int8compile.kernels import registry
    key = ("conv2d", "cpu")
    described = dataclasses.replace(registry._KERNELS[key], describe=lambda call: f"tile for {call.shapes['x'][1]} ch")
    monkeypatch.setitem(registry._KERNELS, key, described)
    cm = compile_calibrated(Net().eval(), batch, target="cpu")
    rep = int8compile.report(cm)
    conv = next(r for r in rep.rows if r.op.startswith("conv"))
    assert conv.kernel == "cpu" and conv.variant.startswith("tile for ")
    assert f"cpu: {conv.variant}" in str(rep)
