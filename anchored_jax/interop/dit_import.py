"""Initialise the sDiT trunk from a facebookresearch/DiT checkpoint.

DiT's state dict (models.py of facebookresearch/DiT; timm's PatchEmbed/Attention/Mlp):
`x_embedder.proj` (a p x p stride-p conv), `t_embedder.mlp.{0,2}`, `y_embedder.
embedding_table` (num_classes + 1 rows, the last the null label), `pos_embed` (fixed
sin-cos), `blocks.{i}.{attn.qkv, attn.proj, mlp.fc1, mlp.fc2, adaLN_modulation.1}` and
`final_layer.{adaLN_modulation.1, linear}`. Layout differences handled here:

- torch Linear weights are `[out, in]`; ours `[in, out]`;
- the patch conv `[D, C, p, p]` becomes our flattened `(p1 p2 c) x D` kernel;
- qkv `[3D, D]` (rows ordered 3, heads, head_dim) becomes `[D, 3, heads, head_dim]`, and
  the output projection `[D, D]` becomes `[heads, head_dim, D]`;
- DiT's learn_sigma head outputs 2C channels per pixel (epsilon first, then the variance
  interpolation); a model with C outputs takes the epsilon half.

Parts that are ours (frame time, landmarks, identity encoder, nulls, the temporal branch of
factorized attention) keep the model's own initialisation: their adaLN contribution starts
at zero, so the imported model first behaves as DiT on each frame. The class table is
imported only in `identity="class_label"` mode; otherwise it is deliberately skipped.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
from flax import nnx

from anchored_jax.interop.weight_files import WeightLayoutError, check_layout, load_weight_file
from anchored_jax.models.embeddings import TIMESTEP_FREQ_DIM, sincos_2d_positions
from anchored_jax.models.sdit import SDiT
from anchored_jax.models.sdit_config import SDiTConfig

# DiT's pos_embed is the same fixed grid as ours; a larger difference means another grid.
POS_EMBED_TOLERANCE = 1e-4
CLASS_TABLE_KEY = "y_embedder.embedding_table.weight"


def dit_parity_overrides(num_classes: int = 1000) -> dict:
    """SDiTConfig fields that make the sDiT compute DiT's function on one frame."""
    return dict(
        identity="class_label",
        num_classes=num_classes,
        frame_time_condition=False,
        landmark_condition=False,
        time_in_tokens=False,
        attention="joint",
    )


@dataclasses.dataclass(frozen=True)
class DiTImportReport:
    imported: tuple[str, ...]  # sDiT parameter paths filled from the checkpoint
    kept: tuple[str, ...]  # sDiT parameter paths left at the model's initialisation
    skipped_keys: tuple[str, ...]  # checkpoint keys deliberately not used
    epsilon_half: bool  # the checkpoint's learn_sigma head was cut to its epsilon channels


def _dit_out_channels(config: SDiTConfig, tensors: dict) -> tuple[int, bool]:
    """Output channels the checkpoint should have, and whether to cut a learn_sigma head."""
    ours = config.output_channels
    weight = tensors.get("final_layer.linear.weight")
    if weight is not None and weight.ndim == 2:
        theirs, rem = divmod(weight.shape[0], config.patch_size**2)
        if not rem and theirs == 2 * ours and ours == config.in_channels:
            return theirs, True
    return ours, False


def expected_dit_shapes(config: SDiTConfig, out_channels: int) -> dict[str, tuple[int, ...]]:
    """Every DiT state-dict key this config needs, with its torch shape."""
    D, p, C = config.width, config.patch_size, config.in_channels
    hidden = config.mlp_hidden
    shapes = {
        "pos_embed": (1, config.num_patches, D),
        "x_embedder.proj.weight": (D, C, p, p),
        "x_embedder.proj.bias": (D,),
        "t_embedder.mlp.0.weight": (D, TIMESTEP_FREQ_DIM),
        "t_embedder.mlp.0.bias": (D,),
        "t_embedder.mlp.2.weight": (D, D),
        "t_embedder.mlp.2.bias": (D,),
        "final_layer.adaLN_modulation.1.weight": (2 * D, D),
        "final_layer.adaLN_modulation.1.bias": (2 * D,),
        "final_layer.linear.weight": (p * p * out_channels, D),
        "final_layer.linear.bias": (p * p * out_channels,),
    }
    if config.identity == "class_label":
        shapes[CLASS_TABLE_KEY] = (config.num_classes + 1, D)
    for i in range(config.depth):
        b = f"blocks.{i}"
        shapes.update(
            {
                f"{b}.attn.qkv.weight": (3 * D, D),
                f"{b}.attn.qkv.bias": (3 * D,),
                f"{b}.attn.proj.weight": (D, D),
                f"{b}.attn.proj.bias": (D,),
                f"{b}.mlp.fc1.weight": (hidden, D),
                f"{b}.mlp.fc1.bias": (hidden,),
                f"{b}.mlp.fc2.weight": (D, hidden),
                f"{b}.mlp.fc2.bias": (D,),
                f"{b}.adaLN_modulation.1.weight": (6 * D, D),
                f"{b}.adaLN_modulation.1.bias": (6 * D,),
            }
        )
    return shapes


def _block_params(t: dict, i: int, config: SDiTConfig) -> dict[tuple, np.ndarray]:
    D, H, Dh = config.width, config.num_heads, config.head_dim
    b = f"blocks.{i}"
    return {
        ("attn", "qkv_kernel"): t[f"{b}.attn.qkv.weight"].T.reshape(D, 3, H, Dh),
        ("attn", "qkv_bias"): t[f"{b}.attn.qkv.bias"].reshape(3, H, Dh),
        ("attn", "out_kernel"): t[f"{b}.attn.proj.weight"].T.reshape(H, Dh, D),
        ("attn", "out_bias"): t[f"{b}.attn.proj.bias"],
        ("mlp", "fc1", "kernel"): t[f"{b}.mlp.fc1.weight"].T,
        ("mlp", "fc1", "bias"): t[f"{b}.mlp.fc1.bias"],
        ("mlp", "fc2", "kernel"): t[f"{b}.mlp.fc2.weight"].T,
        ("mlp", "fc2", "bias"): t[f"{b}.mlp.fc2.bias"],
        ("adaln", "kernel"): t[f"{b}.adaLN_modulation.1.weight"].T,
        ("adaln", "bias"): t[f"{b}.adaLN_modulation.1.bias"],
    }


def dit_to_sdit_params(
    tensors: dict[str, np.ndarray], config: SDiTConfig, epsilon_half: bool
) -> dict[tuple, np.ndarray]:
    """sDiT parameter path -> value, blocks stacked on a leading axis when layers are scanned."""
    p, C, D = config.patch_size, config.in_channels, config.width
    t = tensors
    # [D, C, p1, p2] -> rows ordered (p1, p2, c), as PatchEmbed flattens a patch.
    patch_kernel = np.transpose(t["x_embedder.proj.weight"], (2, 3, 1, 0)).reshape(p * p * C, D)
    final_w, final_b = t["final_layer.linear.weight"], t["final_layer.linear.bias"]
    if epsilon_half:
        # Rows are ordered (p1, p2, c) over 2C channels; DiT's epsilon is channels [:C].
        final_w = final_w.reshape(p * p, 2 * C, D)[:, :C].reshape(p * p * C, D)
        final_b = final_b.reshape(p * p, 2 * C)[:, :C].reshape(-1)
    params = {
        ("patch_embed", "proj", "kernel"): patch_kernel,
        ("patch_embed", "proj", "bias"): t["x_embedder.proj.bias"],
        ("t_embedder", "mlp", "fc1", "kernel"): t["t_embedder.mlp.0.weight"].T,
        ("t_embedder", "mlp", "fc1", "bias"): t["t_embedder.mlp.0.bias"],
        ("t_embedder", "mlp", "fc2", "kernel"): t["t_embedder.mlp.2.weight"].T,
        ("t_embedder", "mlp", "fc2", "bias"): t["t_embedder.mlp.2.bias"],
        ("final_layer", "adaln", "kernel"): t["final_layer.adaLN_modulation.1.weight"].T,
        ("final_layer", "adaln", "bias"): t["final_layer.adaLN_modulation.1.bias"],
        ("final_layer", "linear", "kernel"): final_w.T,
        ("final_layer", "linear", "bias"): final_b,
    }
    if config.identity == "class_label":
        params[("identity_embedder", "embedding_table")] = t[CLASS_TABLE_KEY]
    per_layer = [_block_params(t, i, config) for i in range(config.depth)]
    for sub in per_layer[0]:
        if config.scan_layers:
            params[("blocks",) + sub] = np.stack([layer[sub] for layer in per_layer])
        else:
            for i, layer in enumerate(per_layer):
                params[("blocks", i) + sub] = layer[sub]
    return params


def _size_hint(tensors: dict, config: SDiTConfig) -> str:
    """What size of DiT the file holds against what the config asks for."""
    patch = tensors.get("x_embedder.proj.weight")
    depth = len({k.split(".")[1] for k in tensors if k.startswith("blocks.")})
    if patch is None or patch.ndim != 4:
        return f"no x_embedder.proj.weight: not a DiT state dict? {len(tensors)} keys"
    return (
        f"the checkpoint has width {patch.shape[0]}, depth {depth}, patch {patch.shape[-1]}, "
        f"{patch.shape[1]} input channels; the config has width {config.width}, depth "
        f"{config.depth}, patch {config.patch_size}, {config.in_channels} input channels"
    )


def import_dit_weights(
    model: SDiT, tensors: dict[str, np.ndarray], source: str = "DiT checkpoint"
) -> DiTImportReport:
    """Overwrites the trunk of `model` with DiT weights, in place.

    Anything that differs (keys, shapes, the position grid) is one `WeightLayoutError`.
    """
    config = model.config
    out_channels, epsilon_half = _dit_out_channels(config, tensors)
    expected = expected_dit_shapes(config, out_channels)
    skipped = frozenset({CLASS_TABLE_KEY} - set(expected))
    try:
        check_layout(source, expected, {k: v.shape for k, v in tensors.items()}, ignored=skipped)
    except WeightLayoutError as e:
        raise WeightLayoutError(f"{e} ({_size_hint(tensors, config)})") from None
    pos = sincos_2d_positions(config.width, config.grid_size)
    pos_error = float(np.max(np.abs(tensors["pos_embed"][0] - pos)))
    if pos_error > POS_EMBED_TOLERANCE:
        raise WeightLayoutError(
            f"{source}: pos_embed differs from the sin-cos grid of model.image_size "
            f"{config.image_size} / model.patch_size {config.patch_size} (max diff {pos_error:.3g})"
        )

    values = dit_to_sdit_params(tensors, config, epsilon_half)
    imported, kept = [], []
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        name = "/".join(str(k) for k in path)
        if path not in values:
            kept.append(name)
            continue
        value = values.pop(path)
        if value.shape != var.shape:  # a mapping bug, not a user error
            raise AssertionError(f"{name}: mapped shape {value.shape} != parameter {var.shape}")
        var.set_value(jnp.asarray(value, var.dtype))
        imported.append(name)
    if values:
        raise AssertionError(f"mapped values without a parameter: {sorted(values)}")
    return DiTImportReport(tuple(imported), tuple(kept), tuple(sorted(skipped)), epsilon_half)


def load_dit_checkpoint(path: str) -> dict[str, np.ndarray]:
    """DiT weights from a released `.pt` (a bare state dict), a training checkpoint (its
    `ema` entry) or a `.safetensors` file; never unpickles objects."""
    return load_weight_file(path, prefer_key="ema")
