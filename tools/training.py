"""What the training scripts of the shipped models share: the EMA training loop and the model folder they write.

train_digits.py (v-prediction on a cosine schedule) and train_fashion.py (rectified flow) differ only in their
data, their network configuration and their objective, the function that draws the noise level and the noise for
a batch and returns its loss. Everything else is here, so both models are trained by the same loop: AdamW without
weight decay, a 200-step linear warm-up then cosine decay of the learning rate, gradients clipped at norm 1, an
exponential moving average of the weights (decay min(ema, (1 + step) / (10 + step))) that is what gets saved, and
15% of the labels replaced by the null class for classifier-free guidance. Random draws come from one
torch.Generator seeded by --seed, in a fixed order per step (batch indices, label dropout, then the objective's
own draws), so a run is reproducible.
"""
import json
import math
import os
import time

import numpy as np
import torch

from torch_unet import UNet2DModel, save_safetensors

LABEL_DROPOUT = 0.15


def train_ema(config, x, y, null_label, args, objective, describe=""):
    """Trains a UNet2DModel of `config` on images x (n, C, H, W) with labels y.

    objective(model, x0, labels, g) draws what it needs from g and returns the batch's loss.
    Returns (ema_model, per-step losses, parameter count, seconds).
    """
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    model = UNet2DModel(config)
    ema = UNet2DModel(config)
    ema.load_state_dict(model.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"{nparams} parameters, {len(x)} training images{describe}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 200) * 0.5 * (1 + math.cos(math.pi * s / args.steps)))
    g = torch.Generator().manual_seed(args.seed)
    losses = []
    t0 = time.time()
    for step in range(args.steps):
        idx = torch.randint(0, len(x), (args.batch,), generator=g)
        x0, lab = x[idx], y[idx].clone()
        lab[torch.rand(args.batch, generator=g) < LABEL_DROPOUT] = null_label
        loss = objective(model, x0, lab, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm, alpha=1 - decay)
        losses.append(loss.item())
        if (step + 1) % 100 == 0:
            print(f"step {step + 1}/{args.steps} loss {np.mean(losses[-100:]):.4f} {time.time() - t0:.0f}s", flush=True)
    return ema, losses, nparams, time.time() - t0


def write_model_folder(out, ema, config, scheduler, losses, args, dtype="F32"):
    """Writes a diffusers model folder: the EMA weights, config.json, scheduler_config.json and the loss curve
    (the mean loss of every 100 steps)."""
    os.makedirs(out, exist_ok=True)
    meta = {"format": "pt", "steps": args.steps, "seed": args.seed}
    save_safetensors(os.path.join(out, "diffusion_pytorch_model.safetensors"), ema.state_dict(), meta, dtype=dtype)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out, "scheduler_config.json"), "w") as f:
        json.dump(scheduler, f, indent=2)
    with open(os.path.join(out, "loss_curve.csv"), "w") as f:
        f.write("step,loss_mean_100\n")
        for s in range(100, args.steps + 1, 100):
            f.write(f"{s},{np.mean(losses[s - 100:s]):.5f}\n")
