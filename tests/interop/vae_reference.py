"""An independent reference for the KL autoencoder tests: diffusers' key layout and forward.

Written from diffusers' `AutoencoderKL` description (DownEncoderBlock2D / UpDecoderBlock2D,
UNetMidBlock2D with one attention, DiagonalGaussianDistribution) with torch.nn.functional
on NCHW tensors, sharing no code with `anchored_jax`. The key list is enumerated here too,
so the importer is checked against a layout it did not produce.
"""

import json
import os

import numpy as np

EPS = 1e-6


def config_dict(channels=(16, 32), layers=1, groups=8, latent=4) -> dict:
    n = len(channels)
    return {
        "_class_name": "AutoencoderKL",
        "_diffusers_version": "0.30.0",
        "act_fn": "silu",
        "block_out_channels": list(channels),
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": latent,
        "layers_per_block": layers,
        "norm_num_groups": groups,
        "sample_size": 16,
        "scaling_factor": 0.18215,
    }


def _resnet(prefix, cin, cout):
    shapes = {
        f"{prefix}.norm1.weight": (cin,),
        f"{prefix}.norm1.bias": (cin,),
        f"{prefix}.conv1.weight": (cout, cin, 3, 3),
        f"{prefix}.conv1.bias": (cout,),
        f"{prefix}.norm2.weight": (cout,),
        f"{prefix}.norm2.bias": (cout,),
        f"{prefix}.conv2.weight": (cout, cout, 3, 3),
        f"{prefix}.conv2.bias": (cout,),
    }
    if cin != cout:
        shapes[f"{prefix}.conv_shortcut.weight"] = (cout, cin, 1, 1)
        shapes[f"{prefix}.conv_shortcut.bias"] = (cout,)
    return shapes


def _mid(prefix, c, legacy):
    shapes = {**_resnet(f"{prefix}.resnets.0", c, c), **_resnet(f"{prefix}.resnets.1", c, c)}
    a = f"{prefix}.attentions.0"
    shapes[f"{a}.group_norm.weight"] = (c,)
    shapes[f"{a}.group_norm.bias"] = (c,)
    names = (
        ("query", "key", "value", "proj_attn") if legacy else ("to_q", "to_k", "to_v", "to_out.0")
    )
    for name in names:
        shapes[f"{a}.{name}.weight"] = (c, c)
        shapes[f"{a}.{name}.bias"] = (c,)
    return shapes


def key_shapes(cfg: dict, legacy_attention: bool = False) -> dict:
    """Every state-dict key of a diffusers AutoencoderKL and its torch shape."""
    ch, L, lat = cfg["block_out_channels"], cfg["layers_per_block"], cfg["latent_channels"]
    s = {"encoder.conv_in.weight": (ch[0], 3, 3, 3), "encoder.conv_in.bias": (ch[0],)}
    cout = ch[0]
    for i, c in enumerate(ch):
        cin, cout = cout, c
        for j in range(L):
            s.update(_resnet(f"encoder.down_blocks.{i}.resnets.{j}", cin if j == 0 else c, c))
        if i < len(ch) - 1:
            s[f"encoder.down_blocks.{i}.downsamplers.0.conv.weight"] = (c, c, 3, 3)
            s[f"encoder.down_blocks.{i}.downsamplers.0.conv.bias"] = (c,)
    s.update(_mid("encoder.mid_block", ch[-1], legacy_attention))
    s.update({"encoder.conv_norm_out.weight": (ch[-1],), "encoder.conv_norm_out.bias": (ch[-1],)})
    s.update(
        {"encoder.conv_out.weight": (2 * lat, ch[-1], 3, 3), "encoder.conv_out.bias": (2 * lat,)}
    )
    s.update({"quant_conv.weight": (2 * lat, 2 * lat, 1, 1), "quant_conv.bias": (2 * lat,)})
    s.update({"post_quant_conv.weight": (lat, lat, 1, 1), "post_quant_conv.bias": (lat,)})
    rev = list(reversed(ch))
    s.update({"decoder.conv_in.weight": (rev[0], lat, 3, 3), "decoder.conv_in.bias": (rev[0],)})
    s.update(_mid("decoder.mid_block", rev[0], legacy_attention))
    prev = rev[0]
    for i, c in enumerate(rev):
        for j in range(L + 1):
            s.update(_resnet(f"decoder.up_blocks.{i}.resnets.{j}", prev if j == 0 else c, c))
        prev = c
        if i < len(rev) - 1:
            s[f"decoder.up_blocks.{i}.upsamplers.0.conv.weight"] = (c, c, 3, 3)
            s[f"decoder.up_blocks.{i}.upsamplers.0.conv.bias"] = (c,)
    s.update({"decoder.conv_norm_out.weight": (rev[-1],), "decoder.conv_norm_out.bias": (rev[-1],)})
    s.update({"decoder.conv_out.weight": (3, rev[-1], 3, 3), "decoder.conv_out.bias": (3,)})
    return s


def write_random_vae(directory: str, cfg: dict, seed: int = 0, legacy_attention=False) -> dict:
    """Random weights (norm affines near 1/0, convs at a stable scale) in diffusers' files."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors = {}
    for key, shape in key_shapes(cfg, legacy_attention).items():
        if key.endswith("bias"):
            value = 0.1 * rng.standard_normal(shape)
        elif len(shape) == 1:  # GroupNorm weight
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            value = rng.standard_normal(shape) / np.sqrt(fan_in)
        tensors[key] = value.astype(np.float32)
    os.makedirs(directory, exist_ok=True)
    save_file(tensors, os.path.join(directory, "diffusion_pytorch_model.safetensors"))
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f)
    return tensors


# ------------------------------------------------------------------------- torch forward
def _forward_fns(sd: dict, cfg: dict):
    import torch
    import torch.nn.functional as F

    legacy = {
        ".query.": ".to_q.",
        ".key.": ".to_k.",
        ".value.": ".to_v.",
        ".proj_attn.": ".to_out.0.",
    }

    def modern(key):
        for old, new in legacy.items():
            key = key.replace(old, new)
        return key

    W = {modern(k): torch.from_numpy(v).double() for k, v in sd.items()}
    G = cfg["norm_num_groups"]

    def norm(x, p):
        return F.group_norm(x, G, W[p + ".weight"], W[p + ".bias"], eps=EPS)

    def conv(x, p, stride=1, padding=1):
        return F.conv2d(x, W[p + ".weight"], W[p + ".bias"], stride=stride, padding=padding)

    def resnet(x, p):
        h = conv(F.silu(norm(x, p + ".norm1")), p + ".conv1")
        h = conv(F.silu(norm(h, p + ".norm2")), p + ".conv2")
        if p + ".conv_shortcut.weight" in W:
            x = conv(x, p + ".conv_shortcut", padding=0)
        return x + h

    def attention(x, p):
        n, c, hh, ww = x.shape
        h = norm(x, p + ".group_norm").reshape(n, c, hh * ww).transpose(1, 2)
        q, k, v = (
            F.linear(h, W[f"{p}.{m}.weight"], W[f"{p}.{m}.bias"]) for m in ("to_q", "to_k", "to_v")
        )
        a = torch.softmax(q @ k.transpose(1, 2) / c**0.5, dim=-1) @ v
        a = F.linear(a, W[p + ".to_out.0.weight"], W[p + ".to_out.0.bias"])
        return x + a.transpose(1, 2).reshape(n, c, hh, ww)

    def mid(x, p):
        return resnet(attention(resnet(x, p + ".resnets.0"), p + ".attentions.0"), p + ".resnets.1")

    n_levels, L = len(cfg["block_out_channels"]), cfg["layers_per_block"]

    def encode_moments(x):
        h = conv(x, "encoder.conv_in")
        for i in range(n_levels):
            for j in range(L):
                h = resnet(h, f"encoder.down_blocks.{i}.resnets.{j}")
            if i < n_levels - 1:
                h = F.pad(h, (0, 1, 0, 1))
                h = conv(h, f"encoder.down_blocks.{i}.downsamplers.0.conv", stride=2, padding=0)
        h = mid(h, "encoder.mid_block")
        h = conv(F.silu(norm(h, "encoder.conv_norm_out")), "encoder.conv_out")
        return conv(h, "quant_conv", padding=0)

    def decode(z):
        h = conv(conv(z, "post_quant_conv", padding=0), "decoder.conv_in")
        h = mid(h, "decoder.mid_block")
        for i in range(n_levels):
            for j in range(L + 1):
                h = resnet(h, f"decoder.up_blocks.{i}.resnets.{j}")
            if i < n_levels - 1:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
                h = conv(h, f"decoder.up_blocks.{i}.upsamplers.0.conv")
        return conv(F.silu(norm(h, "decoder.conv_norm_out")), "decoder.conv_out")

    return encode_moments, decode


def reference_encode_decode(sd: dict, cfg: dict, images_NHWC: np.ndarray):
    """(scaled posterior-mean latents NHWC, decoded images NHWC), computed in float64."""
    import torch

    encode_moments, decode = _forward_fns(sd, cfg)
    with torch.no_grad():
        x = torch.from_numpy(images_NHWC).double().permute(0, 3, 1, 2)
        mean = encode_moments(x)[:, : cfg["latent_channels"]]
        latents = mean * cfg["scaling_factor"]
        images = decode(latents / cfg["scaling_factor"])
    to_nhwc = lambda t: t.permute(0, 2, 3, 1).numpy()  # noqa: E731
    return to_nhwc(latents), to_nhwc(images)
