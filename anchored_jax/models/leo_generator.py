"""LEO's animator generator: motion codes become flows that warp-and-inpaint the source frame.

`LeoGenerator` = `enc` (leo_encoder.LeoEncoder) + `dec` (`LeoSynthesis`), as in LIA. The target
latent is z_s + Q alpha_d, where Q is the QR-orthonormalised motion dictionary, recomputed on
every call. The decoder is StyleGAN2 (modulated convs from a learned 4x4 constant, every layer
styled by the target latent). At each scale from 8 up it predicts a flow (tanh offset on an
identity grid) and a mask (sigmoid); the flow bilinearly warps the source's *encoder feature*
at that scale, and the decoder continues from `warped*mask + decoder*(1-mask)`. The RGB skips
(fed the masked warped feature, or with `rgb_input="blended"` that blend) and the flow skips
are summed across scales.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from anchored_jax.models.leo_animator_config import AnimatorConfig
from anchored_jax.models.leo_encoder import LeoEncoder
from anchored_jax.models.leo_stylegan_layers import (
    ModulatedConv2d,
    StyledConv,
    ToRGB,
    normal,
    upsample2x,
)


def identity_grid(height: int, width: int) -> jax.Array:
    """`[H, W, 2]` (x, y) in [-1, 1], corners included (as LIA's flow grid)."""
    xs, ys = jnp.meshgrid(jnp.linspace(-1.0, 1.0, width), jnp.linspace(-1.0, 1.0, height))
    return jnp.stack([xs, ys], axis=-1)


def grid_sample(feat_BHWC: jax.Array, grid_BHW2: jax.Array) -> jax.Array:
    """Bilinear sampling at normalised (x, y) with zero padding outside.

    Same convention as torch's `grid_sample` default (align_corners=False): -1 and 1 are the
    outer edges of the border pixels, so imported LIA weights see the same warps.
    """
    B, H, W, C = feat_BHWC.shape
    ix = ((grid_BHW2[..., 0] + 1.0) * W - 1.0) / 2.0
    iy = ((grid_BHW2[..., 1] + 1.0) * H - 1.0) / 2.0
    x0, y0 = jnp.floor(ix), jnp.floor(iy)
    flat_BNC = feat_BHWC.reshape(B, H * W, C)
    out = 0.0
    for dx in (0, 1):
        for dy in (0, 1):
            xc, yc = x0 + dx, y0 + dy
            weight = (1.0 - jnp.abs(ix - xc)) * (1.0 - jnp.abs(iy - yc))
            inside = (xc >= 0) & (xc <= W - 1) & (yc >= 0) & (yc <= H - 1)
            index = (jnp.clip(yc, 0, H - 1) * W + jnp.clip(xc, 0, W - 1)).astype(jnp.int32)
            gathered = jnp.take_along_axis(flat_BNC, index.reshape(B, -1, 1), axis=1)
            out = out + gathered.reshape(B, *index.shape[1:], C) * (weight * inside)[..., None]
    return out


class ToFlow(nnx.Module):
    """1x1 modulated conv to (flow x, flow y, mask logit), plus the upsampled skip."""

    def __init__(self, c_in: int, style_dim: int, *, rngs: nnx.Rngs):
        self.conv = ModulatedConv2d(c_in, 3, 1, style_dim, demodulate=False, rngs=rngs)
        self.bias = nnx.Param(jnp.zeros((3,), jnp.float32))

    def __call__(self, x_BHWC, style_BD, feat_BHWC, skip_BhwC=None):
        """Returns (masked warped feature, blended decoder feature, raw flow output)."""
        out = self.conv(x_BHWC, style_BD) + self.bias[...]
        if skip_BhwC is not None:
            out = out + upsample2x(skip_BhwC)
        H, W = x_BHWC.shape[1:3]
        grid_BHW2 = jnp.tanh(out[..., :2]) + identity_grid(H, W)
        mask_BHW1 = jax.nn.sigmoid(out[..., 2:3])
        warped = grid_sample(feat_BHWC, grid_BHW2) * mask_BHW1
        return warped, warped + x_BHWC * (1.0 - mask_BHW1), out


class MotionDictionary(nnx.Module):
    """A learned `[style_dim, motion_dim]` matrix, orthonormalised by QR on every call."""

    def __init__(self, style_dim: int, motion_dim: int, *, rngs: nnx.Rngs):
        self.weight = nnx.Param(normal(rngs.params(), (style_dim, motion_dim), jnp.float32))

    def basis(self) -> jax.Array:
        """Q `[style_dim, motion_dim]` with Q^T Q = I."""
        # The 1e-8 keeps an exactly rank-deficient init away from QR's degenerate case (LIA).
        q, _ = jnp.linalg.qr(self.weight[...] + 1e-8, mode="reduced")
        return q

    def __call__(self, alpha_BM: jax.Array) -> jax.Array:
        """The motion vectors Q alpha, `[B, style_dim]`."""
        return alpha_BM @ self.basis().T


class LeoSynthesis(nnx.Module):
    """The flow-warping StyleGAN2 decoder (`dec` in LIA's checkpoints)."""

    def __init__(self, config: AnimatorConfig, *, rngs: nnx.Rngs):
        self.config = config
        d = config.style_dim
        self.direction = MotionDictionary(d, config.motion_dim, rngs=rngs)
        c4 = config.channels(4)
        self.input = nnx.Param(normal(rngs.params(), (4, 4, c4), jnp.float32))
        self.conv1 = StyledConv(c4, c4, 3, d, rngs=rngs)
        # Built for checkpoint compatibility with LIA (and its parameter count); the 4x4 scale
        # has no warp, so its RGB output is never used.
        self.to_rgb1 = ToRGB(c4, rngs=rngs)
        convs, to_rgbs, to_flows = [], [], []
        c_in = c4
        for res in config.warp_resolutions():
            c_out = config.channels(res)
            convs.append(StyledConv(c_in, c_out, 3, d, upsample=True, rngs=rngs))
            convs.append(StyledConv(c_out, c_out, 3, d, rngs=rngs))
            to_rgbs.append(ToRGB(c_out, rngs=rngs))
            to_flows.append(ToFlow(c_out, d, rngs=rngs))
            c_in = c_out
        self.convs = nnx.List(convs)
        self.to_rgbs = nnx.List(to_rgbs)
        self.to_flows = nnx.List(to_flows)

    def __call__(self, latent_BD: jax.Array, feats: tuple[jax.Array, ...]) -> jax.Array:
        """Renders `[B, H, W, 3]` from a target latent and the source's encoder features."""
        assert len(feats) == len(self.to_flows), "one encoder feature per warp scale"
        B = latent_BD.shape[0]
        out = jnp.broadcast_to(self.input[...], (B, *self.input.shape))
        out = self.conv1(out, latent_BD)
        rgb = flow = None
        for i, feat in enumerate(feats):
            out = self.convs[2 * i](out, latent_BD)
            out = self.convs[2 * i + 1](out, latent_BD)
            warped, out, flow = self.to_flows[i](out, latent_BD, feat, flow)
            rgb = self.to_rgbs[i](out if self.config.rgb_input == "blended" else warped, rgb)
        return rgb


IDENTITY_MASK_LOGIT = 2.0  # full-size mask starts at sigmoid(2) = 0.88: open, still trainable
BLENDED_MASK_LOGIT = 4.0  # rgb_input="blended": sigmoid(4) = 0.98


def identity_start(gen: "LeoGenerator") -> None:
    """Sets initial values so that the generator renders its source frame, whatever the motion.

    Then copy-source is where training starts, not noise (up to LIA's identity grid, which
    under align_corners=False stretches the frame by W/(W-1) about its centre). Only values
    change: the modules and their math stay LIA's. The encoder's first (1x1) conv puts +x and
    -x of each colour in channels 0-5, so their difference after the leaky ReLU is
    1.2 * sqrt(2) * x; every flow head outputs zero offset (identity grid), the full-size mask
    opens to sigmoid(2); the full-size RGB head reads that difference back (its activation
    biased into the linear side), and the lower-scale RGB heads start at zero. The zeroed
    weights still get gradients (their inputs are not zero).
    """
    size = gen.config.image_size
    c = gen.config.channels(size)
    first = gen.enc.net_app.convs[0]  # ConvLayer(3, c, 1): weight [1, 1, 3, c] * 1/sqrt(3)
    w = first.conv.weight[...]
    eye = jnp.eye(3) * jnp.sqrt(3.0)  # pre-activation +x_k in channel k, -x_k in channel 3+k
    first.conv.weight[...] = w.at[0, 0, :, :6].set(jnp.concatenate([eye, -eye], axis=1))
    first.act.bias[...] = first.act.bias[...].at[:6].set(0.0)

    for to_flow in gen.dec.to_flows:
        to_flow.conv.weight[...] = jnp.zeros_like(to_flow.conv.weight[...])
        to_flow.bias[...] = jnp.zeros((3,), jnp.float32)
    # "blended" RGB heads also read the decoder's features times (1 - mask); a more open mask
    # keeps that share small (2%) at the start. (Their weights cannot start at zero: the
    # modulated convs demodulate, so any first update restores unit-norm kernels.)
    logit = IDENTITY_MASK_LOGIT if gen.config.rgb_input == "warped" else BLENDED_MASK_LOGIT
    gen.dec.to_flows[-1].bias[...] = jnp.array([0.0, 0.0, logit], jnp.float32)
    mask = 1.0 / (1.0 + math.exp(-logit))  # a Python float: init runs under jit

    for to_rgb in gen.dec.to_rgbs:
        to_rgb.conv.conv.weight[...] = jnp.zeros_like(to_rgb.conv.conv.weight[...])
        to_rgb.conv.act.bias[...] = jnp.zeros((3,), jnp.float32)
        to_rgb.bias[...] = jnp.zeros((3,), jnp.float32)
    # Full size: out = sqrt(2) * lrelu(beta * x + 1) - sqrt(2), linear for |x| <= 1 since
    # beta = 1/sqrt(2); the 1x1 conv scales its weight by 1/sqrt(c) (equalised lr).
    last = gen.dec.to_rgbs[-1].conv
    gain = math.sqrt(c) / (2.0 * 1.2 * mask)  # beta / (sqrt(2) * 1.2 * mask) * sqrt(c)
    pick = jnp.concatenate([jnp.eye(3), -jnp.eye(3), jnp.zeros((c - 6, 3))]) * gain
    last.conv.weight[...] = pick[None, None]
    last.act.bias[...] = jnp.ones((3,), jnp.float32)
    gen.dec.to_rgbs[-1].bias[...] = jnp.full((3,), -jnp.sqrt(2.0), jnp.float32)


class LeoGenerator(nnx.Module):
    """Encoder + flow decoder: renders a source frame with another frame's (or a code's) motion."""

    def __init__(self, config: AnimatorConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.enc = LeoEncoder(config, rngs=rngs)
        self.dec = LeoSynthesis(config, rngs=rngs)
        if config.init == "identity":
            identity_start(self)

    def encode(self, x_BHWC: jax.Array):
        """`(z_BD, feats, alpha_BM)`: appearance latent, skip features, motion magnitudes."""
        return self.enc(x_BHWC)

    def target_latent(
        self,
        z_source_BD: jax.Array,
        alpha_BM: jax.Array,
        *,
        alpha_start_BM: jax.Array | None = None,
        alpha_source_BM: jax.Array | None = None,
    ) -> jax.Array:
        """Absolute: z_s + Q alpha. Relative (both extra codes given): z_s + Q(alpha - alpha_start
        + alpha_source), i.e. the driving motion relative to its first frame, on top of the
        source's own pose."""
        if (alpha_start_BM is None) != (alpha_source_BM is None):
            raise ValueError("relative mode needs both alpha_start_BM and alpha_source_BM")
        if alpha_start_BM is not None:
            alpha_BM = alpha_BM - alpha_start_BM + alpha_source_BM
        return z_source_BD + self.dec.direction(alpha_BM)

    def render(self, z_source_BD, feats, alpha_BM, **relative) -> jax.Array:
        """Frames of the encoded source moved by motion codes alpha (see `target_latent`)."""
        return self.dec(self.target_latent(z_source_BD, alpha_BM, **relative), feats)

    def __call__(self, source_BHWC: jax.Array, driving_BHWC: jax.Array) -> jax.Array:
        """The training forward: the source re-rendered with the driving frame's motion."""
        z_s, feats, _ = self.encode(source_BHWC)
        _, _, alpha_d = self.encode(driving_BHWC)
        return self.render(z_s, feats, alpha_d)
