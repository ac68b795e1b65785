"""LIA `gen` state dicts -> our generator: LIA's key names and shapes, and a lossless round trip."""

import jax
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from anchored_jax.interop.lia_import import (
    lia_generator_params,
    lia_key_map,
    lia_state_dict,
    read_state_dict,
)
from anchored_jax.models.leo_animator_config import AnimatorConfig
from anchored_jax.models.leo_generator import LeoGenerator

TINY = AnimatorConfig(image_size=16, style_dim=16, motion_dim=4, channel_base=128, max_channels=8)


def test_key_map_has_lia_names_and_shapes_at_256():
    gen = nnx.eval_shape(lambda: LeoGenerator(AnimatorConfig(), rngs=nnx.Rngs(0)))
    flat = dict(nnx.to_flat_state(nnx.state(gen, nnx.Param)))
    shapes = {key: flat[path].shape for key, path, _ in lia_key_map(gen)}
    # LIA's own key names, with our (transposed) shapes for them.
    assert shapes["enc.net_app.convs.0.0.weight"] == (1, 1, 3, 64)
    assert shapes["enc.net_app.convs.1.conv2.1.weight"] == (3, 3, 64, 128)
    assert shapes["enc.net_app.convs.7.weight"] == (4, 4, 512, 512)
    assert shapes["enc.fc.4.weight"] == (512, 20)
    assert shapes["dec.direction.weight"] == (512, 20)
    assert shapes["dec.input.input"] == (4, 4, 512)
    assert shapes["dec.convs.11.conv.weight"] == (3, 3, 64, 64)
    assert shapes["dec.to_flows.5.conv.modulation.weight"] == (512, 64)
    assert shapes["dec.to_rgbs.0.conv.1.bias"] == (3,)
    assert len(shapes) == len(flat)
    assert sum(int(np.prod(s)) for s in shapes.values()) == 45_116_317


def torch_layout_state_dict(seed=0):
    """A LIA-layout state dict with random values, plus the blur buffers LIA also saves."""
    gen = LeoGenerator(TINY, rngs=nnx.Rngs(seed))
    sd = lia_state_dict(TINY, nnx.state(gen, nnx.Param))
    rng = np.random.default_rng(seed)
    sd = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in sd.items()}
    sd["dec.convs.0.conv.blur.kernel"] = np.ones((4, 4), np.float32)
    sd["dec.to_rgbs.1.upsample.kernel"] = np.ones((4, 4), np.float32)
    return sd


@pytest.mark.slow  # runs in make test-all; keeps the default run near 10 minutes
def test_import_round_trip_and_layouts(tmp_path):
    sd = torch_layout_state_dict()
    path = str(tmp_path / "lia_gen.safetensors")
    save_file(sd, path)
    params = lia_generator_params(TINY, read_state_dict(path))
    flat = dict(nnx.to_flat_state(params))
    w = sd["dec.convs.2.conv.weight"]  # [1, out, in, 3, 3]
    np.testing.assert_array_equal(
        flat[("dec", "convs", 2, "conv", "weight")].get_value(), w[0].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(
        flat[("enc", "fc", 0, "weight")].get_value(), sd["enc.fc.0.weight"].T
    )
    back = lia_state_dict(TINY, params)
    for key, value in back.items():
        np.testing.assert_array_equal(value, sd[key], err_msg=key)
    # The imported generator runs, and differs from a fresh one.
    gen = nnx.merge(nnx.graphdef(LeoGenerator(TINY, rngs=nnx.Rngs(0))), params)
    x = jax.random.uniform(jax.random.key(0), (1, 16, 16, 3), minval=-1, maxval=1)
    assert np.isfinite(np.asarray(gen(x, x))).all()


def test_import_from_torch_checkpoint_gen_entry(tmp_path):
    torch = pytest.importorskip("torch")
    sd = torch_layout_state_dict(seed=1)
    path = str(tmp_path / "lia.pt")
    torch.save({"gen": {k: torch.from_numpy(v) for k, v in sd.items()}, "args": {"size": 16}}, path)
    params = lia_generator_params(TINY, read_state_dict(path, entry="gen"))
    leaf = dict(nnx.to_flat_state(params))[("dec", "direction", "weight")].get_value()
    np.testing.assert_array_equal(leaf, sd["dec.direction.weight"])


def test_bad_state_dicts_give_one_line(tmp_path):
    sd = torch_layout_state_dict()
    del sd["dec.to_flows.0.bias"]
    with pytest.raises(ValueError, match="missing 'dec.to_flows.0.bias'"):
        lia_generator_params(TINY, sd)
    sd = torch_layout_state_dict()
    sd["dec.convs.9.conv.weight"] = np.zeros((1, 8, 8, 3, 3), np.float32)
    with pytest.raises(ValueError, match="unexpected key 'dec.convs.9.conv.weight'"):
        lia_generator_params(TINY, sd)
    sd = torch_layout_state_dict()
    sd["enc.fc.0.bias"] = np.zeros((5,), np.float32)
    with pytest.raises(ValueError, match=r"'enc.fc.0.bias' gives shape \(5,\)"):
        lia_generator_params(TINY, sd)
    with pytest.raises(ValueError, match="no such file"):
        read_state_dict(str(tmp_path / "missing.pt"))
