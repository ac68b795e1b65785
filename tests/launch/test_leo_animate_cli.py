"""launch.animate and `launch.import_weights lia`: a built LIA state dict in, frames out."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image
from safetensors.numpy import save_file

from anchored_jax.interop.lia_import import lia_generator_params, lia_state_dict
from anchored_jax.models.leo_animator_config import AnimatorConfig
from anchored_jax.models.leo_generator import LeoGenerator
from anchored_jax.pipelines import leo
from configs import animator as animator_configs
from data_pipelines.inference_inputs import InputError as AnimateError
from data_pipelines.motion_codes import read_code_file
from data_pipelines.video_decoding import probe_video
from launch.animate import animate
from launch.import_weights import import_lia
from tests.cli_testing import one_line_error, run_module

TINY = AnimatorConfig(image_size=16, style_dim=16, motion_dim=4, channel_base=128, max_channels=8)
TINY_FLAGS = (
    "--config.data.image_size=16", "--config.model.style_dim=16", "--config.model.motion_dim=4",
    "--config.model.channel_base=128", "--config.model.max_channels=8",
)  # fmt: skip
T = 6


def tiny_run_config(size: int = 16):
    config = animator_configs.get_config("tiny")
    config.data.image_size = size
    config.model.update(style_dim=16, motion_dim=4, channel_base=128, max_channels=8)
    return config


def lia_layout_state_dict(seed=1, config: AnimatorConfig = TINY):
    """Weights drawn as the StyleGAN layers initialise them (normal weights, zero biases,
    modulation biases 1), in LIA's key names and layouts as the LIA repo saves them under
    `gen`. Drawn with numpy on the abstract generator: building one eagerly is slow on CPU."""
    abstract = nnx.eval_shape(lambda: LeoGenerator(config, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(seed)
    flat = []
    for path, leaf in nnx.to_flat_state(nnx.state(abstract, nnx.Param)):
        name, shape = path[-1], leaf.get_value().shape
        if name == "bias":
            value = np.full(shape, 1.0 if "modulation" in path else 0.0)
        elif name == "noise_weight":
            value = np.zeros(shape)
        else:
            value = rng.normal(size=shape)
        flat.append((path, leaf.replace(jnp.asarray(value, jnp.float32))))
    return lia_state_dict(config, nnx.from_flat_state(flat))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A 16x16 source image, a folder of T driving frames, and a LIA state dict file."""
    root = tmp_path_factory.mktemp("animate")
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (16, 16, 3), np.uint8)
    Image.fromarray(source).save(root / "source.png")
    frames = root / "driving"
    frames.mkdir()
    video = rng.integers(0, 256, (T, 16, 16, 3), np.uint8)
    for t, frame in enumerate(video):
        Image.fromarray(frame).save(frames / f"{t:04d}.png")
    sd = lia_layout_state_dict()
    save_file({f"gen.{k}": v for k, v in sd.items()}, str(root / "lia.safetensors"))
    unit = lambda x: x.astype(np.float32) / 127.5 - 1.0  # noqa: E731
    return dict(root=root, source=unit(source), video=unit(video), state_dict=sd)


@jax.jit
def _direct(params, source_HWC, video_THWC):
    """The library's own forward: codes of the driving frames and both modes' frames."""
    gen = nnx.merge(nnx.graphdef(nnx.eval_shape(lambda: LeoGenerator(TINY, rngs=nnx.Rngs(0)))),
                    params)  # fmt: skip
    z, feats, alpha_s = gen.encode(jnp.asarray(source_HWC)[None])
    alpha_d = gen.encode(jnp.asarray(video_THWC))[2]
    tile = lambda x: jnp.repeat(x, T, axis=0)  # noqa: E731
    absolute = gen.render(tile(z), jax.tree.map(tile, feats), alpha_d)
    relative = gen.render(
        tile(z), jax.tree.map(tile, feats), alpha_d,
        alpha_start_BM=jnp.repeat(alpha_d[:1], T, 0), alpha_source_BM=tile(alpha_s),
    )  # fmt: skip
    self_recon = gen(jnp.asarray(source_HWC)[None], jnp.asarray(source_HWC)[None])[0]
    return alpha_d, absolute, relative, self_recon


def test_animate_equals_the_generator_in_both_modes(inputs, tmp_path):
    params = lia_generator_params(TINY, inputs["state_dict"])
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: LeoGenerator(TINY, rngs=nnx.Rngs(0))))
    loaded = (tiny_run_config(), graphdef, params)
    codes, absolute, relative, self_recon = _direct(params, inputs["source"], inputs["video"])
    src, frames = str(inputs["root"] / "source.png"), str(inputs["root"] / "driving")
    kw = dict(source=src, loaded=loaded, batch_size=4, display=16)
    rel = animate("", frames, str(tmp_path / "rel.mp4"), mode="relative", **kw)
    np.testing.assert_allclose(rel["codes"], codes, atol=1e-5)
    # The frames the command wrote are the pipeline's, checked against the generator here.
    fns = leo.animator_fns(loaded)
    rel_video = leo.render_codes(fns, inputs["source"], rel["codes"], mode="relative", batch_size=4)
    np.testing.assert_allclose(rel_video, relative, atol=1e-4)
    assert probe_video(str(tmp_path / "rel.mp4")).num_frames == T
    # Relative frame 0 is the source moved by alpha_s: its own reconstruction.
    np.testing.assert_allclose(rel_video[0], self_recon, atol=1e-4)
    assert float(np.abs(relative - absolute).mean()) > 1e-3
    # Content-preserving editing: the saved codes drive the same frames as the video did.
    codes_file = str(tmp_path / "rel_codes.npz")
    np.testing.assert_allclose(read_code_file(codes_file)[0], codes, atol=0)
    again = animate("", codes_file, str(tmp_path / "again.mp4"), mode="relative", **kw)
    np.testing.assert_array_equal(again["codes"], rel["codes"])
    ab = animate("", frames, str(tmp_path / "abs.mp4"), mode="absolute", **kw)
    ab_video = leo.render_codes(fns, inputs["source"], ab["codes"], mode="absolute", batch_size=4)
    np.testing.assert_allclose(ab_video, absolute, atol=1e-4)
    assert probe_video(str(tmp_path / "abs.mp4")).num_frames == T
    # Bad inputs fail with one line naming the flag or file.
    with pytest.raises(AnimateError, match="--mode: expected one of"):
        animate("", frames, str(tmp_path / "x.mp4"), mode="sideways", **kw)
    with pytest.raises(ValueError, match="no such file or folder"):
        animate("", str(tmp_path / "missing.mp4"), str(tmp_path / "x.mp4"), **kw)
    big = tmp_path / "big"
    big.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(big / "0.png")
    with pytest.raises(AnimateError, match="expected 16x16 frames"):
        animate("", str(big), str(tmp_path / "x.mp4"), **kw)
    with pytest.raises(ValueError, match="expected a 16x16 image"):
        animate("", frames, str(tmp_path / "x.mp4"), **{**kw, "source": str(big / "0.png")})


@pytest.mark.slow  # runs in make test-all; keeps the default run near 10 minutes
def test_lia_import_then_animate_command_line(inputs, tmp_path):
    root = inputs["root"]
    out_dir = tmp_path / "lia_import"
    result = run_module(
        "launch.import_weights", "lia", "--checkpoint", root / "lia.safetensors",
        "--config", "configs/animator.py:tiny", *TINY_FLAGS, "--output", out_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.isfile(out_dir / "config.json")
    out = tmp_path / "out.mp4"
    result = run_module(
        "launch.animate", "--checkpoint", out_dir, "--source", root / "source.png",
        "--driving", root / "driving", "--mode", "relative", "--out", out, "--display_size", 16,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert probe_video(str(out)).num_frames == T
    assert probe_video(str(tmp_path / "out_side_by_side.mp4")).width == 3 * 16
    # The imported weights give the codes a direct call of the library gives.
    codes = _direct(lia_generator_params(TINY, inputs["state_dict"]), inputs["source"],
                    inputs["video"])[0]  # fmt: skip
    np.testing.assert_allclose(read_code_file(str(tmp_path / "out_codes.npz"))[0], codes, atol=1e-5)
    # One-line errors: a bad mode (before any loading), a state dict of another size.
    bad = run_module("launch.animate", "--checkpoint", out_dir, "--driving", root / "driving",
                     "--mode", "sideways")  # fmt: skip
    assert "--mode: expected one of ['relative', 'absolute']" in one_line_error(bad)
    other = tiny_run_config()
    other.model.motion_dim = 3
    with pytest.raises(ValueError, match="LIA state dict: 'enc.fc.4.weight' gives shape"):
        import_lia(other, str(root / "lia.safetensors"), str(tmp_path / "other"))
