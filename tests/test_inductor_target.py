"""The `inductor` target writes quantize/dequantize as ATen ops that inductor compiles and fuses;
its generated code must agree with the reference kernels bit for bit."""
import pytest
import torch
from torch import fx

from int8compile import ops
from int8compile.kernels import inductor


def inlined(op_node_args, out_meta, op):
    """A GraphModule computing `op(*args)` through inductor.inline, compiled by inductor."""
    graph = fx.Graph()
    holder = torch.nn.Module()
    placeholder = graph.placeholder("x")
    node = graph.call_function(op, (placeholder, *op_node_args))
    node.meta["val"] = out_meta
    graph.output(node)
    consts = []

    def scalar(v):
        name = f"c{len(consts)}"
        consts.append(name)
        holder.register_buffer(name, torch.tensor(v, dtype=torch.float32))
        with graph.inserting_before(node):
            return graph.get_attr(name)
    inductor.inline(graph, node, scalar)
    return torch.compile(fx.GraphModule(holder, graph), backend="inductor")


@pytest.mark.parametrize("shape", [(7, 33), (2, 5, 9, 11)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inductor_quantize_is_bit_exact(shape, dtype):
    g = torch.Generator().manual_seed(sum(shape))
    x = (torch.randn(shape, generator=g) * 40).to(dtype)
    x.view(-1)[:8] = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 300.0, -300.0, 127.5])    # ties, saturation
    inv = 1.0
    fn = inlined((inv,), torch.empty(shape, dtype=torch.int8), ops.QUANTIZE)
    got, want = fn(x), ops.quantize(x, inv)
    assert torch.equal(got, want)
    inv = 0.7312
    fn = inlined((inv,), torch.empty(shape, dtype=torch.int8), ops.QUANTIZE)
    got, want = fn(x), ops.quantize(x, inv)
    assert torch.equal(got, want)
    if len(shape) == 4:
        assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_inductor_dequantize_is_bit_exact(out_dtype):
    g = torch.Generator().manual_seed(5)
    q = torch.randint(-128, 128, (3, 8, 6, 5), dtype=torch.int8, generator=g)
    q = q.contiguous(memory_format=torch.channels_last)
    fn = inlined((0.0123, out_dtype), torch.empty(q.shape, dtype=out_dtype), ops.DEQUANTIZE)
    assert torch.equal(fn(q), ops.dequantize(q, 0.0123, out_dtype))
