"""An independent reference for the DiT import tests: DiT's state-dict layout and forward.

Written from the DiT paper and facebookresearch/DiT's module structure with torch.nn.
functional on NCHW tensors (the patch embedding is a real strided conv here), sharing no
code with `anchored_jax`.
"""

import math

import numpy as np


def dit_pos_embed(width: int, grid: int) -> np.ndarray:
    """DiT's fixed position table `[1, grid*grid, width]`: first half columns, second rows."""

    def one_axis(dim, pos):
        omega = 1.0 / 10000 ** (np.arange(dim // 2) / (dim / 2))
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    rows, cols = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid), indexing="ij")
    table = np.concatenate([one_axis(width // 2, cols), one_axis(width // 2, rows)], axis=1)
    return table[None].astype(np.float32)


def random_dit_state_dict(
    *, input_size=8, patch=2, in_ch=4, width=32, depth=2, classes=10, learn_sigma=True, seed=0
) -> dict[str, np.ndarray]:
    """A DiT state dict with every key of the real one, all weights random and live."""
    rng = np.random.default_rng(seed)
    out_ch = 2 * in_ch if learn_sigma else in_ch
    D, hidden = width, 4 * width

    def w(*shape):
        return (rng.standard_normal(shape) / math.sqrt(shape[-1])).astype(np.float32)

    def b(n):
        return (0.1 * rng.standard_normal(n)).astype(np.float32)

    sd = {
        "pos_embed": dit_pos_embed(D, input_size // patch),
        "x_embedder.proj.weight": (
            rng.standard_normal((D, in_ch, patch, patch)) / math.sqrt(in_ch * patch * patch)
        ).astype(np.float32),
        "x_embedder.proj.bias": b(D),
        "t_embedder.mlp.0.weight": w(D, 256),
        "t_embedder.mlp.0.bias": b(D),
        "t_embedder.mlp.2.weight": w(D, D),
        "t_embedder.mlp.2.bias": b(D),
        "y_embedder.embedding_table.weight": w(classes + 1, D),
        "final_layer.linear.weight": w(patch * patch * out_ch, D),
        "final_layer.linear.bias": b(patch * patch * out_ch),
        "final_layer.adaLN_modulation.1.weight": w(2 * D, D),
        "final_layer.adaLN_modulation.1.bias": b(2 * D),
    }
    for i in range(depth):
        sd.update(
            {
                f"blocks.{i}.attn.qkv.weight": w(3 * D, D),
                f"blocks.{i}.attn.qkv.bias": b(3 * D),
                f"blocks.{i}.attn.proj.weight": w(D, D),
                f"blocks.{i}.attn.proj.bias": b(D),
                f"blocks.{i}.mlp.fc1.weight": w(hidden, D),
                f"blocks.{i}.mlp.fc1.bias": b(hidden),
                f"blocks.{i}.mlp.fc2.weight": w(D, hidden),
                f"blocks.{i}.mlp.fc2.bias": b(D),
                f"blocks.{i}.adaLN_modulation.1.weight": w(6 * D, D),
                f"blocks.{i}.adaLN_modulation.1.bias": b(6 * D),
            }
        )
    return sd


def dit_forward(sd: dict, x_NCHW: np.ndarray, t_N: np.ndarray, y_N: np.ndarray, heads: int):
    """DiT.forward (eval mode) in float64: returns `[N, out_ch, H, W]`."""
    import torch
    import torch.nn.functional as F

    P = {k: torch.from_numpy(v).double() for k, v in sd.items()}
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    patch = P["x_embedder.proj.weight"].shape[-1]

    def lin(x, name):
        return F.linear(x, P[name + ".weight"], P[name + ".bias"])

    def modulate(x, shift, scale):
        return x * (1 + scale[:, None]) + shift[:, None]

    def norm(x):
        return F.layer_norm(x, x.shape[-1:], eps=1e-6)

    with torch.no_grad():
        x = torch.from_numpy(x_NCHW).double()
        N, _, H, W = x.shape
        x = F.conv2d(x, P["x_embedder.proj.weight"], P["x_embedder.proj.bias"], stride=patch)
        x = x.flatten(2).transpose(1, 2) + P["pos_embed"]
        half = 128
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / half)
        args = torch.from_numpy(np.asarray(t_N)).double()[:, None] * freqs[None]
        t_freq = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        t_emb = lin(F.silu(lin(t_freq, "t_embedder.mlp.0")), "t_embedder.mlp.2")
        c = t_emb + P["y_embedder.embedding_table.weight"][torch.from_numpy(np.asarray(y_N))]
        D = x.shape[-1]
        for i in range(depth):
            pre = f"blocks.{i}"
            mods = lin(F.silu(c), pre + ".adaLN_modulation.1").chunk(6, dim=1)
            h = modulate(norm(x), mods[0], mods[1])
            qkv = lin(h, pre + ".attn.qkv").reshape(N, -1, 3, heads, D // heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
            attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D // heads), dim=-1) @ v
            attn = lin(attn.transpose(1, 2).reshape(N, -1, D), pre + ".attn.proj")
            x = x + mods[2][:, None] * attn
            h = modulate(norm(x), mods[3], mods[4])
            h = lin(F.gelu(lin(h, pre + ".mlp.fc1"), approximate="tanh"), pre + ".mlp.fc2")
            x = x + mods[5][:, None] * h
        shift, scale = lin(F.silu(c), "final_layer.adaLN_modulation.1").chunk(2, dim=1)
        x = lin(modulate(norm(x), shift, scale), "final_layer.linear")
        g = H // patch
        out_ch = x.shape[-1] // (patch * patch)
        x = x.reshape(N, g, g, patch, patch, out_ch)
        x = torch.einsum("nhwpqc->nchpwq", x).reshape(N, out_ch, H, W)
    return x.numpy()
