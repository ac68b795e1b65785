"""Linear probes of motion codes: exact on linear codes, ~0 on codes that hold nothing, and the
synthetic faces' factors that the probes are fitted to."""

import numpy as np

from anchored_jax.evaluation.motion_probe import probe_r2, relative_to_first
from data_pipelines.sources import SyntheticFaceSource
from data_pipelines.synthetic_faces import FACTORS


def test_probe_r2_per_factor():
    rng = np.random.default_rng(0)
    factors = rng.normal(size=(600, 2))
    mixing = rng.normal(size=(2, 5))
    # Column 0 of the codes is a linear function of factor 0 only, plus a constant; the other
    # four are noise.
    codes = np.concatenate([3.0 * factors[:, :1] + 1.0, rng.normal(size=(600, 4))], axis=1)
    r2 = probe_r2(codes[:400], factors[:400], codes[400:], factors[400:])
    np.testing.assert_allclose(r2[0], 1.0, atol=1e-9)
    assert -0.1 < r2[1] < 0.05  # no better than the held-out mean
    mixed = factors @ mixing + 0.1 * rng.normal(size=(600, 5))
    assert (probe_r2(mixed[:400], factors[:400], mixed[400:], factors[400:]) > 0.95).all()


def test_relative_to_first():
    x = np.arange(12, dtype=np.float64).reshape(2, 3, 2)
    np.testing.assert_array_equal(relative_to_first(x), [[0, 0], [2, 2], [4, 4]] * 2)


def test_synthetic_factors_are_the_rendered_pose():
    source = SyntheticFaceSource(
        "test", num_identities=2, videos_per_identity=1, num_frames=40, image_size=32, fps=25.0,
        seed=0,
    )  # fmt: skip
    factors = source.factors(1, np.arange(40))
    assert factors.shape == (40, len(FACTORS)) and factors.dtype == np.float32
    expression = factors[:, FACTORS.index("eyes_closed") :]
    assert expression.min() >= 0.0 and expression.max() <= 1.0
    # The landmarks' centre follows the head's y factor, and its x is x, yaw and roll's.
    centre = source[1].landmarks_TLC[:, :, :2].mean(axis=1)
    assert np.corrcoef(centre[:, 1], factors[:, 1])[0, 1] > 0.95
    x_yaw_roll = factors[:, [FACTORS.index(name) for name in ("x", "yaw", "roll")]]
    assert probe_r2(x_yaw_roll, centre[:, :1], x_yaw_roll, centre[:, :1])[0] > 0.95
    np.testing.assert_array_equal(source.factors(1, np.array([7, 3])), factors[[7, 3]])
