#!/usr/bin/python3
"""Trains the class-conditional rectified-flow model of Fashion-MNIST shipped in models/fashion/, and scores samples.

Data: Fashion-MNIST (Debian package dataset-fashion-mnist: 60,000 training and 10,000 test images, 28×28,
grey levels 0…255, ten classes of clothing), scaled to [−1, 1] and padded with the background value −1 to
32×32. Why 32×32: the UNet halves the resolution twice (32 → 16 → 8, attention at 8×8); 28 → 14 → 7 would
leave an odd size whose next halving is not exact, and padding (rather than resizing) keeps every real pixel
unchanged, so the quality classifier scores the 28×28 crop of a generated image against real images that
were never resampled.

Model: diffusers UNet2DModel layout (tools/torch_unet.py), 11 class embeddings (label 10 is the null class
for classifier-free guidance, used for 15% of training examples).
Flow: rectified flow, x_t = (1 − t)·x0 + t·ε with t uniform in [0, 1]; the model predicts the velocity
v = ε − x0 and receives t·1000 as its timestep, which is what diffusers' FlowMatchEulerDiscreteScheduler
hands the model (timestep = σ · num_train_timesteps). AdamW, EMA of the weights, fixed seed.

Quality (--score): a small CNN trained here on the real training set (cached in models/fashion/classifier.safetensors;
its test accuracy is printed) classifies the 28×28 crops of generated images: the fraction classified as the
requested class, and the Fréchet distance between the classifier's penultimate features of the generated images and
of the real test set, beside the same distance for an equally large sample of real training images (the baseline).

  bash scripts/install-deps.sh --python      # torch, numpy, scipy, OpenBLAS, dataset-fashion-mnist
  /usr/bin/python3 tools/train_fashion.py    # train (about 65 minutes on one thread of a loaded 2-core machine)
  /usr/bin/python3 tools/train_fashion.py --score s.safetensors   # score `generate --model fashion --raw s.safetensors`
  /usr/bin/python3 tools/train_fashion.py --evaluate-only          # PyTorch flow-Euler samples of models/fashion/, scored
"""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_unet import UNet2DModel, load_safetensors, save_safetensors  # noqa: E402
from training import train_ema, write_model_folder  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "models", "fashion")
DATA = "/usr/share/datasets/fashion-mnist"
T = 1000
NULL = 10
PAD = 2  # 28 + 2·2 = 32
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CONFIG = {
    "_class_name": "UNet2DModel", "sample_size": 32, "in_channels": 1, "out_channels": 1,
    "center_input_sample": False, "time_embedding_type": "positional", "freq_shift": 0, "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
    "block_out_channels": [32, 64, 64], "layers_per_block": 1, "mid_block_scale_factor": 1, "downsample_padding": 1,
    "act_fn": "silu", "attention_head_dim": 32, "norm_num_groups": 8, "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default", "add_attention": True, "class_embed_type": None, "num_class_embeds": 11,
}
SCHEDULER = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": T, "shift": 1.0,
             "use_dynamic_shifting": False, "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256,
             "max_image_seq_len": 4096, "invert_sigmas": False, "shift_terminal": None, "use_karras_sigmas": False,
             "use_exponential_sigmas": False, "use_beta_sigmas": False, "time_shift_type": "exponential",
             "stochastic_sampling": False}


def read_idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(split):
    """Images (n, 1, 32, 32) in [−1, 1], background-padded, and labels (n,)."""
    prefix = "train" if split == "train" else "t10k"
    x = torch.from_numpy(read_idx(f"{prefix}-images-idx3-ubyte.gz").astype(np.float32))[:, None] / 127.5 - 1.0
    y = torch.from_numpy(read_idx(f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64))
    return F.pad(x, (PAD, PAD, PAD, PAD), value=-1.0), y


def crop(x32):
    """32×32 model output → the 28×28 image the classifier sees, clamped to the data range."""
    return x32[:, :, PAD:PAD + 28, PAD:PAD + 28].clamp(-1, 1)


def train(args):
    x, y = load_split("train")

    def flow_objective(model, x0, lab, g):
        t = torch.rand(len(x0), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        tb = t[:, None, None, None]
        return F.mse_loss(model((1 - tb) * x0 + tb * eps, t * T, lab), eps - x0)

    ema, losses, nparams, seconds = train_ema(CONFIG, x, y, NULL, args, flow_objective,
                                              f", {args.steps} steps at batch {args.batch}")
    write_model_folder(OUT, ema, CONFIG, SCHEDULER, losses, args, dtype=args.dtype)
    return {"steps": args.steps, "batch": args.batch, "lr": args.lr, "ema": args.ema, "threads": args.threads,
            "seconds": seconds, "parameters": nparams, "dtype": args.dtype, "final_loss": float(np.mean(losses[-500:]))}


# ---------------------------------------------------------------------------------------------
# quality classifier


class Classifier(nn.Module):
    """Two conv + pool stages and a 64-wide penultimate layer, whose activations the Fréchet distance uses."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 3, padding=1)
        self.c2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 7 * 7, 64)
        self.out = nn.Linear(64, 10)

    def features(self, x28):
        h = F.max_pool2d(F.relu(self.c1(x28)), 2)
        h = F.max_pool2d(F.relu(self.c2(h)), 2)
        return F.relu(self.fc(h.flatten(1)))

    def forward(self, x28):
        return self.out(self.features(x28))


CLASSIFIER = os.path.join(OUT, "classifier.safetensors")


def classifier(args):
    """The cached classifier, or one trained deterministically (3 epochs, batch 128, seed 0) and cached."""
    clf = Classifier()
    if os.path.exists(CLASSIFIER):
        clf.load_state_dict(load_safetensors(CLASSIFIER))
        clf.eval()
        return clf
    torch.manual_seed(0)
    clf = Classifier()
    x, y = load_split("train")
    x = crop(x)
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    t0 = time.time()
    for epoch in range(3):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            loss = F.cross_entropy(clf(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        print(f"classifier epoch {epoch + 1}: loss {loss.item():.3f} {time.time() - t0:.0f}s", flush=True)
    clf.eval()
    os.makedirs(OUT, exist_ok=True)
    save_safetensors(CLASSIFIER, clf.state_dict(), {"epochs": 3, "batch": 128, "seed": 0})
    return clf


@torch.no_grad()
def features_and_predictions(clf, x28):
    feats, preds = [], []
    for i in range(0, len(x28), 500):
        f = clf.features(x28[i:i + 500])
        feats.append(f.double())
        preds.append(clf.out(f).argmax(1))
    return torch.cat(feats).numpy(), torch.cat(preds).numpy()


def frechet(a, b):
    """Fréchet distance between Gaussians fitted to two feature sets: |μa − μb|² + tr(Σa + Σb − 2(Σa Σb)^½)."""
    from scipy import linalg
    ma, mb = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = linalg.sqrtm(ca @ cb, disp=False)
    return float(((ma - mb) ** 2).sum() + np.trace(ca + cb - 2 * root.real))


class Scorer:
    def __init__(self, args):
        torch.set_num_threads(args.threads)
        self.clf = classifier(args)
        xte, yte = load_split("test")
        self.test_feats, pred = features_and_predictions(self.clf, crop(xte))
        self.test_accuracy = float((pred == yte.numpy()).mean())
        self.xtr, self.ytr = load_split("train")
        self.baselines = {}
        print(f"classifier accuracy on the real test set: {self.test_accuracy:.4f}", flush=True)

    def baseline(self, n, draws=5):
        """Fréchet distance of n real training images to the real test set: mean, min and max over `draws`
        class-balanced draws (seeds 1 … draws), balanced like the generated sets (labels i mod 10). With n of a
        few hundred the distance has a bias and a spread of its own, which this shows."""
        if n not in self.baselines:
            values = []
            for seed in range(1, draws + 1):
                g = torch.Generator().manual_seed(seed)
                idx = []
                for c in range(10):
                    pool = torch.nonzero(self.ytr == c).flatten()
                    k = n // 10 + (1 if c < n % 10 else 0)
                    idx.append(pool[torch.randperm(len(pool), generator=g)[:k]])
                feats, _ = features_and_predictions(self.clf, crop(self.xtr[torch.cat(idx)]))
                values.append(frechet(feats, self.test_feats))
            self.baselines[n] = {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}
        return self.baselines[n]

    def __call__(self, x32, labels):
        feats, pred = features_and_predictions(self.clf, crop(x32.float()))
        gen = (crop(x32.float()) + 1) / 2
        return {"samples": len(labels), "accuracy": float((pred == labels.numpy()).mean()),
                "frechet": frechet(feats, self.test_feats), "frechet_real_train_baseline": self.baseline(len(labels)),
                "pixel_mean": float(gen.mean()), "pixel_std": float(gen.std())}


def score(args):
    """Scores samples written by `generate --raw` (diffuse's C++ sampler)."""
    s = Scorer(args)
    results = {"classifier_test_accuracy": s.test_accuracy}
    for path in args.score:
        t = load_safetensors(path)
        r = s(t["samples"], t["labels"].long())
        results[os.path.basename(path)] = r
        print(os.path.basename(path), json.dumps(r), flush=True)
    return results


@torch.no_grad()
def flow_euler(model, labels, steps, scale, seed):
    """Flow-matching Euler from σ = 1 to 0 in equal steps (FlowMatchEulerDiscreteScheduler with shift 1),
    classifier-free guidance v_u + w(v_c − v_u); float32 like a user of the shipped model."""
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    x = torch.randn(n, 1, 32, 32, generator=g)
    null = torch.full_like(labels, NULL)
    sig = [1 - k / steps for k in range(steps + 1)]
    for i in range(steps):
        tt = torch.full((n,), sig[i] * T)
        if scale == 1.0:
            v = model(x, tt, labels)
        else:
            both = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([labels, null]))
            v = both[n:] + scale * (both[:n] - both[n:])
        x = x + (sig[i + 1] - sig[i]) * v
    return x


def evaluate(args):
    s = Scorer(args)
    model = UNet2DModel(CONFIG)
    model.load_state_dict({k: v.float() for k, v in load_safetensors(os.path.join(OUT, "diffusion_pytorch_model.safetensors")).items()})
    model.eval()
    labels = torch.arange(args.eval_samples) % 10
    results = {"classifier_test_accuracy": s.test_accuracy, "samples_per_config": args.eval_samples, "guidance_scale": args.guidance}
    for steps in args.eval_steps:
        for scale in [1.0, args.guidance]:
            t0 = time.time()
            x = torch.cat([flow_euler(model, labels[i:i + 100], steps, scale, seed=1 + i) for i in range(0, len(labels), 100)])
            key = f"euler{steps}_w{scale:g}"
            results[key] = dict(s(x, labels), seconds=time.time() - t0)
            print(key, json.dumps(results[key]), flush=True)
    with open(os.path.join(OUT, "quality_pytorch.json"), "w") as f:
        json.dump(results, f, indent=2)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="F32", choices=["F32", "F16"], help="dtype of the saved weights")
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--eval-samples", type=int, default=500)
    ap.add_argument("--eval-steps", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--time-steps", type=int, default=0, help="time this many training steps, print s/step, exit")
    ap.add_argument("--evaluate-only", action="store_true")
    ap.add_argument("--score", nargs="+", metavar="SAMPLES", help="score safetensors files written by generate --raw, then exit")
    args = ap.parse_args()
    if args.score:
        score(args)
        return
    if args.time_steps:
        global OUT
        OUT = "/tmp/fashion-timing"
        args.steps = args.time_steps
        info = train(args)
        print(f"{info['seconds'] / args.steps:.3f} s/step, {info['parameters']} parameters", flush=True)
        return
    if not args.evaluate_only:
        info = train(args)
        with open(os.path.join(OUT, "training.json"), "w") as f:
            json.dump(info, f, indent=2)
        print(info, flush=True)
        return
    evaluate(args)


if __name__ == "__main__":
    main()
