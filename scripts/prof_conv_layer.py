"""Launch one conv layer once per given wgmma conv config, for Nsight Compute on the GPU machine:
  ncu -k regex:gemm_kernel --section WarpStateStats python scripts/prof_conv_layer.py C:O:k:s:H:batch cfgs \
      [fixed|float] [sm90|fold]
e.g. `... 64:256:1:1:56:256 7,11` (padding k // 2, random int8 data). Per-instruction stall samples:
add `--section SourceCounters -o rep`, export with `ncu -i rep.ncu-rep --page source --csv --print-source
sass > source.csv` and summarise with scripts/ncu_stalls.py."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, installed or not
from int8compile.kernels import cuda as ck  # noqa: E402
C, O, k, s, H, batch = (int(v) for v in sys.argv[1].split(":"))
cfgs = [int(c) for c in sys.argv[2].split(",")]
mode = sys.argv[3] if len(sys.argv) > 3 else "fixed"
algo = sys.argv[4] if len(sys.argv) > 4 else "sm90"
p = k // 2
x = torch.randint(-128, 128, (batch, C, H, H), dtype=torch.int8, device="cuda").contiguous(
    memory_format=torch.channels_last)
w = torch.randint(-128, 128, (O, k, k, C), dtype=torch.int8, device="cuda")
bias = torch.randint(-1000, 1000, (O,), dtype=torch.int32, device="cuda")
scale = torch.full((O,), 1e-4, device="cuda")
mult = torch.full((O,), 1 << 30, dtype=torch.int32, device="cuda")
shift = torch.full((O,), 45, dtype=torch.int32, device="cuda")
if mode == "float":
    mult = shift = None
for cfg in cfgs:
    ck.conv2d_impl(x, w, bias, scale, mult, shift, None, None, 0.0, -128.0, 127.0, torch.int8,
                   [s, s], [p, p, p, p], [1, 1], 1, algo=algo, cfg=cfg)
torch.cuda.synchronize()
print("ok")
