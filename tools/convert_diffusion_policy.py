#!/usr/bin/python3
"""Converts a Diffusion Policy checkpoint's UNet into a folder diffuse::nn::unet1d<S>::load reads.

  /usr/bin/python3 tools/convert_diffusion_policy.py CHECKPOINT.ckpt OUT_DIR [--weights model|ema_model]
      [--n-groups N] [--prefix model.]

What it reads from the pickled workspace (BaseWorkspace.save_checkpoint writes a dict with torch.save and
dill as the pickle module):
  payload["state_dicts"]["ema_model"] or ["model"]  the policy's state dict (the EMA copy by default when
        present: Diffusion Policy's evaluation uses it when training.use_ema is set); the UNet's tensors
        are those under "model." (DiffusionUnetLowdimPolicy, DiffusionUnetImagePolicy and
        DiffusionUnetHybridImagePolicy all keep ConditionalUnet1D as `self.model`);
        the LinearNormalizer's "normalizer.params_dict.<key>.scale" / ".offset" are exported too;
  payload["cfg"]  the Hydra config, only for n_groups (cfg.policy.model.n_groups for the low-dim policy,
        cfg.policy.n_groups for the image policies), which the weights do not reveal; absent, or not
        unpicklable without omegaconf installed, it is 8 (ConditionalUnet1D's default) unless --n-groups
        says otherwise.
Everything else in the checkpoint (optimizer state, observation encoders, pickled attributes) is ignored.
Unpickling runs code: convert only checkpoints you trust. A plain state dict (torch.save of
policy.state_dict() or of the UNet's own state dict) is accepted too.

The architecture (input_dim, local_cond_dim, global_cond_dim, diffusion_step_embed_dim, down_dims,
kernel_size, cond_predict_scale) is read off the tensor shapes. OUT_DIR receives:
  config.json              ConditionalUnet1D's constructor arguments ("_class_name": "ConditionalUnet1D")
  model.safetensors        the UNet's state dict, F32, names as ConditionalUnet1D has them
  normalizer.safetensors   (when the checkpoint has one) "<key>.scale" and "<key>.offset" of the
                           LinearNormalizer: normalised = x·scale + offset, per the key's last dimension.
"""
import argparse
import json
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_unet import save_safetensors  # noqa: E402


def load_checkpoint(path):
    try:
        import dill  # noqa: F401  (the pickle module Diffusion Policy saves with)
        return torch.load(path, map_location="cpu", pickle_module=dill)
    except ImportError:
        return torch.load(path, map_location="cpu")


def find_n_groups(payload):
    cfg = payload.get("cfg") if isinstance(payload, dict) else None
    if cfg is None:
        return None
    get = (lambda c, k: c.get(k) if hasattr(c, "get") else getattr(c, k, None))
    policy = get(cfg, "policy")
    if policy is None:
        return None
    model = get(policy, "model")
    for where in (model, policy):
        if where is not None and get(where, "n_groups") is not None:
            return int(get(where, "n_groups"))
    return None


def unet_state(payload, which, prefix):
    if isinstance(payload, dict) and "state_dicts" in payload:
        dicts = payload["state_dicts"]
        if which is None:
            which = "ema_model" if "ema_model" in dicts else "model"
        if which not in dicts:
            sys.exit(f"the checkpoint has no state_dicts[{which!r}]; it has {sorted(dicts)}")
        state = dicts[which]
    else:
        state = payload
    if any(k.startswith(prefix) for k in state):
        unet = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    else:
        unet = dict(state)
    normalizer = {}
    for k, v in state.items():
        m = re.match(r"^normalizer\.params_dict\.(.+)\.(scale|offset)$", k)
        if m:
            normalizer[f"{m.group(1)}.{m.group(2)}"] = v
    return unet, normalizer


def architecture(unet, n_groups):
    def shape(k):
        if k not in unet:
            sys.exit(f"no tensor {k!r}: not a ConditionalUnet1D state dict")
        return list(unet[k].shape)

    levels = 0
    while f"down_modules.{levels}.0.blocks.0.block.0.weight" in unet:
        levels += 1
    if levels == 0:
        sys.exit("no down_modules.0.0.blocks.0.block.0.weight: not a ConditionalUnet1D state dict")
    down = [shape(f"down_modules.{i}.0.blocks.0.block.0.weight")[0] for i in range(levels)]
    kernel = shape("down_modules.0.0.blocks.0.block.0.weight")[2]
    dsed = shape("diffusion_step_encoder.1.weight")[1]
    cond_dim = shape("down_modules.0.0.cond_encoder.1.weight")[1]
    cond_out = shape("down_modules.0.0.cond_encoder.1.weight")[0]
    local = shape("local_cond_encoder.0.blocks.0.block.0.weight")[1] if "local_cond_encoder.0.blocks.0.block.0.weight" in unet else None
    return {
        "_class_name": "ConditionalUnet1D",
        "input_dim": shape("final_conv.1.weight")[0],
        "local_cond_dim": local,
        "global_cond_dim": (cond_dim - dsed) or None,
        "diffusion_step_embed_dim": dsed,
        "down_dims": down,
        "kernel_size": kernel,
        "n_groups": n_groups,
        "cond_predict_scale": cond_out == 2 * down[0],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("out_dir")
    ap.add_argument("--weights", choices=["model", "ema_model"], help="which state dict (default: ema_model when present)")
    ap.add_argument("--n-groups", type=int, help="GroupNorm groups, when the checkpoint's cfg does not say")
    ap.add_argument("--prefix", default="model.", help="prefix of the UNet's tensors in the policy's state dict")
    a = ap.parse_args()
    payload = load_checkpoint(a.checkpoint)
    unet, normalizer = unet_state(payload, a.weights, a.prefix)
    n_groups = a.n_groups or find_n_groups(payload) or 8
    config = architecture(unet, n_groups)
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    save_safetensors(os.path.join(a.out_dir, "model.safetensors"), {k: v.float() for k, v in unet.items()})
    if normalizer:
        save_safetensors(os.path.join(a.out_dir, "normalizer.safetensors"), {k: v.float() for k, v in normalizer.items()})
    print(f"{a.out_dir}: {config}")


if __name__ == "__main__":
    main()
