"""backend="int8" works in a fresh process that never imports int8compile (entry point), and
torch.compile's mode/options reach the backend."""
import subprocess
import sys
import textwrap

import pytest
import torch

from int8compile import Options


def test_backend_found_without_import():
    code = textwrap.dedent("""
        import sys, torch
        m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).eval()
        cm = torch.compile(m, backend="int8", options={"progress": False})
        x = torch.randn(4, 8)
        with torch.no_grad():
            import warnings; warnings.simplefilter("ignore")
            y = cm(x)                                   # compiles through the entry point
        assert "int8compile" in sys.modules
        torch.testing.assert_close(y, m(x))             # uncalibrated: float
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_mode_and_options_reach_backend():
    opts = Options.from_compile_args("max-autotune", {"requant": "fixed", "skip": "fc*"})
    assert opts.inductor_mode == "max-autotune"
    assert opts.requant == "fixed" and opts.skip == ("fc*",)
    with pytest.raises(ValueError, match="unknown int8 backend option"):
        Options.from_compile_args(None, {"bogus": 1})


def test_inductor_mode_auto_uses_cuda_graphs_on_a_gpu_only():
    from types import SimpleNamespace

    from torch._subclasses.fake_tensor import FakeTensorMode

    from int8compile.passes.compile_rest import inductor_mode
    with FakeTensorMode():          # a CUDA tensor's metadata, on any machine
        on_gpu = [torch.empty(2, 8, device="cuda")]
    on_cpu = [torch.empty(2, 8), 3]

    def mode(option, inputs):
        return inductor_mode(SimpleNamespace(options=Options(inductor_mode=option), example_inputs=inputs))
    assert mode("auto", on_gpu) == "reduce-overhead"
    assert mode("auto", on_cpu) is None
    assert mode("default", on_gpu) is None and mode(None, on_gpu) is None
    assert mode("max-autotune", on_cpu) == "max-autotune"
    with pytest.raises(ValueError, match="inductor_mode"):
        Options(inductor_mode="fast")


def test_options_are_frozen():
    with pytest.raises(Exception):
        Options().requant = "pot"


def test_torch_compile_mode_reaches_inductor():
    import int8compile
    m = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    cm = torch.compile(m, backend="int8", mode="max-autotune-no-cudagraphs")
    with torch.no_grad():
        int8compile.calibrate_batches(cm, [torch.randn(4, 16)], progress=False)
        cm(torch.randn(4, 16))
    assert int8compile.report(cm).subgraphs[0].ctx.compiled_by == "inductor max-autotune-no-cudagraphs"


def test_cli_lists_every_kernel_target():
    out = subprocess.run([sys.executable, "-m", "int8compile", "targets"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for target in ("cpu", "cuda", "cuda_dp4a", "reference", "inductor"):
        assert target in out.stdout


def test_inductor_takes_only_the_activations(monkeypatch):
    # Dynamo passes the parameters as arguments; inductor must get them as constants (a CUDA graph
    # would copy every argument into its static buffers on each call). The skipped layer's float
    # weight is still used: it becomes a constant, not a dangling input. The constants are plain
    # tensors, not buffers: AOTAutograd would lift buffers into inputs (copied by CUDA graphs, too).
    import int8compile
    from int8compile.passes import compile_rest
    from int8compile.passes.compile_rest import TakeInputs
    handed = []
    real = compile_rest._inductor
    monkeypatch.setattr(compile_rest, "_inductor", lambda gm, args, ctx: handed.append(gm) or real(gm, args, ctx))
    m = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    cm = torch.compile(m, backend="int8", options={"skip": ("2",), "progress": False})
    x = torch.randn(4, 16)
    with torch.no_grad():
        int8compile.calibrate_batches(cm, [torch.randn(4, 16)], progress=False)
        y, ref = cm(x), m(x)
    sub = int8compile.report(cm).subgraphs[0]
    assert isinstance(sub.compiled, TakeInputs) and len(sub.compiled.keep) == 1
    assert handed and all(not list(gm.buffers()) and not list(gm.parameters()) for gm in handed)
    assert any(isinstance(v, torch.Tensor) for v in vars(handed[-1]).values())   # the constants are kept
    assert float((y - ref).norm() / ref.norm()) < 0.05
    placeholders = [n for n in sub.quantized.graph.nodes if n.op == "placeholder"]
    assert len(placeholders) == 5          # the reported int8 graph keeps Dynamo's signature
