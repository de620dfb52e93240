#!/usr/bin/python3
"""Reference values for diffuse's posterior, forward-marginal and variational-bound functions, computed by
guided-diffusion's own code (openai/guided-diffusion 22e0df8183507e13a7813f8d38d51b072ca1e67c):
GaussianDiffusion's float64 numpy tables, q_mean_variance, q_posterior_mean_variance, p_mean_variance of a
SpacedDiffusion (respaced chain) for each variance type, normal_kl and discretized_gaussian_log_likelihood.
Its _extract_into_tensor rounds every table entry to float32 before use; this script replaces that one
helper with a float64 version (same indexing and broadcasting), so the outputs carry the float64 tables
diffuse computes and can be compared at 1e-12.

The model is a fixed function of nothing: its outputs are drawn once from a seeded numpy generator, so the
fixture holds them and the C++ test feeds the same numbers. Tensors are float64 throughout.

Writes tests/fixtures/posterior_guided_diffusion.json.
Run: GUIDED_DIFFUSION=/path/to/a/checkout /usr/bin/python3 tools/make_posterior_fixtures.py
(the checkout is the folder that contains the guided_diffusion package).
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "posterior_guided_diffusion.json")
COMMIT = "22e0df8183507e13a7813f8d38d51b072ca1e67c"

sys.path.insert(0, os.environ.get("GUIDED_DIFFUSION", "/tmp/gd"))
import torch as th  # noqa: E402
from guided_diffusion import gaussian_diffusion as gd  # noqa: E402
from guided_diffusion.losses import discretized_gaussian_log_likelihood, normal_kl  # noqa: E402
from guided_diffusion.respace import SpacedDiffusion, space_timesteps  # noqa: E402


def extract_float64(arr, timesteps, broadcast_shape):
    """_extract_into_tensor without its .float(): the float64 tables reach the outputs unrounded."""
    res = th.from_numpy(np.asarray(arr, dtype=np.float64))[timesteps]
    while len(res.shape) < len(broadcast_shape):
        res = res[..., None]
    return res.expand(broadcast_shape)


gd._extract_into_tensor = extract_float64

TABLES = ["betas", "alphas_cumprod", "alphas_cumprod_prev", "alphas_cumprod_next", "sqrt_alphas_cumprod",
          "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
          "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
          "posterior_mean_coef1", "posterior_mean_coef2"]


def flat(t):
    return [float(v) for v in np.asarray(t, dtype=np.float64).reshape(-1)]


def diffusion(betas, var_type, use_timesteps=None):
    kw = dict(model_mean_type=gd.ModelMeanType.EPSILON, model_var_type=var_type, loss_type=gd.LossType.MSE)
    if use_timesteps is None:
        return gd.GaussianDiffusion(betas=betas, **kw)
    return SpacedDiffusion(use_timesteps=use_timesteps, betas=betas, **kw)


def main():
    rng = np.random.default_rng(20261207)
    out = {"provenance": f"tools/make_posterior_fixtures.py: openai/guided-diffusion {COMMIT}, its own "
                         "GaussianDiffusion / SpacedDiffusion / losses code run in float64 (_extract_into_tensor without its float32 cast)"}

    # 1. Every table of GaussianDiffusion, at every 37th t plus t = 1 and the last two.
    tables = {}
    for name, T in [("linear", 1000), ("cosine", 1000), ("linear", 50)]:
        d = diffusion(gd.get_named_beta_schedule(name, T), gd.ModelVarType.FIXED_SMALL)
        idx = sorted(set(range(0, T, 37)) | {1, T - 2, T - 1})
        entry = {"schedule": name, "T": T, "t": idx}
        for k in TABLES:
            entry[k] = [float(getattr(d, k)[i]) for i in idx]
        tables[f"{name}_{T}"] = entry
    out["tables"] = tables

    # 2. q(x_t | x_0) and q(x_{t-1} | x_t, x_0) on a batch of 3 items (C = 2, 5 elements each).
    betas = gd.get_named_beta_schedule("cosine", 1000)
    d = diffusion(betas, gd.ModelVarType.FIXED_SMALL)
    x0 = rng.uniform(-1, 1, size=(3, 2, 5))
    xt = rng.standard_normal(size=(3, 2, 5))
    t = np.array([0, 421, 999])
    mean, var, logvar = d.q_mean_variance(th.from_numpy(x0), th.from_numpy(t))
    pmean, pvar, plogvar = d.q_posterior_mean_variance(th.from_numpy(x0), th.from_numpy(xt), th.from_numpy(t))
    out["q"] = {"schedule": "cosine", "T": 1000, "shape": [3, 2, 5], "t": t.tolist(), "x0": flat(x0), "x_t": flat(xt),
                "mean": flat(mean), "variance": flat(var), "log_variance": flat(logvar),
                "posterior_mean": flat(pmean), "posterior_variance": flat(pvar),
                "posterior_log_variance_clipped": flat(plogvar)}

    # 3. p(x_prev | x_t) of a respaced chain ("ddim10" of linear 1000) for every variance type, epsilon model,
    #    clip_denoised on, at every position of the chain; plus the true posterior and the VB terms of
    #    _vb_terms_bpd (KL in bits per element averaged per item, and the decoder NLL at the last position).
    betas = gd.get_named_beta_schedule("linear", 1000)
    use = space_timesteps(1000, "ddim10")
    timesteps = sorted(use)
    B, C, S = 2, 2, 4
    x = rng.standard_normal(size=(B, C, S))
    x_start = np.round(rng.uniform(-1, 1, size=(B, C, S)) * 127.5) / 127.5  # an image rescaled from uint8
    x_start[0, 0, 0], x_start[1, 1, 3] = -1.0, 1.0  # the two edge bins of the discretized likelihood
    eps = rng.standard_normal(size=(B, C, S)) * 3.0  # large enough that clipping binds
    var_values = rng.uniform(-1.2, 1.2, size=(B, C, S))  # learned_range uses v as given, even outside [-1, 1]
    log_var_values = rng.uniform(-9, -2, size=(B, C, S))
    cases = []
    for var_type, extra in [(gd.ModelVarType.FIXED_SMALL, None), (gd.ModelVarType.FIXED_LARGE, None),
                            (gd.ModelVarType.LEARNED_RANGE, var_values), (gd.ModelVarType.LEARNED, log_var_values)]:
        sd = diffusion(betas, var_type, use)
        output = eps if extra is None else np.concatenate([eps, extra], axis=1)
        positions = []
        for i in range(len(timesteps)):  # i: guided-diffusion's index into the respaced chain (0 = least noisy)
            ti = th.full((B,), i, dtype=th.long)
            res = sd.p_mean_variance(lambda xx, tt: th.from_numpy(output), th.from_numpy(x), ti, clip_denoised=True)
            true_mean, _, true_logvar = sd.q_posterior_mean_variance(th.from_numpy(x_start), th.from_numpy(x), ti)
            vb = sd._vb_terms_bpd(lambda xx, tt: th.from_numpy(output), th.from_numpy(x_start), th.from_numpy(x), ti,
                                  clip_denoised=True)
            positions.append({"index": i, "t": timesteps[i], "mean": flat(res["mean"]), "variance": flat(res["variance"]),
                              "log_variance": flat(res["log_variance"]), "x0": flat(res["pred_xstart"]),
                              "true_mean": flat(true_mean), "true_log_variance": flat(true_logvar),
                              "vb_bits": flat(vb["output"])})
        cases.append({"variance_type": var_type.name.lower(), "model_output": flat(output), "positions": positions})
    out["p"] = {"schedule": "linear", "T": 1000, "respacing": "ddim10", "timesteps": timesteps, "shape": [B, C, S],
                "x_t": flat(x), "x_start": flat(x_start), "cases": cases}

    # 4. The loss helpers on their own, including means far from x (log-probability clamps at 1e-12).
    n = 40
    m1, m2 = rng.standard_normal(n), rng.standard_normal(n) * 2
    l1, l2 = rng.uniform(-6, 2, n), rng.uniform(-6, 2, n)
    xs = np.round(rng.uniform(-1, 1, n) * 127.5) / 127.5
    xs[:3] = [-1.0, 1.0, 0.0]
    means = xs + rng.standard_normal(n) * np.geomspace(1e-3, 5, n)
    log_scales = rng.uniform(-7, 0.5, n)
    kl = normal_kl(th.from_numpy(m1), th.from_numpy(l1), th.from_numpy(m2), th.from_numpy(l2))
    ll = discretized_gaussian_log_likelihood(th.from_numpy(xs), means=th.from_numpy(means),
                                             log_scales=th.from_numpy(log_scales))
    out["losses"] = {"mean1": flat(m1), "logvar1": flat(l1), "mean2": flat(m2), "logvar2": flat(l2),
                     "normal_kl": flat(kl), "x": flat(xs), "means": flat(means), "log_scales": flat(log_scales),
                     "log_likelihood": flat(ll)}

    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
