"""State shared by the passes of one captured subgraph."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import fx

from ..layers import LayerSpec
from ..options import Options


@dataclass
class PassContext:
    options: Options
    example_inputs: list                                   # what Dynamo passed (real tensors, ints)
    constants: dict[str, torch.Tensor] = field(default_factory=dict)  # node name -> frozen value
    sources: dict[str, str] = field(default_factory=dict)  # node name -> readable source name
    layers: dict[str, LayerSpec] = field(default_factory=dict)        # submodule target -> spec
    rejected: list[LayerSpec] = field(default_factory=list)  # candidates match left in PyTorch
    tensor_keys: dict[str, str] = field(default_factory=dict)  # observed node name -> tensor key
    scales: dict[str, float] = field(default_factory=dict)     # tensor key -> calibrated scale
    kernels: dict[str, dict] = field(default_factory=dict)     # layer name -> lowering record
    compiled_by: str = ""                                      # who compiled the rest
    device: torch.device = torch.device("cpu")

    def constant(self, node) -> Optional[torch.Tensor]:
        """The compile-time value of `node` (a frozen parameter/buffer or folded constant), else None."""
        if isinstance(node, fx.Node):
            return self.constants.get(node.name)
        return None

    def add_constant(self, gm: fx.GraphModule, anchor: fx.Node, value: torch.Tensor,
                     hint: str) -> fx.Node:
        """A get_attr node holding `value`, inserted before `anchor`."""
        name = _unique_attr(gm, re.sub(r"\W", "_", hint))
        gm.register_buffer(name, value, persistent=False)
        with gm.graph.inserting_before(anchor):
            node = gm.graph.get_attr(name)
        self.constants[node.name] = value
        self.sources[node.name] = hint
        return node


def _unique_attr(gm: fx.GraphModule, base: str) -> str:
    name, i = base, 1
    while hasattr(gm, name):
        i += 1
        name = f"{base}_{i}"
    return name


_KEY = re.compile(r"\[['\"]?([^'\"\]]+)['\"]?\]|\.(\w+)")
_CONTAINERS = {"_modules", "_parameters", "_buffers"}


def readable_source(source_name: str) -> str:
    """`L['self']._modules['fc']._parameters['weight']` -> `fc.weight`; `G['W']` -> `W`."""
    parts = [a or b for a, b in _KEY.findall(source_name)]
    if source_name.startswith("L[") and len(parts) > 1:
        parts = parts[1:]                     # drop the module argument itself (self)
    return ".".join(p for p in parts if p not in _CONTAINERS) or source_name
