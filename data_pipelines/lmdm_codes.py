"""The motion-code sequences an LMDM run trains and is evaluated on, by split.

`load_codes(config, split)` extracts `[N, T, M]` codes from the run's data (`data.code_source`:
the synthetic motion, or a trained animator's encoder over videos, `data.animator_workdir`);
the train split is cached in `data.code_file` when that is set. LMDM training, evaluation and
`launch.generate --compare` all read codes through it.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from anchored_jax.pipelines.checkpoints import animator_motion_encoder
from data_pipelines.motion_codes import extract_codes, read_code_file, write_code_file


def load_codes(config: ml_collections.ConfigDict, split: str) -> np.ndarray:
    """`[N, T, M]` codes of a split; the train split is cached in `data.code_file` if set."""
    data = config.data
    cache = data.code_file if split == "train" else ""
    if cache and os.path.exists(cache):
        return read_code_file(cache)
    encode = None
    if data.code_source == "animator":
        encode = animator_motion_encoder(data.animator_workdir)
    codes = extract_codes(data, split, motion_dim=config.model.motion_dim, encode_motion=encode)
    if cache:
        write_code_file(cache, codes)
    return codes
