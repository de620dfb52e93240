#!/usr/bin/python3
"""A plain-PyTorch UNet2DModel with HuggingFace diffusers' architecture, config keys and parameter names.

diffusers itself is not a Debian package, so this module re-implements the forward pass of
`diffusers.UNet2DModel` for the options small pixel-space DDPMs use (positional time embedding,
DownBlock2D / AttnDownBlock2D / UpBlock2D / AttnUpBlock2D, UNetMidBlock2D, class embeddings,
"default" and "scale_shift" time conditioning), so that its state_dict() has exactly diffusers' key
names and a checkpoint trained here loads in diffusers and in diffuse's C++ UNet. It serves the digits
training script and the parity fixtures of the C++ UNet.
"""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DEFAULTS = {
    "sample_size": None, "in_channels": 3, "out_channels": 3, "center_input_sample": False,
    "time_embedding_type": "positional", "freq_shift": 0, "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896], "layers_per_block": 2, "mid_block_scale_factor": 1,
    "downsample_padding": 1, "act_fn": "silu", "attention_head_dim": 8, "norm_num_groups": 32,
    "attn_norm_num_groups": None, "norm_eps": 1e-5, "resnet_time_scale_shift": "default",
    "add_attention": True, "class_embed_type": None, "num_class_embeds": None,
}


def timestep_embedding(t, dim, flip_sin_to_cos, freq_shift, dtype):
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    exponent = exponent / (half - freq_shift)
    emb = t[:, None].to(exponent.dtype) * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb.to(dtype)


class TimestepEmbedding(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.linear_1 = nn.Linear(cin, cout)
        self.linear_2 = nn.Linear(cout, cout)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps, shift, scale_factor=1.0):
        super().__init__()
        self.shift = shift
        self.scale_factor = scale_factor
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, 2 * cout if shift == "scale_shift" else cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        t = self.time_emb_proj(F.silu(temb))[:, :, None, None]
        if self.shift == "scale_shift":
            scale, shift = t.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + t)
        h = self.conv2(F.silu(h))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return (x + h) / self.scale_factor


class Attention(nn.Module):
    """diffusers' Attention as built from a deprecated attention block: group norm (optional), q/k/v
    linear over channels, softmax(q k^T / sqrt(head_dim)) v per head, to_out.0, residual, rescale."""

    def __init__(self, channels, head_dim, groups, eps, rescale=1.0):
        super().__init__()
        self.heads = channels // head_dim
        self.head_dim = head_dim
        self.rescale = rescale
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps) if groups is not None else None
        inner = self.heads * head_dim
        self.to_q = nn.Linear(channels, inner)
        self.to_k = nn.Linear(channels, inner)
        self.to_v = nn.Linear(channels, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, channels), nn.Dropout(0.0)])

    def forward(self, x):
        b, c, hh, ww = x.shape
        res = x
        h = x.view(b, c, hh * ww)
        if self.group_norm is not None:
            h = self.group_norm(h)
        h = h.transpose(1, 2)  # (b, hw, c)
        q, k, v = self.to_q(h), self.to_k(h), self.to_v(h)
        split = lambda z: z.view(b, hh * ww, self.heads, self.head_dim).transpose(1, 2)
        q, k, v = split(q), split(k), split(v)
        w = torch.softmax((q @ k.transpose(-1, -2)) * (self.head_dim ** -0.5), dim=-1)
        o = (w @ v).transpose(1, 2).reshape(b, hh * ww, self.heads * self.head_dim)
        o = self.to_out[0](o).transpose(1, 2).reshape(b, c, hh, ww)
        return (o + res) / self.rescale


class Downsample2D(nn.Module):
    def __init__(self, channels, padding):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x):
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    def __init__(self, attn, cin, cout, temb, layers, groups, eps, shift, head_dim, add_down, padding):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(cin if i == 0 else cout, cout, temb, groups, eps, shift) for i in range(layers)])
        if attn:
            self.attentions = nn.ModuleList([Attention(cout, head_dim, groups, eps) for _ in range(layers)])
        else:
            self.attentions = None
        self.downsamplers = nn.ModuleList([Downsample2D(cout, padding)]) if add_down else None

    def forward(self, h, temb):
        states = []
        for i, r in enumerate(self.resnets):
            h = r(h, temb)
            if self.attentions is not None:
                h = self.attentions[i](h)
            states.append(h)
        if self.downsamplers is not None:
            h = self.downsamplers[0](h)
            states.append(h)
        return h, states


class UpBlock(nn.Module):
    def __init__(self, attn, cin, prev, cout, temb, layers, groups, eps, shift, head_dim, add_up):
        super().__init__()
        rs = []
        for i in range(layers):
            skip = cin if i == layers - 1 else cout
            rin = prev if i == 0 else cout
            rs.append(ResnetBlock2D(rin + skip, cout, temb, groups, eps, shift))
        self.resnets = nn.ModuleList(rs)
        self.attentions = nn.ModuleList([Attention(cout, head_dim, groups, eps) for _ in range(layers)]) if attn else None
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if add_up else None

    def forward(self, h, skips, temb):
        for i, r in enumerate(self.resnets):
            h = torch.cat([h, skips.pop()], dim=1)
            h = r(h, temb)
            if self.attentions is not None:
                h = self.attentions[i](h)
        if self.upsamplers is not None:
            h = self.upsamplers[0](h)
        return h


class MidBlock(nn.Module):
    def __init__(self, c, temb, groups, attn_groups, eps, shift, head_dim, scale, add_attention):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(c, c, temb, groups, eps, shift, scale) for _ in range(2)])
        self.attentions = nn.ModuleList([Attention(c, head_dim, attn_groups, eps, scale)]) if add_attention else None

    def forward(self, h, temb):
        h = self.resnets[0](h, temb)
        if self.attentions is not None:
            h = self.attentions[0](h)
        return self.resnets[1](h, temb)


class UNet2DModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        cfg = dict(DEFAULTS)
        cfg.update({k: v for k, v in config.items() if not k.startswith("_")})
        self.config = cfg
        boc = cfg["block_out_channels"]
        groups, eps, shift = cfg["norm_num_groups"], cfg["norm_eps"], cfg["resnet_time_scale_shift"]
        hd = cfg["attention_head_dim"]
        temb = boc[0] * 4
        self.conv_in = nn.Conv2d(cfg["in_channels"], boc[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(boc[0], temb)
        self.class_embedding = nn.Embedding(cfg["num_class_embeds"], temb) if cfg["num_class_embeds"] else None
        self.down_blocks = nn.ModuleList()
        out = boc[0]
        for i, kind in enumerate(cfg["down_block_types"]):
            cin, out = out, boc[i]
            final = i == len(boc) - 1
            self.down_blocks.append(DownBlock(kind == "AttnDownBlock2D", cin, out, temb, cfg["layers_per_block"], groups, eps, shift,
                                              hd if hd is not None else out, not final, cfg["downsample_padding"]))
        attn_groups = cfg["attn_norm_num_groups"]
        if attn_groups is None:
            attn_groups = groups if shift == "default" else None
        self.mid_block = MidBlock(boc[-1], temb, groups, attn_groups, eps, shift, hd if hd is not None else boc[-1],
                                  cfg["mid_block_scale_factor"], cfg["add_attention"])
        rev = list(reversed(boc))
        out = rev[0]
        self.up_blocks = nn.ModuleList()
        for i, kind in enumerate(cfg["up_block_types"]):
            prev, out = out, rev[i]
            cin = rev[min(i + 1, len(boc) - 1)]
            final = i == len(boc) - 1
            self.up_blocks.append(UpBlock(kind == "AttnUpBlock2D", cin, prev, out, temb, cfg["layers_per_block"] + 1, groups, eps, shift,
                                          hd if hd is not None else out, not final))
        self.conv_norm_out = nn.GroupNorm(groups, boc[0], eps=eps)
        self.conv_out = nn.Conv2d(boc[0], cfg["out_channels"], 3, padding=1)

    def forward(self, x, t, class_labels=None):
        cfg = self.config
        if cfg["center_input_sample"]:
            x = 2 * x - 1.0
        if not torch.is_tensor(t) or t.ndim == 0:
            t = torch.full((x.shape[0],), float(t))
        emb = self.time_embedding(timestep_embedding(t, cfg["block_out_channels"][0], cfg["flip_sin_to_cos"], cfg["freq_shift"], x.dtype))
        if self.class_embedding is not None:
            emb = emb + self.class_embedding(class_labels).to(x.dtype)
        h = self.conv_in(x)
        skips = [h]
        for b in self.down_blocks:
            h, s = b(h, emb)
            skips += s
        h = self.mid_block(h, emb)
        for b in self.up_blocks:
            h = b(h, skips, emb)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


# ---------------------------------------------------------------------------------------------
# safetensors, written and read by hand (no safetensors package in Debian 12)

DTYPES = {"F64": (np.float64, 8), "F32": (np.float32, 4), "F16": (np.float16, 2), "I64": (np.int64, 8), "BF16": (None, 2)}


def save_safetensors(path, tensors, metadata=None, dtype="F32"):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        a = t.detach().cpu().numpy() if torch.is_tensor(t) else np.asarray(t)
        dt = dtype if a.dtype.kind == "f" else "I64"
        if dt == "BF16":
            bits = torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16).view(torch.int16).numpy()
            raw = bits.astype("<i2").tobytes()
        else:
            raw = a.astype(DTYPES[dt][0]).astype(DTYPES[dt][0]().dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[8 + n + a:8 + n + b]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<i2").copy()
            t = torch.from_numpy(bits).view(torch.bfloat16).to(torch.float32)
        else:
            t = torch.from_numpy(np.frombuffer(raw, dtype=np.dtype(DTYPES[info["dtype"]][0]).newbyteorder("<")).copy())
        out[name] = t.reshape(info["shape"])
    return out


if __name__ == "__main__":
    cifar = {"sample_size": 32, "in_channels": 3, "out_channels": 3, "block_out_channels": [128, 256, 256, 256],
             "layers_per_block": 2, "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"], "attention_head_dim": None,
             "norm_num_groups": 32, "norm_eps": 1e-6}
    m = UNet2DModel(cifar)
    n = sum(p.numel() for p in m.parameters())
    print("ddpm-cifar10-32 shaped UNet:", n, "parameters (diffusers: 35746307)")
    y = m(torch.randn(1, 3, 32, 32), torch.tensor([10]))
    print("output", tuple(y.shape))
