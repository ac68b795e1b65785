"""What happens to slot 0, the anchor, around every solver step of the anchored sampler.

- generated anchor, shared (`anchored`): after each step its new value is averaged over the
  valid segments (a `psum` across devices on a mesh) and written back to every segment, so it
  follows one trajectory and ends bit-identical in every segment;
- known anchor, `clean`: the source itself, fed at per-frame t=0 (`hold_known_times`);
- known anchor, `renoise`: the source re-noised to the step's t with one fixed draw (its own
  deterministic DDIM path), ending exactly on the source;
- `independent`: left alone; each segment generates its own slot 0.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from anchored_jax.diffusion.schedules import Schedule, q_sample
from anchored_jax.sampling.sampler_settings import SamplerSettings

# fold_in id of a step's shared-anchor noise draw, above any segment id.
SHARED_ANCHOR_ID = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class AnchorRule:
    """How the sampler treats slot 0, decided once from the settings (static)."""

    share: bool  # one anchor for all segments (False: the independent baseline)
    known: bool  # the anchor is a given clean frame
    renoise: bool  # a known anchor is re-noised to each step's t rather than held clean

    @classmethod
    def from_settings(cls, settings: SamplerSettings) -> AnchorRule:
        share = settings.method == "anchored"
        # `independent` has no shared anchor of any kind: every segment makes its own slot 0.
        known = share and settings.anchor == "known"
        return cls(share, known, known and settings.known_anchor_mode == "renoise")

    @property
    def held_clean(self) -> bool:
        """The anchor enters every step at t=0 (a clean known anchor)."""
        return self.known and not self.renoise


def known_anchor_at(
    rule: AnchorRule,
    schedule: Schedule,
    source_HWC: jax.Array,
    anchor_eps_HWC: jax.Array,
    t: jax.Array,
) -> jax.Array:
    """The known anchor's value at step time `t` (`t < 0`: the clean source)."""
    if not rule.renoise:
        return source_HWC
    noisy = q_sample(schedule, source_HWC, jnp.maximum(t, 0), anchor_eps_HWC)
    return jnp.where(t < 0, source_HWC, noisy)


def set_anchor(x_SKHWC: jax.Array, anchor_HWC: jax.Array) -> jax.Array:
    """Writes one anchor value into slot 0 of every segment."""
    return x_SKHWC.at[:, 0].set(jnp.broadcast_to(anchor_HWC, x_SKHWC[:, 0].shape))


def shared_anchor_mean(
    x_prev_SKHWC: jax.Array, weight_S: jax.Array, axes: tuple[str, ...]
) -> jax.Array:
    """The weighted mean of slot 0 over segments; across every device when `axes` is set.

    `weight_S` is normalised over all devices' segments, so a `psum` of the local sums is the
    global mean, the same on every device.
    """
    anchor_HWC = jnp.tensordot(weight_S, x_prev_SKHWC[:, 0], axes=1)
    if axes:
        anchor_HWC = jax.lax.psum(anchor_HWC, axes)
    return anchor_HWC


def step_noise(
    rule: AnchorRule, step_key: jax.Array, ids_S: jax.Array, shape_SKHWC: tuple[int, ...]
) -> jax.Array:
    """A step's noise: segment s draws from `fold_in(step_key, id_s)`, whatever the split.

    A shared anchor slot gets one draw of its own, so the mean over segments keeps the full
    variance (the mean of S independent draws would shrink it by sqrt(S)).
    """

    def draw(i):
        return jax.random.normal(jax.random.fold_in(step_key, i), shape_SKHWC[1:])

    noise_SKHWC = jax.vmap(draw)(ids_S)
    if rule.share:
        anchor_HWC = jax.random.normal(
            jax.random.fold_in(step_key, SHARED_ANCHOR_ID), shape_SKHWC[2:]
        )
        noise_SKHWC = noise_SKHWC.at[:, 0].set(anchor_HWC)
    return noise_SKHWC


def update_anchor(
    rule: AnchorRule,
    x_prev_SKHWC: jax.Array,
    known_anchor_HWC: jax.Array | None,
    weight_S: jax.Array,
    axes: tuple[str, ...],
) -> jax.Array:
    """Slot 0 after a step: the known anchor's next value, the shared mean, or untouched."""
    if rule.known:
        return set_anchor(x_prev_SKHWC, known_anchor_HWC)
    if rule.share:
        return set_anchor(x_prev_SKHWC, shared_anchor_mean(x_prev_SKHWC, weight_S, axes))
    return x_prev_SKHWC
