"""Logical axis names carried by every sDiT parameter, for sharding rules in the config.

Parameters are created with `param_init(init, *names)`, which attaches the names as
NNX `out_sharding` metadata (read back with `nnx.get_partition_spec`). Eager sharding
is off: no mesh is needed to build a model, and the parallel code maps these names to
mesh axes with its own rules when it shards the abstract state. Layers stacked for the
scan get the extra leading axis `layers`.
"""

from flax import nnx

# Every name a parameter axis may carry, and what it is.
LOGICAL_AXES = {
    "layers": "stacked block index of the scanned trunk",
    "embed": "model width D",
    "mlp": "hidden width of MLPs (block MLP, conditioning MLPs)",
    "qkv": "the 3 of a fused q/k/v projection",
    "heads": "attention heads",
    "head_dim": "per-head channels",
    "adaln": "adaLN modulation outputs (6D in blocks, 2D in the final layer)",
    "patch": "flattened p*p*C patch features (patch embedding in, final layer out)",
    "cond_in": "input features of a conditioning MLP (sinusoid, landmark vector, identity vector)",
    "kernel_h": "conv kernel height",
    "kernel_w": "conv kernel width",
    "conv_in": "conv input channels",
    "conv_out": "conv output channels",
}


def param_init(init, *names: str):
    """Wraps an initializer so the created `nnx.Param` carries logical axis `names`."""
    unknown = [n for n in names if n not in LOGICAL_AXES]
    if unknown:
        raise ValueError(f"unknown logical axis names {unknown}; known: {list(LOGICAL_AXES)}")
    return nnx.with_partitioning(init, tuple(names), eager_sharding=False)
