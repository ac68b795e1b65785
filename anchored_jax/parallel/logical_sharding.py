"""Logical axis names -> mesh shardings, for parameters, optimiser state and activations.

Every parameter carries logical names (`embed`, `mlp`, `heads`, `layers`, ...). A list of rules
from the config maps each name to a mesh axis, a tuple of axes or nothing. A dimension whose
size the mesh axes do not divide is replicated instead, so one rule set serves every model size.
Activations are constrained at block boundaries through `constrain`, which reads the rules set
by `use_rules` during tracing; outside a mesh it does nothing.
"""

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

# Parameters are sharded over fsdp along their embedding axis and over tensor along heads and
# MLP columns (Megatron-style); the batch over data and fsdp. Source of the pattern: MaxText.
DEFAULT_RULES: Rules = (
    ("batch", ("data", "fsdp")),
    ("length", "sequence"),
    ("act_embed", None),
    ("layers", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("head_dim", None),
    ("qkv", None),
    ("adaln", "tensor"),
    ("patch", None),
    ("cond_in", None),
    ("kernel_h", None),
    ("kernel_w", None),
    ("conv_in", None),
    ("conv_out", "tensor"),
)

_ACTIVE_RULES: contextvars.ContextVar[Rules | None] = contextvars.ContextVar(
    "anchored_jax_logical_rules", default=None
)


def rules_from_config(rules) -> Rules:
    """Config rules are lists (JSON-friendly); make them hashable tuples and check them."""
    out = []
    for i, rule in enumerate(rules):
        if len(rule) != 2 or not isinstance(rule[0], str):
            raise ValueError(f"sharding.rules[{i}]: expected [logical_name, mesh_axes], got {rule}")
        axes = rule[1]
        if isinstance(axes, list | tuple):
            axes = tuple(axes)
        out.append((rule[0], axes))
    return tuple(out)


def mesh_spec(
    logical: Sequence[str | None], shape: Sequence[int], rules: Rules, mesh: Mesh
) -> PartitionSpec:
    """The mesh PartitionSpec for an array of `shape` with logical axis names `logical`."""
    table = dict(rules)
    used: set[str] = set()
    out = []
    for name, size in zip(logical, shape, strict=True):
        axes = table.get(name) if name is not None else None
        axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
        # Mesh axes of size 1 add nothing; an axis may shard only one dimension of an array.
        axes = tuple(a for a in axes if mesh.shape[a] > 1 and a not in used)
        ways = 1
        for a in axes:
            ways *= mesh.shape[a]
        if not axes or size % ways:
            out.append(None)
            continue
        used.update(axes)
        out.append(axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*out)


def tree_shardings(abstract_tree, rules: Rules, mesh: Mesh):
    """NamedShardings for every leaf of a tree of (abstract) arrays and NNX variables.

    Leaves without logical names (step counters, schedule counts) are replicated.
    """
    logical = nnx.get_partition_spec(abstract_tree)
    is_spec = lambda x: isinstance(x, PartitionSpec)  # noqa: E731
    specs = jax.tree.leaves(logical, is_leaf=is_spec)
    leaves, treedef = jax.tree.flatten(abstract_tree)
    if len(specs) != len(leaves):
        raise ValueError(f"{len(specs)} partition specs for {len(leaves)} arrays")
    shardings = [
        NamedSharding(
            mesh,
            mesh_spec(tuple(spec) + (None,) * (leaf.ndim - len(spec)), leaf.shape, rules, mesh),
        )
        for spec, leaf in zip(specs, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, shardings)


def batch_sharding(mesh: Mesh, rules: Rules, ndim: int) -> NamedSharding:
    """Batch-leading arrays: the batch axis split over the rule for `batch`, the rest whole."""
    table = dict(rules)
    axes = table.get("batch")
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    axes = tuple(a for a in axes if mesh.shape[a] > 1)
    lead = None if not axes else (axes[0] if len(axes) == 1 else axes)
    return NamedSharding(mesh, PartitionSpec(lead, *([None] * (ndim - 1))))


@contextlib.contextmanager
def use_rules(rules: Rules) -> Iterator[None]:
    """Makes `rules` the ones `constrain` uses while tracing inside this block."""
    token = _ACTIVE_RULES.set(rules)
    try:
        yield
    finally:
        _ACTIVE_RULES.reset(token)


def constrain(x: jax.Array, logical: Sequence[str | None]) -> jax.Array:
    """A sharding constraint by logical names; a no-op without rules or without a mesh."""
    rules = _ACTIVE_RULES.get()
    mesh = jax.sharding.get_abstract_mesh()
    if rules is None or mesh.empty:
        return x
    return jax.lax.with_sharding_constraint(x, mesh_spec(logical, x.shape, rules, mesh))
