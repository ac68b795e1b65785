"""What a motion code carries: linear probes from codes to known per-frame factors.

On synthetic faces each frame's pose and expression are known (`synthetic_faces.FACTORS`:
position, roll, scale, yaw, eyes, mouth, brows). A least-squares map (with a bias) from the
codes of training videos to their factors, scored by R² on held-out videos, says which factors
the code holds linearly: ~1 = held, <= 0 = no better than the held-out mean. Codes and factors
are taken relative to each video's frame 0 (what the animator renders is the motion from its
source), so a code that also holds identity is not penalised for it.
"""

import numpy as np


def relative_to_first(x_VTK: np.ndarray) -> np.ndarray:
    """`[V*T, K]`: each video's rows minus its frame 0's."""
    x = np.asarray(x_VTK, np.float64)
    return (x - x[:, :1]).reshape(-1, x.shape[-1])


def probe_r2(train_X: np.ndarray, train_Y: np.ndarray, test_X: np.ndarray, test_Y: np.ndarray):
    """R² per column of Y of the least-squares linear map X -> Y fitted on the training rows."""
    ones = lambda x: np.concatenate([x, np.ones((len(x), 1))], axis=1)  # noqa: E731
    weights, *_ = np.linalg.lstsq(ones(train_X), train_Y, rcond=None)
    residual = ((ones(test_X) @ weights - test_Y) ** 2).sum(axis=0)
    total = ((test_Y - test_Y.mean(axis=0)) ** 2).sum(axis=0)
    return 1.0 - residual / np.maximum(total, 1e-12)
