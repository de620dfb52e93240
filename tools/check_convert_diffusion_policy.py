#!/usr/bin/python3
"""Writes a checkpoint shaped like Diffusion Policy's workspace payload around a fixture UNet and converts
it with tools/convert_diffusion_policy.py, for the converter's ctest round trip:

  /usr/bin/python3 tools/check_convert_diffusion_policy.py OUT_DIR

The payload is what BaseWorkspace.save_checkpoint writes ({"cfg", "state_dicts": {"model", "ema_model",
"optimizer"}, "pickles"}), saved with the standard pickle module (dill and omegaconf are not installed):
the policy's state dict holds the UNet under "model.", a LinearNormalizer's parameters and an
observation encoder's tensor; the EMA copy holds the fixture's weights, the plain one perturbed ones, so
that converting the wrong copy fails the parity test. cfg is a plain dict with policy.model.n_groups.
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from torch_unet import load_safetensors  # noqa: E402

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
unet = load_safetensors(os.path.join(HERE, "..", "tests", "fixtures", "unet1d", "film_local", "model.safetensors"))
ema = {"model." + k: v for k, v in unet.items()}
ema["normalizer.params_dict.action.scale"] = torch.tensor([2.0, 0.5, 1.0])
ema["normalizer.params_dict.action.offset"] = torch.tensor([0.1, -0.2, 0.0])
ema["obs_encoder.weight"] = torch.zeros(4, 4)
plain = {k: v + 0.01 for k, v in ema.items()}
payload = {"cfg": {"policy": {"model": {"n_groups": 4}}}, "state_dicts": {"model": plain, "ema_model": ema, "optimizer": {}},
           "pickles": {}}
ckpt = os.path.join(out, "latest.ckpt")
torch.save(payload, ckpt)
import convert_diffusion_policy  # noqa: E402  (in this process: one torch import, not two)
sys.argv = ["convert_diffusion_policy.py", ckpt, os.path.join(out, "converted")]
convert_diffusion_policy.main()
