"""report(model): what the compiler did, per layer, and the rewritten graphs themselves."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from torch import fx

from . import calibration

COLUMNS = ("graph", "layer", "op", "fused", "in", "out", "s_in", "s_out", "requant", "kernel",
           "SQNR dB", "status")


@dataclass
class Row:
    graph: int
    layer: str
    op: str
    fused: str
    in_shape: str
    out_shape: str
    s_in: str
    s_out: str
    requant: str
    kernel: str
    sqnr: Optional[float]
    status: str
    passed_over: dict = field(default_factory=dict)    # kernel target -> why it was not used
    variant: str = ""                                  # which of the target's kernels, e.g. its tile config

    def cells(self) -> list[str]:
        sq = "" if self.sqnr is None else ("inf" if math.isinf(self.sqnr) else f"{self.sqnr:.1f}")
        kernel = f"{self.kernel}: {self.variant}" if self.variant else self.kernel
        return [str(self.graph), self.layer, self.op, self.fused, self.in_shape, self.out_shape,
                self.s_in, self.s_out, self.requant, kernel, sq, self.status]


class Report:
    def __init__(self, subgraphs: list, state: str):
        self.subgraphs = subgraphs
        self.state = state
        # Dynamo compiles a region again for a new shape or grad mode: list its layers once
        first: dict[tuple, int] = {}
        self.recompiles: dict[int, int] = {}                 # graph index -> the graph it repeats
        for sub in subgraphs:
            names = tuple(sorted(spec.name for spec in sub.ctx.layers.values()))
            if names and names in first:
                self.recompiles[sub.index] = first[names]
            else:
                first.setdefault(names, sub.index)
        self.rows = [row for sub in subgraphs if sub.index not in self.recompiles for row in _rows(sub)]

    def __str__(self) -> str:
        table = [list(COLUMNS)] + [r.cells() for r in self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
        quantized = sum(r.status == "int8" for r in self.rows)
        head = (f"int8compile report: {len(self.subgraphs)} subgraph(s), {quantized}/{len(self.rows)} "
                f"layers int8, state={self.state}")
        rest = [f"graph {s.index}: rest compiled by {s.ctx.compiled_by or '(not yet compiled)'}"
                + (f"; same layers as graph {self.recompiles[s.index]} (recompiled by Dynamo)"
                   if s.index in self.recompiles else "") for s in self.subgraphs]
        passed_over = [f"  {r.layer}: {target} not used: {reason}" for r in self.rows
                       for target, reason in r.passed_over.items()]
        if passed_over:
            rest += ["kernel targets passed over:"] + passed_over
        return "\n".join([head, line(table[0]), line(["-" * w for w in widths])] +
                         [line(r) for r in table[1:]] + rest)

    __repr__ = __str__

    def graphs(self) -> list[fx.GraphModule]:
        """The rewritten (int8) graphs, or the observed float graphs where not yet converted."""
        return [s.quantized if s.quantized is not None else s.observed for s in self.subgraphs]

    def op_counts(self) -> Counter:
        """How many of each int8 op the graphs run, counting quantize/dequantize that were
        written out as ATen ops for inductor (kernels/inductor.py)."""
        from .ops import OP_NAMES
        graphs = [g for s, g in zip(self.subgraphs, self.graphs()) if s.index not in self.recompiles]
        return Counter(OP_NAMES.get(n.target) or n.meta.get("int8_op")
                       for g in graphs for n in g.graph.nodes
                       if n.target in OP_NAMES or "int8_op" in n.meta)

    @property
    def code(self) -> str:
        return "\n\n".join(f"# ---- int8 subgraph {s.index} ----\n{g.code.strip()}"
                           for s, g in zip(self.subgraphs, self.graphs()))

    def to_networkx(self, index: int = 0):
        import networkx as nx
        graph = nx.DiGraph()
        for node in self.graphs()[index].graph.nodes:
            graph.add_node(node.name, op=node.op, target=_target_name(node),
                           kernel=node.kwargs.get("target", ""))
            for arg in node.all_input_nodes:
                graph.add_edge(arg.name, node.name)
        return graph

    def to_dot(self, path, index: int = 0) -> Path:
        """Write Graphviz DOT of a rewritten graph: int8 ops blue, quantize/dequantize orange."""
        colors = {"linear": "lightblue", "conv2d": "lightblue", "quantize": "orange", "dequantize": "orange"}
        lines = ["digraph int8 {", "  node [shape=box, style=filled, fillcolor=white];"]
        for node in self.graphs()[index].graph.nodes:
            name = _target_name(node)
            color = colors.get(name.split(".")[-1] if "int8compile" in name else "", "white")
            kernel = node.kwargs.get("target")
            label = f"{node.name}\\n{name}" + (f"\\n[{kernel}]" if kernel else "")
            lines.append(f'  "{node.name}" [label="{label}", fillcolor={color}];')
            lines += [f'  "{a.name}" -> "{node.name}";' for a in node.all_input_nodes]
        path = Path(path)
        path.write_text("\n".join(lines + ["}"]) + "\n")
        return path

    def plot_error(self, path) -> Path:
        """Bar chart of per-layer SQNR (needs matplotlib)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        rows = [r for r in self.rows if r.sqnr is not None]
        fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(rows)), 4))
        ax.bar(range(len(rows)), [min(r.sqnr, 80) for r in rows])
        ax.set_xticks(range(len(rows)), [r.layer for r in rows], rotation=90, fontsize=7)
        ax.set_ylabel("SQNR vs float (dB)")
        ax.set_title("int8 error per layer (last calibration batch)")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return Path(path)


def report(model) -> Report:
    """Per-layer report of a model compiled with backend="int8"."""
    session = calibration.session_of(model)
    if session is not None:
        return Report(list(session.subgraphs), session.state)
    return Report(calibration.subgraphs_of(model), "not calibrated")


def _rows(sub) -> list[Row]:
    rows = []
    for spec in sub.ctx.layers.values():
        k = sub.ctx.kernels.get(spec.name, {})
        sc = spec.scales
        fmt = lambda v: "" if v is None else f"{v:.3g}"
        rows.append(Row(
            graph=sub.index, layer=spec.name, op=spec.op, fused="+".join(spec.fused),
            in_shape=_shape(k.get("in")), out_shape=_shape(k.get("out")),
            s_in=fmt(sc.get("in")), s_out=fmt(sc.get("out")) if sc else "",
            requant=(("float+gelu" if spec.act == "gelu" else sub.ctx.options.requant)
                     if sc.get("out") is not None else "float out") if sc else "",
            kernel=k.get("target", ""), sqnr=spec.sqnr,
            status="int8" if spec.quantize and sub.quantized is not None else
            ("int8 (pending calibration)" if spec.quantize else f"float: {spec.reason}"),
            passed_over=dict(k.get("rejected", {})), variant=k.get("variant", "")))
    for spec in sub.ctx.rejected:
        rows.append(Row(sub.index, spec.name, spec.kind, "", "", "", "", "", "", "", None,
                        f"float: {spec.reason}"))
    return rows


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape) if shape else ""


def _target_name(node: fx.Node) -> str:
    if node.op == "call_function":
        return str(getattr(node.target, "__name__", node.target)) if not hasattr(node.target, "_schema") \
            else str(node.target).replace(".default", "")
    return str(node.target)
