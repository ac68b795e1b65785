"""LEO's losses: the animator's L1 (plain, or weighted towards the pixels motion changes),
multi-scale VGG19 perceptual and non-saturating GAN losses, and the LMDM's diffusion loss over
motion-code windows (`lmdm_loss`).

The perceptual loss compares VGG19 relu{1..5}_1 features of the generated and real frames on
an image pyramid (full size, then three 2x average-pooled levels), each term weighted 10 (the
LIA/FOMM recipe: 4 scales, weight 10 per term). The real frame's features are constants.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from anchored_jax.diffusion.objectives import diffusion_loss, snr_loss_weight
from anchored_jax.diffusion.schedules import Schedule, q_sample
from anchored_jax.models.leo_lmdm import offsets_from_codes
from anchored_jax.sampling.motion_edits import REGIONS

PERCEPTUAL_SCALES = 4
PERCEPTUAL_TERM_WEIGHT = 10.0


def l1_loss(fake: jax.Array, real: jax.Array) -> jax.Array:
    return jnp.mean(jnp.abs(fake.astype(jnp.float32) - real.astype(jnp.float32)))


def motion_weight_map(
    source_BHWC: jax.Array, driving_BHWC: jax.Array, *, weight: float, blur: int
) -> jax.Array:
    """`1 + weight * box_blur(mean_c |driving - source|)`, `[B, H, W, 1]`, no gradient.

    The pixels motion changes (an opening mouth, closing eyes) are a small share of a frame; the
    blur (the mean over a `blur` x `blur` box, its in-frame part at the border) spreads their
    weight over the neighbourhood the generator must redraw.
    """
    diff_BHW1 = jnp.mean(jnp.abs(driving_BHWC - source_BHWC), axis=-1, keepdims=True)
    if blur > 1:
        _, H, W, _ = diff_BHW1.shape
        window, pad = (1, blur, blur, 1), "SAME"
        total = jax.lax.reduce_window(diff_BHW1, 0.0, jax.lax.add, window, (1, 1, 1, 1), pad)
        # Pixels of the box inside the frame (a static map: numpy, not an XLA constant fold).
        lo = (blur - 1) // 2  # XLA SAME: the smaller half of the padding goes first
        rows = np.minimum(np.arange(H) + blur - 1 - lo, H - 1) - np.maximum(np.arange(H) - lo, 0)
        cols = np.minimum(np.arange(W) + blur - 1 - lo, W - 1) - np.maximum(np.arange(W) - lo, 0)
        count_HW = np.outer(rows + 1, cols + 1).astype(np.float32)
        diff_BHW1 = total / count_HW[None, :, :, None]
    return jax.lax.stop_gradient(1.0 + weight * diff_BHW1.astype(jnp.float32))


def ibug68_indices(parts: str, where: str) -> np.ndarray:
    """Point indices of comma-separated iBUG-68 part names (`motion_edits.REGIONS`; "all" =
    every point)."""
    names = [name.strip() for name in parts.split(",") if name.strip()]
    unknown = [name for name in names if name not in REGIONS and name != "all"]
    if not names or unknown:
        raise ValueError(
            f"{where}: expected comma-separated parts of {['all', *REGIONS]}, got {parts!r}"
        )
    if "all" in names:
        return np.arange(68)
    return np.unique(np.concatenate([REGIONS[name] for name in names]))


def landmark_weight_map(
    landmarks_BNL2: jax.Array, size: int, *, weight: float, sigma_px: float
) -> jax.Array:
    """`1 + weight * max_l exp(-d_l^2 / 2 sigma^2)`, `[B, size, size, 1]`, no gradient.

    d_l is a pixel centre's distance to landmark l of any of the N frames given per example
    (x, y in [0, 1] of the frame; the source's and the driving frame's, so both where a mouth
    was and where it is now count). The face's parts (eyes, lids, lips, brows, nose) are a few
    dozen pixels of a frame; this weighting makes their L1 count as much as the background's.
    """
    B = landmarks_BNL2.shape[0]
    points_BP2 = landmarks_BNL2.reshape(B, -1, 2).astype(jnp.float32) * size
    centres = jnp.arange(size, dtype=jnp.float32) + 0.5
    dx_BWP = centres[None, :, None] - points_BP2[:, None, :, 0]
    dy_BHP = centres[None, :, None] - points_BP2[:, None, :, 1]
    d2_BHWP = dy_BHP[:, :, None, :] ** 2 + dx_BWP[:, None, :, :] ** 2
    bump_BHW = jnp.exp(-jnp.min(d2_BHWP, axis=-1) / (2.0 * sigma_px**2))
    return jax.lax.stop_gradient(1.0 + weight * bump_BHW[..., None])


def weighted_l1_loss(fake: jax.Array, real: jax.Array, weight_BHW1: jax.Array) -> jax.Array:
    """`mean(weight * |fake - real|)` over every pixel and channel."""
    diff = jnp.abs(fake.astype(jnp.float32) - real.astype(jnp.float32))
    return jnp.mean(weight_BHW1 * diff)


def keypoint_loss(
    regressor: Callable[[jax.Array], jax.Array],
    work_size: int,
    fake_BHWC: jax.Array,
    target_BL2: jax.Array,
) -> jax.Array:
    """Mean |regressor(fake) - target| over landmarks and x, y, in pixels of the frame.

    `regressor` is a frozen landmark network (`evaluation.landmark_regressor`) reading frames of
    side `work_size` in [-1, 1]; `fake_BHWC` is resized to that side (antialiased, so the
    gradient reaches every pixel) and `target_BL2` holds x, y in [0, 1]. Unlike a pixel loss,
    it counts a misplaced lip or lid by how far the part is off, not by how few pixels it has.
    """
    B, H, W, C = fake_BHWC.shape
    x = jax.image.resize(fake_BHWC.astype(jnp.float32), (B, work_size, work_size, C), "linear")
    found_BL2 = regressor(jnp.clip(x, -1.0, 1.0))
    scale = jnp.asarray([W, H], jnp.float32)
    return jnp.mean(jnp.abs(found_BL2 - jax.lax.stop_gradient(target_BL2)) * scale)


def downsample2x(x_BHWC: jax.Array) -> jax.Array:
    B, H, W, C = x_BHWC.shape
    return x_BHWC.reshape(B, H // 2, 2, W // 2, 2, C).mean(axis=(2, 4))


def perceptual_loss(
    features_fn: Callable[[jax.Array], list[jax.Array]],
    fake_BHWC: jax.Array,
    real_BHWC: jax.Array,
    *,
    scales: int = PERCEPTUAL_SCALES,
    term_weight: float = PERCEPTUAL_TERM_WEIGHT,
) -> jax.Array:
    """Sum over pyramid levels and VGG layers of `term_weight * mean |f(fake) - f(real)|`."""
    total = jnp.zeros((), jnp.float32)
    for level in range(scales):
        if level:
            fake_BHWC, real_BHWC = downsample2x(fake_BHWC), downsample2x(real_BHWC)
        # Both images in one VGG pass: half the launches, same result.
        feats = features_fn(jnp.concatenate([fake_BHWC, real_BHWC]))
        for f in feats:
            f_fake, f_real = jnp.split(f, 2)
            total = total + term_weight * l1_loss(f_fake, jax.lax.stop_gradient(f_real))
    return total


def generator_adversarial_loss(fake_logits_B: jax.Array) -> jax.Array:
    """Non-saturating: -log sigmoid(D(fake))."""
    return jnp.mean(jax.nn.softplus(-fake_logits_B))


def discriminator_loss(real_logits_B: jax.Array, fake_logits_B: jax.Array) -> jax.Array:
    """-log sigmoid(D(real)) - log(1 - sigmoid(D(fake)))."""
    return jnp.mean(jax.nn.softplus(-real_logits_B)) + jnp.mean(jax.nn.softplus(fake_logits_B))


def psnr(fake: jax.Array, real: jax.Array) -> jax.Array:
    """PSNR in dB per frame for images in [-1, 1] (peak-to-peak 2)."""
    mse = jnp.mean((fake - real) ** 2, axis=tuple(range(1, fake.ndim)))
    return 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-10))


def lmdm_loss(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    schedule: Schedule,
    codes_BLM: jax.Array,
    key: jax.Array,
    *,
    prediction: str,
    condition_dropout: float,
    times_BL: jax.Array | None = None,
    loss_weighting: str = "uniform",
    min_snr_gamma: float = 5.0,
) -> jax.Array:
    """The diffusion loss of one batch of code windows.

    Step 0 is the conditioning code: its offset is 0, fed clean at t = 0 and left out of the
    mean, exactly as every sampler holds it. `times_BL` are the steps' frame times after it
    (consecutive from step 1; None: 0..L-1); the model reads the window's gap `times_BL[:, 1]`.
    `loss_weighting` (`diffusion.objectives.LOSS_WEIGHTINGS`): `uniform` weights every timestep
    alike in the prediction's own space; the others weight each one as `snr_loss_weight`.
    """
    m_BLM, alpha1_BM = offsets_from_codes(codes_BLM)
    b, length, _ = m_BLM.shape
    k_t, k_noise, k_drop = jax.random.split(key, 3)
    t_B = jax.random.randint(k_t, (b,), 0, schedule.num_timesteps)
    t_BL = jnp.broadcast_to(t_B[:, None], (b, length)).at[:, 0].set(0)
    noise_BLM = jax.random.normal(k_noise, m_BLM.shape, jnp.float32)
    m_t_BLM = q_sample(schedule, m_BLM, t_BL, noise_BLM).at[:, 0].set(0.0)
    drop_B = jax.random.uniform(k_drop, (b,)) < condition_dropout
    model = nnx.merge(graphdef, params)
    gap_B = None if times_BL is None else times_BL[:, 1]
    out = model(m_t_BLM, t_BL, alpha1_BM, gap_B=gap_B, drop_condition_B=drop_B)
    mask_BL = jnp.ones((b, length)).at[:, 0].set(0.0)
    if loss_weighting == "uniform":
        return diffusion_loss(prediction, schedule, out, m_BLM, noise_BLM, t_BL, mask_BL)
    weight_BL = mask_BL * snr_loss_weight(schedule, t_BL, prediction, loss_weighting, min_snr_gamma)
    # diffusion_loss divides by the weights' sum; the weights scale the error, the mean still
    # runs over the unmasked steps.
    loss = diffusion_loss(prediction, schedule, out, m_BLM, noise_BLM, t_BL, weight_BL)
    return loss * jnp.sum(weight_BL) / jnp.sum(mask_BL)
