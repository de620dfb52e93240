#!/usr/bin/python3
"""Reference outputs of Diffusion Policy's 1-D temporal UNet for the C++ unet1d parity tests.

Runs the reference modules themselves, unchanged, from checkouts given on the command line:

  /usr/bin/python3 tools/make_unet1d_fixtures.py --diffusion-policy DP_CHECKOUT --lerobot LEROBOT_CHECKOUT \
      [--diffusers DIFFUSERS_CHECKOUT] [--dp-commit SHA] [--lerobot-commit SHA] [--diffusers-commit SHA]

- DP_CHECKOUT/diffusion_policy/model/diffusion/{conditional_unet1d,conv1d_components,positional_embedding}.py
  (ConditionalUnet1D);
- LEROBOT_CHECKOUT/src/lerobot/policies/diffusion/modeling_diffusion.py (DiffusionConditionalUnet1d) and
  LEROBOT_CHECKOUT/src/lerobot/processor/normalize_processor.py (the normaliser of its processor pipeline).

Neither einops nor LeRobot's other dependencies are installed with Debian's torch, so the imports the
modules make are stubbed before they load: `einops.rearrange` for the three transpositions the UNets
use ('b h t -> b t h', 'b t h -> b h t', 'b t d -> b d t', 'b d t -> b t d': each a permute(0, 2, 1)),
`einops.layers.torch.Rearrange('batch t -> batch t 1')` (an unsqueeze(-1)), and the LeRobot modules the
files import but these classes never call. Every stub refuses a pattern it does not implement.

Per configuration the script gives every parameter random values (norm scales around 1, biases and
embeddings non-zero), then writes tests/fixtures/unet1d/<name>/:
  model.safetensors     the state dict as the reference names it (F32)
  config.json           the constructor arguments
  io.safetensors        inputs (x (B, T, D), timesteps, global_cond, local_cond), the float32 output,
                        and from a float64 run of the same F32 weights (torch's default dtype float64,
                        so that the step embedding is computed in float64 too) the output and the
                        activations layer by layer (forward hooks)
and, for the LeRobot configuration, a LeRobot policy folder tests/fixtures/unet1d/lerobot_policy/ laid
out as DiffusionPolicy.save_pretrained and its processor pipelines write it.
"""
import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import types

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from torch_unet import save_safetensors  # noqa: E402

FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "unet1d")

# ---------------------------------------------------------------------------------------------
# stubs


def install_einops_stub():
    einops = types.ModuleType("einops")
    transposes = {"b h t -> b t h", "b t h -> b h t", "b t d -> b d t", "b d t -> b t d"}

    def rearrange(x, pattern, **kw):
        if pattern in transposes and not kw:
            return x.permute(0, 2, 1)
        raise NotImplementedError(f"einops stub: pattern {pattern!r}")

    einops.rearrange = rearrange
    layers = types.ModuleType("einops.layers")
    layers_torch = types.ModuleType("einops.layers.torch")

    class Rearrange(torch.nn.Module):
        def __init__(self, pattern):
            super().__init__()
            if pattern != "batch t -> batch t 1":
                raise NotImplementedError(f"einops stub: Rearrange {pattern!r}")

        def forward(self, x):
            return x.unsqueeze(-1)

    layers_torch.Rearrange = Rearrange
    einops.layers = layers
    layers.torch = layers_torch
    sys.modules.update({"einops": einops, "einops.layers": layers, "einops.layers.torch": layers_torch})


def package(name, path=None):
    m = types.ModuleType(name)
    m.__path__ = [path] if path else []
    sys.modules[name] = m
    return m


def load_file(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec)
    sys.modules[name] = m
    spec.loader.exec_module(m)
    return m


def load_diffusion_policy(checkout):
    install_einops_stub()
    sys.path.insert(0, checkout)
    from diffusion_policy.model.diffusion.conditional_unet1d import ConditionalUnet1D  # noqa: E402
    return ConditionalUnet1D


def load_lerobot(checkout):
    src = os.path.join(checkout, "src", "lerobot")
    package("lerobot", src)
    package("lerobot.utils")
    constants = types.ModuleType("lerobot.utils.constants")
    constants.ACTION, constants.OBS_ENV_STATE, constants.OBS_IMAGES, constants.OBS_STATE = (
        "action", "observation.environment_state", "observation.images", "observation.state")
    sys.modules["lerobot.utils.constants"] = constants
    iu = types.ModuleType("lerobot.utils.import_utils")
    iu._diffusers_available = False
    iu.require_package = lambda *a, **k: None
    sys.modules["lerobot.utils.import_utils"] = iu
    # lerobot.configs: its types module is plain enums and dataclasses, loaded as it is.
    configs = package("lerobot.configs", os.path.join(src, "configs"))
    ctypes_ = load_file("lerobot.configs.types", os.path.join(src, "configs", "types.py"))
    for k in ("FeatureType", "NormalizationMode", "PipelineFeatureType", "PolicyFeature"):
        setattr(configs, k, getattr(ctypes_, k))
    configs.PreTrainedConfig = object
    package("lerobot.policies", os.path.join(src, "policies"))
    package("lerobot.policies.diffusion", os.path.join(src, "policies", "diffusion"))
    pre = types.ModuleType("lerobot.policies.pretrained")
    pre.PreTrainedPolicy = torch.nn.Module
    sys.modules["lerobot.policies.pretrained"] = pre
    pu = types.ModuleType("lerobot.policies.utils")
    for k in ("get_device_from_parameters", "get_dtype_from_parameters", "get_output_shape", "populate_queues"):
        setattr(pu, k, None)
    sys.modules["lerobot.policies.utils"] = pu
    cfgmod = types.ModuleType("lerobot.policies.diffusion.configuration_diffusion")
    cfgmod.DiffusionConfig = object
    sys.modules["lerobot.policies.diffusion.configuration_diffusion"] = cfgmod
    sys.modules["torchvision"] = types.ModuleType("torchvision")
    modeling = load_file("lerobot.policies.diffusion.modeling_diffusion",
                         os.path.join(src, "policies", "diffusion", "modeling_diffusion.py"))
    # The normaliser: its pipeline and converter imports stubbed (the maths is in the mixin).
    package("lerobot.processor", os.path.join(src, "processor"))
    lt = types.ModuleType("lerobot.lerobot_types")
    lt.EnvTransition = dict
    lt.PolicyAction = torch.Tensor
    lt.TransitionKey = types.SimpleNamespace(OBSERVATION="observation", ACTION="action")
    sys.modules["lerobot.lerobot_types"] = lt
    conv = types.ModuleType("lerobot.processor.converters")

    def to_tensor(stats, device=None, dtype=torch.float32):
        return {k: {s: torch.as_tensor(np.asarray(v), dtype=dtype) for s, v in d.items()} for k, d in stats.items()}

    conv.to_tensor = to_tensor
    conv.from_tensor_to_numpy = lambda t: t.numpy()
    sys.modules["lerobot.processor.converters"] = conv
    pipe = types.ModuleType("lerobot.processor.pipeline")

    class ProcessorStep:
        pass

    class ProcessorStepRegistry:
        @staticmethod
        def register(name):
            def deco(cls):
                cls._registry_name = name
                return cls
            return deco

    pipe.ProcessorStep, pipe.ProcessorStepRegistry = ProcessorStep, ProcessorStepRegistry
    pipe.PolicyProcessorPipeline, pipe.RobotObservation = object, dict
    sys.modules["lerobot.processor.pipeline"] = pipe
    norm = load_file("lerobot.processor.normalize_processor", os.path.join(src, "processor", "normalize_processor.py"))
    return modeling, norm, ctypes_


# ---------------------------------------------------------------------------------------------


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            # GroupNorm affine parameters are the 1-D ".block.1." tensors.
            if p.ndim == 1 and ".block.1." in name and name.endswith(".weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(p[0].numel()))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def commit_of(checkout, given):
    if given:
        return given
    try:
        return subprocess.check_output(["git", "-C", checkout, "rev-parse", "HEAD"], text=True, stderr=subprocess.DEVNULL).strip()
    except Exception:
        sys.exit(f"{checkout} is not a git work tree: name its commit with --dp-commit / --lerobot-commit")


def record_layers(model):
    """Forward hooks that record the step encoder's, every residual block's, resampler's and the final
    block's outputs, by module name."""
    pattern = re.compile(r"^(diffusion_step_encoder|final_conv|local_cond_encoder\.\d|down_modules\.\d+\.\d|mid_modules\.\d|up_modules\.\d+\.\d)$")
    acts, hooks = {}, []
    for name, m in model.named_modules():
        if not pattern.match(name) or type(m).__name__ == "Identity":
            continue

        def hook(mod, inp, out, name=name):
            acts.setdefault(name, out.detach().clone())
        hooks.append(m.register_forward_hook(hook))
    return acts, hooks


def run(model, x, t, gc, lc, dtype, lerobot):
    m = model.to(dtype)
    args = dict(global_cond=None if gc is None else gc.to(dtype))
    if not lerobot:
        args["local_cond"] = None if lc is None else lc.to(dtype)
    with torch.no_grad():
        return m(x.to(dtype), t, **args)


def make_case(name, build, cfg, batch, horizon, timesteps, seed, lerobot=False):
    torch.manual_seed(seed)
    torch.set_default_dtype(torch.float32)
    model = build()
    randomise(model, seed)
    model.eval()
    g = torch.Generator().manual_seed(seed + 1)
    D = cfg["input_dim"]
    x = torch.randn(batch, horizon, D, generator=g)
    gc = torch.randn(batch, cfg["global_cond_dim"], generator=g) if cfg.get("global_cond_dim") else None
    lc = torch.randn(batch, horizon, cfg["local_cond_dim"], generator=g) if cfg.get("local_cond_dim") else None
    t_long = torch.tensor(timesteps, dtype=torch.long)
    y32 = run(model, x, t_long, gc, lc, torch.float32, lerobot)
    # float64: the same F32 weights, every operation (the step embedding's frequencies included) in float64.
    torch.set_default_dtype(torch.float64)
    acts, hooks = record_layers(model)
    y64 = run(model, x, t_long.to(torch.float64), gc, lc, torch.float64, lerobot)
    for h in hooks:
        h.remove()
    torch.set_default_dtype(torch.float32)
    model.float()
    out = os.path.join(FIXTURES, name)
    os.makedirs(out, exist_ok=True)
    state = {k: v.float() for k, v in model.state_dict().items()}
    if not lerobot:  # LeRobot's weights are in the policy folder only
        save_safetensors(os.path.join(out, "model.safetensors"), state)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    io = {"x": x, "timesteps": t_long.to(torch.float64).numpy(), "expected_f32": y32}
    if gc is not None:
        io["global_cond"] = gc
    if lc is not None:
        io["local_cond"] = lc
    save_safetensors(os.path.join(out, "io.safetensors"), io)
    io64 = {"expected_f64": y64}
    for k, v in acts.items():
        io64["layer." + k] = v
    save_safetensors(os.path.join(out, "io_f64.safetensors"), io64, dtype="F64")
    print(name, "layers:", sorted(acts))
    return model, state, dict(x=x, gc=gc, lc=lc, t=t_long, y32=y32, y64=y64)


DP_CASES = {
    # FiLM scale and bias, local conditioning, 3 levels, kernel 5
    "film_local": dict(cfg=dict(input_dim=3, local_cond_dim=2, global_cond_dim=5, diffusion_step_embed_dim=16,
                                down_dims=[8, 16, 16], kernel_size=5, n_groups=4, cond_predict_scale=True),
                       batch=2, horizon=8, timesteps=[7, 93]),
    # FiLM bias only, no local conditioning, 2 levels, kernel 3, horizon 12 (one halving)
    "bias_global": dict(cfg=dict(input_dim=2, local_cond_dim=None, global_cond_dim=4, diffusion_step_embed_dim=8,
                                 down_dims=[8, 16], kernel_size=3, n_groups=2, cond_predict_scale=False),
                        batch=3, horizon=12, timesteps=[0, 50, 99]),
    # no global conditioning, local conditioning with bias-only FiLM, 3 levels, 8 groups
    "local_only": dict(cfg=dict(input_dim=4, local_cond_dim=3, global_cond_dim=None, diffusion_step_embed_dim=6,
                                down_dims=[16, 16, 24], kernel_size=3, n_groups=8, cond_predict_scale=False),
                       batch=1, horizon=4, timesteps=[42]),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--diffusion-policy", required=True, help="a checkout of the diffusion_policy repository")
    ap.add_argument("--lerobot", required=True, help="a checkout of the lerobot repository")
    ap.add_argument("--dp-commit")
    ap.add_argument("--lerobot-commit")
    ap.add_argument("--diffusers", help="a checkout of the diffusers repository: adds the end-to-end sampling fixture")
    ap.add_argument("--diffusers-commit")
    ap.add_argument("--lerobot-legacy-normalize", help="src/lerobot/policies/normalize.py of a LeRobot release from before "
                    "the processor pipelines (statistics in model.safetensors): adds lerobot_policy_legacy/")
    ap.add_argument("--lerobot-legacy-commit")
    a = ap.parse_args()
    dp_commit = commit_of(a.diffusion_policy, a.dp_commit)
    lr_commit = commit_of(a.lerobot, a.lerobot_commit)
    ConditionalUnet1D = load_diffusion_policy(a.diffusion_policy)
    modeling, norm, lr_types = load_lerobot(a.lerobot)
    LeRobotUnet = modeling.DiffusionConditionalUnet1d
    os.makedirs(FIXTURES, exist_ok=True)
    for seed, (name, case) in enumerate(DP_CASES.items()):
        cfg = case["cfg"]
        make_case(name, lambda cfg=cfg: ConditionalUnet1D(**cfg), dict(cfg, _class_name="ConditionalUnet1D"), case["batch"],
                  case["horizon"], case["timesteps"], 100 + seed)

    # LeRobot's DiffusionConditionalUnet1d: state 3 + environment state 2 over 2 observation steps.
    lr = dict(action_dim=2, state_dim=3, env_dim=2, n_obs_steps=2, horizon=16, down_dims=[8, 16, 16], kernel_size=5,
              n_groups=4, diffusion_step_embed_dim=16, use_film_scale_modulation=True)
    gcd = (lr["state_dim"] + lr["env_dim"]) * lr["n_obs_steps"]
    ns = types.SimpleNamespace(diffusion_step_embed_dim=lr["diffusion_step_embed_dim"],
                               action_feature=types.SimpleNamespace(shape=(lr["action_dim"],)),
                               down_dims=tuple(lr["down_dims"]), kernel_size=lr["kernel_size"], n_groups=lr["n_groups"],
                               use_film_scale_modulation=lr["use_film_scale_modulation"], gradient_checkpointing=False)
    model, state, io = make_case("lerobot_unet", lambda: LeRobotUnet(ns, global_cond_dim=gcd),
                                 dict(input_dim=lr["action_dim"], global_cond_dim=gcd, local_cond_dim=None,
                                      diffusion_step_embed_dim=lr["diffusion_step_embed_dim"], down_dims=lr["down_dims"],
                                      kernel_size=lr["kernel_size"], n_groups=lr["n_groups"],
                                      cond_predict_scale=lr["use_film_scale_modulation"], _class_name="ConditionalUnet1D"),
                                 batch=2, horizon=lr["horizon"], timesteps=[3, 77], seed=200, lerobot=True)
    write_lerobot_folder(lr, gcd, state, io, norm, lr_types)
    df_commit = None
    if a.diffusers:
        df_commit = commit_of(a.diffusers, a.diffusers_commit)
        write_sampling(a.diffusers, modeling, model, lr, gcd)
    legacy_commit = None
    if a.lerobot_legacy_normalize:
        legacy_commit = a.lerobot_legacy_commit or "(not given)"
        write_legacy_normalisation(a.lerobot_legacy_normalize, lr_types)
    write_provenance(dp_commit, lr_commit, df_commit, legacy_commit)


def write_lerobot_folder(lr, gcd, state, io, norm, lr_types):
    """A policy folder as LeRobot writes it: config.json (the DiffusionConfig fields, "type": "diffusion"),
    model.safetensors (DiffusionPolicy's state dict: the UNet under "diffusion.unet."), and the
    pre/post-processor pipelines with the normaliser's statistics."""
    out = os.path.join(FIXTURES, "lerobot_policy")
    os.makedirs(out, exist_ok=True)
    feats_in = {"observation.state": {"type": "STATE", "shape": [lr["state_dim"]]},
                "observation.environment_state": {"type": "ENV", "shape": [lr["env_dim"]]}}
    feats_out = {"action": {"type": "ACTION", "shape": [lr["action_dim"]]}}
    config = {
        "type": "diffusion", "n_obs_steps": lr["n_obs_steps"], "input_features": feats_in, "output_features": feats_out,
        "device": "cpu", "use_amp": False, "use_peft": False, "push_to_hub": False, "repo_id": None, "private": None,
        "tags": None, "license": None, "pretrained_path": None, "pretrained_revision": None,
        "horizon": lr["horizon"], "n_action_steps": 8,
        "normalization_mapping": {"VISUAL": "MEAN_STD", "STATE": "MIN_MAX", "ENV": "MEAN_STD", "ACTION": "MIN_MAX"},
        "drop_n_last_frames": 7, "vision_backbone": "resnet18", "resize_shape": None, "crop_ratio": 1.0, "crop_shape": None,
        "crop_is_random": True, "pretrained_backbone_weights": None, "use_group_norm": False,
        "spatial_softmax_num_keypoints": 32, "use_separate_rgb_encoder_per_camera": True,
        "down_dims": lr["down_dims"], "kernel_size": lr["kernel_size"], "n_groups": lr["n_groups"],
        "diffusion_step_embed_dim": lr["diffusion_step_embed_dim"], "use_film_scale_modulation": lr["use_film_scale_modulation"],
        "gradient_checkpointing": False, "noise_scheduler_type": "DDPM", "num_train_timesteps": 100,
        "beta_schedule": "squaredcos_cap_v2", "beta_start": 0.0001, "beta_end": 0.02, "prediction_type": "epsilon",
        "clip_sample": True, "clip_sample_range": 1.0, "num_inference_steps": None, "compile_model": False,
        "compile_mode": "reduce-overhead", "do_mask_loss_for_padding": False, "optimizer_lr": 0.0001,
        "optimizer_betas": [0.95, 0.999], "optimizer_eps": 1e-08, "optimizer_weight_decay": 1e-06,
        "scheduler_name": "cosine", "scheduler_warmup_steps": 500,
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=4)
    save_safetensors(os.path.join(out, "model.safetensors"), {"diffusion.unet." + k: v for k, v in state.items()})
    # Statistics: MIN_MAX for the state and the action (one action dimension constant, max == min, to
    # exercise LeRobot's eps substitute), MEAN_STD for the environment state.
    g = np.random.default_rng(7)
    smin = g.normal(size=lr["state_dim"]).astype(np.float32)
    stats = {
        "observation.state": {"min": smin, "max": smin + g.uniform(0.5, 2, lr["state_dim"]).astype(np.float32)},
        "observation.environment_state": {"mean": g.normal(size=lr["env_dim"]).astype(np.float32),
                                          "std": g.uniform(0.1, 3, lr["env_dim"]).astype(np.float32)},
        "action": {"min": np.array([-2.0, 0.5], np.float32), "max": np.array([3.0, 0.5], np.float32)},
    }
    features = {**feats_in, **feats_out}
    norm_map = {"VISUAL": "MEAN_STD", "STATE": "MIN_MAX", "ENV": "MEAN_STD", "ACTION": "MIN_MAX"}
    step = norm.NormalizerProcessorStep(features=features, norm_map=norm_map, stats=stats)
    unstep = norm.UnnormalizerProcessorStep(features=feats_out, norm_map=norm_map, stats={"action": stats["action"]})
    pre_state = step.state_dict()
    post_state = unstep.state_dict()
    save_safetensors(os.path.join(out, "policy_preprocessor_step_3_normalizer_processor.safetensors"), pre_state)
    save_safetensors(os.path.join(out, "policy_postprocessor_step_0_unnormalizer_processor.safetensors"), post_state)
    pre_cfg = {"name": "policy_preprocessor", "steps": [
        {"registry_name": "rename_observations_processor", "config": {"rename_map": {}}},
        {"registry_name": "to_batch_processor", "config": {}},
        {"registry_name": "device_processor", "config": {"device": "cpu", "float_dtype": None}},
        {"registry_name": "normalizer_processor", "config": step.get_config(),
         "state_file": "policy_preprocessor_step_3_normalizer_processor.safetensors"}]}
    post_cfg = {"name": "policy_postprocessor", "steps": [
        {"registry_name": "unnormalizer_processor", "config": unstep.get_config(),
         "state_file": "policy_postprocessor_step_0_unnormalizer_processor.safetensors"},
        {"registry_name": "device_processor", "config": {"device": "cpu", "float_dtype": None}}]}
    with open(os.path.join(out, "policy_preprocessor.json"), "w") as f:
        json.dump(pre_cfg, f, indent=2)
    with open(os.path.join(out, "policy_postprocessor.json"), "w") as f:
        json.dump(post_cfg, f, indent=2)
    # Normalised / unnormalised values from the reference normaliser, in float32.
    gen = torch.Generator().manual_seed(11)
    raw = {"observation.state": torch.randn(2, lr["state_dim"], generator=gen) * 2,
           "observation.environment_state": torch.randn(2, lr["env_dim"], generator=gen) * 2}
    normed = step._normalize_observation(raw, inverse=False)
    act = torch.rand(2, 4, lr["action_dim"], generator=gen) * 2 - 1
    act_raw = act.clone()
    act_norm = step._normalize_action(act_raw, inverse=False)
    act_un = unstep._normalize_action(act, inverse=True)
    save_safetensors(os.path.join(FIXTURES, "lerobot_normalisation.safetensors"), {
        "state": raw["observation.state"], "state_normalised": normed["observation.state"],
        "env": raw["observation.environment_state"], "env_normalised": normed["observation.environment_state"],
        "action": act, "action_normalised": act_norm, "action_unnormalised": act_un})


def load_diffusers_schedulers(checkout):
    """diffusers' DDPMScheduler and DDIMScheduler modules, loaded unchanged; their package imports stubbed:
    ConfigMixin / register_to_config (the constructor's arguments, defaults included, as self.config),
    BaseOutput (a plain base of the output dataclasses), SchedulerMixin, KarrasDiffusionSchedulers, and
    randn_tensor, which draws from a queue the caller fills (the DDPM step's noise)."""
    import enum
    import inspect
    src = os.path.join(checkout, "src", "diffusers")
    package("diffusers", src)
    package("diffusers.schedulers", os.path.join(src, "schedulers"))
    cu = types.ModuleType("diffusers.configuration_utils")

    class ConfigMixin:
        def register_to_config(self, **kw):
            for k, v in kw.items():
                setattr(self.config, k, v)

    def register_to_config(init):
        sig = inspect.signature(init)

        def wrapper(self, *args, **kwargs):
            bound = sig.bind(self, *args, **kwargs)
            bound.apply_defaults()
            self.config = types.SimpleNamespace(**{k: v for k, v in bound.arguments.items() if k != "self"})
            init(self, *args, **kwargs)
        return wrapper

    cu.ConfigMixin, cu.register_to_config = ConfigMixin, register_to_config
    sys.modules["diffusers.configuration_utils"] = cu
    utils = package("diffusers.utils")

    class BaseOutput:
        pass

    utils.BaseOutput = BaseOutput
    tu = types.ModuleType("diffusers.utils.torch_utils")
    queue = []

    def randn_tensor(shape, generator=None, device=None, dtype=None, **kw):
        t = queue.pop(0)
        assert tuple(t.shape) == tuple(shape), (t.shape, shape)
        return t.to(dtype)

    tu.randn_tensor = randn_tensor
    sys.modules["diffusers.utils.torch_utils"] = tu
    su = types.ModuleType("diffusers.schedulers.scheduling_utils")

    class KarrasDiffusionSchedulers(enum.Enum):
        DDIMScheduler = 1
        DDPMScheduler = 2

    class SchedulerMixin:
        pass

    su.KarrasDiffusionSchedulers, su.SchedulerMixin = KarrasDiffusionSchedulers, SchedulerMixin
    sys.modules["diffusers.schedulers.scheduling_utils"] = su
    ddpm = load_file("diffusers.schedulers.scheduling_ddpm", os.path.join(src, "schedulers", "scheduling_ddpm.py"))
    ddim = load_file("diffusers.schedulers.scheduling_ddim", os.path.join(src, "schedulers", "scheduling_ddim.py"))
    return ddpm.DDPMScheduler, ddim.DDIMScheduler, queue


def write_sampling(checkout, modeling, unet, lr, gcd):
    """An action chunk from LeRobot's DiffusionModel.conditional_sample, run unchanged on the fixture UNet
    with diffusers' DDPMScheduler (LeRobot's defaults: squaredcos_cap_v2, 100 steps, epsilon,
    clip_sample ±1) and DDIMScheduler (10 steps), given the initial noise and, for DDPM, every step's
    noise; float32."""
    DDPMScheduler, DDIMScheduler, queue = load_diffusers_schedulers(checkout)
    modeling.get_device_from_parameters = lambda m: next(iter(m.parameters())).device
    modeling.get_dtype_from_parameters = lambda m: next(iter(m.parameters())).dtype
    torch.set_default_dtype(torch.float32)
    unet = unet.float().eval()
    kwargs = dict(num_train_timesteps=100, beta_start=0.0001, beta_end=0.02, beta_schedule="squaredcos_cap_v2",
                  clip_sample=True, clip_sample_range=1.0, prediction_type="epsilon")
    g = torch.Generator().manual_seed(31)
    batch = 2
    shape = (batch, lr["horizon"], lr["action_dim"])
    noise = torch.randn(*shape, generator=g)
    cond = torch.randn(batch, gcd, generator=g)
    out = {"noise": noise, "global_cond": cond}
    for name, cls, steps in (("ddpm", DDPMScheduler, 100), ("ddim", DDIMScheduler, 10)):
        m = modeling.DiffusionModel.__new__(modeling.DiffusionModel)
        torch.nn.Module.__init__(m)
        m.unet = unet
        m.noise_scheduler = cls(**kwargs)
        m.num_inference_steps = steps
        m.config = types.SimpleNamespace(horizon=lr["horizon"], action_feature=types.SimpleNamespace(shape=(lr["action_dim"],)))
        step_noise = torch.randn(steps, *shape, generator=g)
        queue.clear()
        queue.extend(step_noise[k] for k in range(steps))
        with torch.no_grad():
            actions = m.conditional_sample(batch, global_cond=cond, noise=noise.clone())
        used = steps - len(queue)
        if name == "ddpm":
            out["ddpm_step_noise"] = step_noise[:used]
        out[name + "_actions"] = actions
        out[name + "_timesteps"] = m.noise_scheduler.timesteps.to(torch.float64).numpy()
        print(name, "timesteps", m.noise_scheduler.timesteps[:4].tolist(), "...", "noise draws", used)
    save_safetensors(os.path.join(FIXTURES, "lerobot_sampling.safetensors"), out)


def legacy_stats(lr):
    """Dataset statistics as LeRobot computes them: min, max, mean and std of every feature."""
    g = np.random.default_rng(8)
    out = {}
    for key, dim in (("observation.state", lr["state_dim"]), ("observation.environment_state", lr["env_dim"]), ("action", lr["action_dim"])):
        lo = g.normal(size=dim).astype(np.float32)
        out[key] = {"min": lo, "max": lo + g.uniform(0.5, 2, dim).astype(np.float32), "mean": g.normal(size=dim).astype(np.float32),
                    "std": g.uniform(0.1, 3, dim).astype(np.float32)}
    out["action"]["max"][1] = out["action"]["min"][1]  # a constant action dimension: max == min
    return out


def write_legacy_normalisation(path, lr_types):
    """LeRobot before its processor pipelines kept the statistics in the policy's state dict
    (normalize_inputs / normalize_targets / unnormalize_outputs, "buffer_<feature with _>.<stat>") and
    normalised with its Normalize / Unnormalize modules (src/lerobot/policies/normalize.py, loaded from
    `path` unchanged: it imports only torch and lerobot.configs.types). Writes lerobot_policy_legacy/ with
    the same config.json as lerobot_policy/ and a model.safetensors holding those buffers only (the
    UNet's tensors are in lerobot_policy/), and the modules' outputs."""
    legacy = load_file("lerobot_legacy_normalize", path)
    FT, NM, PF = lr_types.FeatureType, lr_types.NormalizationMode, lr_types.PolicyFeature
    lr = dict(action_dim=2, state_dim=3, env_dim=2)
    feats_in = {"observation.state": PF(FT.STATE, (3,)), "observation.environment_state": PF(FT.ENV, (2,))}
    feats_out = {"action": PF(FT.ACTION, (2,))}
    norm_map = {"VISUAL": NM.MEAN_STD, "STATE": NM.MIN_MAX, "ENV": NM.MEAN_STD, "ACTION": NM.MIN_MAX}
    stats = {k: {s: torch.from_numpy(v) for s, v in d.items()} for k, d in legacy_stats(lr).items()}
    norm_in = legacy.Normalize(feats_in, norm_map, stats)
    norm_t = legacy.Normalize(feats_out, norm_map, stats)
    unnorm = legacy.Unnormalize(feats_out, norm_map, stats)
    state = {}
    for prefix, m in (("normalize_inputs.", norm_in), ("normalize_targets.", norm_t), ("unnormalize_outputs.", unnorm)):
        state.update({prefix + k: v for k, v in m.state_dict().items()})
    out = os.path.join(FIXTURES, "lerobot_policy_legacy")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(FIXTURES, "lerobot_policy", "config.json")) as f:
        config = f.read()
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write(config)
    save_safetensors(os.path.join(out, "model.safetensors"), state)
    gen = torch.Generator().manual_seed(12)
    raw = {"observation.state": torch.randn(2, 3, generator=gen) * 2, "observation.environment_state": torch.randn(2, 2, generator=gen) * 2}
    normed = norm_in(raw)
    act = torch.rand(2, 4, 2, generator=gen) * 2 - 1
    save_safetensors(os.path.join(FIXTURES, "lerobot_normalisation_legacy.safetensors"), {
        "state": raw["observation.state"], "state_normalised": normed["observation.state"],
        "env": raw["observation.environment_state"], "env_normalised": normed["observation.environment_state"],
        "action": act, "action_normalised": norm_t({"action": act})["action"],
        "action_unnormalised": unnorm({"action": act})["action"]})


def write_provenance(dp_commit, lr_commit, df_commit=None, legacy_commit=None):
    text = f"""Fixtures for tests/test_unet1d.cpp, written by tools/make_unet1d_fixtures.py with /usr/bin/python3 and
Debian's python3-torch {torch.__version__}, from the reference implementations run unchanged:

- real-stanford/diffusion_policy at commit {dp_commit}:
  diffusion_policy/model/diffusion/conditional_unet1d.py (ConditionalUnet1D), conv1d_components.py,
  positional_embedding.py -> film_local/, bias_global/, local_only/
- huggingface/lerobot at commit {lr_commit}:
  src/lerobot/policies/diffusion/modeling_diffusion.py (DiffusionConditionalUnet1d) -> lerobot_unet/ (inputs and
  outputs) and the policy folder lerobot_policy/ (its weights); src/lerobot/processor/normalize_processor.py (NormalizerProcessorStep,
  UnnormalizerProcessorStep) -> lerobot_normalisation.safetensors and the statistics in lerobot_policy/.

einops is not packaged for Debian's torch: the script installs a stand-in module before importing the
reference files, implementing exactly the patterns they use (einops.rearrange 'b h t -> b t h' and the
other three (B, X, Y) -> (B, Y, X) transpositions as permute(0, 2, 1); Rearrange('batch t -> batch t 1')
as unsqueeze(-1)) and refusing any other. The source files themselves are not modified. LeRobot's
other imports (its config registry, hub and pipeline classes, torchvision) are stubbed: the classes
used here do not call them.

Weights are random (seeded), stored F32. io.safetensors holds the inputs and the float32 output;
io_f64.safetensors the float64 output of the same F32 weights (torch.set_default_dtype(torch.float64), so
the sinusoidal step embedding is float64 too) and, under "layer.<module name>", every residual block's,
down/upsampler's, the step encoder's and the final block's output, recorded with forward hooks.

The LeRobot policy folder is written in the layout DiffusionPolicy.save_pretrained and
PolicyProcessorPipeline.save_pretrained produce (config.json, model.safetensors with the UNet under
"diffusion.unet.", policy_preprocessor.json / policy_postprocessor.json with their normaliser state files);
those save functions need draccus and huggingface_hub, which are not installed, so the files are
written by this script from the state dicts and get_config() of the reference classes.
"""
    if df_commit:
        text += f"""
lerobot_sampling.safetensors: action chunks from LeRobot's DiffusionModel.conditional_sample (the method
itself, on an object holding the lerobot_unet/ UNet) with huggingface/diffusers at commit {df_commit}:
src/diffusers/schedulers/scheduling_ddpm.py (DDPMScheduler, 100 steps) and scheduling_ddim.py
(DDIMScheduler, 10 steps), LeRobot's scheduler arguments (squaredcos_cap_v2, 100 training steps, epsilon,
clip_sample 1.0), float32. The schedulers' package imports are stubbed (ConfigMixin / register_to_config
record the constructor's arguments with their defaults; randn_tensor returns the stored per-step
noise, "ddpm_step_noise", in order); the initial noise is "noise".
"""
    if legacy_commit:
        text += f"""
lerobot_policy_legacy/ and lerobot_normalisation_legacy.safetensors: the statistics as LeRobot kept them
before its processor pipelines, in the policy's state dict (normalize_inputs / normalize_targets /
unnormalize_outputs buffers), and the outputs of its Normalize / Unnormalize modules:
src/lerobot/policies/normalize.py of huggingface/lerobot at commit {legacy_commit}, loaded unchanged.
The folder's model.safetensors holds only those buffers (the UNet's weights are in lerobot_policy/).
"""
    with open(os.path.join(FIXTURES, "PROVENANCE"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
