#!/usr/bin/python3
"""Reference values for diffuse's classifier-free guidance and guidance rescale.

Computes, with Debian's python3-torch in float64, what diffusers' pipelines do:
  noise_pred = uncond + w * (cond - uncond)                      (the "standard" formulation)
  rescale_noise_cfg: std over every non-batch dimension (torch.std, unbiased),
    noise = phi * noise * (std(cond) / std(noise)) + (1 - phi) * noise
and the "original" formulation cond + w * (cond - uncond).
Writes tests/fixtures/guidance_cfg.json. Run: /usr/bin/python3 tools/make_guidance_fixtures.py
"""
import json
import os

import torch

torch.manual_seed(20261122)
N, C, H, W = 3, 2, 4, 5
cond = torch.randn(N, C, H, W, dtype=torch.float64)
uncond = torch.randn(N, C, H, W, dtype=torch.float64) * 0.8 + 0.1
cases = []
for form in ["standard", "original"]:
    for w in [0.0, 1.0, 3.5, 7.5]:
        for phi in [0.0, 0.3, 0.7, 1.0]:
            if form == "standard":
                g = uncond + w * (cond - uncond)
            else:
                g = cond + w * (cond - uncond)
            if phi > 0:
                dims = list(range(1, g.ndim))
                std_text = cond.std(dim=dims, keepdim=True)
                std_cfg = g.std(dim=dims, keepdim=True)
                g = phi * (g * (std_text / std_cfg)) + (1 - phi) * g
            cases.append({"formulation": form, "scale": w, "rescale": phi, "guided": g.flatten().tolist()})
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "guidance_cfg.json")
with open(out, "w") as f:
    json.dump({"provenance": "tools/make_guidance_fixtures.py: torch float64, diffusers' CFG combination and "
                             "rescale_noise_cfg (unbiased torch.std over non-batch dims)",
               "shape": [N, C, H, W], "cond": cond.flatten().tolist(), "uncond": uncond.flatten().tolist(),
               "cases": cases}, f, separators=(",", ":"))
print("wrote", os.path.normpath(out))
