"""The device mesh, built from the config's `mesh` section.

Axes are `data` (pure data parallelism), `fsdp` (data parallelism with parameters and optimiser
state sharded), `tensor` (heads and MLP columns split) and `sequence` (token axis split). Sizes
may be -1 (take what the device count leaves). Multi-slice pods add a DCN (between-slice) factor
per axis; the mesh then nests slices outermost so cross-slice traffic is only on those axes.
"""

import math
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh

MESH_AXES = ("data", "fsdp", "tensor", "sequence")


class MeshError(ValueError):
    """A mesh config that cannot be laid on the devices; one line naming the field."""


def resolve_axis_sizes(sizes: dict[str, int], num_devices: int, field: str) -> tuple[int, ...]:
    """Fills in a single -1 so that the product is `num_devices`; checks the product otherwise."""
    unknown = [name for name in MESH_AXES if sizes.get(name, 1) == -1]
    if len(unknown) > 1:
        raise MeshError(f"{field}: at most one axis may be -1, got {unknown}")
    for name in MESH_AXES:
        size = sizes.get(name, 1)
        if size != -1 and size < 1:
            raise MeshError(f"{field}.{name}: expected a positive size or -1, got {size}")
    known = math.prod(sizes.get(name, 1) for name in MESH_AXES if name not in unknown)
    if unknown:
        if num_devices % known:
            raise MeshError(
                f"{field}: the fixed axes multiply to {known}, which does not divide "
                f"the {num_devices} devices"
            )
        sizes = {**sizes, unknown[0]: num_devices // known}
    shape = tuple(sizes.get(name, 1) for name in MESH_AXES)
    if math.prod(shape) != num_devices:
        raise MeshError(
            f"{field}: axes {dict(zip(MESH_AXES, shape))} multiply to {math.prod(shape)} "
            f"but there are {num_devices} devices"
        )
    return shape


def build_mesh(mesh_config: ml_collections.ConfigDict, devices: Sequence | None = None) -> Mesh:
    """The mesh for `mesh_config` (`ici` sizes per axis, optional `dcn` sizes per axis).

    `num_devices` (-1 = all) uses only the first devices, e.g. one of eight simulated CPUs.

    Every axis is typed `Auto`: shardings come from `jit`'s in/out shardings and the
    logical-axis constraints, with the compiler propagating the rest (pjit's semantics).
    """
    devices = list(jax.devices() if devices is None else devices)
    use = mesh_config.get("num_devices", -1)
    if use != -1:
        if not 1 <= use <= len(devices):
            raise MeshError(f"mesh.num_devices: expected -1 or 1..{len(devices)}, got {use}")
        devices = devices[:use]
    dcn_sizes = dict(mesh_config.get("dcn", {}) or {})
    num_slices = math.prod(dcn_sizes.get(name, 1) for name in MESH_AXES)
    if len(devices) % num_slices:
        raise MeshError(f"mesh.dcn: {num_slices} slices do not divide {len(devices)} devices")
    dcn_shape = resolve_axis_sizes(dcn_sizes, num_slices, "mesh.dcn")
    ici_shape = resolve_axis_sizes(dict(mesh_config.ici), len(devices) // num_slices, "mesh.ici")
    axis_types = (AxisType.Auto,) * len(MESH_AXES)
    if num_slices > 1:
        device_array = mesh_utils.create_hybrid_device_mesh(ici_shape, dcn_shape, devices)
        return Mesh(device_array, MESH_AXES, axis_types=axis_types)
    if devices == list(jax.devices()):
        return jax.make_mesh(ici_shape, MESH_AXES, axis_types=axis_types)
    return Mesh(np.asarray(devices).reshape(ici_shape), MESH_AXES, axis_types=axis_types)


def data_parallel_size(mesh: Mesh) -> int:
    """How many ways the batch is split: the product of the data and fsdp axes."""
    return mesh.shape["data"] * mesh.shape["fsdp"]


def sampler_mesh(num_devices: int, num_segments: int) -> Mesh | None:
    """A one-axis `data` mesh over the first local devices a sampler's segments can use.

    num_devices: how many local devices to split segments over; 0 or -1 means all (as
      `mesh.num_devices = -1` does for training). Never more than there are segments; None
      when that leaves one device.
    """
    local = jax.local_devices()
    if not -1 <= num_devices <= len(local):
        raise MeshError(
            f"mesh.num_devices: expected -1 or 0 (all) to {len(local)} local devices, "
            f"got {num_devices}"
        )
    n = min(num_devices if num_devices > 0 else len(local), num_segments)
    if n <= 1:
        return None
    return Mesh(np.asarray(local[:n]), ("data",), axis_types=(AxisType.Auto,))
