"""The anchored sampler's loop, driven by oracle denoisers whose right answer is known."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anchored_jax.diffusion import make_schedule
from anchored_jax.diffusion.schedules import coefficient_at
from anchored_jax.sampling.anchored_sampler import (
    autoregressive_segments,
    chunk_layout,
    denoise_segments,
    shared_anchor_noise,
)
from anchored_jax.sampling.sampler_settings import SamplerSettings

SCHEDULE = make_schedule("linear", 1000)
S, K, H = 5, 3, 4
SHAPE = (S, K, H, H, 2)


def _targets(seed=0):
    return jax.random.uniform(jax.random.key(seed), SHAPE, minval=-0.9, maxval=0.9)


def x0_oracle(x_CKHWC, t_CK, cond_C):
    """An x0-predicting denoiser that returns each slot's own target, whatever it is fed."""
    del x_CKHWC, t_CK
    return cond_C["target"]


def _run(settings, targets, valid=None, source=None, key=0, denoise_fn=x0_oracle, pred="x0"):
    valid = jnp.ones((S,), bool) if valid is None else valid
    noise = shared_anchor_noise(jax.random.key(100 + key), SHAPE)

    @jax.jit
    def run(targets, valid, source):
        return denoise_segments(
            denoise_fn, SCHEDULE, noise, {"target": targets}, valid, jax.random.key(key),
            settings=settings, prediction=pred, source_HWC=source,
        )  # fmt: skip

    return np.asarray(run(targets, valid, source))


@pytest.mark.parametrize("chunk_size", [1, 2, 5])
def test_shared_generated_anchor_is_the_mean_and_bit_identical(chunk_size):
    targets = _targets()
    # The last segment is padding: its (wild) anchor target must not vote.
    targets = targets.at[-1, 0].set(0.0)
    valid = jnp.asarray([True] * (S - 1) + [False])
    settings = SamplerSettings(anchor="generated", num_steps=6, chunk_size=chunk_size)
    out = _run(settings, targets, valid)
    anchors = out[:, 0]
    assert np.all(anchors == anchors[0]), "anchor differs between segments"
    # x0-prediction makes the DDIM step affine in the prediction, so averaging the anchor's
    # step over segments ends on the mean of its targets over the valid segments.
    np.testing.assert_allclose(anchors[0], np.mean(targets[: S - 1, 0], axis=0), atol=1e-5)
    np.testing.assert_allclose(out[:, 1:], targets[:, 1:], atol=1e-5)


def test_independent_keeps_one_anchor_per_segment():
    targets = _targets(1)
    out = _run(SamplerSettings(method="independent", anchor="generated", num_steps=6), targets)
    np.testing.assert_allclose(out, targets, atol=1e-5)
    assert np.abs(out[0, 0] - out[1, 0]).max() > 0.1


def _recording_eps_oracle(schedule, targets, seen):
    """An epsilon oracle for `targets` that records the slot-0 input, t and implied noise."""

    def denoise_fn(x_t, t_CK, cond_C):
        a = coefficient_at(schedule.sqrt_alphas_cumprod, t_CK, x_t.shape)
        s = coefficient_at(schedule.sqrt_one_minus_alphas_cumprod, t_CK, x_t.shape)
        eps = (x_t - a * cond_C["target"]) / s
        jax.debug.callback(
            lambda x, t, e: seen.append((np.asarray(x), np.asarray(t), np.asarray(e))),
            x_t[:, 0], t_CK[:, 0], eps[:, 0], ordered=True,
        )  # fmt: skip
        return eps

    return denoise_fn


@pytest.mark.parametrize("mode", ["clean", "renoise"])
def test_known_anchor_is_held_clean_or_renoised(mode):
    source = jnp.full((H, H, 2), 0.25, jnp.float32)
    targets = _targets(2).at[:, 0].set(source)
    seen = []
    settings = SamplerSettings(anchor="known", known_anchor_mode=mode, num_steps=5, chunk_size=5)
    oracle = _recording_eps_oracle(SCHEDULE, targets, seen)
    out = _run(settings, targets, source=source, denoise_fn=oracle, pred="epsilon")
    assert np.all(out[:, 0] == np.asarray(source)), "the known anchor must come back exactly"
    np.testing.assert_allclose(out[:, 1:], targets[:, 1:], atol=1e-4)
    assert len(seen) == 5
    if mode == "clean":
        for x0, t0, _ in seen:
            assert np.all(t0 == 0) and np.all(x0 == np.asarray(source))
    else:
        ts = [int(t0[0]) for _, t0, _ in seen]
        assert ts == sorted(ts, reverse=True) and ts[0] == 999 and ts[-1] == 0
        # One fixed noise draw: the anchor sits on its own deterministic DDIM path.
        eps_first = seen[0][2]
        for _, _, eps in seen[:-1]:
            np.testing.assert_allclose(eps, eps_first, atol=2e-3)
        assert np.abs(eps_first).mean() > 0.5


def test_ddpm_is_deterministic_for_a_key_and_chunking_does_not_change_it():
    def zero_eps(x, t, cond):  # predicts no noise: the output is the sampler's own noise.
        return jnp.zeros_like(x)

    targets = _targets(3)
    base = dict(sampler="ddpm", anchor="generated", num_steps=8)
    a = _run(SamplerSettings(**base, chunk_size=5), targets, denoise_fn=zero_eps, pred="epsilon")
    b = _run(SamplerSettings(**base, chunk_size=2), targets, denoise_fn=zero_eps, pred="epsilon")
    c = _run(
        SamplerSettings(**base, chunk_size=5), targets, key=1, denoise_fn=zero_eps, pred="epsilon"
    )
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.abs(a - c).mean() > 0.1
    assert np.all(a[:, 0] == a[0, 0])


def test_autoregressive_conditions_each_segment_on_the_previous_last_frame():
    # x0 = (slot-0 frame) + delta: the known-anchor path feeds slot 0 the previous segment's
    # last frame, so the output is a running sum of the deltas along the chain.
    delta = jax.random.uniform(jax.random.key(4), SHAPE, minval=-0.05, maxval=0.05)
    source = jnp.zeros((H, H, 2), jnp.float32)
    last_slot = jnp.asarray([K - 1] * S, jnp.int32)

    def chained(x, t, cond):
        return x[:, :1] + cond["delta"]

    settings = SamplerSettings(method="autoregressive", num_steps=4, clip_x0=False)
    noise = jax.random.normal(jax.random.key(5), SHAPE)
    out = jax.jit(
        functools.partial(
            autoregressive_segments, chained, SCHEDULE, settings=settings, prediction="x0"
        )
    )(noise, {"delta": delta}, last_slot, jax.random.key(0), source_HWC=source)
    out = np.asarray(out)
    d = np.asarray(delta)
    previous = np.zeros((H, H, 2), np.float32)
    for s in range(S):
        np.testing.assert_array_equal(out[s, 0], previous)
        np.testing.assert_allclose(out[s, 1:], previous + d[s, 1:], atol=1e-5)
        previous = out[s, K - 1]
    assert np.abs(previous).max() > 0.05


def test_chunk_layout_pads_least():
    assert chunk_layout(85, 32) == (3, 29)
    assert chunk_layout(5, 32) == (1, 5)
    assert chunk_layout(7, 1) == (7, 1)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(method="chained"), "sampling.method"),
        (dict(num_steps=0), "sampling.num_steps"),
        (dict(chunk_size=0), "sampling.chunk_size"),
        (dict(method="autoregressive", anchor="generated"), "sampling.anchor"),
        (dict(known_anchor_mode="sticky"), "sampling.known_anchor_mode"),
    ],
)
def test_bad_settings_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplerSettings(**kwargs)


@pytest.mark.parametrize("sampler,eta", [("ddpm", 0.0), ("ddim", 1.0)])
def test_shared_anchor_keeps_its_step_noise_variance(sampler, eta):
    # Every slot predicts x0 = 0, so each step is x_prev = c * x_t + sigma * z: a slot's
    # spread comes from the noise alone. Averaging S independent draws over the anchor slot
    # would shrink its spread by about sqrt(S) = 4; one shared draw keeps it at the others'.
    S16, shape = 16, (16, 3, 8, 8, 2)
    seen = []

    def zero_x0(x_t, t_CK, cond_C):
        jax.debug.callback(lambda x: seen.append(np.asarray(x)), x_t, ordered=True)
        return jnp.zeros_like(x_t)

    settings = SamplerSettings(
        anchor="generated", sampler=sampler, eta=eta, num_steps=6, chunk_size=S16
    )
    noise = shared_anchor_noise(jax.random.key(5), shape)
    denoise_segments(
        zero_x0, SCHEDULE, noise, {}, jnp.ones((S16,), bool), jax.random.key(6),
        settings=settings, prediction="x0",
    )  # fmt: skip
    for x in seen[2:]:  # after two steps the starting noise has mostly decayed
        anchor_std, frame_std = x[:, 0].std(), x[:, 1:].std()
        assert np.all(x[:, 0] == x[0, 0])
        assert 0.7 < anchor_std / frame_std < 1.4, (anchor_std, frame_std)


def test_independent_starting_noise_has_its_own_anchor_draw_per_segment():
    shared = np.asarray(shared_anchor_noise(jax.random.key(0), SHAPE))
    own = np.asarray(shared_anchor_noise(jax.random.key(0), SHAPE, shared=False))
    assert np.all(shared[:, 0] == shared[0, 0])
    assert np.abs(own[0, 0] - own[1, 0]).mean() > 0.5
    np.testing.assert_array_equal(own[:, 1:], shared[:, 1:])


def test_correlated_starting_noise_is_unit_variance_with_the_asked_correlation():
    shape = (64, 4, 16, 16, 3)
    video = np.asarray(shared_anchor_noise(jax.random.key(0), shape, correlation=0.8))
    assert abs(video.std() - 1.0) < 0.02
    # Any two slots of the video share the common draw.
    assert abs(np.corrcoef(video[3, 1].ravel(), video[40, 2].ravel())[0, 1] - 0.8) < 0.05
    own = np.asarray(shared_anchor_noise(jax.random.key(0), shape, shared=False, correlation=0.8))
    # Independent segments: correlated within a segment only.
    assert abs(np.corrcoef(own[3, 1].ravel(), own[3, 2].ravel())[0, 1] - 0.8) < 0.05
    assert abs(np.corrcoef(own[3, 1].ravel(), own[40, 2].ravel())[0, 1]) < 0.1


def test_a_later_window_keeps_the_videos_anchor_and_common_draw():
    shape = (64, 4, 16, 16, 3)
    first = np.asarray(shared_anchor_noise(jax.random.key(0), shape, correlation=0.8))
    later = np.asarray(shared_anchor_noise(jax.random.key(0), shape, correlation=0.8, window=3))
    np.testing.assert_array_equal(later[:, 0], first[:, 0])  # the same anchor draw
    # Frames of different windows share the common draw as frames of one window do, and their
    # own draws differ.
    assert abs(np.corrcoef(first[3, 1].ravel(), later[40, 2].ravel())[0, 1] - 0.8) < 0.05
    assert np.abs(first[:, 1:] - later[:, 1:]).mean() > 0.2


def test_settled_anchor_is_generated_first_then_held_by_every_segment(monkeypatch):
    from anchored_jax.sampling import video_generation
    from anchored_jax.sampling.video_generation import settle_anchor

    monkeypatch.setattr(video_generation, "SETTLE_SEGMENTS", 3)

    targets = _targets(4)
    settings = SamplerSettings(
        anchor="generated", generated_anchor_mode="settled", num_steps=6, chunk_size=3
    )
    noise = shared_anchor_noise(jax.random.key(1), SHAPE)
    valid = jnp.ones((S,), bool)
    anchor = settle_anchor(
        x0_oracle, SCHEDULE, noise, {"target": targets}, valid, jax.random.key(2),
        settings=settings, prediction="x0",
    )  # fmt: skip
    # 3 of 5 segments, spread over the video: 0, 2 and 4.
    np.testing.assert_allclose(anchor, np.mean(targets[[0, 2, 4], 0], axis=0), atol=1e-5)
