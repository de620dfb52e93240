#!/usr/bin/python3
"""Trains the class-conditional digits model shipped in models/digits/, and measures its quality.

Data: scikit-learn's handwritten digits (1,797 images, 8×8, values 0…16, 10 classes), upscaled
bilinearly to 16×16 and scaled to [−1, 1]. 16×16 gives the UNet two resolution levels (16 and 8) with
attention at 8×8; bilinear upscaling gives smooth strokes instead of blocks. 10% of the images (stratified,
fixed seed) are held out for the quality classifier and never used for training.

Model: diffusers UNet2DModel layout (tools/torch_unet.py), block_out_channels (32, 64), 2 layers per
block, DownBlock2D + AttnDownBlock2D / AttnUpBlock2D + UpBlock2D, 11 class embeddings (label 10 is the
null class for classifier-free guidance, used for 15% of training examples).
Schedule: cosine ("squaredcos_cap_v2"), T = 1000, v-prediction (well conditioned at every t, including
the nearly pure-noise end where ε-prediction's x̂0 is unstable). AdamW, EMA of the weights.

Quality: a logistic-regression classifier trained on the real training digits (8×8, after the same
up/down sampling) scores generated digits average-pooled back to 8×8; we report the fraction classified
as the requested class for DDPM (1000 steps), DDIM-50 and DDIM-10, with and without guidance, and the
per-pixel mean and standard deviation of generated versus real digits.

  bash scripts/install-deps.sh --python                  # torch, numpy, scikit-learn, OpenBLAS
  OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 tools/train_digits.py   # train (about 20 minutes on 2 cores) and evaluate
  /usr/bin/python3 tools/train_digits.py --evaluate-only # evaluate models/digits/ again
  /usr/bin/python3 tools/train_digits.py --score s.safetensors   # score `generate --raw s.safetensors` output

Debian's torch uses the reference BLAS unless OpenBLAS is installed (libopenblas0-openmp, which
install-deps.sh --python adds); with it one training step at batch 64 takes about 0.29 s on this 2-core
machine, without it about 5× longer. OPENBLAS_CORETYPE only matters on CPUs OpenBLAS does not recognise.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_unet import UNet2DModel, load_safetensors  # noqa: E402
from training import train_ema, write_model_folder  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "models", "digits")
T = 1000
NULL = 10
CONFIG = {
    "_class_name": "UNet2DModel", "sample_size": 16, "in_channels": 1, "out_channels": 1,
    "center_input_sample": False, "time_embedding_type": "positional", "freq_shift": 0, "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [32, 64], "layers_per_block": 2, "mid_block_scale_factor": 1, "downsample_padding": 1,
    "act_fn": "silu", "attention_head_dim": 16, "norm_num_groups": 8, "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default", "add_attention": True, "class_embed_type": None, "num_class_embeds": 11,
}
SCHEDULER = {"_class_name": "DDPMScheduler", "num_train_timesteps": T, "beta_schedule": "squaredcos_cap_v2",
             "prediction_type": "v_prediction", "variance_type": "fixed_small", "clip_sample": True,
             "clip_sample_range": 1.0, "timestep_spacing": "trailing", "steps_offset": 0}


def cosine_alpha_bar():
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = np.array([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)])
    return torch.tensor(np.cumprod(1 - betas), dtype=torch.float64)


def load_data(seed=0):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0  # (n, 1, 8, 8) in [0, 1]
    y = torch.tensor(d.target, dtype=torch.long)
    rng = np.random.default_rng(seed)
    held = []
    for c in range(10):
        idx = np.flatnonzero(d.target == c)
        held += list(rng.choice(idx, size=len(idx) // 10, replace=False))
    mask = np.ones(len(y), dtype=bool)
    mask[held] = False
    up = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False) * 2 - 1
    return up[mask], y[mask], up[~mask], y[~mask]


def to8(x16):
    """16×16 in [−1, 1] → 8×8 in the classifier's 0…16 units (2×2 average)."""
    return ((F.avg_pool2d(x16, 2) + 1) / 2 * 16).reshape(len(x16), -1).clamp(0, 16).numpy()


def train(args):
    x, y, _, _ = load_data(args.seed)
    ab = cosine_alpha_bar().float()

    def v_objective(model, x0, lab, g):
        t = torch.randint(0, T, (len(x0),), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        a, b = ab[t].sqrt()[:, None, None, None], (1 - ab[t]).sqrt()[:, None, None, None]
        return F.mse_loss(model(a * x0 + b * eps, t.float(), lab), a * eps - b * x0)

    ema, losses, nparams, seconds = train_ema(CONFIG, x, y, NULL, args, v_objective)
    write_model_folder(OUT, ema, CONFIG, SCHEDULER, losses, args)
    return {"steps": args.steps, "batch": args.batch, "lr": args.lr, "ema": args.ema, "seconds": seconds,
            "parameters": nparams, "final_loss": float(np.mean(losses[-500:]))}


@torch.no_grad()
def sample(model, labels, steps, kind, scale, seed):
    """DDPM (fixed_small, full chain) or DDIM (η = 0, trailing spacing) with CFG (ε_u + w(ε_c − ε_u) on v),
    x̂0 clipped to [−1, 1]; float32 like a user of the shipped model."""
    ab = cosine_alpha_bar()
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    x = torch.randn(n, 1, 16, 16, generator=g)
    if kind == "ddpm":
        ts = list(range(T - 1, -1, -1))
    else:
        ts = [int(round(T + k * ((T - T / steps) - T))) - 1 for k in range(steps)]
    null = torch.full_like(labels, NULL)
    for i, t in enumerate(ts):
        p = ts[i + 1] if i + 1 < len(ts) else -1
        abt, abp = float(ab[t]), float(ab[p]) if p >= 0 else 1.0
        tt = torch.full((n,), float(t))
        if scale == 1.0:
            v = model(x, tt, labels)
        else:
            both = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([labels, null]))
            vc, vu = both[:n], both[n:]
            v = vu + scale * (vc - vu)
        a, b = math.sqrt(abt), math.sqrt(1 - abt)
        x0 = (a * x - b * v).clamp(-1, 1)
        eps = (x - a * x0) / b
        if kind == "ddpm":
            bp = 1 - abt / abp
            c1 = math.sqrt(abp) * bp / (1 - abt)
            c2 = math.sqrt(1 - bp) * (1 - abp) / (1 - abt)
            var = bp * (1 - abp) / (1 - abt)
            x = c1 * x0 + c2 * x
            if p >= 0:
                x = x + math.sqrt(var) * torch.randn(x.shape, generator=g)
        else:
            x = math.sqrt(abp) * x0 + math.sqrt(1 - abp) * eps
    return x


def evaluate(args):
    from sklearn.linear_model import LogisticRegression
    torch.set_num_threads(args.threads)
    xtr, ytr, xte, yte = load_data(args.seed)
    clf = LogisticRegression(max_iter=5000, C=0.5)
    clf.fit(to8(xtr), ytr.numpy())
    real_acc = float((clf.predict(to8(xte)) == yte.numpy()).mean())
    model = UNet2DModel(CONFIG)
    model.load_state_dict(load_safetensors(os.path.join(OUT, "diffusion_pytorch_model.safetensors")))
    model.eval()
    labels = torch.arange(args.eval_samples) % 10
    results = {"classifier_accuracy_on_held_out_real": real_acc, "samples_per_config": args.eval_samples,
               "guidance_scale": args.guidance}
    real = (xtr + 1) / 2
    results["real_pixel_mean"], results["real_pixel_std"] = float(real.mean()), float(real.std())
    for kind, steps in [("ddpm", 1000), ("ddim", 50), ("ddim", 10)]:
        for scale in [1.0, args.guidance]:
            t0 = time.time()
            x = sample(model, labels, steps, kind, scale, seed=1)
            acc = float((clf.predict(to8(x)) == labels.numpy()).mean())
            gen = (x.clamp(-1, 1) + 1) / 2
            key = f"{kind}{steps if kind == 'ddim' else ''}_w{scale:g}"
            results[key] = {"accuracy": acc, "pixel_mean": float(gen.mean()), "pixel_std": float(gen.std()),
                            "seconds": time.time() - t0}
            print(key, results[key], flush=True)
    with open(os.path.join(OUT, "quality.json"), "w") as f:
        json.dump(results, f, indent=2)
    return results


def score(args):
    """Scores samples written by `generate --raw` (diffuse's C++ sampler) with the same classifier."""
    from sklearn.linear_model import LogisticRegression
    xtr, ytr, _, _ = load_data(args.seed)
    clf = LogisticRegression(max_iter=5000, C=0.5)
    clf.fit(to8(xtr), ytr.numpy())
    results = {}
    for path in args.score:
        t = load_safetensors(path)
        x, labels = t["samples"].float(), t["labels"].long()
        acc = float((clf.predict(to8(x)) == labels.numpy()).mean())
        gen = (x.clamp(-1, 1) + 1) / 2
        results[os.path.basename(path)] = {"samples": len(labels), "accuracy": acc, "pixel_mean": float(gen.mean()),
                                           "pixel_std": float(gen.std())}
        print(os.path.basename(path), results[os.path.basename(path)], flush=True)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--eval-samples", type=int, default=200)
    ap.add_argument("--evaluate-only", action="store_true")
    ap.add_argument("--score", nargs="+", metavar="SAMPLES", help="score safetensors files written by generate --raw, then exit")
    args = ap.parse_args()
    if args.score:
        score(args)
        return
    if not args.evaluate_only:
        info = train(args)
        with open(os.path.join(OUT, "training.json"), "w") as f:
            json.dump(info, f, indent=2)
        print(info, flush=True)
    evaluate(args)


if __name__ == "__main__":
    main()
