#!/usr/bin/env python3
"""Writes config files exactly as diffusers' save_config writes them, into tests/fixtures/diffusers/.

diffusers records every constructor argument of a model or scheduler (register_to_config), adds
_class_name and _diffusers_version, and saves json.dumps(config, indent=2, sort_keys=True) + "\\n"
(ConfigMixin.to_json_string). This script reads the constructor signatures of UNet2DModel,
DDPMScheduler and DDIMScheduler, with their default values, from a diffusers checkout (with Python's
ast module: nothing of diffusers is imported, so neither torch nor huggingface_hub is needed), fills
in the values of diffuse's own model folders, and writes:

  <release>/unet/config.json                   UNet2DModel of models/digits (every argument present)
  <release>/scheduler/scheduler_config.json    DDPMScheduler of models/digits
  <release>/ddim_scheduler_config.json         DDIMScheduler with the same settings
  <release>/model_index.json                   what DDPMPipeline.save_pretrained writes next to them

for each diffusers commit given (one folder per release, named by its __version__).

Usage: tools/make_diffusers_configs.py DIFFUSERS_GIT_DIR [COMMIT ...]
  (default commits: DEFAULT_COMMITS below, the ones the stored fixtures were made from)
"""
import ast
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "diffusers")
DEFAULT_COMMITS = [
    "58eb52c0803ea9af3abec60841c2a093bdf1f951",  # 0.40.0.dev0 (2026-08): 28 UNet2DModel arguments
    "3a28e36aa1ed7e62e70cdbe6166d90562fc22eb8",  # 0.28.0.dev0 (2024-05): 26, before time_embedding_dim, mid_block_type
    "703307efcc49fbc3f1362344dc5d577e4c4595c8",  # 0.16.0.dev0 (2023-04): models/unet_2d.py, schedulers without timestep_spacing
]

SOURCES = {
    "UNet2DModel": ["src/diffusers/models/unets/unet_2d.py", "src/diffusers/models/unet_2d.py"],
    "DDPMScheduler": ["src/diffusers/schedulers/scheduling_ddpm.py"],
    "DDIMScheduler": ["src/diffusers/schedulers/scheduling_ddim.py"],
}


def git_show(repo, commit, path):
    r = subprocess.run(["git", "--git-dir", repo, "show", f"{commit}:{path}"], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


def constructor_defaults(repo, commit, cls):
    """{argument: default} of cls.__init__ at commit, defaults evaluated as Python literals."""
    for path in SOURCES[cls]:
        src = git_show(repo, commit, path)
        if src is None:
            continue
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ClassDef) and node.name == cls:
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        args = item.args.args[1:]
                        defaults = item.args.defaults
                        out = {}
                        for a, d in zip(args[len(args) - len(defaults):], defaults):
                            out[a.arg] = ast.literal_eval(d)
                        for a in args[: len(args) - len(defaults)]:
                            raise SystemExit(f"{cls}.{a.arg} has no default at {commit}")
                        return out
    raise SystemExit(f"{cls} not found at {commit}")


def version(repo, commit):
    src = git_show(repo, commit, "src/diffusers/__init__.py")
    for line in src.splitlines():
        if line.startswith("__version__"):
            return ast.literal_eval(line.split("=", 1)[1].strip())
    raise SystemExit("no __version__")


def to_json(config):
    """ConfigMixin.to_json_string: tuples become lists through json."""
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def saved(repo, commit, cls, values, strict):
    """The saved config of cls at commit with `values`. strict: every value must be an argument (the
    UNet: a model must be rebuilt exactly); otherwise the values cls does not take are left out, as a
    scheduler of another class or an older release would never have recorded them."""
    config = constructor_defaults(repo, commit, cls)
    unknown = set(values) - set(config)
    if unknown and strict:
        raise SystemExit(f"{cls} at {commit} has no argument {sorted(unknown)}")
    config.update({k: v for k, v in values.items() if k in config})
    config["_class_name"] = cls
    config["_diffusers_version"] = version(repo, commit)
    return config


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    repo = sys.argv[1]
    if os.path.isdir(os.path.join(repo, ".git")):
        repo = os.path.join(repo, ".git")
    commits = sys.argv[2:] or DEFAULT_COMMITS
    with open(os.path.join(ROOT, "models", "digits", "config.json"), encoding="utf-8") as f:
        unet_values = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    with open(os.path.join(ROOT, "models", "digits", "scheduler_config.json"), encoding="utf-8") as f:
        scheduler_values = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    for commit in commits:
        v = version(repo, commit)
        d = os.path.join(OUT, v)
        os.makedirs(os.path.join(d, "unet"), exist_ok=True)
        os.makedirs(os.path.join(d, "scheduler"), exist_ok=True)
        unet = saved(repo, commit, "UNet2DModel", unet_values, strict=True)
        files = {
            os.path.join(d, "unet", "config.json"): unet,
            os.path.join(d, "scheduler", "scheduler_config.json"): saved(repo, commit, "DDPMScheduler", scheduler_values, strict=False),
            os.path.join(d, "ddim_scheduler_config.json"): saved(repo, commit, "DDIMScheduler", scheduler_values, strict=False),
            # DiffusionPipeline.save_pretrained: the pipeline class, the version, [library, class] per component.
            os.path.join(d, "model_index.json"): {"_class_name": "DDPMPipeline", "_diffusers_version": v,
                                                  "scheduler": ["diffusers", "DDPMScheduler"],
                                                  "unet": ["diffusers", "UNet2DModel"]},
        }
        for path, config in files.items():
            with open(path, "w", encoding="utf-8") as f:
                f.write(to_json(config))
        print(f"{commit} ({v}): UNet2DModel with {len(unet) - 2} arguments -> {d}")


if __name__ == "__main__":
    main()
