"""Multi-head self-attention of the sDiT and its backends, behind one function.

`dot_product_attention` is the only place a backend is chosen: `xla` is the reference
(plain einsum softmax in float32, runs anywhere), `cudnn` calls the fused GPU kernel
through `jax.nn.dot_product_attention`, `splash` the Pallas TPU kernel (`splash_interpret`
runs that same kernel in Pallas's interpreter, so CPU tests can check it). A backend whose
hardware is absent falls back to `xla` with one warning. A key mask (True = real token)
removes padded frames from every query's view; queries themselves are never masked, so no
row is ever empty as long as a sequence has one real key.
"""

import functools

import einops
import jax
import jax.numpy as jnp
from absl import logging
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from anchored_jax.models.dense import zeros
from anchored_jax.models.logical_axes import param_init
from anchored_jax.models.remat import ATTENTION_OUT


def _xla_attention(q_BTHD, k_BSHD, v_BSHD, key_mask_BS):
    scale = q_BTHD.shape[-1] ** -0.5
    logits_BHTS = jnp.einsum("bthd,bshd->bhts", q_BTHD, k_BSHD).astype(jnp.float32) * scale
    if key_mask_BS is not None:
        # finfo.min rather than -inf: exp underflows to exactly 0 without NaN risk.
        neg = jnp.finfo(jnp.float32).min
        logits_BHTS = jnp.where(key_mask_BS[:, None, None, :], logits_BHTS, neg)
    probs_BHTS = jax.nn.softmax(logits_BHTS, axis=-1).astype(v_BSHD.dtype)
    return jnp.einsum("bhts,bshd->bthd", probs_BHTS, v_BSHD)


def _cudnn_attention(q_BTHD, k_BSHD, v_BSHD, key_mask_BS):
    bias = None
    if key_mask_BS is not None:
        # An additive bias is the form the cuDNN kernel takes for an arbitrary key mask.
        T = q_BTHD.shape[1]
        bias_B11S = jnp.where(key_mask_BS, 0.0, -1e9).astype(q_BTHD.dtype)[:, None, None, :]
        bias = jnp.broadcast_to(bias_B11S, (q_BTHD.shape[0], 1, T, k_BSHD.shape[1]))
    return jax.nn.dot_product_attention(q_BTHD, k_BSHD, v_BSHD, bias=bias, implementation="cudnn")


# The splash kernel tiles the sequence in blocks of 128; shorter or ragged sequences (e.g.
# factorised temporal attention over a few frames) take the reference path.
_SPLASH_BLOCK = 128


def _splash_attention(q_BTHD, k_BSHD, v_BSHD, key_mask_BS, *, interpret=False):
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_kernel as splash,
    )
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_mask as masks,
    )

    B, T, H, D = q_BTHD.shape
    S = k_BSHD.shape[1]
    if T % _SPLASH_BLOCK or S % _SPLASH_BLOCK:
        return _xla_attention(q_BTHD, k_BSHD, v_BSHD, key_mask_BS)
    block = max(b for b in (512, 256, 128) if T % b == 0 and S % b == 0)
    sizes = splash.BlockSizes(
        block_q=block, block_kv=block, block_kv_compute=block,
        block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
        block_q_dq=block, block_kv_dq=block,
    )  # fmt: skip
    kernel = splash.make_splash_mha(
        masks.MultiHeadMask([masks.FullMask((T, S)) for _ in range(H)]),
        block_sizes=sizes,
        head_shards=1,
        q_seq_shards=1,
        interpret=interpret,
    )
    to_heads = lambda x: einops.rearrange(x, "b t h d -> b h t d")  # noqa: E731
    q = to_heads(q_BTHD * jnp.asarray(D**-0.5, q_BTHD.dtype))  # the kernel does not scale q
    if key_mask_BS is None:
        out_BHTD = jax.vmap(kernel)(q, to_heads(k_BSHD), to_heads(v_BSHD))
    else:
        # Padded keys get their own segment: real queries never see them. (Padded queries
        # see only padded keys; their rows are discarded by the caller anyway.)
        segments = lambda m: jnp.where(m, 0, 1).astype(jnp.int32)  # noqa: E731
        ids = splash.SegmentIds(q=segments(key_mask_BS), kv=segments(key_mask_BS))
        out_BHTD = jax.vmap(kernel)(q, to_heads(k_BSHD), to_heads(v_BSHD), segment_ids=ids)
    return einops.rearrange(out_BHTD, "b h t d -> b t h d")


ATTENTION_BACKENDS = {
    "xla": _xla_attention,
    "cudnn": _cudnn_attention,
    "splash": _splash_attention,
    "splash_interpret": functools.partial(_splash_attention, interpret=True),
}
# The platform each backend needs; a backend not listed runs anywhere.
_BACKEND_PLATFORM = {"cudnn": "gpu", "splash": "tpu"}


@functools.cache
def resolve_backend(backend: str) -> str:
    """The backend to use here: the requested one, or `xla` (with a warning) without its chip."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(
            f"model.attention_backend: expected one of {list(ATTENTION_BACKENDS)}, got {backend!r}"
        )
    needs = _BACKEND_PLATFORM.get(backend)
    if needs is not None and jax.default_backend() != needs:
        logging.warning(
            "model.attention_backend=%s needs a %s; using the xla reference on %s.",
            backend, needs.upper(), jax.default_backend(),
        )  # fmt: skip
        return "xla"
    return backend


def dot_product_attention(q_BTHD, k_BSHD, v_BSHD, key_mask_BS=None, *, backend="xla"):
    """softmax(q k^T / sqrt(d)) v with an optional boolean key mask; `[B, T, H, D]` out."""
    return ATTENTION_BACKENDS[resolve_backend(backend)](q_BTHD, k_BSHD, v_BSHD, key_mask_BS)


class SelfAttention(nnx.Module):
    """Fused q/k/v projection, attention, output projection (DiT's timm Attention).

    The q/k/v kernel is stored as `[D, 3, heads, head_dim]` rather than `[D, 3D]` so a
    tensor-parallel rule can split whole heads; the parameter count is unchanged.
    """

    def __init__(self, config, *, dtype, param_dtype, rngs: nnx.Rngs, zero_out: bool = False):
        D, H, Dh = config.width, config.num_heads, config.head_dim
        self.dtype = dtype
        self.backend = config.attention_backend
        qkv_init = nnx.initializers.xavier_uniform(in_axis=0, out_axis=(1, 2, 3))
        self.qkv_kernel = nnx.Param(
            param_init(qkv_init, "embed", "qkv", "heads", "head_dim")(
                rngs.params(), (D, 3, H, Dh), param_dtype
            )
        )
        self.qkv_bias = nnx.Param(
            param_init(zeros, "qkv", "heads", "head_dim")(rngs.params(), (3, H, Dh), param_dtype)
        )
        # zero_out: the branch starts as the identity (used for the temporal branch).
        out_init = (
            zeros if zero_out else nnx.initializers.xavier_uniform(in_axis=(0, 1), out_axis=2)
        )
        self.out_kernel = nnx.Param(
            param_init(out_init, "heads", "head_dim", "embed")(
                rngs.params(), (H, Dh, D), param_dtype
            )
        )
        self.out_bias = nnx.Param(param_init(zeros, "embed")(rngs.params(), (D,), param_dtype))

    def __call__(self, x_BLD: jax.Array, key_mask_BL: jax.Array | None = None) -> jax.Array:
        x_BLD = x_BLD.astype(self.dtype)
        qkv_BL3HK = jnp.einsum("bld,dthk->blthk", x_BLD, self.qkv_kernel[...].astype(self.dtype))
        qkv_BL3HK = qkv_BL3HK + self.qkv_bias[...].astype(self.dtype)
        q, k, v = (qkv_BL3HK[:, :, i] for i in range(3))
        attn_BLHK = dot_product_attention(q, k, v, key_mask_BL, backend=self.backend)
        out_BLD = jnp.einsum("blhk,hkd->bld", attn_BLHK, self.out_kernel[...].astype(self.dtype))
        return out_BLD + self.out_bias[...].astype(self.dtype)


def group_frames(x_BLD: jax.Array, num_frames: int, axis: str) -> jax.Array:
    """Regroups `B, (K N), D` tokens into attention sequences.

    axis="spatial": one sequence per frame, `(B K), N, D`;
    axis="temporal": one sequence per patch across frames, `(B N), K, D`.
    """
    if axis == "spatial":
        return einops.rearrange(x_BLD, "b (k n) d -> (b k) n d", k=num_frames)
    return einops.rearrange(x_BLD, "b (k n) d -> (b n) k d", k=num_frames)


def ungroup_frames(x_GSD: jax.Array, batch: int, axis: str) -> jax.Array:
    """Inverse of `group_frames`."""
    if axis == "spatial":
        return einops.rearrange(x_GSD, "(b k) n d -> b (k n) d", b=batch)
    return einops.rearrange(x_GSD, "(b n) k d -> b (k n) d", b=batch)


def tag_attention_out(x: jax.Array) -> jax.Array:
    """Names an attention output so the `save_attention_out` remat policy keeps it."""
    return checkpoint_name(x, ATTENTION_OUT)
