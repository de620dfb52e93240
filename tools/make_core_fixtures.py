#!/usr/bin/python3
"""Reference tables for diffuse's schedules, timestep lists and posterior coefficients.

An independent float64 numpy implementation of the formulas used by diffusers (DDPMScheduler /
DDIMScheduler: betas, alphas_cumprod, rescale_zero_terminal_snr, set_timesteps spacings) and
guided-diffusion (get_named_beta_schedule, GaussianDiffusion tables, space_timesteps), written from
SPEC §1, §3, §5 and §11 of diffuse. Both reference libraries compute these tables in float64 (diffusers
then stores betas as float32 tensors: diffuse keeps double and matches the float64 formulas).

Writes tests/fixtures/schedules.json and tests/fixtures/timesteps.json.
Run: /usr/bin/python3 tools/make_core_fixtures.py
"""
import json
import math
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures")


def linear(T, a=1e-4, b=0.02):
    return np.linspace(a, b, T, dtype=np.float64)


def linear_scaled(T):
    s = 1000 / T
    return np.linspace(s * 0.0001, s * 0.02, T, dtype=np.float64)


def scaled_linear(T, a=0.00085, b=0.012):
    return np.linspace(a ** 0.5, b ** 0.5, T, dtype=np.float64) ** 2


def cosine(T, s=0.008, max_beta=0.999):
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return np.array([min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)], dtype=np.float64)


def sigmoid(T, a=1e-4, b=0.02):
    z = np.linspace(-6, 6, T)
    return 1 / (1 + np.exp(-z)) * (b - a) + a


def zero_snr(betas):
    ab = np.cumprod(1.0 - betas)
    a = np.sqrt(ab)
    a0, aT = a[0].copy(), a[-1].copy()
    a -= aT
    a *= a0 / (a0 - aT)
    ab = a ** 2
    out = np.empty_like(ab)
    out[0] = 1 - ab[0]
    out[1:] = 1 - ab[1:] / ab[:-1]
    return out, ab


def tables(betas, ab=None):
    if ab is None:
        ab = np.cumprod(1.0 - betas)
    abp = np.append(1.0, ab[:-1])
    with np.errstate(divide="ignore"):
        post_var = betas * (1 - abp) / (1 - ab)
        log_clipped = np.log(np.append(post_var[1], post_var[1:])) if len(betas) > 1 else np.log(betas)
        return {
            "betas": betas, "alphas_cumprod": ab,
            "sqrt_alphas_cumprod": np.sqrt(ab), "sqrt_one_minus_alphas_cumprod": np.sqrt(1 - ab),
            "sqrt_recip_alphas_cumprod": np.sqrt(1 / ab), "sqrt_recipm1_alphas_cumprod": np.sqrt(1 / ab - 1),
            "snr": ab / (1 - ab),
            "posterior_variance": post_var, "posterior_log_variance_clipped": log_clipped,
            "posterior_mean_coef1": betas * np.sqrt(abp) / (1 - ab),
            "posterior_mean_coef2": (1 - abp) * np.sqrt(1 - betas) / (1 - ab),
        }


def sampled(tab, T):
    """Every 7th entry plus the last two, to keep the fixture small."""
    idx = sorted(set(range(0, T, 7)) | {T - 2, T - 1} if T > 1 else {0})
    res = {"t": idx}
    for k, v in tab.items():
        res[k] = [None if not np.isfinite(v[i]) else float(v[i]) for i in idx]
    return res


def trailing(T, N):
    # arange(T, 0, -T/N) computes T + k*delta; SPEC §11 keeps exactly N entries.
    delta = (T - T / N) - T
    return [int(np.round(T + k * delta)) - 1 for k in range(N)]


def leading(T, N, offset):
    return [int(v) for v in (np.arange(0, N) * (T // N)).round()[::-1] + offset]


def linspace(T, N):
    return [int(v) for v in np.linspace(0, T - 1, N).round()[::-1]]


def ddim_stride(T, n):
    for s in range(1, T):
        if len(range(0, T, s)) == n:
            return sorted(range(0, T, s), reverse=True)
    return None


def sections(T, counts):
    k = len(counts)
    size_per, extra = T // k, T % k
    start, out = 0, set()
    for j, c in enumerate(counts):
        size = size_per + (1 if j < extra else 0)
        if c > size:
            return None
        if c <= 1:
            if c == 1:
                out.add(start)
        else:
            stride = (size - 1) / (c - 1)
            cur = 0.0
            for _ in range(c):
                out.add(start + round(cur))
                cur += stride
        start += size
    return sorted(out, reverse=True) if out else None


def main():
    os.makedirs(OUT, exist_ok=True)
    scheds = {
        "linear_1000": tables(linear(1000)),
        "linear_scaled_50": tables(linear_scaled(50)),
        "scaled_linear_1000": tables(scaled_linear(1000)),
        "cosine_1000": tables(cosine(1000)),
        "sigmoid_100": tables(sigmoid(100)),
        "linear_1000_zero_snr": tables(*zero_snr(linear(1000))),
        "scaled_linear_1000_zero_snr": tables(*zero_snr(scaled_linear(1000))),
    }
    data = {"provenance": "tools/make_core_fixtures.py: float64 numpy re-implementation of diffusers' and "
                          "guided-diffusion's schedule tables (SPEC §1, §3); every 7th t plus the last two",
            "schedules": {k: sampled(v, len(v["betas"])) for k, v in scheds.items()}}
    with open(os.path.join(OUT, "schedules.json"), "w") as f:
        json.dump(data, f, separators=(",", ":"))

    spacing = []
    for T in [1000, 49, 50, 51, 7]:
        for N in sorted({1, 2, 3, 7, 10, 50, 999, 1000, T} & set(range(1, T + 1))):
            spacing.append({"T": T, "N": N, "spacing": "linspace", "offset": 0, "timesteps": linspace(T, N)})
            spacing.append({"T": T, "N": N, "spacing": "trailing", "offset": 0, "timesteps": trailing(T, N)})
            for off in [0, 1]:
                ts = leading(T, N, off)
                if ts[0] < T:
                    spacing.append({"T": T, "N": N, "spacing": "leading", "offset": off, "timesteps": ts})
    respacing = []
    for T, spec in [(1000, "ddim50"), (1000, "ddim25"), (1000, "ddim1000"), (1000, "250"), (1000, "10,15,20"),
                    (1000, "1,0,3"), (1000, "5"), (50, "ddim7"), (100, "3,3,3"), (10, "2,2,2"), (1000, "27"),
                    (4000, "ddim100"), (100, "10,0,0,1"), (7, "1,1,1,1,1,1,1")]:
        if spec.startswith("ddim"):
            ts = ddim_stride(T, int(spec[4:]))
        else:
            ts = sections(T, [int(c) for c in spec.split(",")])
        respacing.append({"T": T, "spec": spec, "timesteps": ts})
    with open(os.path.join(OUT, "timesteps.json"), "w") as f:
        json.dump({"provenance": "tools/make_core_fixtures.py: numpy linspace/arange/round (half to even) as "
                                 "diffusers' set_timesteps and guided-diffusion's space_timesteps compute them "
                                 "(SPEC §5, §11); null = the reference raises", "spacing": spacing,
                   "respacing": respacing}, f, separators=(",", ":"))
    print("wrote schedules.json and timesteps.json")


if __name__ == "__main__":
    main()
