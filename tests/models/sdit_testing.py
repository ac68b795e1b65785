"""Shared helpers for the sDiT tests: small configs, fixed-seed inputs, param perturbation.

A plain module rather than a conftest: tests import these helpers by name
(`tests.models.sdit_testing`, reachable through pytest's `pythonpath = ["."]`).
Inputs, noise and most parameters come from numpy: on CPU, compiling jax's random
number generation (and every eager op) dominated the runtime. Only tests of the true
initialisation build a model with its real initializers.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from anchored_jax.models.sdit import SDiT
from anchored_jax.models.sdit_config import SDiTConfig

# Small enough that the whole folder compiles and runs in well under a minute on 2 cores.
SMALL = dict(
    image_size=8,
    patch_size=2,
    width=32,
    depth=2,
    num_heads=4,
    max_frames=4,
    num_landmarks=5,
    identity_channels=(8, 16),
    identity_embed_dim=12,
)


def small_config(**overrides) -> SDiTConfig:
    return SDiTConfig(**{**SMALL, **overrides})


def make_inputs(config: SDiTConfig, batch: int = 2, frames: int = 3, seed: int = 0) -> dict:
    """Random clip and conditions (numpy); times are uneven seconds around an anchor at 0."""
    rng = np.random.default_rng(seed)
    S, C = config.image_size, config.in_channels
    if config.identity == "encoder":
        identity = rng.standard_normal((batch, S, S, C))
    else:
        identity = rng.standard_normal((batch, config.identity_embed_dim))
    inputs = dict(
        x_BKHWC=rng.standard_normal((batch, frames, S, S, C)),
        t_BK=rng.integers(0, 1000, (batch, frames)).astype(np.int32),
        times_BK=np.sort(rng.uniform(-3.0, 5.0, (batch, frames)), axis=1),
        landmarks_BKLC=rng.standard_normal(
            (batch, frames, config.num_landmarks, config.landmark_dim)
        ),
        identity=identity,
    )
    return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in inputs.items()}


@nnx.jit
def _apply(model, x_BKHWC, t_BK, times_BK, landmarks_BKLC, identity, options):
    return model(x_BKHWC, t_BK, times_BK, landmarks_BKLC, identity, **options)


def run(model, inputs: dict, *, fill_masks: bool = True, **options) -> np.ndarray:
    """Jitted forward; `options` are the keyword-only masks.

    Masks left out are filled with their neutral value (keep everything, all frames real)
    so one compilation serves every call with the same shapes; fill_masks=False passes
    only what is given (None path).
    """
    names = ("x_BKHWC", "t_BK", "times_BK", "landmarks_BKLC", "identity")
    if fill_masks:
        B, K = inputs["t_BK"].shape
        options = {
            "drop_identity_B": np.zeros(B, bool),
            "drop_landmarks_B": np.zeros(B, bool),
            "frame_mask_BK": np.ones((B, K), bool),
            **options,
        }
    return np.asarray(_apply(model, *(inputs[n] for n in names), options))


def perturb(model, seed: int = 1, scale: float = 0.05, skip=lambda path: False) -> None:
    """Adds N(0, scale) noise to every Param (so zero-initialised gates become live).

    `skip(path)` keeps chosen params untouched, e.g. the temporal output projection.
    """
    rng = np.random.default_rng(seed)
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        noise = scale * rng.standard_normal(var.shape)
        if not skip(path):
            var.set_value(jnp.asarray(np.asarray(var[...]) + noise.astype(var.dtype)))


@functools.cache
def _initial_split(config: SDiTConfig, seed: int):
    # rbg keys: the initializers compile ~3x faster on CPU than with threefry.
    key = jax.random.key(seed, impl="rbg")
    return nnx.split(nnx.jit(lambda: SDiT(config, rngs=nnx.Rngs(key)))())


def new_model(config: SDiTConfig, seed: int = 0, perturbed: bool = True) -> SDiT:
    """A fresh model.

    perturbed=False: the real initialisation (zero gates and all), cached per config.
    perturbed=True: every Param drawn from N(0, 0.05^2) with numpy, so all gates are live;
    configs with the same parameter shapes get the same values for the same seed.
    """
    if not perturbed:
        return nnx.merge(*_initial_split(config, seed))
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: SDiT(config, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(seed)
    state = jax.tree.map(
        lambda a: jnp.asarray(0.05 * rng.standard_normal(a.shape), a.dtype), abstract
    )
    return nnx.merge(graphdef, state)


def params_of(model) -> list:
    return [var for _, var in nnx.to_flat_state(nnx.state(model, nnx.Param))]
