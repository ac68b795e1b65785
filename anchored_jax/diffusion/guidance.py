"""Classifier-free guidance with one scale per condition (identity, then landmarks).

The sDiT drops identity and landmarks independently in training, so at sampling time three
model outputs exist: unconditional, identity only, and identity plus landmarks. Composing them
with a separate scale per condition lets the source identity and the driving motion be
strengthened independently.
"""

from __future__ import annotations

import jax


def guided_output(
    out_uncond: jax.Array,
    out_identity: jax.Array,
    out_full: jax.Array,
    identity_scale: float | jax.Array,
    landmark_scale: float | jax.Array,
) -> jax.Array:
    """out_uncond + s_id (out_identity - out_uncond) + s_lm (out_full - out_identity).

    Scales (1, 1) give out_full exactly and (0, 0) give out_uncond (to float rounding); a
    scale of 0 removes that condition's contribution. Applies to any parameterisation's output
    (epsilon, v or x0), all of which are affine in the model output.
    """
    # Compositional CFG over nested conditions as in InstructPix2Pix (Brooks et al. 2023, eq. 3).
    # Written around out_full, so unit scales return it bit-exactly (the unguided default).
    return (
        out_full
        + (identity_scale - 1.0) * (out_identity - out_uncond)
        + (landmark_scale - 1.0) * (out_full - out_identity)
    )
