#!/usr/bin/python3
"""Step-level reference values for diffuse's DDPM ancestral and DDIM samplers.

Re-implements, in float64 numpy, the step maths of
  - diffusers' DDPMScheduler.step (epsilon / sample / v_prediction; fixed_small, fixed_large, learned,
    learned_range; clip_sample; thresholding) and DDIMScheduler.step (eta, set_alpha_to_one,
    use_clipped_model_output, clip / thresholding), and
  - guided-diffusion's GaussianDiffusion.p_sample / ddim_sample on respaced chains (fixed_large with the
    clipped beta at the last position, LEARNED as log variance, LEARNED_RANGE with clipped log beta~),
following the formulas of SPEC §3, §4, §6 and §11, with diffuse's conventions where it deliberately
differs (the previous timestep is the next list entry; no noise on the last list position).

Writes tests/fixtures/sampler_steps.json. Run: /usr/bin/python3 tools/make_sampler_fixtures.py
"""
import json
import math
import os

import numpy as np

T = 1000


def linear_betas(T, start=1e-4, end=0.02):
    return np.linspace(start, end, T, dtype=np.float64)


def cosine_betas(T, s=0.008, max_beta=0.999):
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return np.array([min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)], dtype=np.float64)


def rescale_zero_snr(betas):
    ab = np.cumprod(1.0 - betas)
    a = np.sqrt(ab)
    a0, aT = a[0], a[-1]
    a = (a - aT) * a0 / (a0 - aT)
    ab = a ** 2
    b = np.empty_like(ab)
    b[0] = 1 - ab[0]
    b[1:] = 1 - ab[1:] / ab[:-1]
    return b


def trailing(T, N):
    delta = (T - T / N) - T
    return [int(np.round(T + k * delta)) - 1 for k in range(N)]


def leading(T, N, offset=0):
    r = T // N
    return [k * r + offset for k in range(N)][::-1]


def linspace(T, N):
    return [int(v) for v in np.round(np.linspace(0, T - 1, N))[::-1]]


def posterior(betas, ab, t, p):
    """Coefficients of q(x_p | x_t, x0) (SPEC §3); the full chain uses the schedule's beta itself."""
    abt = ab[t]
    abp = ab[p] if p >= 0 else 1.0
    bp = betas[t] if p == t - 1 else 1 - abt / abp
    c1 = math.sqrt(abp) * bp / (1 - abt)
    c2 = math.sqrt(1 - bp) * (1 - abp) / (1 - abt)
    var = bp * (1 - abp) / (1 - abt)
    return abt, abp, bp, c1, c2, var


def x0_from(pred, x, out, abt, c1=None, c2=None):
    if pred == "epsilon":
        return np.sqrt(1.0 / abt) * x - np.sqrt(1.0 / abt - 1) * out
    if pred == "sample":
        return out.copy()
    if pred == "v_prediction":
        return np.sqrt(abt) * x - np.sqrt(1 - abt) * out
    if pred == "previous_x":
        return (1.0 / c1) * out - (c2 / c1) * x
    raise ValueError(pred)


def eps_from(pred, x, out, abt):
    if pred == "epsilon":
        return out.copy()
    if pred == "sample":
        return (x - np.sqrt(abt) * out) / np.sqrt(1 - abt)
    if pred == "v_prediction":
        return np.sqrt(abt) * out + np.sqrt(1 - abt) * x
    raise ValueError(pred)


def process(x0, proc, batch):
    if proc == "none":
        return x0
    if proc == "clip":
        return np.clip(x0, -1.0, 1.0)
    if proc == "threshold":  # Imagen dynamic thresholding, p = 0.995, max 1.5 (so s is not always 1)
        out = x0.copy().reshape(batch, -1)
        for i in range(batch):
            v = np.sort(np.abs(out[i]))
            h = 0.995 * (v.size - 1)
            lo = int(math.floor(h))
            s = v[lo] + (h - lo) * (v[min(lo + 1, v.size - 1)] - v[lo])
            s = min(max(s, 1.0), 1.5)
            out[i] = np.clip(out[i], -s, s) / s
        return out.reshape(x0.shape)
    raise ValueError(proc)


def ddpm_step(betas, ab, ts, k, x, out, z, pred, var_type, proc, batch, C, g=None):
    t = ts[k]
    p = ts[k + 1] if k + 1 < len(ts) else -1
    abt, abp, bp, c1, c2, var = posterior(betas, ab, t, p)
    learned = var_type in ("learned", "learned_log", "learned_range")
    if learned:
        o = out.reshape(batch, 2 * C, -1)
        pred_out, var_out = o[:, :C].reshape(x.shape), o[:, C:].reshape(x.shape)
    else:
        pred_out, var_out = out, None
    x0 = process(x0_from(pred, x, pred_out, abt, c1, c2), proc, batch)
    mean = pred_out if pred == "previous_x" else c1 * x0 + c2 * x
    # clipped log variance of this position (SPEC §11): at the last position, that of the step before it
    if p >= 0:
        logvar = math.log(var)
    elif len(ts) >= 2:
        logvar = math.log(posterior(betas, ab, ts[-2], t)[5])
    else:  # a one-entry list: the full-chain clipped table at t
        logvar = math.log(posterior(betas, ab, max(t, 1), max(t, 1) - 1)[5])
    if var_type == "fixed_small":
        sigma = math.sqrt(var) if p >= 0 else 0.0
    elif var_type == "fixed_large":
        sigma = math.sqrt(bp) if p >= 0 else math.exp(0.5 * logvar)
    elif var_type == "learned":
        sigma = np.sqrt(var_out)
    elif var_type == "learned_log":
        sigma = np.exp(0.5 * var_out)
    else:
        frac = (var_out + 1) / 2
        sigma = np.exp(0.5 * (frac * math.log(bp) + (1 - frac) * logvar))
    if g is not None:  # guided-diffusion's condition_mean: mean + variance * gradient
        mean = mean + np.asarray(sigma) ** 2 * g
    xp = mean + sigma * z if p >= 0 else mean
    return xp, x0


def ddim_step(ab, ts, k, x, out, z, pred, eta, set_one, clipped_eps, proc, batch, prev_override=None, g=None):
    t = ts[k]
    p = prev_override if prev_override is not None else (ts[k + 1] if k + 1 < len(ts) else -1)
    abt = ab[t]
    abp = ab[p] if p >= 0 else (1.0 if set_one else ab[0])
    x0 = process(x0_from(pred, x, out, abt), proc, batch)
    eps = eps_from(pred, x, out, abt)
    if clipped_eps:
        eps = (x - math.sqrt(abt) * x0) / math.sqrt(1 - abt)
    if g is not None:  # guided-diffusion's condition_score (SPEC §11)
        eps = (x - math.sqrt(abt) * x0) / math.sqrt(1 - abt) - math.sqrt(1 - abt) * g
        x0 = (x - math.sqrt(1 - abt) * eps) / math.sqrt(abt)
    sigma = eta * math.sqrt((1 - abp) / (1 - abt)) * math.sqrt(1 - abt / abp)
    direction = math.sqrt(max(0.0, 1 - abp - sigma ** 2))
    xp = math.sqrt(abp) * x0 + direction * eps
    if sigma > 0:
        xp = xp + sigma * z
    return xp, x0


def main():
    rng = np.random.default_rng(20261122)
    batch, C, S = 2, 1, 4
    shape = (batch, C, S)
    schedules = {
        "linear": linear_betas(T),
        "cosine": cosine_betas(T),
        "linear_zero_snr": rescale_zero_snr(linear_betas(T)),
    }
    lists = {
        "full": list(range(T - 1, -1, -1)),
        "leading50": leading(T, 50, 1),
        "trailing7": trailing(T, 7),
        "linspace7": linspace(T, 7),
    }
    cases = []
    x = rng.standard_normal(shape) * 1.3
    out1 = rng.standard_normal(shape) * 1.1
    out2 = np.concatenate([out1, rng.uniform(-1, 1, shape)], axis=1)
    z = rng.standard_normal(shape)
    out_sigma2 = out2.copy()
    out_sigma2[:, C:] = np.abs(out_sigma2[:, C:]) * 1e-3 + 1e-4  # diffusers' "learned" gives a positive sigma^2
    ddpm_grid = [("fixed_small", "none"), ("fixed_small", "clip"), ("fixed_small", "threshold"),
                 ("fixed_large", "none"), ("learned", "none"), ("learned_log", "none"), ("learned_range", "none")]
    # (eta, set_alpha_to_one, use_clipped_model_output, processing)
    ddim_grid = [(0.0, True, False, "none"), (0.0, True, False, "clip"), (0.0, True, True, "clip"),
                 (0.0, True, True, "threshold"), (1.0, True, False, "none"), (1.0, True, True, "clip"),
                 (0.5, True, False, "none"), (0.0, False, False, "none"), (1.0, False, False, "none")]
    for sname, betas in schedules.items():
        ab = np.cumprod(1.0 - betas)
        for lname, ts in lists.items():
            if sname.endswith("zero_snr") and lname not in ("full", "trailing7"):
                continue
            positions = sorted({0, len(ts) // 2, len(ts) - 2, len(ts) - 1}) if lname == "full" else sorted({0, len(ts) // 2, len(ts) - 1})
            preds = ["v_prediction", "sample"] if sname.endswith("zero_snr") else ["epsilon", "sample", "v_prediction", "previous_x"]
            for k in positions:
                for pred in preds:
                    for var_type, proc in ddpm_grid:
                        if pred == "previous_x" and (proc != "none" or var_type not in ("fixed_small", "learned_range")):
                            continue
                        learned = var_type.startswith("learned")
                        out = (out_sigma2 if var_type == "learned" else out2) if learned else out1
                        xp, x0 = ddpm_step(betas, ab, ts, k, x, out, z, pred, var_type, proc, batch, C)
                        cases.append({"sampler": "ddpm", "schedule": sname, "list": lname, "k": k,
                                      "prediction": pred, "variance": var_type, "processing": proc,
                                      "x_prev": xp.ravel().tolist(), "x0": x0.ravel().tolist()})
                for pred in [p for p in preds if p != "previous_x"]:
                    for eta, set_one, clipped, proc in ddim_grid:
                        xp, x0 = ddim_step(ab, ts, k, x, out1, z, pred, eta, set_one, clipped, proc, batch)
                        cases.append({"sampler": "ddim", "schedule": sname, "list": lname, "k": k,
                                      "prediction": pred, "eta": eta, "set_alpha_to_one": set_one,
                                      "use_clipped_model_output": clipped, "processing": proc,
                                      "x_prev": xp.ravel().tolist(), "x0": x0.ravel().tolist()})
    # Classifier guidance with a fixed gradient: condition_mean (ancestral) and condition_score (DDIM).
    grad = rng.standard_normal(shape) * 0.7
    guided = []
    for sname in ["linear", "cosine"]:
        betas = schedules[sname]
        ab = np.cumprod(1.0 - betas)
        for lname in ["full", "leading50", "trailing7"]:
            ts = lists[lname]
            for k in sorted({0, len(ts) // 2, len(ts) - 1}):
                for pred in ["epsilon", "v_prediction"]:
                    for var_type, proc in [("fixed_small", "none"), ("fixed_large", "clip"), ("learned_range", "none")]:
                        out = out2 if var_type == "learned_range" else out1
                        xp, x0 = ddpm_step(betas, ab, ts, k, x, out, z, pred, var_type, proc, batch, C, g=grad)
                        guided.append({"sampler": "ddpm", "schedule": sname, "list": lname, "k": k, "prediction": pred,
                                       "variance": var_type, "processing": proc,
                                       "x_prev": xp.ravel().tolist(), "x0": x0.ravel().tolist()})
                    for eta, proc in [(0.0, "none"), (0.0, "threshold"), (1.0, "clip")]:
                        xp, x0 = ddim_step(ab, ts, k, x, out1, z, pred, eta, True, False, proc, batch, g=grad)
                        guided.append({"sampler": "ddim", "schedule": sname, "list": lname, "k": k, "prediction": pred,
                                       "eta": eta, "set_alpha_to_one": True, "use_clipped_model_output": False,
                                       "processing": proc, "x_prev": xp.ravel().tolist(), "x0": x0.ravel().tolist()})
    # Where diffuse deliberately differs from diffusers' DDIM: diffusers steps to t - T // N.
    ab = np.cumprod(1.0 - schedules["linear"])
    differ = []
    for lname in ["linspace7", "trailing7"]:
        ts = lists[lname]
        N = len(ts)
        for k in range(N - 1):
            ours, _ = ddim_step(ab, ts, k, x, out1, z, "epsilon", 0.0, True, False, "none", batch)
            p_diffusers = ts[k] - T // N
            theirs, _ = ddim_step(ab, ts, k, x, out1, z, "epsilon", 0.0, True, False, "none", batch, prev_override=p_diffusers)
            differ.append({"list": lname, "k": k, "t": ts[k], "prev_ours": ts[k + 1], "prev_diffusers": p_diffusers,
                           "x_prev_ours": ours.ravel().tolist(), "x_prev_diffusers": theirs.ravel().tolist()})
    data = {
        "provenance": "tools/make_sampler_fixtures.py: float64 numpy re-implementation of diffusers' "
                      "DDPMScheduler.step / DDIMScheduler.step and guided-diffusion's p_sample / ddim_sample "
                      "per SPEC §3-§6, §11 (diffuse conventions: previous timestep = next list entry; no noise "
                      "at the last list position). threshold = dynamic thresholding p=0.995, max 1.5; clip = [-1, 1].",
        "T": T, "shape": {"batch": batch, "channels": C, "spatial": S},
        "threshold": {"ratio": 0.995, "max_value": 1.5}, "clip_range": 1.0,
        "lists": {k: v for k, v in lists.items() if k != "full"},
        "x_t": x.ravel().tolist(), "noise": z.ravel().tolist(),
        "model_output": out1.ravel().tolist(), "model_output_learned": out2.ravel().tolist(),
        "model_output_learned_sigma2": out_sigma2.ravel().tolist(),
        "cases": cases, "ddim_prev_timestep_difference": differ,
        "guidance_gradient": grad.ravel().tolist(), "guided_cases": guided,
    }
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "sampler_steps.json")
    with open(path, "w") as f:
        json.dump(data, f, separators=(",", ":"))
    print(f"wrote {len(cases)} cases to {os.path.normpath(path)} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
