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
from data_pipelines.frame_pairs import make_pair_source, pixels
from data_pipelines.motion_codes import cached_codes, params_digest, video_fields


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


def held_out_frames(
    config: ml_collections.ConfigDict, video_id: int, num_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """Frames `[T, H, W, 3]` in [-1, 1] and landmarks `[T, L, 2]` of a held-out video of the
    run's data: the video whose codes are `load_codes(config, "test")[video_id]`."""
    source = make_pair_source(ml_collections.ConfigDict(video_fields(config.data)), "test")
    if not 0 <= video_id < len(source):
        raise ValueError(
            f"synthetic:{video_id}: expected a held-out video id in [0, {len(source)})"
        )
    record = source[video_id]
    num_frames = min(num_frames, record.num_frames)
    frames = pixels(source.read_frames(video_id, np.arange(num_frames)))
    return frames, np.asarray(record.landmarks_TLC[:num_frames], np.float32)
