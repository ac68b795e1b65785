"""Input data for anchored-jax: video sources, clip sampling and the grain pipeline.

- `synthetic_faces`: the embedded procedural talking-face world (identities, motion, export);
  `face_geometry` and `face_raster` are its landmarks and its renderer.
- `landmark_files`: the on-disk landmark format every source shares.
- `clip_sampling`: non-uniform temporal clip indices and their times.
- `sources`: the `VideoSource` protocol and the synthetic source.
- `pipeline`: `build_clip_dataset`, batches of clips for training and evaluation.

Submodules are imported where used, so reading landmark files does not pull in grain.
"""
