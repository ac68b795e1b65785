"""The animator's losses and train step: real values, a falling loss, and the 8-device mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from anchored_jax.evaluation.landmark_regressor import LandmarkRegressor, RegressorSettings
from anchored_jax.models.leo_generator import LeoGenerator, grid_sample, identity_grid
from anchored_jax.training.leo_animator_step import (
    animator_config,
    init_animator,
    make_optimizers,
    make_reconstruction_step,
    make_train_step,
    random_perceptual_features,
)
from anchored_jax.training.leo_losses import (
    discriminator_loss,
    generator_adversarial_loss,
    keypoint_loss,
    landmark_weight_map,
    motion_weight_map,
    perceptual_loss,
    psnr,
    weighted_l1_loss,
)
from anchored_jax.training.tasks.animator import keypoint_distance_px
from configs.animator import get_config


def tiny_config(gan_weight=0.1, init="lia"):
    # LIA's init, a GAN term and no momentum, with the tiny losses, unless a test asks otherwise.
    config = get_config("tiny")
    config.data.image_size = 16
    config.model.update(style_dim=16, motion_dim=4, channel_base=128, max_channels=8, init=init)
    config.losses.gan_weight = gan_weight
    config.losses.keypoint_weight = 0.0  # its frozen regressor is built by the tests that use it
    config.training.update(gen_learning_rate=3e-3, b1=0.0)
    return config


def pair_batch(B=8, size=16, seed=0):
    # Smooth random colour gradients: learnable by a tiny generator, unlike white noise.
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    a, b, c = (rng.uniform(-0.7, 0.7, (B, 1, 1, 3)) for _ in range(3))
    src = np.clip(a * yy[None, :, :, None] + b * xx[None, :, :, None] + c, -1, 1)
    src = src.astype(np.float32)
    drv = np.roll(src, 1, axis=2)  # the driving frame is the source, moved
    landmarks = rng.uniform(0.2, 0.8, (B, 2, 68, 2)).astype(np.float32)  # iBUG-68 order
    return {
        "source_BHWC": jnp.asarray(src),
        "driving_BHWC": jnp.asarray(drv),
        "landmarks_B2L2": jnp.asarray(landmarks),
    }


def test_loss_values():
    np.testing.assert_allclose(generator_adversarial_loss(jnp.zeros(4)), np.log(2), rtol=1e-6)
    np.testing.assert_allclose(
        discriminator_loss(jnp.zeros(4), jnp.zeros(4)), 2 * np.log(2), rtol=1e-6
    )
    x = jnp.zeros((1, 4, 4, 3))
    np.testing.assert_allclose(psnr(x + 0.1, x), 10 * np.log10(4 / 0.01), rtol=1e-5)
    # Perceptual loss with a linear "feature extractor": 4 scales x 1 term x weight 10 x |d|.
    feats = lambda z: [z]  # noqa: E731
    got = perceptual_loss(feats, jnp.full((1, 16, 16, 3), 0.3), jnp.zeros((1, 16, 16, 3)))
    np.testing.assert_allclose(got, 4 * 10 * 0.3, rtol=1e-5)
    y = jnp.ones((1, 16, 16, 3))
    assert float(perceptual_loss(feats, y, y)) == 0.0


def test_motion_weighted_l1_matches_hand_computation():
    # One pixel changes by 0.6 in every channel; the reconstruction is all zeros.
    source = jnp.zeros((1, 4, 4, 3))
    driving = source.at[0, 1, 2].set(0.6)
    fake = jnp.zeros_like(source)
    w = motion_weight_map(source, driving, weight=5.0, blur=1)
    assert float(w[0, 1, 2, 0]) == pytest.approx(1 + 5 * 0.6)
    assert float(w.sum()) == pytest.approx(15 + 4.0)
    # mean over 4 x 4 x 3 values of weight * |fake - real|: only the 3 values at (1, 2) count.
    np.testing.assert_allclose(weighted_l1_loss(fake, driving, w), 4.0 * 0.6 * 3 / 48, rtol=1e-6)
    # A 3 x 3 box: (1, 2)'s box lies inside the frame (9 pixels); (0, 3)'s is 2 x 2 (4 pixels).
    w3 = motion_weight_map(source, driving, weight=5.0, blur=3)
    np.testing.assert_allclose(w3[0, 1, 2, 0], 1 + 5 * 0.6 / 9, rtol=1e-6)
    np.testing.assert_allclose(w3[0, 0, 3, 0], 1 + 5 * 0.6 / 4, rtol=1e-6)
    np.testing.assert_allclose(w3[0, 3, 0, 0], 1.0)
    want = (1 + 5 * 0.6 / 9) * 1.8 / 48
    np.testing.assert_allclose(weighted_l1_loss(fake, driving, w3), want, rtol=1e-6)


def test_landmark_weight_map_matches_hand_computation():
    # 8 x 8 frame; the source's landmark on pixel (row 2, col 5)'s centre, the driving frame's
    # on pixel (6, 1)'s.
    at = lambda row, col: [(col + 0.5) / 8, (row + 0.5) / 8]  # noqa: E731
    landmarks = jnp.array([[[at(2, 5)], [at(6, 1)]]])  # [B=1, N=2, L=1, 2]
    w = landmark_weight_map(landmarks, 8, weight=4.0, sigma_px=1.0)[0, :, :, 0]
    assert w.shape == (8, 8)
    np.testing.assert_allclose([w[2, 5], w[6, 1]], [5.0, 5.0], rtol=1e-6)
    np.testing.assert_allclose(w[2, 6], 1 + 4 * np.exp(-0.5), rtol=1e-6)  # 1 pixel away
    np.testing.assert_allclose(w[3, 6], 1 + 4 * np.exp(-1.0), rtol=1e-6)  # sqrt(2) away
    np.testing.assert_allclose(w[0, 0], 1 + 4 * np.exp(-min(4 + 25, 36 + 1) / 2), rtol=1e-6)
    # The nearer landmark counts, not the sum: pixel (4, 3) is 2√2 from both.
    np.testing.assert_allclose(w[4, 3], 1 + 4 * np.exp(-4.0), rtol=1e-6)
    fake, real = jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 8, 8, 3)).at[0, 2, 5].set(0.5)
    np.testing.assert_allclose(weighted_l1_loss(fake, real, w[None, :, :, None]), 5 * 1.5 / 192)


def test_random_perceptual_features_are_narrow_and_fixed_by_the_seed():
    losses = tiny_config().losses
    losses.update(random_perceptual_weight=0.5, random_perceptual_width_divisor=4)
    losses.update(random_perceptual_blocks=3)
    graph, params = random_perceptual_features(losses, 3)
    x = pair_batch(B=2)["source_BHWC"]
    vgg = jax.jit(lambda z: nnx.merge(graph, params)(z))
    feats = vgg(x)
    # VGG19's first 3 blocks at a quarter width: 16, 32, 64 channels at 16, 8, 4 pixels.
    assert [f.shape for f in feats] == [(2, 16, 16, 16), (2, 8, 8, 32), (2, 4, 4, 64)]
    _, again = random_perceptual_features(losses, 3)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(perceptual_loss(vgg, x, x, scales=2)) == 0.0
    assert float(perceptual_loss(vgg, x, pair_batch(B=2)["driving_BHWC"], scales=2)) > 0.0
    losses.random_perceptual_weight = 0.0
    assert random_perceptual_features(losses, 3) is None


def small_regressor(image_size=16, seed=0):
    settings = RegressorSettings(image_size, 68, work_size=16, width=4, hidden=8, seed=seed)
    return LandmarkRegressor(settings, rngs=nnx.Rngs(seed))


def test_keypoint_loss_is_the_regressors_pixel_distance_on_the_resized_frame():
    regressor = small_regressor(image_size=32)
    frames = pair_batch(B=3, size=32)["driving_BHWC"]
    work = jax.image.resize(frames, (3, 16, 16, 3), "linear")
    found = np.asarray(regressor(work))
    target = np.clip(found + np.random.default_rng(0).normal(0, 0.05, found.shape), 0, 1)
    loss = keypoint_loss(regressor, 16, frames, jnp.asarray(target))
    np.testing.assert_allclose(loss, np.abs(found - target).mean() * 32, rtol=1e-5)
    assert float(keypoint_loss(regressor, 16, frames, jnp.asarray(found))) < 1e-5
    # Its gradient reaches the full-size frame's pixels, not only the target's.
    grad = jax.grad(lambda f: keypoint_loss(regressor, 16, f, jnp.asarray(target)))(frames)
    assert np.isfinite(grad).all() and float(jnp.abs(grad).sum()) > 0
    assert float(jnp.abs(grad[:, ::2, ::2]).sum()) > 0 and float(jnp.abs(grad[:, 1::2]).sum()) > 0


@pytest.mark.slow  # compiles a train step: ~1 minute on 2 busy cores
def test_motion_weighted_and_random_perceptual_terms_add_up():
    config = tiny_config(gan_weight=0.0, init="identity")
    config.losses.update(motion_weight=4.0, motion_blur=3, random_perceptual_weight=0.5)
    config.losses.update(landmark_weight=3.0, landmark_sigma=2.0, landmark_parts="mouth")
    config.losses.l2_weight = 5.0
    config.losses.update(keypoint_weight=0.25, keypoint_parts="eyes")
    gen_tx, disc_tx = make_optimizers(config.training)
    graphs, state = init_animator(config, 0, gen_tx, disc_tx)
    regressor_graph, regressor_params = nnx.split(small_regressor(), nnx.Param)
    graphs = graphs.replace(keypoints=regressor_graph)
    step = jax.jit(make_train_step(graphs, gen_tx, disc_tx, config.losses, seed=3))
    batch = pair_batch()
    _, m = step(state, batch, None, regressor_params)
    assert float(m["weighted_l1"]) > float(m["l1"]) > 0  # every weight is >= 1
    assert float(m["random_perceptual"]) > 0
    # The weighting is the sum of both maps' excess over 1, on the generator's own output.
    fake = nnx.merge(graphs.gen, state.gen_params)(batch["source_BHWC"], batch["driving_BHWC"])
    real = batch["driving_BHWC"]
    weight = (
        motion_weight_map(batch["source_BHWC"], real, weight=4.0, blur=3)
        + landmark_weight_map(batch["landmarks_B2L2"][:, :, 48:], 16, weight=3.0, sigma_px=2.0)
        - 1.0
    )
    np.testing.assert_allclose(m["weighted_l1"], weighted_l1_loss(fake, real, weight), rtol=1e-5)
    np.testing.assert_allclose(m["l2"], jnp.mean((fake - real) ** 2), rtol=1e-5)
    # The keypoint term: the regressor's eye landmarks (36-47) on the output against the
    # driving frame's.
    regressor = nnx.merge(regressor_graph, regressor_params)
    eyes = np.arange(36, 48)
    found = regressor(jax.image.resize(jnp.clip(fake, -1, 1), (8, 16, 16, 3), "linear"))[:, eyes]
    want_kp = jnp.mean(jnp.abs(found - batch["landmarks_B2L2"][:, 1, eyes])) * 16
    np.testing.assert_allclose(m["keypoint"], want_kp, rtol=1e-5)
    want = float(m["weighted_l1"]) + 0.5 * float(m["random_perceptual"]) + 5.0 * float(m["l2"])
    want += 0.25 * float(m["keypoint"])
    np.testing.assert_allclose(m["gen_loss"], want, rtol=1e-6)


def test_keypoint_distance_in_pixels_leaves_out_frame_0():
    video = np.zeros((2, 3, 16, 16, 3), np.float32)
    exact = np.full((2, 3, 5, 2), 0.5, np.float32)
    exact[:, 1:, :, 1] += 3 / 16  # 3 pixels down in frames 1..
    exact[:, 0] = 0.0  # frame 0 (the source) is far off: it must not count
    found = lambda frames: np.full((len(frames), 5, 2), 0.5, np.float32)  # noqa: E731
    assert keypoint_distance_px(found, video, exact) == pytest.approx(3.0)


@pytest.mark.slow  # runs in make test-all; keeps the default run near 10 minutes
def test_train_step_lowers_reconstruction_loss():
    config = tiny_config()
    gen_tx, disc_tx = make_optimizers(config.training)
    graphs, state = init_animator(config, 0, gen_tx, disc_tx)
    step = jax.jit(make_train_step(graphs, gen_tx, disc_tx, config.losses))
    batch = pair_batch()
    l1s = []
    for _ in range(25):
        state, metrics = step(state, batch)
        l1s.append(float(metrics["l1"]))
    assert int(state.step) == 25
    assert np.isfinite(float(metrics["disc_loss"]))
    assert np.mean(l1s[-5:]) < 0.8 * np.mean(l1s[:5]), l1s


def test_train_step_on_8_device_mesh_matches_one_device():
    assert jax.device_count() == 8
    config = tiny_config()
    gen_tx, disc_tx = make_optimizers(config.training)
    graphs, state = init_animator(config, 0, gen_tx, disc_tx)
    step_fn = make_train_step(graphs, gen_tx, disc_tx, config.losses)
    batch = pair_batch(B=8, seed=1)

    single_state, single = jax.jit(step_fn)(state, batch)
    # Auto axes: the compiler propagates the batch sharding through the (unannotated) step.
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    replicated = NamedSharding(mesh, P())
    sharded_batch = jax.device_put(batch, NamedSharding(mesh, P("data")))
    mesh_state, multi = jax.jit(step_fn)(jax.device_put(state, replicated), sharded_batch)
    assert len(sharded_batch["source_BHWC"].sharding.device_set) == 8
    for name in ("gen_loss", "l1", "disc_loss"):
        np.testing.assert_allclose(multi[name], single[name], rtol=1e-5, atol=1e-6)
    for a, b in zip(
        jax.tree.leaves(single_state.gen_params), jax.tree.leaves(mesh_state.gen_params)
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_reconstruction_metrics_against_copy_source():
    config = tiny_config()
    gen_tx, disc_tx = make_optimizers(config.training)
    graphs, state = init_animator(config, 0, gen_tx, disc_tx)
    video = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 3, 16, 16, 3)), jnp.float32)
    recon, metrics = jax.jit(make_reconstruction_step(graphs))(state.gen_params, video)
    assert recon.shape == video.shape
    want_copy = float(jnp.mean(jnp.abs(video[:, 1:] - video[:, :1])))
    np.testing.assert_allclose(metrics["copy_l1"], want_copy, rtol=1e-5)
    assert 0.0 < float(metrics["recon_l1"]) < 2.0


@pytest.mark.slow  # runs in make test-all; keeps the default run near 10 minutes
def test_identity_init_renders_the_source_whatever_the_driving_frame():
    config = tiny_config(init="identity")
    gen = LeoGenerator(animator_config(config), rngs=nnx.Rngs(0))
    batch = pair_batch(B=2)
    src, drv = batch["source_BHWC"], batch["driving_BHWC"]
    # Zero flow offsets: the source sampled on LIA's identity grid (a 16/15 stretch about the
    # centre under align_corners=False), read back through the linear side of the RGB head.
    want = grid_sample(src, jnp.broadcast_to(identity_grid(16, 16), (2, 16, 16, 2)))
    np.testing.assert_allclose(gen(src, drv), want, atol=1e-5)
    np.testing.assert_allclose(gen(src, src), want, atol=1e-5)
    config.model.init = "lia"
    lia = LeoGenerator(animator_config(config), rngs=nnx.Rngs(0))
    assert float(jnp.abs(lia(src, drv) - want).mean()) > 0.1
    # Same parameters (names and shapes) under both inits: LIA checkpoints load either way.
    shapes = lambda m: jax.tree.map(jnp.shape, nnx.state(m, nnx.Param))  # noqa: E731
    assert shapes(gen) == shapes(lia)


@pytest.mark.slow  # builds two generators eagerly: ~40 s on 2 cores
def test_blended_rgb_heads_start_near_the_source_and_draw_the_decoders_features():
    config = tiny_config(init="identity")
    config.model.rgb_input = "blended"
    gen = LeoGenerator(animator_config(config), rngs=nnx.Rngs(0))
    batch = pair_batch(B=2)
    src, drv = batch["source_BHWC"], batch["driving_BHWC"]
    want = grid_sample(src, jnp.broadcast_to(identity_grid(16, 16), (2, 16, 16, 2)))
    # 2% of the decoder's own features reach RGB at the start (mask sigmoid(4)): near the
    # source, not exactly it.
    err = float(jnp.abs(gen(src, drv) - want).mean())
    assert 1e-4 < err < 0.05, err
    # Closing the full-size mask: "warped" heads then draw nothing there, "blended" heads the
    # decoder's features.
    z, feats, alpha = gen.encode(drv)
    shut = gen.dec.to_flows[-1].bias[...].at[2].set(-30.0)
    gen.dec.to_flows[-1].bias[...] = shut
    blended = gen.render(z, feats, alpha)
    config.model.rgb_input = "warped"
    warped_gen = LeoGenerator(animator_config(config), rngs=nnx.Rngs(0))
    warped_gen.dec.to_flows[-1].bias[...] = shut
    warped = warped_gen.render(z, feats, alpha)
    assert float(jnp.abs(blended - warped).mean()) > 0.05
    assert float(jnp.std(warped, axis=(1, 2)).max()) < 1e-5  # one colour: nothing is drawn


def test_cosine_generator_schedule_decays_to_zero():
    config = tiny_config()
    config.training.update(gen_lr_schedule="cosine", num_steps=4)
    gen_tx, _ = make_optimizers(config.training)
    params = {"w": jnp.ones(3)}
    opt_state = gen_tx.init(params)
    sizes = []
    for _ in range(5):  # b1 = 0 and a constant gradient: every Adam step is -lr * sign(g)
        updates, opt_state = gen_tx.update({"w": jnp.ones(3)}, opt_state, params)
        sizes.append(float(jnp.abs(updates["w"]).max()))
    want = [3e-3 * 0.5 * (1 + np.cos(np.pi * k / 4)) for k in range(5)]
    np.testing.assert_allclose(sizes, want, rtol=1e-4, atol=1e-9)
