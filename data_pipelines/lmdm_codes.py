"""The motion-code sequences an LMDM run trains and is evaluated on, by split.

`load_codes(config, split)` gives `[N, T, M]` codes from the run's data (`data.code_source`:
a trained animator's encoder over videos, `data.animator_workdir`, cached under the animator
run keyed by its weights; or the synthetic landmark stand-in, for tests). LMDM training,
evaluation and `launch.generate --compare` all read codes through it.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from anchored_jax.pipelines.checkpoints import animator_motion_encoder
from data_pipelines.motion_codes import cached_codes, params_digest


def _encoder_and_digest(animator_workdir: str):
    encode, params = animator_motion_encoder(animator_workdir)
    return encode, params_digest(jax.tree.leaves(params))


def load_codes(config: ml_collections.ConfigDict, split: str) -> np.ndarray:
    """`[N, T, M]` codes of a split (animator codes cached by the animator's digest)."""
    return cached_codes(
        config.data,
        split,
        motion_dim=config.model.motion_dim,
        load_encoder=lambda: _encoder_and_digest(config.data.animator_workdir),
    )
