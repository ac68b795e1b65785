"""iBUG-68 parts by name (the landmark-weighted L1's), and FaceMesh tracks read as iBUG-68
(what frame pairs carry)."""

import numpy as np
import pytest

from anchored_jax.training.leo_losses import ibug68_indices
from data_pipelines.landmark_layouts import FACEMESH_PAIRS_62, facemesh_to_ibug68


def test_parts_by_name():
    np.testing.assert_array_equal(ibug68_indices("eyes,mouth", "f"), np.arange(36, 68))
    np.testing.assert_array_equal(ibug68_indices(" mouth , eyes ", "f"), np.arange(36, 68))
    np.testing.assert_array_equal(ibug68_indices("jaw", "f"), np.arange(17))
    np.testing.assert_array_equal(ibug68_indices("all", "f"), np.arange(68))
    parts = "jaw,brows,nose,eyes,mouth"
    np.testing.assert_array_equal(ibug68_indices(parts, "f"), np.arange(68))
    for bad in ("lips", "", "eyes,,teeth"):
        with pytest.raises(ValueError, match="losses.landmark_parts: expected comma-separated"):
            ibug68_indices(bad, "losses.landmark_parts")


def test_facemesh_points_become_ibug68_means_of_their_vertices():
    rng = np.random.default_rng(0)
    mesh = rng.uniform(0, 1, (2, 468, 3)).astype(np.float32)
    out = facemesh_to_ibug68(mesh)
    assert out.shape == (2, 68, 3)
    a, b = FACEMESH_PAIRS_62[48]  # the image-left mouth corner
    np.testing.assert_allclose(out[:, 48, :2], (mesh[:, a, :2] + mesh[:, b, :2]) / 2, rtol=1e-6)
    np.testing.assert_allclose(out[:, :17, 2].mean(axis=1), 0.0, atol=1e-6)  # jaw depth at 0
