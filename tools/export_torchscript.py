#!/usr/bin/python3
"""Exports a diffusers UNet2DModel folder to TorchScript, for libtorch programs (examples/libtorch_generate).

The network is tools/torch_unet.py's UNet2DModel (diffusers' architecture and parameter names) with the
folder's config.json and safetensors weights, traced with torch.jit.trace on float32 inputs. The traced
module's forward takes (x: float32 [N, C, H, W], t: float32 [N], class_labels: int64 [N]) for a
class-conditional model and (x, t) otherwise, and returns the prediction [N, C_out, H, W]; N may differ
from the batch it was traced with.

Usage: tools/export_torchscript.py MODEL_DIR OUT.pt
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_unet import UNet2DModel, load_safetensors  # noqa: E402


class Conditional(torch.nn.Module):
    """forward(x, t, class_labels): the traced signature of a class-conditional model."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x, t, class_labels):
        return self.unet(x, t, class_labels)


class Unconditional(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x, t):
        return self.unet(x, t)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    folder, out = sys.argv[1], sys.argv[2]
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    unet = UNet2DModel(cfg)
    unet.load_state_dict(load_safetensors(os.path.join(folder, "diffusion_pytorch_model.safetensors")))
    unet.eval()
    size = cfg["sample_size"]
    h, w = (size, size) if isinstance(size, int) else size
    n = 3  # traced at one batch size, run at others: check below
    x = torch.randn(n, cfg["in_channels"], h, w, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([999.0, 500.0, 1.0])
    conditional = cfg.get("num_class_embeds") is not None
    module = Conditional(unet) if conditional else Unconditional(unet)
    args = (x, t, torch.tensor([0, 1, cfg["num_class_embeds"] - 1])) if conditional else (x, t)
    with torch.no_grad():
        traced = torch.jit.trace(module, args, check_trace=True)
        # Another batch size gives what the Python module gives.
        x5 = torch.randn(5, cfg["in_channels"], h, w, generator=torch.Generator().manual_seed(1))
        t5 = torch.full((5,), 250.0)
        args5 = (x5, t5, torch.arange(5) % cfg["num_class_embeds"]) if conditional else (x5, t5)
        diff = (traced(*args5) - module(*args5)).abs().max().item()
        if diff > 1e-5:
            sys.exit(f"the traced module differs from the Python one at batch 5 by {diff}")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    traced.save(out + ".partial")
    os.replace(out + ".partial", out)
    print(f"{out}: TorchScript of {folder} ({'class-conditional' if conditional else 'unconditional'}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
