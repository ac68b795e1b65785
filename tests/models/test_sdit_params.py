"""Parameter counts against DiT's published sizes, and logical axis names on every Param."""

import pytest
from flax import nnx

from anchored_jax.models.logical_axes import LOGICAL_AXES
from anchored_jax.models.param_count import abstract_sdit, count_params
from anchored_jax.models.sdit_config import SDiTConfig, sdit_size
from tests.models.sdit_testing import small_config

# DiT paper Table 1 / repo logs, in millions, for the /2 models on 256px (32x32x4 latents).
DIT_REPORTED_M = {"S": 33, "B": 130, "L": 458, "XL": 675}


def dit_param_count(width, depth, *, in_ch=4, out_ch=8, patch=2, classes=1000):
    """DiT's parameter count in closed form, from the architecture in DiT models.py.

    Returns (trainable, class_table). The fixed sin-cos pos_embed (a frozen buffer in
    DiT, a constant here) is not counted: the published sizes are the trainable count
    (with it, B/2 would round to 131M).
    """
    D, p2 = width, patch**2
    patch_embed = in_ch * p2 * D + D  # Conv2d(in_ch, D, p, stride p) with bias
    t_embedder = 256 * D + D + D * D + D  # Linear(256, D), SiLU, Linear(D, D)
    class_table = (classes + 1) * D  # +1: the CFG null class (class_dropout_prob > 0)
    attention = D * 3 * D + 3 * D + D * D + D  # qkv, proj
    mlp = D * 4 * D + 4 * D + 4 * D * D + D
    adaln = D * 6 * D + 6 * D
    final = D * 2 * D + 2 * D + D * p2 * out_ch + p2 * out_ch
    trainable = patch_embed + t_embedder + class_table + depth * (attention + mlp + adaln) + final
    return trainable, class_table


def _trunk(size: str) -> int:
    """Parameters of the DiT trunk: patch embed, timestep embedder, blocks, final layer."""
    return count_params(abstract_sdit(dit_config(size)), exclude_conditioning=True)


def dit_config(size: str) -> SDiTConfig:
    return SDiTConfig(in_channels=4, out_channels=8, image_size=32, patch_size=2, **sdit_size(size))


@pytest.mark.parametrize("size", ["S", "B", "L", "XL"])
def test_trunk_matches_dit_minus_class_table(size):
    trunk_fields = sdit_size(size)
    trainable, class_table = dit_param_count(trunk_fields["width"], trunk_fields["depth"])
    assert round(trainable / 1e6) == DIT_REPORTED_M[size]
    assert _trunk(size) == trainable - class_table


def test_trunk_counts_are_the_known_numbers():
    counts = {size: _trunk(size) for size in DIT_REPORTED_M}
    assert counts == {"S": 32_480_672, "B": 129_547_040, "L": 456_815_648, "XL": 673_681_568}


def test_count_params_splits_trunk_and_conditioning():
    config = small_config()
    model = abstract_sdit(config)
    total, trunk = count_params(model), count_params(model, exclude_conditioning=True)
    state = nnx.state(model, nnx.Param)
    assert count_params(state) == total
    conditioning = (
        sum(
            count_params(getattr(model, name))
            for name in ("frame_time_embedder", "landmark_embedder", "identity_embedder")
        )
        + 2 * config.width
    )  # the two nulls
    assert total - trunk == conditioning > 0


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"attention": "factorized", "identity": "embedding"},
        {"scan_layers": False},
    ],
)
def test_every_param_has_logical_axis_names(overrides):
    config = small_config(**overrides)
    state = nnx.state(abstract_sdit(config), nnx.Param)
    specs = dict(nnx.to_flat_state(nnx.get_partition_spec(state)))
    shapes = dict(nnx.to_flat_state(state))
    assert len(specs) > 20
    for path, spec in specs.items():
        names = tuple(spec.get_value())
        assert len(names) == len(shapes[path].shape), path
        assert all(name in LOGICAL_AXES for name in names), (path, names)
        stacked = config.scan_layers and path[0] == "blocks"
        assert (names[0] == "layers") == stacked, (path, names)
