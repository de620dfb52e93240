#!/usr/bin/python3
"""Reference outputs of diffusers' UNet2DModel architecture for the C++ UNet's parity tests.

For each configuration below: build tools/torch_unet.py's UNet2DModel (diffusers' layout and key
names), give every parameter random values (so that norm scales, biases and embeddings are all
exercised, not left at their initial 1s and 0s), and write a diffusers model folder
tests/fixtures/unet/<name>/{config.json, diffusion_pytorch_model.safetensors} plus io.safetensors with the
inputs (x, timesteps, labels) and the outputs of the float32 and float64 forward passes.

  /usr/bin/python3 tools/make_unet_fixtures.py                       # the small configurations (in git)
  /usr/bin/python3 tools/make_unet_fixtures.py --cifar OUT_DIR        # the 35.7M-parameter ddpm-cifar10-32 shape
  /usr/bin/python3 tools/make_unet_fixtures.py --model models/digits --name digits   # a trained model folder

The weights are stored as F32; the float64 reference runs the same F32 values in float64.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_unet import UNet2DModel, load_safetensors, save_safetensors  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "unet")

SMALL = {
    # class conditioning, attention with a head dimension, "default" time conditioning
    "class_attention": dict(
        config={"sample_size": 8, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16], "layers_per_block": 1,
                "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
                "attention_head_dim": 4, "norm_num_groups": 4, "num_class_embeds": 5},
        batch=3, size=(8, 8), timesteps=[999.0, 0.0, 417.0], labels=[4, 0, 2]),
    # scale_shift, learned variance (out = 2·in), attention_head_dim None, center_input_sample,
    # downsample_padding 0, freq_shift, cos/sin order, mid-block rescale, non-square images
    "scale_shift_learned": dict(
        config={"sample_size": [8, 16], "in_channels": 3, "out_channels": 6, "block_out_channels": [8, 16, 16], "layers_per_block": 1,
                "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
                "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"], "attention_head_dim": None, "norm_num_groups": 4,
                "resnet_time_scale_shift": "scale_shift", "center_input_sample": True, "downsample_padding": 0, "freq_shift": 1,
                "flip_sin_to_cos": False, "mid_block_scale_factor": 1.5, "norm_eps": 1e-6},
        batch=2, size=(8, 16), timesteps=[12.5], labels=None),
    # no mid-block attention, two layers per block, attn_norm_num_groups, every up/down block with attention
    "deep_no_mid_attention": dict(
        config={"sample_size": 16, "in_channels": 2, "out_channels": 2, "block_out_channels": [8, 8, 16], "layers_per_block": 2,
                "down_block_types": ["AttnDownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
                "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "AttnUpBlock2D"], "attention_head_dim": 8, "norm_num_groups": 2,
                "add_attention": False, "attn_norm_num_groups": 4},
        batch=2, size=(16, 16), timesteps=[3.0, 640.0], labels=None),
    # scale_shift mid-block attention without group norm (diffusers' rule), class conditioning, 1 level deep
    "scale_shift_mid_attention": dict(
        config={"sample_size": 4, "in_channels": 1, "out_channels": 2, "block_out_channels": [8, 16], "layers_per_block": 1,
                "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"],
                "attention_head_dim": 8, "norm_num_groups": 8, "resnet_time_scale_shift": "scale_shift", "num_class_embeds": 3},
        batch=4, size=(4, 4), timesteps=[5.0, 50.0, 500.0, 999.0], labels=[0, 1, 2, 1]),
}

CIFAR = {"sample_size": 32, "in_channels": 3, "out_channels": 3, "block_out_channels": [128, 256, 256, 256], "layers_per_block": 2,
         "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
         "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"], "attention_head_dim": None,
         "norm_num_groups": 32, "norm_eps": 1e-6}


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = p[0].numel() if p.ndim > 1 else 1
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or "norm" in name and name.endswith(".weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(fan_in))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def write_case(out_dir, config, batch, size, timesteps, labels, seed, randomise_weights=True, state=None):
    os.makedirs(out_dir, exist_ok=True)
    cfg = dict(config)
    cfg["_class_name"] = "UNet2DModel"
    model = UNet2DModel(cfg)
    if state is not None:
        model.load_state_dict(state)
    elif randomise_weights:
        randomise(model, seed)
    # Round the weights to float32 once: both references run these exact values.
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn((batch, cfg["in_channels"], *size), generator=g, dtype=torch.float32)
    t = torch.tensor(timesteps if len(timesteps) == batch else timesteps * batch, dtype=torch.float64)
    y = torch.tensor(labels, dtype=torch.long) if labels is not None else None
    with torch.no_grad():
        out32 = model.float()(x, t.float(), y)
        out64 = model.double()(x.double(), t, y)
    if state is None:
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        save_safetensors(os.path.join(out_dir, "diffusion_pytorch_model.safetensors"), sd,
                         {"format": "pt", "provenance": "tools/make_unet_fixtures.py, random weights, seed %d" % seed})
    io = {"x": x, "timesteps": torch.tensor(timesteps, dtype=torch.float64), "expected_f32": out32}
    if y is not None:
        io["labels"] = y
    save_safetensors(os.path.join(out_dir, "io.safetensors"), {k: v for k, v in io.items() if k != "expected_f64"},
                     {"provenance": "tools/make_unet_fixtures.py (torch %s)" % torch.__version__, "size": "%dx%d" % size})
    # float64 outputs kept at full precision in their own file
    save_safetensors(os.path.join(out_dir, "io_f64.safetensors"), {"expected_f64": out64.double()}, None, dtype="F64")
    n = sum(p.numel() for p in model.parameters())
    print(f"{out_dir}: {n} parameters, output {tuple(out32.shape)}, |out|max {out64.abs().max():.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cifar", metavar="OUT_DIR", help="write the ddpm-cifar10-32-shaped case to OUT_DIR")
    ap.add_argument("--model", help="a trained diffusers model folder: write inputs/outputs for it")
    ap.add_argument("--name", default="trained")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.cifar:
        write_case(args.cifar, CIFAR, batch=1, size=(32, 32), timesteps=[321.0], labels=None, seed=7)
        return
    if args.model:
        with open(os.path.join(args.model, "config.json")) as f:
            cfg = json.load(f)
        state = load_safetensors(os.path.join(args.model, "diffusion_pytorch_model.safetensors"))
        s = cfg["sample_size"]
        labels = [3, 7, cfg["num_class_embeds"] - 1] if cfg.get("num_class_embeds") else None
        write_case(os.path.join(FIXTURES, args.name), cfg, batch=3, size=(s, s), timesteps=[999.0, 500.0, 20.0], labels=labels, seed=11, state=state)
        return
    for i, (name, case) in enumerate(SMALL.items()):
        write_case(os.path.join(FIXTURES, name), case["config"], case["batch"], case["size"], case["timesteps"], case["labels"], seed=100 + i)


if __name__ == "__main__":
    main()
